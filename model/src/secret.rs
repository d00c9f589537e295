//! A setting that must never print: keys, passwords, signing secrets.
//!
//! `Debug`, `Display` and `Serialize` all show `<redacted>`, so a configuration can be
//! logged or dumped whole; only [`Secret::expose`] hands out the value, at the one place
//! that needs it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a secret shows instead of its value.
pub const REDACTED: &str = "<redacted>";

/// A secret string.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself: call it only where the secret is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_shows_only_that_it_is_one() {
        let secret: Secret = serde_json::from_str("\"hunter2-very-secret\"").expect("a string");
        for shown in [
            format!("{secret:?}"),
            format!("{secret}"),
            serde_json::to_string(&secret).expect("serialises"),
        ] {
            assert!(
                !shown.contains("hunter2") && shown.contains(REDACTED),
                "{shown}"
            );
        }
        assert_eq!(secret.expose(), "hunter2-very-secret");
        assert!(
            serde_json::from_str::<Secret>("42").is_err(),
            "not a string"
        );
    }
}
