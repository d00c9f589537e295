//! The citizen's profile (IO `ExtendedProfile`) and per-service preferences
//! (IO `ServicePreference`), with the rules for creating and changing them.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::email::EmailAddress;
use crate::validation::from_json;
use crate::ValidationError;

/// How the citizen's per-service choices are read (IO `ServicesPreferencesMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PreferencesMode {
    /// `blocked_inbox_or_channels` on the profile decides.
    Legacy,
    /// Every service may write unless a preference says no.
    Auto,
    /// No service may write unless a preference says yes.
    Manual,
}

impl PreferencesMode {
    /// IO's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Legacy => "LEGACY",
            Self::Auto => "AUTO",
            Self::Manual => "MANUAL",
        }
    }
}

/// IO `ServicePreferencesSettings`; `version` counts mode changes, and a service preference
/// only counts while its `settings_version` equals it (IO keeps that rule so switching mode
/// makes every earlier choice void at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServicePreferencesSettings {
    pub mode: PreferencesMode,
    #[serde(default)]
    pub version: i64,
}

/// A channel a citizen can block for one service (IO `BlockedInboxOrChannel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum BlockedChannel {
    Email,
    Inbox,
    Webhook,
}

/// IO `PushNotificationsContentType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum PushContent {
    Full,
    Anonymous,
}

/// The stored profile, in the shape of IO `ExtendedProfile`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Email)]
    pub email: Option<EmailAddress>,
    pub is_email_enabled: bool,
    pub is_email_validated: bool,
    pub is_email_already_taken: bool,
    pub is_inbox_enabled: bool,
    pub is_webhook_enabled: bool,
    #[serde(default)]
    pub preferred_languages: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notifications_content_type: Option<PushContent>,
    pub service_preferences_settings: ServicePreferencesSettings,
    #[serde(default)]
    pub blocked_inbox_or_channels: BTreeMap<String, BTreeSet<BlockedChannel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_tos_version: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_app_version: Option<String>,
    #[serde(default)]
    pub is_test_profile: bool,
    /// Optimistic concurrency: an update must name the version it read.
    pub version: u32,
}

/// What a citizen sends to create or change the profile; absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
pub struct ProfileUpdate {
    #[schema(value_type = Option<String>, format = Email)]
    pub email: Option<EmailAddress>,
    pub is_email_enabled: Option<bool>,
    pub is_email_validated: Option<bool>,
    pub is_inbox_enabled: Option<bool>,
    pub is_webhook_enabled: Option<bool>,
    pub preferred_languages: Option<Vec<String>>,
    pub push_notifications_content_type: Option<PushContent>,
    pub service_preferences_settings: Option<ModeOnly>,
    pub blocked_inbox_or_channels: Option<BTreeMap<String, BTreeSet<BlockedChannel>>>,
    pub accepted_tos_version: Option<f64>,
    pub reminder_status: Option<String>,
    pub last_app_version: Option<String>,
    pub is_test_profile: Option<bool>,
    /// The version the change is based on; required to change an existing profile.
    pub version: Option<u32>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
pub struct ModeOnly {
    pub mode: PreferencesMode,
}

/// Why a profile change was refused after it parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileConflict {
    #[error("version {given:?} does not match the stored version {current}; read the profile again and retry")]
    Version { given: Option<u32>, current: u32 },
    #[error("service_preferences_settings.mode cannot go back to LEGACY")]
    BackToLegacy,
    /// `blocked_inbox_or_channels` counts only in LEGACY mode; accepted on any other
    /// profile, it would be ignored, and a citizen who blocked a service would still hear
    /// from it (invariant 4).
    #[error("blocked_inbox_or_channels applies only to profiles in LEGACY mode; this profile is in {mode} mode: set per-service preferences with PUT /citizen/v1/services/{{service_id}}/preferences instead")]
    BlockedOutsideLegacy { mode: &'static str },
}

impl ProfileUpdate {
    pub fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        let update: Self = from_json(body)?;
        if let Some(email) = &update.email {
            EmailAddress::parse("email", email.expose())?;
        }
        if let Some(langs) = &update.preferred_languages {
            for (i, lang) in langs.iter().enumerate() {
                parse_language(&format!("preferred_languages[{i}]"), lang)?;
            }
        }
        if let Some(v) = &update.last_app_version {
            let parts: Vec<&str> = v.split('.').collect();
            let numeric = parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()));
            if !(3..=4).contains(&parts.len()) || !numeric {
                return Err(ValidationError::new(
                    "last_app_version",
                    "must be a semantic version such as 1.10.11",
                ));
            }
        }
        if let Some(v) = update.accepted_tos_version {
            if v < 1.0 {
                return Err(ValidationError::new(
                    "accepted_tos_version",
                    "must be at least 1",
                ));
            }
        }
        Ok(update)
    }

    /// Applies the change to `current` (or creates a profile when there is none), checking
    /// the optimistic version. The result carries the next version.
    pub fn apply(self, current: Option<&Profile>) -> Result<Profile, ProfileConflict> {
        let mut p = match current {
            Some(p) => {
                if self.version != Some(p.version) {
                    return Err(ProfileConflict::Version {
                        given: self.version,
                        current: p.version,
                    });
                }
                let mut next = p.clone();
                next.version = p.version + 1;
                next
            }
            None => {
                if !matches!(self.version, None | Some(0)) {
                    return Err(ProfileConflict::Version {
                        given: self.version,
                        current: 0,
                    });
                }
                Profile::new_default()
            }
        };
        if let Some(email) = self.email {
            if p.email.as_ref() != Some(&email) {
                // A new address is unproven until the validation says otherwise.
                p.is_email_validated = false;
            }
            p.email = Some(email);
        }
        if let Some(settings) = self.service_preferences_settings {
            let old = p.service_preferences_settings;
            if settings.mode != old.mode {
                if settings.mode == PreferencesMode::Legacy {
                    return Err(ProfileConflict::BackToLegacy);
                }
                p.service_preferences_settings = ServicePreferencesSettings {
                    mode: settings.mode,
                    version: old.version + 1,
                };
            }
        }
        let blocks = self
            .blocked_inbox_or_channels
            .as_ref()
            .is_some_and(|blocked| blocked.values().any(|channels| !channels.is_empty()));
        if blocks && p.service_preferences_settings.mode != PreferencesMode::Legacy {
            return Err(ProfileConflict::BlockedOutsideLegacy {
                mode: p.service_preferences_settings.mode.as_str(),
            });
        }
        set(&mut p.is_email_enabled, self.is_email_enabled);
        set(&mut p.is_email_validated, self.is_email_validated);
        set(&mut p.is_inbox_enabled, self.is_inbox_enabled);
        set(&mut p.is_webhook_enabled, self.is_webhook_enabled);
        set(&mut p.preferred_languages, self.preferred_languages);
        set(
            &mut p.blocked_inbox_or_channels,
            self.blocked_inbox_or_channels,
        );
        set(&mut p.is_test_profile, self.is_test_profile);
        if self.push_notifications_content_type.is_some() {
            p.push_notifications_content_type = self.push_notifications_content_type;
        }
        if self.accepted_tos_version.is_some() {
            p.accepted_tos_version = self.accepted_tos_version;
        }
        if self.reminder_status.is_some() {
            p.reminder_status = self.reminder_status;
        }
        if self.last_app_version.is_some() {
            p.last_app_version = self.last_app_version;
        }
        Ok(p)
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

impl Profile {
    /// A profile as first created: inbox, push and email on, preferences in AUTO mode.
    pub fn new_default() -> Self {
        Self {
            email: None,
            is_email_enabled: true,
            is_email_validated: false,
            is_email_already_taken: false,
            is_inbox_enabled: true,
            is_webhook_enabled: true,
            preferred_languages: Vec::new(),
            push_notifications_content_type: None,
            service_preferences_settings: ServicePreferencesSettings {
                mode: PreferencesMode::Auto,
                version: 0,
            },
            blocked_inbox_or_channels: BTreeMap::new(),
            accepted_tos_version: None,
            reminder_status: None,
            last_app_version: None,
            is_test_profile: false,
            version: 0,
        }
    }
}

/// A citizen's choices for one service (IO `ServicePreference`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ServicePreference {
    pub is_email_enabled: bool,
    pub is_inbox_enabled: bool,
    pub is_webhook_enabled: bool,
    pub settings_version: i64,
    #[serde(default)]
    pub can_access_message_read_status: bool,
}

/// Why a preference could not be read or written for this profile (IO answers `409`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreferenceConflict {
    #[error("the profile is in LEGACY mode, which has no per-service preferences")]
    LegacyMode,
    #[error("settings_version {given} does not match the profile's service_preferences_settings.version {current}")]
    SettingsVersion { given: i64, current: i64 },
}

impl ServicePreference {
    pub fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        #[derive(Deserialize)]
        struct Upsert {
            is_email_enabled: bool,
            is_inbox_enabled: bool,
            is_webhook_enabled: bool,
            settings_version: i64,
            can_access_message_read_status: Option<bool>,
        }
        let raw: Upsert = from_json(body)?;
        if raw.settings_version < 0 {
            return Err(ValidationError::new(
                "settings_version",
                "must be 0 or more",
            ));
        }
        Ok(Self {
            is_email_enabled: raw.is_email_enabled,
            is_inbox_enabled: raw.is_inbox_enabled,
            is_webhook_enabled: raw.is_webhook_enabled,
            settings_version: raw.settings_version,
            can_access_message_read_status: raw.can_access_message_read_status.unwrap_or(true),
        })
    }

    /// Checks that this preference may be stored for `profile`.
    pub fn check_against(&self, profile: &Profile) -> Result<(), PreferenceConflict> {
        let settings = profile.service_preferences_settings;
        if settings.mode == PreferencesMode::Legacy {
            return Err(PreferenceConflict::LegacyMode);
        }
        if self.settings_version != settings.version {
            return Err(PreferenceConflict::SettingsVersion {
                given: self.settings_version,
                current: settings.version,
            });
        }
        Ok(())
    }

    /// The preference in force for `profile`: the stored one while its settings version is
    /// current, otherwise the mode's default (AUTO: everything on; MANUAL: everything off).
    pub fn effective(
        profile: &Profile,
        stored: Option<&ServicePreference>,
    ) -> Result<ServicePreference, PreferenceConflict> {
        let settings = profile.service_preferences_settings;
        let default_on = match settings.mode {
            PreferencesMode::Legacy => return Err(PreferenceConflict::LegacyMode),
            PreferencesMode::Auto => true,
            PreferencesMode::Manual => false,
        };
        Ok(match stored {
            Some(p) if p.settings_version == settings.version => *p,
            _ => ServicePreference {
                is_email_enabled: default_on,
                is_inbox_enabled: default_on,
                is_webhook_enabled: default_on,
                settings_version: settings.version,
                can_access_message_read_status: default_on,
            },
        })
    }
}

/// A language tag as IO writes them: `it_IT`, `en_GB`, `de_DE`…
pub fn parse_language(field: &str, value: &str) -> Result<(), ValidationError> {
    let b = value.as_bytes();
    let ok = b.len() == 5
        && b[..2].iter().all(u8::is_ascii_lowercase)
        && b[2] == b'_'
        && b[3..].iter().all(u8::is_ascii_uppercase);
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "must be a language tag such as it_IT, en_GB or de_DE",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creating_then_updating_follows_the_version() {
        let created =
            ProfileUpdate::parse(br#"{"email":"a@b.it","preferred_languages":["it_IT"]}"#)
                .unwrap()
                .apply(None)
                .unwrap();
        assert_eq!(created.version, 0);
        assert!(created.is_inbox_enabled);
        assert_eq!(
            created.service_preferences_settings.mode,
            PreferencesMode::Auto
        );

        let stale = ProfileUpdate::parse(br#"{"is_inbox_enabled":false}"#).unwrap();
        assert!(matches!(
            stale.apply(Some(&created)),
            Err(ProfileConflict::Version { .. })
        ));

        let next = ProfileUpdate::parse(br#"{"is_inbox_enabled":false,"version":0}"#)
            .unwrap()
            .apply(Some(&created))
            .unwrap();
        assert_eq!(next.version, 1);
        assert!(!next.is_inbox_enabled);
        assert_eq!(
            next.email.as_ref().map(EmailAddress::expose),
            Some("a@b.it"),
            "absent fields keep their value"
        );
    }

    #[test]
    fn mode_changes_bump_the_settings_version_and_never_return_to_legacy() {
        let p = Profile::new_default();
        let manual = ProfileUpdate::parse(
            br#"{"service_preferences_settings":{"mode":"MANUAL"},"version":0}"#,
        )
        .unwrap()
        .apply(Some(&p))
        .unwrap();
        assert_eq!(manual.service_preferences_settings.version, 1);
        let back = ProfileUpdate::parse(
            br#"{"service_preferences_settings":{"mode":"LEGACY"},"version":1}"#,
        )
        .unwrap()
        .apply(Some(&manual));
        assert_eq!(back, Err(ProfileConflict::BackToLegacy));
    }

    #[test]
    fn blocked_inbox_or_channels_is_refused_outside_legacy_and_honoured_in_it() {
        let blocking = br#"{"blocked_inbox_or_channels":{"svc":["INBOX"]},"version":0}"#;
        let auto = Profile::new_default();
        assert_eq!(
            ProfileUpdate::parse(blocking).unwrap().apply(Some(&auto)),
            Err(ProfileConflict::BlockedOutsideLegacy { mode: "AUTO" })
        );
        let created = ProfileUpdate::parse(br#"{"blocked_inbox_or_channels":{"svc":["EMAIL"]}}"#)
            .unwrap()
            .apply(None);
        assert_eq!(
            created,
            Err(ProfileConflict::BlockedOutsideLegacy { mode: "AUTO" }),
            "a new profile is AUTO"
        );
        // Nothing blocked is nothing ignored: apps that send the field empty are fine.
        let empty =
            ProfileUpdate::parse(br#"{"blocked_inbox_or_channels":{"svc":[]},"version":0}"#)
                .unwrap()
                .apply(Some(&auto));
        assert!(empty.is_ok(), "{empty:?}");
        let mut legacy = Profile::new_default();
        legacy.service_preferences_settings.mode = PreferencesMode::Legacy;
        let blocked = ProfileUpdate::parse(blocking)
            .unwrap()
            .apply(Some(&legacy))
            .unwrap();
        assert_eq!(
            blocked.blocked_inbox_or_channels.get("svc"),
            Some(&[BlockedChannel::Inbox].into())
        );
        let err = ProfileConflict::BlockedOutsideLegacy { mode: "MANUAL" }.to_string();
        assert!(
            err.contains("MANUAL") && err.contains("preferences"),
            "{err}"
        );
    }

    #[test]
    fn changing_the_email_unvalidates_it() {
        let mut p = Profile::new_default();
        p.email = Some(EmailAddress::parse("email", "a@b.it").expect("address"));
        p.is_email_validated = true;
        let next = ProfileUpdate::parse(br#"{"email":"c@d.it","version":0}"#)
            .unwrap()
            .apply(Some(&p))
            .unwrap();
        assert!(!next.is_email_validated);
    }

    #[test]
    fn malformed_profile_updates_name_the_field() {
        let cases: [(&[u8], &str); 6] = [
            (br#"{"email":"nope"}"#, "email"),
            (
                br#"{"preferred_languages":["italian"]}"#,
                "preferred_languages[0]",
            ),
            (br#"{"is_inbox_enabled":"yes"}"#, "is_inbox_enabled"),
            (
                br#"{"service_preferences_settings":{"mode":"SOMETIMES"}}"#,
                "service_preferences_settings.mode",
            ),
            (br#"{"last_app_version":"one"}"#, "last_app_version"),
            (
                br#"{"blocked_inbox_or_channels":{"s1":["SMS"]}}"#,
                "blocked_inbox_or_channels.s1[0]",
            ),
        ];
        for (body, field) in cases {
            let err = ProfileUpdate::parse(body).unwrap_err();
            assert_eq!(err.field, field, "{}", String::from_utf8_lossy(body));
        }
    }

    #[test]
    fn preferences_follow_mode_and_settings_version() {
        let mut p = Profile::new_default();
        let pref = ServicePreference::parse(br#"{"is_email_enabled":false,"is_inbox_enabled":true,"is_webhook_enabled":true,"settings_version":0}"#).unwrap();
        assert!(pref.check_against(&p).is_ok());
        let effective = ServicePreference::effective(&p, Some(&pref)).unwrap();
        assert!(!effective.is_email_enabled);

        p.service_preferences_settings = ServicePreferencesSettings {
            mode: PreferencesMode::Manual,
            version: 1,
        };
        assert!(matches!(
            pref.check_against(&p),
            Err(PreferenceConflict::SettingsVersion {
                given: 0,
                current: 1
            })
        ));
        let stale = ServicePreference::effective(&p, Some(&pref)).unwrap();
        assert!(
            !stale.is_inbox_enabled,
            "a stale preference falls back to MANUAL's default"
        );

        p.service_preferences_settings.mode = PreferencesMode::Legacy;
        assert_eq!(pref.check_against(&p), Err(PreferenceConflict::LegacyMode));
    }

    #[test]
    fn malformed_preferences_are_refused() {
        assert_eq!(
            ServicePreference::parse(br#"{"is_email_enabled":true}"#)
                .unwrap_err()
                .field,
            ""
        );
        assert_eq!(
            ServicePreference::parse(br#"{"is_email_enabled":true,"is_inbox_enabled":true,"is_webhook_enabled":true,"settings_version":-1}"#)
                .unwrap_err()
                .field,
            "settings_version"
        );
    }
}
