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
    let given = request
        .headers()
        .get(RequestId::HTTP_HEADER)
        .and_then(|value| {
            let id = RequestId::parse(value.to_str().ok()?)?;
            Some((id, value.clone()))
        });
    let (id, header) = match given {
        Some(given) => (given.0, Some(given.1)),
        None => (RequestId::generate(), None),
    };
    let span = tracing::info_span!("request", request_id = %id, method = %request.method());
    // Ids are header-safe ASCII, so making a header of a fresh one never fails.
    let header = header.or_else(|| HeaderValue::from_str(id.as_str()).ok());
    request.extensions_mut().insert(id);
    let mut response = next.run(request).instrument(span).await;
    if let Some(header) = header {
        response
            .headers_mut()
            .insert(RequestId::HTTP_HEADER, header);
    }
    response
}
