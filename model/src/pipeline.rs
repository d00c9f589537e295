//! The records that travel on the bus between stages, and their one codec.
//!
//! Records are JSON: readable with any Kafka tool, tolerant of added fields, and cheap
//! next to the store writes they cause. A record that does not decode is a
//! [`ValidationError`], which stages send to the dead-letter topic.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::channels::ChannelPlan;
use crate::email::EmailAddress;
use crate::message::NewMessageContent;
use crate::profile::PushContent;
use crate::timestamp::Timestamp;
use crate::validation::from_json;
use crate::{FiscalCode, ValidationError};

/// Topic names. Each has `<name>.retry` beside it for records waiting for another attempt
/// and `<name>.dlq` for records that could not be processed (see `bus::stage`).
pub mod topics {
    /// Accepted messages, written by ingest, read by the router.
    pub const MESSAGES: &str = "messages";
    /// Routed messages, read by the inbox dispatcher.
    pub const DELIVERIES_INBOX: &str = "deliveries.inbox";
    /// Push notifications to send, once the inbox holds the message.
    pub const DELIVERIES_PUSH: &str = "deliveries.push";
    /// Emails to send, once the inbox holds the message.
    pub const DELIVERIES_EMAIL: &str = "deliveries.email";

    /// Citizens whose profile, preferences or devices changed, written by the citizen API,
    /// read by every router process to drop what its cache holds of them.
    pub const PROFILE_CHANGES: &str = "profile-changes";

    /// What stages learned about campaigns' items ([`crate::progress::ProgressRecord`]),
    /// read by the campaign tally.
    pub const CAMPAIGN_PROGRESS: &str = "campaign-progress";

    /// Records deferred to a later time (a scheduled campaign's items, pushes held over
    /// quiet hours), read by the scheduler's intake.
    pub const SCHEDULED: &str = "scheduled";

    /// The same four in the bulk lane: campaigns' messages, apart from one-off ones.
    pub const BULK_MESSAGES: &str = "bulk.messages";
    pub const BULK_DELIVERIES_INBOX: &str = "bulk.deliveries.inbox";
    pub const BULK_DELIVERIES_PUSH: &str = "bulk.deliveries.push";
    pub const BULK_DELIVERIES_EMAIL: &str = "bulk.deliveries.email";

    /// The topics the pipeline's stages consume, both lanes and the campaigns' tally (each
    /// with its retry and dead-letter twins).
    pub const PIPELINE: [&str; 10] = [
        MESSAGES,
        DELIVERIES_INBOX,
        DELIVERIES_PUSH,
        DELIVERIES_EMAIL,
        BULK_MESSAGES,
        BULK_DELIVERIES_INBOX,
        BULK_DELIVERIES_PUSH,
        BULK_DELIVERIES_EMAIL,
        CAMPAIGN_PROGRESS,
        SCHEDULED,
    ];

    /// The topics a deferred record may be scheduled for.
    pub const DEFERRABLE: [&str; 4] = [
        BULK_MESSAGES,
        DELIVERIES_PUSH,
        BULK_DELIVERIES_PUSH,
        MESSAGES,
    ];

    /// `topic`'s twin in the bulk lane (itself when it has none).
    pub fn bulk(topic: &'static str) -> &'static str {
        match topic {
            MESSAGES => BULK_MESSAGES,
            DELIVERIES_INBOX => BULK_DELIVERIES_INBOX,
            DELIVERIES_PUSH => BULK_DELIVERIES_PUSH,
            DELIVERIES_EMAIL => BULK_DELIVERIES_EMAIL,
            other => other,
        }
    }
}

/// Which lane of the pipeline a message travels. Every stage runs once per lane, on the
/// lane's own topics and consumer group, so a campaign of millions queued in the bulk lane
/// never stands in front of a one-off message. Order per citizen holds within a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lane {
    /// One-off messages (`POST /api/v1/messages…`).
    Priority,
    /// Campaigns' messages (`POST /api/v1/campaigns…`).
    Bulk,
}

impl Lane {
    pub const ALL: [Lane; 2] = [Lane::Priority, Lane::Bulk];

    /// The lane's twin of `topic`, one of the priority lane's [`topics`].
    pub fn topic(self, topic: &'static str) -> &'static str {
        match self {
            Lane::Priority => topic,
            Lane::Bulk => topics::bulk(topic),
        }
    }

    /// The lane's consumer group for a stage whose group is `group`.
    pub fn group(self, group: &str) -> String {
        match self {
            Lane::Priority => group.to_string(),
            Lane::Bulk => format!("bulk.{group}"),
        }
    }

    /// `0` or `1`, to keep per-lane things in an array.
    pub fn index(self) -> usize {
        match self {
            Lane::Priority => 0,
            Lane::Bulk => 1,
        }
    }
}

/// A citizen whose profile, preferences or installations changed (on `profile-changes`).
/// The citizen API writes the store first, then this, so whoever reads it after finds
/// the change in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileChange {
    pub fiscal_code: FiscalCode,
}

/// A message the senders' API accepted: everything later stages need, including a snapshot
/// of the sending service as it was at acceptance (as IO's `senderMetadata`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceptedMessage {
    pub id: Ulid,
    pub fiscal_code: FiscalCode,
    pub sender_service_id: String,
    pub created_at: Timestamp,
    pub time_to_live: u32,
    pub content: NewMessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_email: Option<EmailAddress>,
    pub feature_level_type: String,
    pub sender: SenderMetadata,
    /// Test mode only: the message went to IO's test fiscal code, and its email goes to
    /// this address (the sending service's contact email) whatever the store holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_email: Option<EmailAddress>,
    /// The campaign it belongs to, if it came in bulk: then it travels the bulk lane.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Pushed even in quiet hours (its service is allowed urgent messages).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub urgent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SenderMetadata {
    pub service_name: String,
    pub organization_name: String,
    pub organization_fiscal_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_name: Option<String>,
    pub require_secure_channel: bool,
}

impl AcceptedMessage {
    /// The lane it travels: a campaign's message the bulk one.
    pub fn lane(&self) -> Lane {
        if self.campaign_id.is_some() {
            Lane::Bulk
        } else {
            Lane::Priority
        }
    }

    /// True when neither the service nor the message allows insecure channels (email).
    pub fn requires_secure_channel(&self) -> bool {
        self.sender.require_secure_channel || self.content.require_secure_channels == Some(true)
    }
}

/// A routed message: it goes to the inbox, and these channels are to be notified after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryPlan {
    pub message: AcceptedMessage,
    pub channels: ChannelPlan,
    /// What the citizen chose to see in a push (anonymous unless FULL).
    pub push_content: PushContent,
    #[serde(default)]
    pub preferred_languages: Vec<String>,
    /// The validated address, present only when `channels.email` is `Send`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

/// What the router decided for one message: a [`DeliveryPlan`] without the message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoutingDecision {
    pub channels: ChannelPlan,
    pub push_content: PushContent,
    pub preferred_languages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailAddress>,
}

impl RoutingDecision {
    /// The `deliveries.inbox` record (a [`DeliveryPlan`]) for the message whose `messages`
    /// record is `message_json`. The message goes in as the bytes it arrived in, not
    /// decoded and serialised again: the router passes on every message, and writing it
    /// out anew was most of the router's own work. `message_json` must be one JSON value,
    /// which it is whenever it decoded as an [`AcceptedMessage`].
    pub fn plan_record(&self, message_json: &[u8]) -> Vec<u8> {
        // Always an object with at least `channels`, so `{` opens it and a field follows.
        let rest = encode(self);
        let mut out = Vec::with_capacity(message_json.len() + rest.len() + 12);
        out.extend_from_slice(b"{\"message\":");
        out.extend_from_slice(message_json);
        out.push(b',');
        out.extend_from_slice(rest.get(1..).unwrap_or_default());
        out
    }
}

/// Serialises a record for the bus.
pub fn encode<T: Serialize>(record: &T) -> Vec<u8> {
    // Serialising these plain structs to a Vec cannot fail: no maps with non-string keys,
    // no custom serialisers that error.
    serde_json::to_vec(record).unwrap_or_default()
}

/// Parses a record from the bus, naming the field that did not fit.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ValidationError> {
    from_json(bytes)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::channels::ChannelChoice;

    #[test]
    fn a_profile_change_names_a_valid_fiscal_code_or_is_refused() {
        let change: ProfileChange =
            decode(br#"{"fiscal_code":"RSSMRA80A01H501U"}"#).expect("valid");
        assert_eq!(change.fiscal_code.as_str(), "RSSMRA80A01H501U");
        for bad in [
            &b"{}"[..],
            br#"{"fiscal_code":"not-a-code"}"#,
            br#"{"fiscal_code":42}"#,
            b"\xff\xfe",
            b"",
        ] {
            assert!(decode::<ProfileChange>(bad).is_err(), "{bad:?}");
        }
    }

    fn sample() -> DeliveryPlan {
        sample_plan()
    }

    pub(crate) fn sample_plan() -> DeliveryPlan {
        DeliveryPlan {
            message: crate::samples::accepted_message(
                Ulid::new(),
                FiscalCode::parse("fc", "RSSMRA85T10A562S").unwrap(),
                "subject of ten",
            ),
            channels: ChannelPlan {
                email: ChannelChoice::Send,
                push: ChannelChoice::Send,
            },
            push_content: PushContent::Anonymous,
            preferred_languages: vec!["it_IT".into()],
            email: Some(EmailAddress::parse("email", "a@b.it").expect("address")),
        }
    }

    #[test]
    fn a_plan_record_carries_the_message_bytes_and_decodes_as_the_plan() {
        let plan = sample();
        let decision = RoutingDecision {
            channels: plan.channels.clone(),
            push_content: plan.push_content,
            preferred_languages: plan.preferred_languages.clone(),
            email: plan.email.clone(),
        };
        // As a producer other than Postino may have written it: spaced out, with a field
        // this version does not know.
        let message = encode(&plan.message);
        let spaced = format!(
            "  {{\"added_later\": [1, 2],{} \n",
            String::from_utf8_lossy(&message[1..])
        );
        for bytes in [message.clone(), spaced.into_bytes()] {
            let record = decision.plan_record(&bytes);
            let back: DeliveryPlan = decode(&record).unwrap();
            assert_eq!(back, plan);
        }
        let without_email = RoutingDecision {
            email: None,
            ..decision
        };
        let back: DeliveryPlan = decode(&without_email.plan_record(&message)).unwrap();
        assert_eq!(back.email, None);
        assert_eq!(back.message, plan.message);
    }

    #[test]
    fn records_round_trip() {
        let plan = sample();
        let back: DeliveryPlan = decode(&encode(&plan)).unwrap();
        assert_eq!(back, plan);
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert!(decode::<AcceptedMessage>(b"").is_err());
        assert!(decode::<AcceptedMessage>(b"{\"id\":\"not-a-ulid\"}").is_err());
        let mut v = serde_json::to_value(sample().message).unwrap();
        v["fiscal_code"] = "RSSMRA85T10A562T".into();
        let err = decode::<AcceptedMessage>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.field, "fiscal_code");
        // An unreadable creation time is refused where it is read, not taken for "now".
        let mut v = serde_json::to_value(sample().message).unwrap();
        v["created_at"] = "yesterday".into();
        let err = decode::<AcceptedMessage>(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.field, "created_at");
    }
}
