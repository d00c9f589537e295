//! What a stand-in received, with when, for tests and for the load report's send-to-push
//! latency. Bounded: past `capacity` entries it only counts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};

/// One notification the stand-in accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub message_id: String,
    pub token: String,
    pub title: String,
    pub body: String,
    /// Unix milliseconds when it arrived.
    pub at_ms: u64,
}

#[derive(Debug, Default)]
struct Inner {
    received: Vec<Received>,
    /// Answers given, by HTTP status.
    answers: BTreeMap<u16, u64>,
}

#[derive(Debug)]
pub struct Recorder {
    capacity: usize,
    inner: Mutex<Inner>,
}

/// A page of what was received (`GET /_standin/received?from=N`).
#[derive(Debug, Serialize, Deserialize)]
pub struct Page {
    /// Everything accepted so far, including what no longer fits.
    pub accepted: u64,
    /// How many are kept and readable (at most the stand-in's `--keep`).
    #[serde(default)]
    pub stored: usize,
    /// Answers by HTTP status.
    pub answers: BTreeMap<u16, u64>,
    pub from: usize,
    pub received: Vec<Received>,
}

#[derive(Debug, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    from: usize,
}

const PAGE: usize = 10_000;

impl Recorder {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves plain data behind; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn answered(&self, status: u16) {
        *self.lock().answers.entry(status).or_default() += 1;
    }

    pub fn accept(&self, received: Received) {
        let mut inner = self.lock();
        *inner.answers.entry(200).or_default() += 1;
        if inner.received.len() < self.capacity {
            inner.received.push(received);
        }
    }

    pub fn page(&self, from: usize) -> Page {
        let inner = self.lock();
        let end = inner.received.len().min(from.saturating_add(PAGE));
        Page {
            accepted: inner.answers.get(&200).copied().unwrap_or(0),
            answers: inner.answers.clone(),
            from,
            stored: inner.received.len(),
            received: inner
                .received
                .get(from..end)
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
        }
    }
}

pub async fn received<S: AsRef<Recorder>>(
    State(state): State<std::sync::Arc<S>>,
    Query(q): Query<PageQuery>,
) -> Json<Page> {
    Json(state.as_ref().as_ref().page(q.from))
}
