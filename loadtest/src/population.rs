//! The synthetic population. Citizen `i`'s fiscal code and the kind of profile it has are
//! derived from `i` alone, so the seeder and every scenario agree on who should receive what
//! without passing a million-row list around.

use model::installation::Platform;
use serde::{Deserialize, Serialize};

/// Most citizens one population can hold (six letters of the code vary).
pub const MAX_CITIZENS: u64 = 26u64.pow(6);

/// A valid fiscal code (pattern and check character) unique to `i < MAX_CITIZENS`.
pub fn fiscal_code(i: u64) -> String {
    let mut code = [b'A'; 16];
    let mut n = i % MAX_CITIZENS;
    for slot in code[..6].iter_mut().rev() {
        // n % 26 < 26 fits a byte
        *slot = b'A' + (n % 26) as u8;
        n /= 26;
    }
    code[6..15].copy_from_slice(b"85T10A562");
    code[15] = model::fiscal_code::check_character(&code[..15]);
    code.iter().map(|&c| char::from(c)).collect()
}

/// The shares of the population, in percent. The first three are exclusive kinds; `email`,
/// `push_full` and `devices` apply to the rest, `apns` to those with a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mix {
    /// Citizens without a profile: their messages are REJECTED (`USER_NOT_FOUND`).
    pub no_profile: u8,
    /// Profiles with the inbox disabled: REJECTED (`SERVICE_NOT_ALLOWED`).
    pub inbox_disabled: u8,
    /// Profiles that blocked the first service: its messages are REJECTED.
    pub service_blocked: u8,
    /// Profiles with a validated, enabled email address.
    pub email: u8,
    /// Profiles that chose FULL push content (the others ANONYMOUS).
    pub push_full: u8,
    /// Profiles with one registered phone (an installation).
    #[serde(default)]
    pub devices: u8,
    /// Of those phones, the share on APNs (the others on FCM).
    #[serde(default)]
    pub apns: u8,
}

impl Default for Mix {
    fn default() -> Self {
        Self {
            no_profile: 5,
            inbox_disabled: 2,
            service_blocked: 3,
            email: 40,
            push_full: 50,
            devices: 80,
            apns: 30,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MixError(String);

impl Mix {
    pub fn check(&self) -> Result<(), MixError> {
        let exclusive = u32::from(self.no_profile)
            + u32::from(self.inbox_disabled)
            + u32::from(self.service_blocked);
        if exclusive > 100 {
            return Err(MixError(format!(
                "--no-profile + --inbox-disabled + --service-blocked is {exclusive} %; at most 100"
            )));
        }
        for (name, v) in [
            ("--email", self.email),
            ("--push-full", self.push_full),
            ("--devices", self.devices),
            ("--apns", self.apns),
        ] {
            if v > 100 {
                return Err(MixError(format!("{name} is {v} %; at most 100")));
            }
        }
        Ok(())
    }

    /// What kind of citizen `i` is.
    pub fn kind(&self, i: u64) -> Kind {
        let h = spread(i);
        let bucket = (h % 100) as u8;
        let cut1 = self.no_profile;
        let cut2 = cut1.saturating_add(self.inbox_disabled);
        let cut3 = cut2.saturating_add(self.service_blocked);
        if bucket < cut1 {
            Kind::NoProfile
        } else if bucket < cut2 {
            Kind::InboxDisabled
        } else {
            Kind::Active {
                blocks_first_service: bucket < cut3,
                email: ((h / 100) % 100) < u64::from(self.email),
                push_full: ((h / 10_000) % 100) < u64::from(self.push_full),
                phone: (((h / 1_000_000) % 100) < u64::from(self.devices)).then(|| {
                    if ((h / 100_000_000) % 100) < u64::from(self.apns) {
                        Platform::Apns
                    } else {
                        Platform::Fcm
                    }
                }),
            }
        }
    }

    /// Whether a message from service `service` (0 = the first) reaches citizen `i`'s inbox.
    pub fn readable(&self, i: u64, service: usize) -> bool {
        match self.kind(i) {
            Kind::NoProfile | Kind::InboxDisabled => false,
            Kind::Active {
                blocks_first_service,
                ..
            } => !(blocks_first_service && service == 0),
        }
    }

    /// The phone a message from `service` to citizen `i` is pushed to, if any: the message
    /// must reach the inbox and the citizen must have registered one.
    pub fn pushed_to(&self, i: u64, service: usize) -> Option<Platform> {
        match self.kind(i) {
            Kind::Active { phone, .. } if self.readable(i, service) => phone,
            _ => None,
        }
    }
}

impl Mix {
    /// Whether a message from `service` to citizen `i` is emailed: it must reach the inbox
    /// and the citizen must have a validated, enabled address (the seeded services never
    /// require secure channels).
    pub fn emailed(&self, i: u64, service: usize) -> bool {
        matches!(self.kind(i), Kind::Active { email: true, .. }) && self.readable(i, service)
    }
}

/// The installation id every seeded phone is registered under.
pub const INSTALLATION_ID: &str = "loadtest-phone";

/// The device token of citizen `i`'s phone: FCM-like (about 160 characters) or APNs-like
/// (64 hex digits). Neither starts like the stand-ins' scripted failure tokens, so only the
/// stand-ins' random faults touch a load test.
pub fn device_token(i: u64, platform: Platform) -> String {
    let words: Vec<u64> = (0..4).map(|k| spread(i ^ (k << 56))).collect();
    match platform {
        // `1` then 63 hex digits: no scripted APNs prefix starts with `1`.
        Platform::Apns => format!(
            "1{:015x}{:016x}{:016x}{:016x}",
            words[0] >> 4,
            words[1],
            words[2],
            words[3]
        ),
        Platform::Fcm => {
            let hex: String = words.iter().map(|w| format!("{w:016x}")).collect();
            format!("lt{i:x}:APA91b{hex}{hex}")
        }
    }
}

/// The kind of one citizen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NoProfile,
    InboxDisabled,
    Active {
        blocks_first_service: bool,
        email: bool,
        push_full: bool,
        phone: Option<Platform>,
    },
}

/// A well-mixed hash (splitmix64), so shares hold over any range of indices.
pub fn spread(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiscal_codes_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for i in (0..5_000).chain([MAX_CITIZENS - 1]) {
            let code = fiscal_code(i);
            model::fiscal_code::FiscalCode::parse("fiscal_code", &code)
                .unwrap_or_else(|e| panic!("{code}: {e}"));
            assert!(seen.insert(code));
        }
    }

    #[test]
    fn the_mix_holds_its_shares() {
        let mix = Mix::default();
        let n = 100_000u64;
        let mut no_profile = 0;
        let mut email = 0;
        let mut active = 0;
        for i in 0..n {
            match mix.kind(i) {
                Kind::NoProfile => no_profile += 1,
                Kind::Active { email: e, .. } => {
                    active += 1;
                    email += u64::from(e);
                }
                Kind::InboxDisabled => {}
            }
        }
        let share = |x: u64, of: u64| x as f64 * 100.0 / of as f64;
        assert!((share(no_profile, n) - 5.0).abs() < 0.5, "{no_profile}");
        assert!(
            (share(email, active) - 40.0).abs() < 1.0,
            "{email}/{active}"
        );
    }

    #[test]
    fn blocked_citizens_refuse_only_the_first_service() {
        let mix = Mix {
            no_profile: 0,
            inbox_disabled: 0,
            service_blocked: 100,
            ..Mix::default()
        };
        assert!(!mix.readable(7, 0));
        assert!(mix.readable(7, 1));
    }

    #[test]
    fn phones_follow_the_mix_and_only_readable_messages_are_pushed() {
        let mix = Mix::default();
        let (mut phones, mut apns, mut active) = (0u64, 0u64, 0u64);
        for i in 0..100_000u64 {
            if let Kind::Active { phone, .. } = mix.kind(i) {
                active += 1;
                phones += u64::from(phone.is_some());
                apns += u64::from(phone == Some(Platform::Apns));
                assert_eq!(
                    mix.pushed_to(i, 1),
                    phone,
                    "another service always reaches {i}"
                );
                if !mix.readable(i, 0) {
                    assert_eq!(mix.pushed_to(i, 0), None, "{i} blocked the first service");
                }
            } else {
                assert_eq!(mix.pushed_to(i, 1), None);
            }
        }
        assert!((phones as f64 * 100.0 / active as f64 - 80.0).abs() < 1.0);
        assert!((apns as f64 * 100.0 / phones as f64 - 30.0).abs() < 1.0);
        let none = Mix {
            devices: 0,
            ..Mix::default()
        };
        assert!((0..1000).all(|i| none.pushed_to(i, 1).is_none()));
    }

    #[test]
    fn device_tokens_are_valid_distinct_and_never_scripted_failures() {
        let scripted = [
            "unregistered",
            "invalid",
            "status-",
            "flaky-",
            "dead",
            "bad0",
            "0429",
            "0503",
            "0500",
            "f1a",
        ];
        let mut seen = std::collections::HashSet::new();
        for i in 0..5_000u64 {
            for platform in [Platform::Fcm, Platform::Apns] {
                let token = device_token(i, platform);
                model::installation::DeviceToken::parse("push_channel", &token)
                    .unwrap_or_else(|e| panic!("{token}: {e}"));
                assert_eq!(
                    model::installation::is_apns_token(&token),
                    platform == Platform::Apns,
                    "{token}"
                );
                assert!(!scripted.iter().any(|p| token.starts_with(p)), "{token}");
                assert!(seen.insert(token));
            }
        }
    }

    #[test]
    fn a_state_file_from_before_phones_reads_as_no_phones() {
        let old =
            r#"{"no_profile":5,"inbox_disabled":2,"service_blocked":3,"email":40,"push_full":50}"#;
        let mix: Mix = serde_json::from_str(old).expect("old mix");
        assert_eq!((mix.devices, mix.apns), (0, 0));
    }

    #[test]
    fn impossible_mixes_are_refused() {
        let mix = Mix {
            no_profile: 60,
            inbox_disabled: 30,
            service_blocked: 20,
            ..Mix::default()
        };
        assert!(mix.check().unwrap_err().to_string().contains("110 %"));
        let mix = Mix {
            email: 101,
            ..Mix::default()
        };
        assert!(mix.check().is_err());
    }
}
