//! A citizen's devices (installations of the app) and the push token each one holds.
//!
//! Device tokens are personal data (invariant 6): [`DeviceToken`] never shows its value in
//! `Debug` or `Display`, so a token cannot reach a log line by accident.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::timestamp::Timestamp;
use crate::validation::{check_len, from_json};
use crate::ValidationError;

/// The push provider that reaches a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// Firebase Cloud Messaging (Android, and iOS through Firebase). IO's app says `gcm`.
    #[serde(alias = "gcm")]
    Fcm,
    /// Apple Push Notification service.
    Apns,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fcm => "fcm",
            Self::Apns => "apns",
        }
    }
}

/// The id the app gives its installation (IO `InstallationID`): stable across token changes,
/// so registering again replaces the token instead of adding a device.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstallationId(String);

impl InstallationId {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        check_len(field, value, 1, 128)?;
        if !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            return Err(ValidationError::new(
                field,
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InstallationId {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("", &value)
    }
}

impl From<InstallationId> for String {
    fn from(id: InstallationId) -> Self {
        id.0
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A provider's device token. Opaque, printable ASCII, at most 4 KiB; an APNs token is hex.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceToken(String);

impl DeviceToken {
    pub fn parse(field: &str, value: &str) -> Result<Self, ValidationError> {
        if value.is_empty() || value.len() > 4096 {
            return Err(ValidationError::new(
                field,
                format!("must be 1 to 4096 characters long, got {}", value.len()),
            ));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ValidationError::new(
                field,
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Self(value.to_string()))
    }

    /// The token itself, for the provider request only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceToken {
    type Error = ValidationError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse("", &value)
    }
}

impl From<DeviceToken> for String {
    fn from(token: DeviceToken) -> Self {
        token.0
    }
}

impl fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceToken(<{} characters>)", self.0.len())
    }
}

/// Whether `token` has the shape of an APNs device token: hex digits, whole bytes (Apple
/// issues 32 bytes today, written as 64 digits).
pub fn is_apns_token(token: &str) -> bool {
    !token.is_empty()
        && token.len().is_multiple_of(2)
        && token.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A registered device of one citizen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installation {
    pub id: InstallationId,
    pub platform: Platform,
    pub token: DeviceToken,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    pub updated_at: Timestamp,
}

/// The body of `PUT /installations/{id}` (IO `Installation`, plus the app's version).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInstallation {
    pub platform: Platform,
    /// The provider's device token.
    #[serde(alias = "pushChannel")]
    #[schema(value_type = String)]
    pub push_channel: DeviceToken,
    #[serde(default, alias = "appVersion")]
    pub app_version: Option<String>,
}

impl NewInstallation {
    /// Parses and checks a request body: an APNs token is hex (Apple issues 32 bytes,
    /// written as 64 hex digits), the app version is short text.
    pub fn parse(bytes: &[u8]) -> Result<Self, ValidationError> {
        let new: Self = from_json(bytes)?;
        if new.platform == Platform::Apns && !is_apns_token(&new.push_channel.0) {
            return Err(ValidationError::new(
                "push_channel",
                "an APNs device token must be hexadecimal (64 digits for today's tokens)",
            ));
        }
        if let Some(version) = &new.app_version {
            check_len("app_version", version, 1, 32)?;
        }
        Ok(new)
    }

    pub fn into_installation(self, id: InstallationId, updated_at: Timestamp) -> Installation {
        Installation {
            id,
            platform: self.platform,
            token: self.push_channel,
            app_version: self.app_version,
            updated_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APNS: &str = "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";

    #[test]
    fn parses_fcm_and_apns_bodies_in_both_spellings() {
        let fcm = NewInstallation::parse(
            br#"{"platform":"fcm","push_channel":"dF3x:APA91bH-token_1","app_version":"2.61.0"}"#,
        )
        .unwrap();
        assert_eq!(fcm.platform, Platform::Fcm);
        assert_eq!(fcm.app_version.as_deref(), Some("2.61.0"));
        let io = NewInstallation::parse(
            format!(r#"{{"platform":"apns","pushChannel":"{APNS}"}}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(io.platform, Platform::Apns);
        let gcm = NewInstallation::parse(br#"{"platform":"gcm","pushChannel":"t"}"#).unwrap();
        assert_eq!(gcm.platform, Platform::Fcm);
    }

    #[test]
    fn malformed_bodies_name_the_field() {
        let cases: [(&[u8], &str); 7] = [
            (b"", ""),
            (b"{\"platform\":\"fcm\"}", ""),
            (br#"{"platform":"wns","push_channel":"t"}"#, "platform"),
            (br#"{"platform":"fcm","push_channel":""}"#, "push_channel"),
            (
                br#"{"platform":"fcm","push_channel":"has space"}"#,
                "push_channel",
            ),
            (
                br#"{"platform":"apns","push_channel":"not-hex"}"#,
                "push_channel",
            ),
            (
                br#"{"platform":"fcm","push_channel":"t","app_version":""}"#,
                "app_version",
            ),
        ];
        for (body, field) in cases {
            let err = NewInstallation::parse(body).unwrap_err();
            assert_eq!(err.field, field, "{}", String::from_utf8_lossy(body));
        }
        let err = NewInstallation::parse(br#"{"platform":"fcm","push_channel":"t","x":1}"#);
        assert!(err.unwrap_err().rule.contains("unknown field"));
    }

    #[test]
    fn installation_ids_are_checked() {
        assert!(InstallationId::parse("id", "phone-1.a_b").is_ok());
        assert_eq!(InstallationId::parse("id", "a/b").unwrap_err().field, "id");
        assert!(InstallationId::parse("id", "").is_err());
        assert!(InstallationId::parse("id", &"x".repeat(129)).is_err());
    }

    #[test]
    fn a_token_never_shows_in_debug_output() {
        let token = DeviceToken::parse("t", "secret-token-value").unwrap();
        let shown = format!(
            "{token:?} {:?}",
            NewInstallation {
                platform: Platform::Fcm,
                push_channel: token.clone(),
                app_version: None,
            }
        );
        assert!(!shown.contains("secret-token-value"), "{shown}");
    }
}
