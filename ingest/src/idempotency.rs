//! `Idempotency-Key` on the two submit endpoints (Postino's extension, README "What a sender
//! meets"): a submit retried with the same key and the same request gets the first answer,
//! the same message id, instead of a second message. The key is claimed in the store with a
//! conditional write before the message is published, so it holds across ingest processes
//! and restarts. A claim whose message the log never confirmed (the sender saw a `503`, or
//! nothing) is published again, with the same id, by the retry: the pipeline takes a
//! message id once, so a first publish that did land in the log costs nothing twice.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use model::timestamp::Timestamp;
use model::ValidationError;
use problem::Problem;
use store::IdempotentSubmit;
use ulid::Ulid;

use crate::IngestState;

/// The request header a sender names its key in.
pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// The answer header saying it repeats an earlier answer.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_LEN: usize = 255;

/// The request's `Idempotency-Key`, if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        let Some(value) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        value
            .to_str()
            .ok()
            .filter(|key| is_valid(key))
            .map(|key| Self(Some(key.to_string())))
            .ok_or_else(|| {
                Problem::validation(ValidationError::new(
                    "Idempotency-Key",
                    format!("must be 1 to {MAX_LEN} visible ASCII characters"),
                ))
            })
    }
}

fn is_valid(key: &str) -> bool {
    (1..=MAX_LEN).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// What a request's key gave it: the id its work has (a message's, or a bulk call's from
/// which its items' derive) and when it was made, new or an earlier request's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    pub id: Ulid,
    pub created_at: Timestamp,
    /// `None` for a first request; for a repeat, whether the earlier one's work is
    /// confirmed in the log (then it is not published again).
    pub repeat: Option<bool>,
}

/// Claims `key` of `service_id` for the request hashed `request_hash`, or finds the earlier
/// request that claimed it; without a key, a fresh id. The same key with another request
/// is `422`.
pub async fn claim(
    state: &IngestState,
    service_id: &str,
    key: Option<&str>,
    request_hash: impl FnOnce() -> String,
) -> Result<Claimed, Problem> {
    let fresh = Claimed {
        id: state.next_id(),
        created_at: Timestamp::now(),
        repeat: None,
    };
    let Some(key) = key else {
        return Ok(fresh);
    };
    let claim = IdempotentSubmit {
        request_hash: request_hash(),
        message_id: fresh.id,
        created_at: fresh.created_at,
        accepted: false,
    };
    match state
        .store
        .claim_idempotency_key(service_id, key, &claim)
        .await?
    {
        None => Ok(fresh),
        Some(earlier) if earlier.request_hash != claim.request_hash => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different request; use a new key for a new request",
        )),
        Some(earlier) => Ok(Claimed {
            id: earlier.message_id,
            created_at: earlier.created_at,
            repeat: Some(earlier.accepted),
        }),
    }
}

/// Records that the work of `key`'s request is in the log. Not fatal when it fails: an
/// unsettled claim only makes a retry publish the same ids again.
pub async fn settle(state: &IngestState, service_id: &str, key: Option<&str>) {
    if let Some(key) = key {
        if let Err(err) = state.store.settle_idempotency_key(service_id, key).await {
            tracing::warn!(error = %err, service_id, "cannot record an idempotency key's work as in the log");
        }
    }
}

/// What identifies a request for its key: the path's fiscal code (if any) and the body.
pub fn request_hash(path_fiscal_code: Option<&str>, body: &[u8]) -> String {
    let mut hasher = blake3::Hasher::new();
    // The length first, so no split of the same bytes between the two hashes alike.
    let path = path_fiscal_code.unwrap_or("");
    hasher.update(&(path.len() as u64).to_le_bytes());
    hasher.update(path.as_bytes());
    hasher.update(body);
    hasher.finalize().to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(is_valid("9b2f6c1e-retry-1"));
        assert!(is_valid(&"k".repeat(MAX_LEN)));
        for bad in ["", "has space", "tab\there", "è", &"k".repeat(MAX_LEN + 1)] {
            assert!(!is_valid(bad), "{bad:?}");
        }
    }

    #[test]
    fn the_same_request_hashes_alike_and_any_change_differently() {
        let body = br#"{"content":{}}"#;
        let hash = request_hash(Some("RSSMRA85T10A562S"), body);
        assert_eq!(hash, request_hash(Some("RSSMRA85T10A562S"), body));
        assert_ne!(hash, request_hash(None, body));
        assert_ne!(hash, request_hash(Some("RSSMRA85T10A562T"), body));
        assert_ne!(
            hash,
            request_hash(Some("RSSMRA85T10A562S"), br#"{"content":{ }}"#)
        );
        assert_ne!(
            request_hash(Some("ab"), b"c"),
            request_hash(Some("a"), b"bc")
        );
    }
}
