//! The HTTP server under every API, and the limits that keep one sender from stalling the
//! others (README, "Limits on what comes in"):
//! - at most `http.max_connections` connections are served at once; one more is answered
//!   `503` problem+json and closed, so a client flooding connections meets an answer, not
//!   a hang, and the ones already served go on;
//! - a request's headers must arrive within `http.header_timeout_secs` of the connection
//!   being ready for them (also how long an idle keep-alive connection is kept): there is no
//!   request yet to answer, so the connection is closed;
//! - a whole request, body included, must be read and answered within
//!   `http.request_timeout_secs`, else `408` problem+json.
//!
//! Bodies over the limit (`413`), of the wrong type (`415`) and malformed (`400`) are the
//! handlers' extractors' business.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use model::net::Peer;
use problem::Problem;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tower::ServiceExt;

/// The `[http]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSettings {
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers, and stay idle between
    /// requests.
    pub header_timeout_secs: u64,
    /// How long reading and answering one request may take; then `408`.
    pub request_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            header_timeout_secs: 60,
            request_timeout_secs: 30,
        }
    }
}

impl HttpSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("http.max_connections must be at least 1".into());
        }
        if self.header_timeout_secs == 0 {
            return Err("http.header_timeout_secs must be at least 1".into());
        }
        if self.request_timeout_secs == 0 {
            return Err("http.request_timeout_secs must be at least 1".into());
        }
        Ok(())
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }
}

/// Connections being told `503` at once, beyond which one more is dropped unanswered.
const SHEDDING: usize = 256;

/// Serves `app` on `listener` until `stop` turns true, then lets in-flight requests finish.
pub async fn serve<S>(
    listener: TcpListener,
    app: S,
    settings: &HttpSettings,
    problem_type_base: Arc<str>,
    mut stop: watch::Receiver<bool>,
) where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let serving = Arc::new(Semaphore::new(settings.max_connections));
    let shedding = Arc::new(Semaphore::new(SHEDDING));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(settings.header_timeout_secs));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors, or a connection reset before it was taken: wait
                // a little rather than spin.
                tracing::warn!(error = %err, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Answers go out at once: with Nagle's algorithm an answer written while the
        // previous one is still unacknowledged waits for the client's delayed ACK.
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY on a connection");
        }
        match Arc::clone(&serving).try_acquire_owned() {
            Ok(permit) => {
                let app = app.clone().map_request(move |request: Request<Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request.extensions_mut().insert(Peer(peer));
                    request
                });
                let connection = builder
                    .serve_connection_with_upgrades(
                        TokioIo::new(tcp),
                        TowerToHyperService::new(app),
                    )
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(error = %err, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            Err(_) => shed(tcp, &shedding, settings.max_connections, &problem_type_base),
        }
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Answers every request on `tcp` with `503` and closes it: the server is full.
fn shed(tcp: TcpStream, shedding: &Arc<Semaphore>, max_connections: usize, base: &Arc<str>) {
    let Ok(permit) = Arc::clone(shedding).try_acquire_owned() else {
        // Already telling many others: dropping the connection costs nothing.
        return;
    };
    tracing::warn!(
        max_connections,
        "too many connections: one more shed with 503"
    );
    let base = Arc::clone(base);
    let answer = tower::service_fn(move |_request: Request<Incoming>| {
        let base = Arc::clone(&base);
        async move {
            let response = Problem::unavailable(
            format!("this server serves {max_connections} connections at once and has no room for another; retry later"),
            1,
        )
        .into_response();
            let mut response = problem::with_type_base(response, &base);
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(5));
    let connection = builder.serve_connection(
        TokioIo::new(tcp),
        hyper_util::service::TowerToHyperService::new(answer),
    );
    tokio::spawn(async move {
        let _ = connection.await;
        drop(permit);
    });
}
