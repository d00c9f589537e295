//! Every request gets an id (ARCHITECTURE.md, "Following one message"): the caller's
//! `X-Request-Id` when it is a sensible one, else a fresh one. It is returned on the answer,
//! handed to the handlers (ingest puts it on the message's log record, and every stage
//! carries it on), and set on the span every log line of the request is written in.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use model::request_id::RequestId;
use tracing::Instrument;

/// Middleware: tags the request, its log lines and its answer with its id.
pub async fn tag(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(RequestId::HTTP_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(RequestId::parse)
        .unwrap_or_else(RequestId::generate);
    request.extensions_mut().insert(id.clone());
    let span = tracing::info_span!("request", request_id = %id, method = %request.method());
    let mut response = next.run(request).instrument(span).await;
    // Parsed ids are header-safe ASCII, so this never fails.
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(RequestId::HTTP_HEADER, value);
    }
    response
}
