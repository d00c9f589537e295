//! How both stores write values as text: JSON for bodies, IO's names for statuses and
//! channel outcomes (`PROCESSED`, `SENT`, `SKIPPED:no_device`).

use model::status::Channel;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::StoreError;

/// `value` as JSON; an error says why it cannot be (a bug, never retried).
pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, String> {
    serde_json::to_string(value).map_err(|e| format!("cannot serialise: {e}"))
}

/// A stored JSON body; unreadable is `Corrupt`.
pub(crate) fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A status or channel outcome as its column holds it: the name IO's API gives it.
pub(crate) fn name_of<T: Serialize>(value: &T) -> Result<String, String> {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => Ok(text),
        _ => Err("a status did not serialise to a name".into()),
    }
}

/// The reverse of [`name_of`].
pub(crate) fn parse_name<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    use serde::de::IntoDeserializer;
    T::deserialize(text.into_deserializer())
        .map_err(|e: serde::de::value::Error| format!("unreadable status {text:?}: {e}"))
}

/// [`parse_name`] of a column that may be empty.
pub(crate) fn parse_optional_name<T: DeserializeOwned>(
    text: Option<String>,
) -> Result<Option<T>, String> {
    text.map(|t| parse_name(&t)).transpose()
}

/// A channel as the sent-notification records name it (IO's names: push is `webhook`).
pub(crate) fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => "email",
        Channel::Push => "webhook",
    }
}

/// An idempotency claim from its stored columns (both stores keep the same four).
pub(crate) fn idempotent_submit(
    request_hash: String,
    message_id: &str,
    created_at: &str,
    accepted: bool,
) -> Result<crate::IdempotentSubmit, StoreError> {
    Ok(crate::IdempotentSubmit {
        request_hash,
        message_id: ulid::Ulid::from_string(message_id).map_err(|e| {
            StoreError::Corrupt(format!("idempotency key: message id {message_id:?}: {e}"))
        })?,
        created_at: model::timestamp::Timestamp::parse(created_at)
            .map_err(|e| StoreError::Corrupt(format!("idempotency key: {e}")))?,
        accepted,
    })
}
