//! `application/problem+json` (RFC 9457, IO `ProblemJson`): the one shape of every error
//! answer of every API.
//!
//! A problem's `type` is an absolute URI, as IO declares it: a base the deployment chooses
//! ([`DEFAULT_TYPE_BASE`] unless configured) followed by the kind (`validation-error`).
//! Handlers make a [`Problem`] knowing only its kind; the app's outermost layer calls
//! [`with_type_base`] to write it out with the configured base.

pub mod body;

use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use model::ValidationError;
use store::StoreError;

/// The `type` base when none is configured: an absolute URI that names Postino's problem
/// kinds without pretending to be a page.
pub const DEFAULT_TYPE_BASE: &str = "urn:postino:problem:";

/// Whether `text` is an absolute URI: a scheme (`letter *(letter / digit / + / - / .)`),
/// then `:` and something after it.
pub fn is_absolute_uri(text: &str) -> bool {
    match text.split_once(':') {
        Some((scheme, rest)) => {
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && !rest.is_empty()
                && !text.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// An absolute URI naming the kind of problem: the deployment's base, then the kind.
    #[serde(rename = "type")]
    #[schema(format = "uri", example = "urn:postino:problem:validation-error")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// For validation problems: the field (dotted path) that broke a rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(skip)]
    /// Seconds (at most 136 years fit, in 4 bytes that keep a problem small).
    pub retry_after: Option<u32>,
    /// Headers the answer carries besides `Retry-After` (e.g. the rate-limit ones).
    /// Boxed: most problems have none, and every `Result` carrying a problem pays its size.
    #[serde(skip)]
    pub headers: Option<Box<HeaderMap>>,
}

impl Problem {
    pub fn new(status: StatusCode, kind: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("{DEFAULT_TYPE_BASE}{kind}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            retry_after: None,
            headers: None,
        }
    }

    /// The same problem, answered with `name: value` too.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.get_or_insert_default().insert(name, value);
        self
    }

    pub fn validation(err: ValidationError) -> Self {
        let mut p = Self::new(StatusCode::BAD_REQUEST, "validation-error", err.to_string());
        p.title = "Invalid request".into();
        if !err.field.is_empty() {
            p.field = Some(err.field);
        }
        p
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    /// The request was fine but a dependency (bus, store) could not take it now.
    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", detail);
        p.retry_after = Some(u32::try_from(retry_after_secs).unwrap_or(u32::MAX));
        p
    }

    /// The caller has made too many requests; it may try again after `retry_after_secs`.
    pub fn too_many_requests(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut p = Self::new(StatusCode::TOO_MANY_REQUESTS, "too-many-requests", detail);
        p.retry_after = Some(u32::try_from(retry_after_secs).unwrap_or(u32::MAX));
        p
    }

    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", detail)
    }
}

/// How an API answers a store failure: `503` with `Retry-After` when it may pass, `500`
/// when stored data is unreadable. The cause is logged, never shown to the caller.
impl From<StoreError> for Problem {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store error");
        if err.is_retryable() {
            Self::unavailable("the store is unavailable; retry later", 1)
        } else {
            Self::internal("the store could not read or write this data")
        }
    }
}

impl From<ValidationError> for Problem {
    fn from(err: ValidationError) -> Self {
        Self::validation(err)
    }
}

/// The problem in an answer, kept beside its body so the outermost layer can write the body
/// again with the deployment's `type` base.
#[derive(Debug, Clone)]
struct Answered(Problem);

/// The kind of the problem `response` answers with (`too-many-requests`, …), if it is one
/// of ours: for the layers that count refusals by kind.
pub fn kind_of(response: &Response) -> Option<&str> {
    let Answered(problem) = response.extensions().get::<Answered>()?;
    problem.kind.strip_prefix(DEFAULT_TYPE_BASE)
}

/// Writes the problem in `response` (if it is one of ours) with `base` instead of the
/// default `type` base. Other answers pass unchanged.
pub fn with_type_base(response: Response, base: &str) -> Response {
    if base == DEFAULT_TYPE_BASE {
        return response;
    }
    let Some(Answered(mut problem)) = response.extensions().get::<Answered>().cloned() else {
        return response;
    };
    if let Some(kind) = problem.kind.strip_prefix(DEFAULT_TYPE_BASE) {
        problem.kind = format!("{base}{kind}");
    }
    let mut rewritten = problem.into_response();
    // Whatever else was set on the answer (Location, rate headers) stays.
    for (name, value) in response.headers() {
        if name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name.clone(), value.clone());
        }
    }
    rewritten
}

impl IntoResponse for Problem {
    fn into_response(mut self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let extra = std::mem::take(&mut self.headers);
        let answered = Answered(self.clone());
        let mut response = (status, axum::Json(self)).into_response();
        response.extensions_mut().insert(answered);
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(secs) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(extra) = extra {
            headers.extend(*extra);
        }
        response
    }
}

/// The error answers as reusable OpenAPI responses, so each endpoint lists which it can give
/// (`responses((status = 200, …), doc::BadRequest, doc::Unauthorized)`) instead of
/// describing them again.
pub mod doc {
    use super::Problem;
    use utoipa::IntoResponses;

    /// Invalid request: `field` names the offending field, `detail` the rule it broke.
    #[derive(Debug, IntoResponses)]
    #[response(status = 400, content_type = "application/problem+json")]
    pub struct BadRequest(pub Problem);

    /// The credential (API key or citizen token) is missing or not valid.
    #[derive(Debug, IntoResponses)]
    #[response(status = 401, content_type = "application/problem+json")]
    pub struct Unauthorized(pub Problem);

    /// The credential is valid but not for this resource.
    #[derive(Debug, IntoResponses)]
    #[response(status = 403, content_type = "application/problem+json")]
    pub struct Forbidden(pub Problem);

    /// No such resource for this caller.
    #[derive(Debug, IntoResponses)]
    #[response(status = 404, content_type = "application/problem+json")]
    pub struct NotFound(pub Problem);

    /// The change conflicts with the stored state (version, mode).
    #[derive(Debug, IntoResponses)]
    #[response(status = 409, content_type = "application/problem+json")]
    pub struct Conflict(pub Problem);

    /// Postino's extension: the `Idempotency-Key` was used before with another request.
    #[derive(Debug, IntoResponses)]
    #[response(status = 422, content_type = "application/problem+json")]
    pub struct IdempotencyKeyReused(pub Problem);

    /// Postino's extension: the service's rate limit is spent; retry after `Retry-After`.
    /// Every answer to a service's key carries the `RateLimit-*` headers.
    #[derive(Debug, IntoResponses)]
    #[response(
        status = 429,
        content_type = "application/problem+json",
        headers(
            ("Retry-After" = u64, description = "Seconds until a request is allowed again"),
            ("RateLimit-Limit" = u32, description = "Requests allowed per period (this replica's share)"),
            ("RateLimit-Remaining" = u32, description = "Requests left now"),
            ("RateLimit-Reset" = u64, description = "Seconds until the allowance is whole again"),
        )
    )]
    pub struct TooManyRequests(pub Problem);

    /// A dependency (log, store) cannot take the request now; retry after `Retry-After`.
    #[derive(Debug, IntoResponses)]
    #[response(status = 503, content_type = "application/problem+json")]
    pub struct Unavailable(pub Problem);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_uris_are_told_from_relative_ones() {
        for good in [
            DEFAULT_TYPE_BASE,
            "https://docs.example.org/problems/",
            "about:blank",
            "urn:x:y",
        ] {
            assert!(is_absolute_uri(good), "{good}");
        }
        for bad in [
            "",
            "/problems/",
            "problems",
            ":x",
            "1http://x",
            "https:",
            "ht tp://x",
            "https://a b/",
        ] {
            assert!(!is_absolute_uri(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_type_is_the_configured_base_and_the_kind() {
        let problem = Problem::not_found("no such message");
        assert_eq!(problem.kind, "urn:postino:problem:not-found");
        let response = with_type_base(
            Problem::unavailable("later", 3).into_response(),
            "https://docs.example.org/problems/",
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"application/problem+json"[..])
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            json["type"],
            "https://docs.example.org/problems/unavailable"
        );
        assert_eq!(json["status"], 503);
        assert_eq!(json["detail"], "later");
    }
}
