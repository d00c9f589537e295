//! The senders' API's own series: messages accepted, and requests refused by reason. (Every
//! API's requests and latencies are the HTTP series of the process.)

use axum::http::StatusCode;
use telemetry::metrics::counter;
use telemetry::Metric;

pub const ACCEPTED: Metric = Metric::counter(
    "postino_ingest_messages_accepted_total",
    "Messages accepted: durably in the log, answered 201.",
    &[],
);
pub const REFUSALS: Metric = Metric::counter(
    "postino_ingest_refusals_total",
    "Requests to the senders' API refused, by reason: validation (400, 413, 415, 422), auth (401, 403), not_found (404), rate_limit and quota (429), unavailable (5xx).",
    &["reason"],
);

pub const ALL: &[Metric] = &[ACCEPTED, REFUSALS];

/// A message was accepted.
pub(crate) fn accepted() {
    // One handle for the process, registered on the first message (the recorder is
    // installed before the APIs serve): no lookup per message.
    static ACCEPTED_MESSAGES: std::sync::OnceLock<telemetry::metrics::Counter> =
        std::sync::OnceLock::new();
    ACCEPTED_MESSAGES
        .get_or_init(|| counter!(ACCEPTED.name))
        .increment(1);
}

/// Why a request was refused, read off its answer's status and problem kind; `None` for an
/// answer that is no refusal.
pub fn refusal_reason(status: StatusCode, kind: Option<&str>) -> Option<&'static str> {
    Some(match status.as_u16() {
        400 | 405 | 408 | 413 | 415 | 422 => "validation",
        401 | 403 => "auth",
        404 => "not_found",
        429 if kind == Some(crate::quota::QUOTA_EXCEEDED) => "quota",
        429 => "rate_limit",
        500..=599 => "unavailable",
        _ => return None,
    })
}

/// A request to the senders' API was refused.
pub fn refused(status: StatusCode, kind: Option<&str>) {
    if let Some(reason) = refusal_reason(status, kind) {
        counter!(REFUSALS.name, "reason" => reason).increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_classified_by_their_status_and_successes_are_not_refusals() {
        assert_eq!(
            refusal_reason(StatusCode::UNPROCESSABLE_ENTITY, None),
            Some("validation")
        );
        assert_eq!(
            refusal_reason(StatusCode::PAYLOAD_TOO_LARGE, None),
            Some("validation")
        );
        assert_eq!(refusal_reason(StatusCode::UNAUTHORIZED, None), Some("auth"));
        assert_eq!(refusal_reason(StatusCode::FORBIDDEN, None), Some("auth"));
        assert_eq!(
            refusal_reason(StatusCode::TOO_MANY_REQUESTS, None),
            Some("rate_limit")
        );
        assert_eq!(
            refusal_reason(StatusCode::SERVICE_UNAVAILABLE, None),
            Some("unavailable")
        );
        assert_eq!(
            refusal_reason(
                StatusCode::TOO_MANY_REQUESTS,
                Some(crate::quota::QUOTA_EXCEEDED)
            ),
            Some("quota")
        );
        assert_eq!(refusal_reason(StatusCode::CREATED, None), None);
        assert_eq!(refusal_reason(StatusCode::OK, None), None);
    }
}
