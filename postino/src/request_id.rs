//! Every request gets an id (ARCHITECTURE.md, "Following one message"): the caller's
//! `X-Request-Id` when it is a sensible one, else a fresh one. It is returned on the answer,
//! handed to the handlers (ingest puts it on the message's log record, and every stage
//! carries it on), and set on the span every log line of the request is written in.
//!
//! A tower layer of our own rather than `axum::middleware::from_fn`, which boxes the inner
//! service and the future of every request: this one only wraps the future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use model::request_id::RequestId;
use tracing::instrument::Instrumented;
use tracing::Instrument;

/// Tags each request, its log lines and its answer with its id.
#[derive(Debug, Clone, Copy, Default)]
pub struct TagLayer;

impl<S> tower::Layer<S> for TagLayer {
    type Service = Tag<S>;
    fn layer(&self, inner: S) -> Tag<S> {
        Tag { inner }
    }
}

/// See [`TagLayer`].
#[derive(Debug, Clone)]
pub struct Tag<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Tag<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tagged<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Self::Future {
        let given = request
            .headers()
            .get(RequestId::HTTP_HEADER)
            .and_then(|value| Some((RequestId::parse(value.to_str().ok()?)?, value.clone())));
        let (id, header) = match given {
            Some((id, header)) => (id, Some(header)),
            None => (RequestId::generate(), None),
        };
        let span = tracing::info_span!("request", request_id = %id, method = %request.method());
        // Ids are header-safe ASCII, so making a header of a fresh one never fails.
        let header = header.or_else(|| HeaderValue::from_str(id.as_str()).ok());
        request.extensions_mut().insert(id);
        Tagged {
            inner: self.inner.call(request).instrument(span),
            header,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being answered in its span; its answer gets the id.
    #[derive(Debug)]
    pub struct Tagged<F> {
        #[pin]
        inner: Instrumented<F>,
        header: Option<HeaderValue>,
    }
}

impl<F, E> Future for Tagged<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut answered = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(header)) = (&mut answered, this.header.take()) {
            response
                .headers_mut()
                .insert(RequestId::HTTP_HEADER, header);
        }
        Poll::Ready(answered)
    }
}
