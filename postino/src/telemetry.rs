//! What a process shows Prometheus: the HTTP series of every API, the catalogue of every
//! series the subsystems declare, and the metrics listener serving `/metrics`.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use axum::extract::{MatchedPath, Request};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use telemetry::metrics::{counter, histogram, Counter, Histogram};
use telemetry::{Metric, ProcessFigures};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub const HTTP_REQUESTS: Metric = Metric::counter(
    "postino_http_requests_total",
    "HTTP requests answered, by API (ingest, manage, citizen, other), operation (method and route template, never the path itself) and status class (2xx, 4xx, 5xx).",
    &["api", "operation", "status_class"],
);
pub const HTTP_DURATION: Metric = Metric::histogram(
    "postino_http_request_duration_seconds",
    "Time from a request's arrival to its answer, by API and operation.",
    &["api", "operation"],
);

pub const HTTP: &[Metric] = &[HTTP_REQUESTS, HTTP_DURATION];

/// Every series Postino exports, subsystem by subsystem: what the README lists, and what
/// the dashboards and alerts may name.
pub fn catalogue() -> Vec<Metric> {
    [
        HTTP,
        ingest::metrics::ALL,
        bus::metrics::ALL,
        store::metered::ALL,
        router::metrics::ALL,
        dispatchers::metrics::ALL,
        telemetry::process::ALL,
    ]
    .concat()
}

/// The catalogue as a Markdown table (`postino metrics`, and the README's list).
pub fn table() -> String {
    let mut out = String::from("| metric | type | labels | what it means |\n|---|---|---|---|\n");
    for metric in catalogue() {
        let labels: Vec<String> = metric.labels.iter().map(|l| format!("`{l}`")).collect();
        let labels = if labels.is_empty() {
            "—".to_string()
        } else {
            labels.join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            metric.name,
            metric.kind.exposition_name(),
            labels,
            metric.help
        ));
    }
    out
}

/// Installs the recorder (once per process) and describes every series to it.
pub fn install() {
    telemetry::recorder();
    for metric in catalogue() {
        metric.describe();
    }
}

/// Which API a path belongs to.
fn api_of(path: &str) -> &'static str {
    if path.starts_with("/api/v1/manage/") {
        "manage"
    } else if path.starts_with("/api/v1/") {
        "ingest"
    } else if path.starts_with("/citizen/") {
        "citizen"
    } else {
        "other"
    }
}

/// One operation's series (its method and route template), made once per route and kept,
/// so answering a request allocates nothing and looks nothing up. Bounded: the routes are
/// Postino's, and a method other than the usual ones is `OTHER`.
#[derive(Debug)]
struct Operation {
    api: &'static str,
    label: &'static str,
    duration: Histogram,
    /// By status class (1xx to 5xx), each registered on its first answer.
    requests: [OnceLock<Counter>; 5],
}

impl Operation {
    fn new(api: &'static str, label: &'static str) -> Self {
        Self {
            api,
            label,
            duration: histogram!(HTTP_DURATION.name, "api" => api, "operation" => label),
            requests: Default::default(),
        }
    }

    /// A request was answered with `status`, `started` ago.
    fn served(&self, response: &Response, started: Instant) {
        let status = response.status();
        self.duration.record(telemetry::seconds(started.elapsed()));
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.requests[class]
            .get_or_init(|| {
                counter!(HTTP_REQUESTS.name, "api" => self.api, "operation" => self.label, "status_class" => STATUS_CLASSES[class])
            })
            .increment(1);
        if self.api == "ingest" {
            ingest::metrics::refused(status, problem::kind_of(response));
        }
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The series of a request to `route` (none: it matched no route) with `method` at `path`.
fn operation(method: &Method, route: Option<&MatchedPath>, path: &str) -> &'static Operation {
    type Routes = HashMap<String, &'static Operation>;
    static OPERATIONS: OnceLock<RwLock<HashMap<&'static str, Routes>>> = OnceLock::new();
    static UNMATCHED: OnceLock<[Operation; 4]> = OnceLock::new();
    let Some(route) = route else {
        let unmatched = UNMATCHED.get_or_init(|| {
            ["ingest", "manage", "citizen", "other"].map(|api| Operation::new(api, "unmatched"))
        });
        let api = api_of(path);
        let index = unmatched.iter().position(|o| o.api == api).unwrap_or(3);
        return &unmatched[index];
    };
    let method = match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    };
    let operations = OPERATIONS.get_or_init(RwLock::default);
    let known = operations
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .get(method)
        .and_then(|routes| routes.get(route.as_str()).copied());
    if let Some(known) = known {
        return known;
    }
    let mut operations = operations.write().unwrap_or_else(|p| p.into_inner());
    operations
        .entry(method)
        .or_default()
        .entry(route.as_str().to_string())
        .or_insert_with(|| {
            let label = Box::leak(format!("{method} {}", route.as_str()).into_boxed_str());
            Box::leak(Box::new(Operation::new(api_of(route.as_str()), label)))
        })
}

/// The layer that counts and times every request by its route template, and for the senders'
/// API, its refusals. It wraps each route (only there is the route template known) and, unlike
/// `axum::middleware::from_fn`, calls the route without cloning it: a clone of a boxed route
/// per request was most of what metrics first cost the hot path.
#[derive(Debug, Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

/// See [`TrackLayer`].
#[derive(Debug, Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Without a recorder there is nothing to count into: no clock read, no lookup.
        let operation = telemetry::recording().then(|| {
            let route = request.extensions().get::<MatchedPath>();
            (
                operation(request.method(), route, request.uri().path()),
                Instant::now(),
            )
        });
        Tracked {
            inner: self.inner.call(request),
            operation,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being answered, timed until its answer.
    #[derive(Debug)]
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        operation: Option<(&'static Operation, Instant)>,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let answered = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some((operation, started))) = (&answered, this.operation) {
            operation.served(response, *started);
        }
        Poll::Ready(answered)
    }
}

/// Serves `/metrics` on `addr` until `stopped`; returns where it listens.
pub async fn serve(
    addr: SocketAddr,
    figures: ProcessFigures,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr} (metrics_listen)"))?;
    let bound = listener.local_addr()?;
    let figures = std::sync::Arc::new(figures);
    let routes = Router::new()
        .route(
            "/metrics",
            get(move || {
                let figures = std::sync::Arc::clone(&figures);
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        telemetry::render(&figures),
                    )
                }
            }),
        )
        .fallback(|| async {
            (StatusCode::NOT_FOUND, "metrics are at /metrics\n").into_response()
        });
    let upkeep = tokio::spawn(telemetry::upkeep());
    let server = tokio::spawn(async move {
        let served = axum::serve(listener, routes)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
        upkeep.abort();
        if let Err(err) = served {
            tracing::error!(error = %err, "the metrics listener failed");
        }
    });
    Ok((bound, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_series_is_declared_once_and_named_by_the_rules() {
        let all = catalogue();
        let mut names: Vec<_> = all.iter().map(|m| m.name).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(before, names.len(), "a series is declared twice");
        for metric in &all {
            assert_eq!(metric.naming_problem(), None);
        }
    }

    #[test]
    fn no_series_is_labelled_by_anything_personal_or_unbounded() {
        let forbidden = [
            "fiscal_code",
            "email",
            "token",
            "message_id",
            "id",
            "service_id",
            "address",
            "path",
        ];
        for metric in catalogue() {
            for label in metric.labels {
                assert!(
                    !forbidden.contains(label),
                    "{} is labelled by {label}",
                    metric.name
                );
            }
        }
    }

    #[test]
    fn the_readme_lists_every_series_as_postino_metrics_prints_it() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
            .expect("README.md");
        for row in table().lines().skip(2) {
            assert!(
                readme.contains(row),
                "README.md lacks, or words differently: {row}"
            );
        }
    }

    #[test]
    fn paths_are_put_in_their_api() {
        assert_eq!(api_of("/api/v1/messages/AAAAAA00A00A000A"), "ingest");
        assert_eq!(api_of("/api/v1/manage/services"), "manage");
        assert_eq!(api_of("/citizen/v1/messages"), "citizen");
        assert_eq!(api_of("/readyz"), "other");
    }
}
