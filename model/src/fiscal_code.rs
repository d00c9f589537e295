//! The citizen's codice fiscale: 16 characters whose last one is a check character.
//!
//! The pattern is IO's (omocodia letters allowed where digits stand); on top of it the
//! check character is verified, so a typo is refused at the edge instead of creating a
//! message for a citizen who cannot exist.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ValidationError;

/// A syntactically valid fiscal code with a correct check character. Personal data: its
/// `Debug` form is redacted so it cannot leak into logs by accident.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FiscalCode(String);

/// Letters allowed where the code holds a digit (omocodia substitutes, 0..9 → L..V).
const OMOCODIA: &[u8] = b"LMNPQRSTUV";
/// Month letters.
const MONTHS: &[u8] = b"ABCDEHLMPRST";
/// Value of each character (digits map like A..J) at odd 1-based positions.
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// IO's fiscal code for trying a service out: no citizen's, with no valid check character,
/// accepted as IO accepts it. A service in test mode may send to it (its messages go to the
/// service's own contact email).
pub const IO_TEST_FISCAL_CODE: &str = "AAAAAA00A00A000A";

impl FiscalCode {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        if value == IO_TEST_FISCAL_CODE {
            return Ok(Self(value.to_string()));
        }
        let b = value.as_bytes();
        if b.len() != 16 {
            return Err(ValidationError::new(
                field,
                format!(
                    "must be a fiscal code of 16 characters, got {}",
                    value.chars().count()
                ),
            ));
        }
        let digitish = |c: u8| c.is_ascii_digit() || OMOCODIA.contains(&c);
        let shape_ok = b[..6].iter().all(u8::is_ascii_uppercase)
            && b[6..8].iter().all(|&c| digitish(c))
            && MONTHS.contains(&b[8])
            && b[9..11].iter().all(|&c| digitish(c))
            && b[11].is_ascii_uppercase()
            && b[12..15].iter().all(|&c| digitish(c))
            && b[15].is_ascii_uppercase();
        if !shape_ok {
            return Err(ValidationError::new(
                field,
                "must match the fiscal code pattern [A-Z]{6}[0-9LMNPQRSTUV]{2}[ABCDEHLMPRST][0-9LMNPQRSTUV]{2}[A-Z][0-9LMNPQRSTUV]{3}[A-Z] (upper case)",
            ));
        }
        let expected = check_character(&b[..15]);
        if b[15] != expected {
            return Err(ValidationError::new(
                field,
                "has a wrong check character (the 16th character does not match the first 15)",
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What IO's subscriptions feed shows for a citizen: the lowercase hex SHA-256 of the
    /// code. Unkeyed, so that senders can match it against the codes they hold; it hides a
    /// code from a reader who does not already have it, no more.
    pub fn feed_hash(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.0.as_bytes());
        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether this is [`IO_TEST_FISCAL_CODE`].
    pub fn is_io_test_code(&self) -> bool {
        self.0 == IO_TEST_FISCAL_CODE
    }

    /// A keyed hash of the code: the citizen's partition key on the bus, and what may stand
    /// for a citizen where a fiscal code must not appear in clear.
    pub fn keyed_hash(&self, key: &[u8; 32]) -> String {
        blake3::keyed_hash(key, self.0.as_bytes()).to_hex()[..32].to_string()
    }
}

/// The check character for the first 15 characters of a code (which must be `[0-9A-Z]`).
pub fn check_character(first15: &[u8]) -> u8 {
    let value = |c: u8| -> (u32, u32) {
        let idx = if c.is_ascii_digit() {
            c - b'0'
        } else {
            c - b'A'
        } as usize;
        (ODD_VALUES[idx], idx as u32)
    };
    let sum: u32 = first15
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            let (odd, even) = value(c);
            if i % 2 == 0 {
                odd
            } else {
                even
            }
        })
        .sum();
    b'A' + (sum % 26) as u8
}

impl TryFrom<String> for FiscalCode {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("fiscal_code", &value)
    }
}

impl From<FiscalCode> for String {
    fn from(value: FiscalCode) -> Self {
        value.0
    }
}

impl fmt::Debug for FiscalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FiscalCode(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_real_code() {
        let fc = FiscalCode::parse("fiscal_code", "RSSMRA85T10A562S").unwrap();
        assert_eq!(fc.as_str(), "RSSMRA85T10A562S");
    }

    #[test]
    fn the_feed_hash_is_the_hex_sha256_of_the_code() {
        // sha256("RSSMRA85T10A562S"), computed apart.
        let fc = FiscalCode::parse("fiscal_code", "RSSMRA85T10A562S").unwrap();
        assert_eq!(
            fc.feed_hash(),
            "bd807ad78163541b86ec74dec91f028a83299ba3adc7e1345f8c213573cd22be"
        );
        assert_eq!(fc.feed_hash().len(), 64);
    }

    #[test]
    fn ios_test_code_is_accepted_though_its_check_character_is_wrong() {
        let fc = FiscalCode::parse("fiscal_code", IO_TEST_FISCAL_CODE).unwrap();
        assert!(fc.is_io_test_code());
        assert_ne!(check_character(&IO_TEST_FISCAL_CODE.as_bytes()[..15]), b'A');
        assert!(FiscalCode::parse("fiscal_code", "AAAAAA00A00A000B").is_err());
        assert!(!FiscalCode::parse("fiscal_code", "RSSMRA85T10A562S")
            .unwrap()
            .is_io_test_code());
    }

    #[test]
    fn refuses_a_wrong_check_character() {
        let err = FiscalCode::parse("fiscal_code", "RSSMRA85T10A562T").unwrap_err();
        assert_eq!(err.field, "fiscal_code");
        assert!(err.rule.contains("check character"));
    }

    #[test]
    fn accepts_omocodia_with_its_own_check_character() {
        // 8 → U and 5 → R in the birth year: same person, different code.
        let mut code = b"RSSMRAURT10A562".to_vec();
        code.push(check_character(&code));
        let code = String::from_utf8(code).unwrap();
        assert!(FiscalCode::parse("fc", &code).is_ok(), "{code}");
    }

    #[test]
    fn refuses_malformed_codes_naming_the_rule() {
        for bad in [
            "",
            "RSSMRA85T10A562",
            "rssmra85t10a562s",
            "RSSMRA85Z10A562S",
            "1SSMRA85T10A562S",
            "RSSMRA85T10A562SS",
            "RSSMRA85T10A56ÀS",
        ] {
            let err = FiscalCode::parse("fiscal_code", bad).unwrap_err();
            assert_eq!(err.field, "fiscal_code", "{bad}");
            assert!(!err.rule.is_empty());
        }
    }

    #[test]
    fn debug_never_shows_the_code() {
        let fc = FiscalCode::parse("fc", "RSSMRA85T10A562S").unwrap();
        assert!(!format!("{fc:?}").contains("RSSMRA"));
    }

    #[test]
    fn keyed_hash_depends_on_key_and_hides_the_code() {
        let fc = FiscalCode::parse("fc", "RSSMRA85T10A562S").unwrap();
        let a = fc.keyed_hash(&[1; 32]);
        assert_ne!(a, fc.keyed_hash(&[2; 32]));
        assert_eq!(a, fc.keyed_hash(&[1; 32]));
        assert!(!a.contains("RSS"));
    }
}
