//! Campaigns (Postino's extension): many messages from one service, submitted in bulk and
//! followed as one. Each item is an IO `NewMessage` with its fiscal code in the body; a
//! campaign's messages travel the pipeline's bulk lane, so they never delay a one-off
//! message (see [`crate::pipeline::Lane`]).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::timestamp::Timestamp;
use crate::validation::from_json;
use crate::ValidationError;

/// The most items one JSON call may carry; a longer campaign is sent as NDJSON, or in
/// several calls.
pub const MAX_ITEMS_PER_CALL: usize = 10_000;

/// Longest campaign name, in characters.
const MAX_NAME: usize = 200;

/// What a sender sends to open a campaign.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignPayload {
    /// What the campaign is, for the sender's own reading (1 to 200 characters).
    pub name: String,
    /// When its items go: not before a moment, within a daily window, spread over hours.
    /// Without it, each item goes as soon as it is added.
    #[serde(default)]
    pub schedule: Option<crate::schedule::CampaignSchedule>,
    /// Its first items, as in `POST …/campaigns/{id}/items` (at most 10,000).
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::message::NewMessageBody>>)]
    pub items: Option<Box<serde_json::value::RawValue>>,
}

impl CampaignPayload {
    pub fn parse(body: &[u8]) -> Result<Self, ValidationError> {
        let payload: Self = from_json(body)?;
        let name = payload.name.trim();
        if name.is_empty() || name.chars().count() > MAX_NAME {
            return Err(ValidationError::new(
                "name",
                format!("must be 1 to {MAX_NAME} characters"),
            ));
        }
        if let Some(schedule) = &payload.schedule {
            schedule.validate()?;
        }
        Ok(payload)
    }
}

/// A stored campaign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Campaign {
    /// A ULID.
    pub id: String,
    /// The service that opened it: only it may add to it or read it.
    pub service_id: String,
    pub name: String,
    pub created_at: Timestamp,
    /// When its sender cancelled it: its items not yet routed are not delivered, and its
    /// notifications not yet sent do not go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<Timestamp>,
    /// When its items go (none: at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<crate::schedule::CampaignSchedule>,
}

/// The items of a JSON call: an array of IO `NewMessage`s, each kept as it came so that a
/// broken item is refused alone, by its index, and the others go on.
pub fn parse_items(body: &[u8]) -> Result<Vec<Box<serde_json::value::RawValue>>, ValidationError> {
    let items: Vec<Box<serde_json::value::RawValue>> = from_json(body).map_err(|err| {
        ValidationError::new(
            "items",
            format!("must be a JSON array of messages: {}", err.rule),
        )
    })?;
    check_count(items.len())?;
    Ok(items)
}

/// Refuses a JSON call of more than [`MAX_ITEMS_PER_CALL`] items.
pub fn check_count(items: usize) -> Result<(), ValidationError> {
    if items > MAX_ITEMS_PER_CALL {
        return Err(ValidationError::new(
            "items",
            format!(
                "holds {items} messages; one JSON call takes at most {MAX_ITEMS_PER_CALL} (send NDJSON, or several calls)"
            ),
        ));
    }
    Ok(())
}

/// The id of item `index` of the call `call`: derived, so a call retried with its
/// `Idempotency-Key` gives every item the id it had, and the pipeline takes it once.
pub fn item_id(call: ulid::Ulid, index: usize) -> ulid::Ulid {
    ulid::Ulid::from_parts(
        call.timestamp_ms(),
        call.random().wrapping_add(index as u128),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_needs_a_name_and_keeps_its_items_raw() {
        let p = CampaignPayload::parse(br#"{"name":"Bollo 2027","items":[{"a":1},2]}"#).unwrap();
        assert_eq!(p.name, "Bollo 2027");
        assert_eq!(
            p.items.map(|i| i.get().to_string()),
            Some(r#"[{"a":1},2]"#.into())
        );
        for (body, field) in [
            (&br#"{"name":"  "}"#[..], "name"),
            (br#"{}"#, ""),
            (br#"{"name":"x","extra":1}"#, "extra"),
            (br#"{"name":7}"#, "name"),
        ] {
            let err = CampaignPayload::parse(body).unwrap_err();
            assert!(err.field == field || err.rule.contains("name"), "{err}");
        }
        let long = format!(r#"{{"name":"{}"}}"#, "x".repeat(201));
        assert_eq!(
            CampaignPayload::parse(long.as_bytes()).unwrap_err().field,
            "name"
        );
    }

    #[test]
    fn items_are_an_array_of_at_most_ten_thousand() {
        assert_eq!(parse_items(br#"[{"x":1}, "y", 3]"#).unwrap().len(), 3);
        for body in [&br#"{"items":[]}"#[..], b"[", b"7", b""] {
            assert_eq!(parse_items(body).unwrap_err().field, "items");
        }
        let many = format!("[{}]", vec!["{}"; MAX_ITEMS_PER_CALL + 1].join(","));
        let err = parse_items(many.as_bytes()).unwrap_err();
        assert!(err.rule.contains("10000"), "{err}");
    }

    #[test]
    fn item_ids_are_distinct_and_the_same_again_for_the_same_call() {
        let call = ulid::Ulid::new();
        let ids: std::collections::HashSet<_> = (0..1000).map(|i| item_id(call, i)).collect();
        assert_eq!(ids.len(), 1000);
        assert_eq!(item_id(call, 7), item_id(call, 7));
        assert_eq!(item_id(call, 0).timestamp_ms(), call.timestamp_ms());
    }
}
