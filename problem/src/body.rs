//! The body of a request that carries JSON: refused with `415` unless it says it is JSON
//! (`Content-Type: application/json`, or `application/<anything>+json`), before a byte of
//! it is read. Its size limit (`413`) and its parsing (`400`) stay with the route and the
//! handler.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::Problem;

/// A JSON request's body, not yet parsed.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        if !says_json(request.headers()) {
            return Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "the body must be JSON, sent with Content-Type: application/json",
            )
            .into_response());
        }
        Bytes::from_request(request, state)
            .await
            .map(JsonBody)
            .map_err(IntoResponse::into_response)
    }
}

/// Whether the `Content-Type` names JSON: `application/json` or `application/…+json`, any
/// parameters (`; charset=utf-8`) aside, in any case.
fn says_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5
                && subtype.is_char_boundary(subtype.len() - 5)
                && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(content_type) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        headers
    }

    #[test]
    fn json_is_told_from_everything_else() {
        for json in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            " application/json ;charset=UTF-8",
            "application/problem+json",
            "application/merge-patch+JSON",
        ] {
            assert!(says_json(&with(json)), "{json}");
        }
        for other in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/jsonp",
            "application/+json",
            "json",
            "text/json",
            "application",
            "multipart/form-data; boundary=x",
        ] {
            assert!(!says_json(&with(other)), "{other:?}");
        }
        assert!(!says_json(&HeaderMap::new()), "no Content-Type");
    }
}
