//! What a push notification says and the record that asks the push dispatcher to send one
//! (`deliveries.push`, one record per device, so each device's retry is its own).

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::installation::{DeviceToken, InstallationId, Platform};
pub use crate::language::{language, Language};
use crate::pipeline::DeliveryPlan;
use crate::profile::PushContent;
use crate::timestamp::Timestamp;
use crate::FiscalCode;

/// One notification to one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    pub message_id: Ulid,
    pub fiscal_code: FiscalCode,
    pub installation_id: InstallationId,
    pub platform: Platform,
    pub token: DeviceToken,
    pub title: String,
    pub body: String,
    /// When the message's `time_to_live` runs out (Unix seconds): not sent after it.
    pub expires_at: i64,
    /// The campaign its message belongs to: not sent once the campaign is cancelled, and
    /// its outcome is reported to the campaign's tally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Sent even in quiet hours.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub urgent: bool,
    /// The key of the record it came in (its citizen's partition), kept to schedule it
    /// again on the same key (not part of the job's payload).
    #[serde(skip)]
    pub key: Vec<u8>,
    /// The request the message came from, as its record's header carries it (not part of
    /// the job's payload): on every log line about the job.
    #[serde(skip)]
    pub request_id: Option<String>,
}

impl PushJob {
    /// One job per device of `devices`, for the plan's message; the text per
    /// [`notification_text`], not sent past the message's `time_to_live`.
    pub fn for_plan<'a>(
        plan: &DeliveryPlan,
        devices: impl IntoIterator<Item = &'a crate::installation::Installation>,
    ) -> Vec<Self> {
        let (title, body) = notification_text(plan);
        let message = &plan.message;
        let expires_at = expires_at(message.created_at, message.time_to_live);
        devices
            .into_iter()
            .map(|device| Self {
                message_id: message.id,
                fiscal_code: message.fiscal_code.clone(),
                installation_id: device.id.clone(),
                platform: device.platform,
                token: device.token.clone(),
                title: title.clone(),
                body: body.clone(),
                expires_at,
                campaign_id: message.campaign_id.clone(),
                urgent: message.urgent,
                key: Vec::new(),
                request_id: None,
            })
            .collect()
    }
}

/// The text of a push: the organisation and the subject when the citizen chose `FULL` and
/// nothing requires secure channels, else a fixed text in the citizen's language.
pub fn notification_text(plan: &DeliveryPlan) -> (String, String) {
    let message = &plan.message;
    if plan.push_content == PushContent::Full && !message.requires_secure_channel() {
        return (
            message.sender.organization_name.clone(),
            message.content.subject.clone(),
        );
    }
    let (title, body) = match language(&plan.preferred_languages) {
        Language::English => ("You have a new message", "Open the app to read it"),
        Language::German => (
            "Sie haben eine neue Nachricht",
            "Öffnen Sie die App, um sie zu lesen",
        ),
        Language::Italian => ("Hai un nuovo messaggio", "Entra nell'app per leggerlo"),
    };
    (title.to_string(), body.to_string())
}

/// When a message stops being worth notifying: `created_at` + `time_to_live`, in Unix
/// seconds.
pub fn expires_at(created_at: Timestamp, time_to_live: u32) -> i64 {
    created_at.unix_seconds() + i64::from(time_to_live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::tests::sample_plan;

    #[test]
    fn anonymous_text_follows_the_first_known_language() {
        let mut plan = sample_plan();
        plan.push_content = PushContent::Anonymous;
        plan.preferred_languages = vec!["fr_FR".into(), "de_DE".into(), "en_GB".into()];
        assert_eq!(notification_text(&plan).0, "Sie haben eine neue Nachricht");
        plan.preferred_languages = vec!["en_GB".into()];
        assert_eq!(notification_text(&plan).1, "Open the app to read it");
        plan.preferred_languages = vec!["fr_FR".into()];
        assert_eq!(notification_text(&plan).0, "Hai un nuovo messaggio");
        plan.preferred_languages = vec![];
        assert_eq!(notification_text(&plan).1, "Entra nell'app per leggerlo");
    }

    #[test]
    fn full_text_shows_organisation_and_subject_unless_secure() {
        let mut plan = sample_plan();
        plan.push_content = PushContent::Full;
        let (title, body) = notification_text(&plan);
        assert_eq!(title, plan.message.sender.organization_name);
        assert_eq!(body, plan.message.content.subject);
        plan.message.sender.require_secure_channel = true;
        assert_eq!(notification_text(&plan).0, "Hai un nuovo messaggio");
        plan.message.sender.require_secure_channel = false;
        plan.message.content.require_secure_channels = Some(true);
        assert_eq!(notification_text(&plan).0, "Hai un nuovo messaggio");
    }

    #[test]
    fn expiry_is_creation_plus_time_to_live() {
        let created = Timestamp::parse("1970-01-01T00:00:10.000Z").expect("a timestamp");
        assert_eq!(expires_at(created, 3600), 3610);
    }
}
