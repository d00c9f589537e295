//! The seam between the push stage and the providers: one [`PushProvider`] per provider
//! (FCM, APNs), and the outcomes every provider's answers map to.

use std::time::Duration;

use async_trait::async_trait;
use model::push::PushJob;
use reqwest::header::{HeaderMap, RETRY_AFTER};

/// What became of one notification, in the provider's own terms mapped to what Postino does.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The device is gone (FCM `UNREGISTERED`/`INVALID_ARGUMENT` on the token, APNs `410` or
    /// `BadDeviceToken`): remove the installation, never retry.
    #[error("the device token is no longer valid: {0}")]
    TokenGone(String),
    /// Worth another try later (`429`, `5xx`, a timeout, a refused connection), not before
    /// `after` when the provider said so.
    #[error("provider failure, will retry: {reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The provider refused this notification for good (a malformed payload, a wrong
    /// topic, credentials it does not accept).
    #[error("provider refused the notification: {0}")]
    Rejected(String),
}

impl PushError {
    /// A transport failure: the connection or the timeout, both worth retrying. The URL is
    /// left out of the reason: APNs' carries the device token, which must not reach a log
    /// line or a dead-letter header.
    pub fn transport(err: reqwest::Error) -> Self {
        let err = err.without_url();
        let kind = if err.is_timeout() {
            "timed out"
        } else if err.is_connect() {
            "cannot connect"
        } else {
            "transport error"
        };
        Self::Retry {
            reason: format!("{kind}: {err}"),
            after: None,
        }
    }
}

/// Sends one notification to one device.
#[async_trait]
pub trait PushProvider: Send + Sync + std::fmt::Debug {
    async fn send(&self, job: &PushJob) -> Result<(), PushError>;
}

/// `Retry-After` in seconds (both providers send seconds; an HTTP date is not used by them).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The outcome of a status the provider documents as transient (`429`, `500`, `503`, any
/// other `5xx`); `None` for every other status.
pub fn transient(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    reason: &str,
) -> Option<PushError> {
    (status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()).then(|| {
        PushError::Retry {
            reason: format!("{status} {reason}"),
            after: retry_after(headers),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use reqwest::StatusCode;

    #[test]
    fn retry_after_reads_seconds_and_ignores_garbage() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 7 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn only_429_and_5xx_are_transient() {
        let h = HeaderMap::new();
        for code in [429, 500, 502, 503] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(matches!(
                transient(status, &h, ""),
                Some(PushError::Retry { .. })
            ));
        }
        for code in [200, 400, 401, 403, 404, 410] {
            assert_eq!(transient(StatusCode::from_u16(code).unwrap(), &h, ""), None);
        }
    }
}
