//! Drives a workload: issues requests in the open or closed model, records every outcome,
//! follows sampled messages to the inbox, shows progress, and stops early on Ctrl-C.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::{watch, Semaphore};

use crate::api::Api;
use crate::pacing::Pacing;
use crate::stats::{Outcome, Stats};

/// What one request achieved.
#[derive(Debug)]
pub struct Done {
    pub outcome: Outcome,
    /// For an accepted message that should reach an inbox: whose, and its id (for a bulk
    /// call, its last such message's).
    pub readable: Option<(String, String)>,
    /// Messages the request got accepted: one for a single submit, a call's accepted
    /// items for a bulk one.
    pub messages: u64,
    /// How many of those should reach an inbox.
    pub readable_messages: u64,
}

impl Done {
    /// A request for one message (or none): accepted when `outcome` is `Ok`.
    pub fn single(outcome: Outcome, readable: Option<(String, String)>) -> Self {
        Self {
            messages: u64::from(outcome == Outcome::Ok),
            readable_messages: u64::from(readable.is_some()),
            outcome,
            readable,
        }
    }
}

pub type Job = Pin<Box<dyn Future<Output = Done> + Send>>;

/// Makes request `i`.
pub type Workload = Arc<dyn Fn(u64) -> Job + Send + Sync>;

/// How much load, and how it is offered.
#[derive(Debug, Clone)]
pub struct Plan {
    pub pacing: Pacing,
    /// Closed model: concurrent senders. Open model: most requests in flight at once
    /// (requests wait for a slot beyond it, and their latency still counts from when
    /// they were due).
    pub connections: usize,
    pub requests: Option<u64>,
    pub duration: Option<Duration>,
    /// Follow every n-th readable message to the inbox (0: none).
    pub sample_every: u64,
    /// After the load, wait until the last accepted readable message is in its inbox.
    pub wait_for_inbox: bool,
    pub label: String,
}

/// What a drive measured besides [`Stats`].
#[derive(Debug, Clone, Default)]
pub struct Driven {
    pub sent: u64,
    pub elapsed: Duration,
    pub expected_readable: u64,
    pub all_readable_after: Option<Duration>,
    pub interrupted: bool,
}

/// Most sampled messages followed at once; beyond it a sample is skipped, so following
/// never becomes the load.
const MAX_WATCHERS: usize = 200;
/// The longest pause between two looks at the inbox: the resolution of send → inbox.
const MAX_POLL_PAUSE: Duration = Duration::from_millis(100);
/// How long a sampled message may take to become readable before it counts as lost.
const INBOX_PATIENCE: Duration = Duration::from_secs(600);

struct Shared {
    api: Api,
    stats: Mutex<Stats>,
    start: Instant,
    watchers: Arc<Semaphore>,
    issued: AtomicU64,
    readable: AtomicU64,
    last_readable: Mutex<Option<(String, String, Instant)>>,
    sample_every: u64,
}

impl Shared {
    fn stats(&self) -> std::sync::MutexGuard<'_, Stats> {
        self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records request `i`, due at `due` (since the start), answered now.
    fn finish(self: &Arc<Self>, i: u64, due: Duration, done: Done) {
        let now = Instant::now();
        let due_at = self.start + due;
        self.stats().record(
            &done.outcome,
            due,
            now.saturating_duration_since(due_at),
            done.messages,
        );
        if let Some((fiscal_code, id)) = done.readable {
            self.readable
                .fetch_add(done.readable_messages, Ordering::Relaxed);
            if self.sample_every > 0 && i.is_multiple_of(self.sample_every) {
                self.follow(fiscal_code.clone(), id.clone(), due_at);
            }
            *self.last_readable.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((fiscal_code, id, due_at));
        }
    }

    /// Polls the inbox until the message is there, then records send → readable.
    fn follow(self: &Arc<Self>, fiscal_code: String, id: String, sent: Instant) {
        let Ok(permit) = Arc::clone(&self.watchers).try_acquire_owned() else {
            return;
        };
        let shared = Arc::clone(self);
        tokio::spawn(async move {
            if let Some(at) = shared.wait_readable(&fiscal_code, &id).await {
                shared
                    .stats()
                    .record_end_to_end(at.saturating_duration_since(sent));
            }
            drop(permit);
        });
    }

    async fn wait_readable(&self, fiscal_code: &str, id: &str) -> Option<Instant> {
        let token = self.api.citizen_token(fiscal_code);
        let give_up = Instant::now() + INBOX_PATIENCE;
        let mut pause = Duration::from_millis(5);
        while Instant::now() < give_up {
            if self.api.readable(&token, id).await {
                return Some(Instant::now());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_POLL_PAUSE);
        }
        None
    }
}

/// Runs `plan` with `workload` against `api` until done, the duration is over or `stop`.
pub async fn drive(
    api: Api,
    plan: &Plan,
    workload: Workload,
    stop: watch::Receiver<bool>,
) -> (Stats, Driven) {
    let shared = Arc::new(Shared {
        api,
        stats: Mutex::new(Stats::default()),
        start: Instant::now(),
        watchers: Arc::new(Semaphore::new(MAX_WATCHERS)),
        issued: AtomicU64::new(0),
        readable: AtomicU64::new(0),
        last_readable: Mutex::new(None),
        sample_every: plan.sample_every,
    });
    let bar = progress(plan);
    let ticker = spawn_ticker(Arc::clone(&shared), bar.clone(), plan.requests.is_some());
    let deadline = plan.duration.map(|d| shared.start + d);
    let more =
        |i: u64| plan.requests.is_none_or(|n| i < n) && deadline.is_none_or(|d| Instant::now() < d);

    match plan.pacing {
        Pacing::Open { .. } => {
            let slots = Arc::new(Semaphore::new(plan.connections));
            let mut stop = stop.clone();
            let mut i = 0u64;
            while more(i) && !*stop.borrow() {
                let due = plan.pacing.due(i).unwrap_or_default();
                tokio::select! {
                    _ = tokio::time::sleep_until((shared.start + due).into()) => {}
                    _ = stop.changed() => break,
                }
                let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
                    break;
                };
                shared.issued.fetch_add(1, Ordering::Relaxed);
                let job = workload(i);
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let done = job.await;
                    shared.finish(i, due, done);
                    drop(slot);
                });
                i += 1;
            }
            // Every request in flight finishes and is counted.
            let _ = slots.acquire_many(plan.connections as u32).await;
        }
        Pacing::Closed => {
            let next = Arc::new(AtomicU64::new(0));
            let mut senders = Vec::with_capacity(plan.connections);
            for _ in 0..plan.connections {
                let (next, shared, workload, stop) = (
                    Arc::clone(&next),
                    Arc::clone(&shared),
                    Arc::clone(&workload),
                    stop.clone(),
                );
                let (requests, deadline) = (plan.requests, deadline);
                senders.push(tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let open = requests.is_none_or(|n| i < n)
                            && deadline.is_none_or(|d| Instant::now() < d)
                            && !*stop.borrow();
                        if !open {
                            break;
                        }
                        shared.issued.fetch_add(1, Ordering::Relaxed);
                        let due = shared.start.elapsed();
                        let done = workload(i).await;
                        shared.finish(i, due, done);
                    }
                }));
            }
            for s in senders {
                let _ = s.await;
            }
        }
    }
    let elapsed = shared.start.elapsed();
    let interrupted = *stop.borrow();

    let mut all_readable_after = None;
    if plan.wait_for_inbox && !interrupted {
        let last = shared
            .last_readable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some((fiscal_code, id, _)) = last {
            bar.set_message("waiting for the last message to reach its inbox");
            if let Some(at) = shared.wait_readable(&fiscal_code, &id).await {
                all_readable_after = Some(at.saturating_duration_since(shared.start));
            }
        }
    }
    // Let the sampled messages still being followed land.
    let _ = shared.watchers.acquire_many(MAX_WATCHERS as u32).await;
    ticker.abort();
    bar.finish_and_clear();

    let driven = Driven {
        sent: shared.issued.load(Ordering::Relaxed),
        elapsed,
        expected_readable: shared.readable.load(Ordering::Relaxed),
        all_readable_after,
        interrupted,
    };
    let stats = std::mem::take(&mut *shared.stats());
    (stats, driven)
}

fn progress(plan: &Plan) -> ProgressBar {
    let bar = match (plan.requests, plan.duration) {
        (Some(n), _) => ProgressBar::new(n),
        (None, Some(d)) => ProgressBar::new(d.as_secs()),
        (None, None) => ProgressBar::no_length(),
    };
    let template = format!(
        "{} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {{msg}}",
        plan.label
    );
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// Updates the bar with the current rate, errors and p99 four times a second.
fn spawn_ticker(
    shared: Arc<Shared>,
    bar: ProgressBar,
    by_count: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_ok = 0u64;
        let mut last_at = Instant::now();
        let mut every = tokio::time::interval(Duration::from_millis(250));
        loop {
            every.tick().await;
            let (ok, errors, p99) = {
                let s = shared.stats();
                (s.ok(), s.error_count(), s.latency().p99)
            };
            let now = Instant::now();
            let rate = (ok - last_ok) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-3);
            (last_ok, last_at) = (ok, now);
            bar.set_position(if by_count {
                ok + errors
            } else {
                shared.start.elapsed().as_secs()
            });
            bar.set_message(format!(
                "{rate:>7.0}/s ok {ok}  errors {errors}  p99 {p99:.1} ms"
            ));
        }
    })
}
