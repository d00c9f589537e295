//! The loop every pipeline stage runs: poll a batch, decode it, process it, hand on what
//! failed, and only then commit.
//!
//! A stage reads two lanes. The main lane is `<topic>`; the retry lane is `<topic>.retry`,
//! where a record that failed waits out a growing delay before it is tried again. Failures
//! have three kinds, and the stage says which:
//!
//! - **Unavailable**: something every record needs (the store, the log) is down. Moving the
//!   records elsewhere would only burn their attempts, so the stage holds the batch and
//!   retries it in place with growing, jittered delay for as long as it lasts. It stops
//!   polling meanwhile, so the consumer fetches nothing more than its bounded prefetch: the
//!   stage slows down, nothing is lost, and on shutdown the uncommitted batch is simply
//!   delivered again later.
//! - **Retry**: this record failed and may succeed later (a provider's `429`, a timeout).
//!   It goes to `<topic>.retry` with its attempt count and due time in headers, and its
//!   partition moves on. After `max_attempts` it goes to `<topic>.dlq`. The retry lane
//!   processes every record of its batch that is due together, and waits only until the
//!   earliest of the rest is due.
//! - **Permanent**: this record can never be processed. It goes to `<topic>.dlq` at once, as
//!   does a record that cannot be decoded. Its batch-mates proceed.
//!
//! A record in the dead-letter topic carries the error, the attempt count, the source topic
//! and offset, and the stage in its headers.
//!
//! The log's own failures are retried with the same growing delay while they may pass. One
//! that never can (the log refusing a record outright) ends the stage with that error and
//! its batch uncommitted, for the process to stop and be restarted rather than run on
//! without the stage.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::metrics::{Lagging, StageLane};
use crate::{Bus, BusError, Delivered, Record, Subscription};

/// How a stage's processing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    /// A dependency every record needs is down: hold and retry in place.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// This record may succeed later: retry it through `<topic>.retry`, not before `after`
    /// when the other side said when (`Retry-After`).
    #[error("failed, will retry: {reason}")]
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// This record can never be processed: dead-letter it.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl StageError {
    /// A dependency's error: `Unavailable` when trying again later may work, else `Permanent`.
    pub fn from_dependency(retryable: bool, err: impl std::fmt::Display) -> Self {
        if retryable {
            Self::Unavailable(err.to_string())
        } else {
            Self::Permanent(err.to_string())
        }
    }
}

/// A stage's own publish (to the next topic) failing: the log being down holds the stage;
/// the log refusing the record for good (too large, say) dead-letters it.
impl From<BusError> for StageError {
    fn from(err: BusError) -> Self {
        Self::from_dependency(err.is_retryable(), err)
    }
}

/// One pipeline stage: how to read its records and what to do with them.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    type Item: Send + Sync;

    /// Parses a record; an error sends it straight to the dead-letter topic.
    fn decode(&self, record: &Record) -> Result<Self::Item, String>;

    /// Processes items in order, one outcome per item. Must be idempotent: after a crash a
    /// batch is processed again. A stage whose items succeed or fail one by one (a provider
    /// answers each request) reports each, so a batch-mate's failure never makes a done item
    /// be done again; one whose batch succeeds or fails as a whole (a store transaction, a
    /// publish) gets its outcomes from [`by_batch`].
    async fn process(&self, items: &[&Self::Item]) -> Vec<Result<(), StageError>>;

    /// Told about an item that was dead-lettered, e.g. to mark its message FAILED.
    async fn dead_lettered(&self, _item: &Self::Item, _reason: &str) {}
}

/// A stage of Postino's pipeline: the topic it consumes and its consumer group, so that
/// whoever runs it needs nothing else to subscribe it.
pub trait PipelineStage: Stage {
    /// The topic it consumes; its retry lane consumes `<TOPIC>.retry`.
    const TOPIC: &'static str;
    /// Its consumer group; the retry lane's is `<GROUP>.retry`.
    const GROUP: &'static str;
}

/// Per-item outcomes for a stage whose batch succeeds or fails as a whole: `batch` runs on
/// every item at once and, when it fails for a reason other than `Unavailable`, on each item
/// alone, to find the culprits and let their batch-mates through.
pub async fn by_batch<'a, I, F, Fut>(items: &[&'a I], batch: F) -> Vec<Result<(), StageError>>
where
    I: ?Sized,
    F: Fn(Vec<&'a I>) -> Fut,
    Fut: std::future::Future<Output = Result<(), StageError>>,
{
    match batch(items.to_vec()).await {
        Ok(()) => items.iter().map(|_| Ok(())).collect(),
        Err(err @ StageError::Unavailable(_)) => items.iter().map(|_| Err(err.clone())).collect(),
        Err(err) if items.len() == 1 => vec![Err(err)],
        Err(_) => {
            let mut outcomes = Vec::with_capacity(items.len());
            for item in items {
                outcomes.push(batch(vec![*item]).await);
            }
            outcomes
        }
    }
}

#[derive(Debug, Clone)]
pub struct StageConfig {
    /// Records processed together.
    pub batch: usize,
    /// How long a poll waits for the first record.
    pub poll_wait: Duration,
    /// How long a poll that found fewer than `batch` records waits for more before the
    /// batch is processed. Every batch costs a few commits (each an fsync on the embedded
    /// log and store), so under a steady stream a few milliseconds of lingering buys far
    /// fewer, fuller batches; an idle stage is not slowed.
    pub linger: Duration,
    /// First delay of an in-place retry (unavailable dependency, log errors).
    pub backoff_initial: Duration,
    /// Longest delay of an in-place retry.
    pub backoff_max: Duration,
    /// Attempts a record gets (the first one included) before it is dead-lettered.
    pub max_attempts: u32,
    /// Delay before a record's second attempt; it doubles with each further attempt.
    pub retry_initial: Duration,
    /// Longest delay between two attempts of a record (a longer `Retry-After` is shortened
    /// to it, so a waiting retry lane never outstays the consumer group's poll interval).
    pub retry_max: Duration,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            batch: 512,
            poll_wait: Duration::from_millis(500),
            linger: Duration::from_millis(5),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(10),
            max_attempts: 5,
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

/// The stage settings an operator sets (`[stage]` and `[stage.retry]`); the rest of
/// [`StageConfig`] keeps its defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StageSettings {
    /// How long a stage whose poll found less than a full batch waits for more, in ms
    /// (at most 1000).
    pub linger_ms: u64,
    pub retry: RetrySettings,
}

/// How a failed record is tried again (`[stage.retry]`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts a record gets, the first one included, before it goes to `<topic>.dlq`.
    pub max_attempts: u32,
    /// Delay before a record's second attempt, in ms; it doubles with each further one.
    pub initial_ms: u64,
    /// Longest delay between two attempts, in ms (at most 240000).
    pub max_ms: u64,
}

impl Default for StageSettings {
    fn default() -> Self {
        Self {
            linger_ms: 5,
            retry: RetrySettings::default(),
        }
    }
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_ms: 1_000,
            max_ms: 60_000,
        }
    }
}

impl StageSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.linger_ms > 1000 {
            return Err(
                "stage.linger_ms must be at most 1000: a batch waits that long at every stage"
                    .into(),
            );
        }
        if self.retry.max_attempts < 1 {
            return Err("stage.retry.max_attempts must be at least 1".into());
        }
        // A retry lane waits for its records while it holds the consumer: stay well inside
        // Kafka's default poll interval of 5 minutes.
        if self.retry.initial_ms > self.retry.max_ms || self.retry.max_ms > 240_000 {
            return Err("stage.retry.initial_ms must not exceed stage.retry.max_ms, and stage.retry.max_ms must be at most 240000 (4 minutes)".into());
        }
        Ok(())
    }

    /// How every stage polls, batches and retries.
    pub fn stage_config(&self) -> StageConfig {
        StageConfig {
            max_attempts: self.retry.max_attempts,
            retry_initial: Duration::from_millis(self.retry.initial_ms),
            retry_max: Duration::from_millis(self.retry.max_ms),
            linger: Duration::from_millis(self.linger_ms),
            ..StageConfig::default()
        }
    }
}

/// The header names Postino sets on retried and dead-lettered records.
pub mod headers {
    /// Why the last attempt failed.
    pub const ERROR: &str = "postino-error";
    /// Attempts made so far.
    pub const ATTEMPTS: &str = "postino-attempts";
    /// When a retried record is due, in milliseconds since the Unix epoch.
    pub const RETRY_AT: &str = "postino-retry-at";
    /// Where the record first came from.
    pub const SOURCE_TOPIC: &str = "postino-source-topic";
    pub const SOURCE_OFFSET: &str = "postino-source-offset";
    /// The consumer group that gave up on it.
    pub const STAGE: &str = "postino-stage";
    /// The request the record comes from (its `X-Request-Id`), carried on by every stage.
    pub const REQUEST_ID: &str = "postino-request-id";
}

/// Where records of `topic` wait for their next attempt.
pub fn retry_topic(topic: &str) -> String {
    format!("{topic}.retry")
}

/// Where records of `topic` that cannot be processed end up.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// A factor in [0.5, 1) that spreads retries of many records and processes apart.
fn jitter() -> f64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    0.5 + f64::from(nanos % 1000) / 2000.0
}

fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    fn new(cfg: &StageConfig) -> Self {
        Self {
            next: cfg.backoff_initial,
            max: cfg.backoff_max,
        }
    }

    /// Waits the next delay unless shutdown comes first; false on shutdown.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let delay = self.next.mul_f64(jitter());
        self.next = (self.next * 2).min(self.max);
        sleep_unless_shutdown(delay, shutdown).await
    }

    /// After a failed log operation: an error that can never pass ends the stage (`Err`,
    /// its batch left uncommitted, to be delivered again after a restart); any other is
    /// logged and waited out. `Ok(false)` when shutdown came first.
    async fn after_failure(
        &mut self,
        err: BusError,
        what: &str,
        topic: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<bool, BusError> {
        if !err.is_retryable() {
            return Err(err);
        }
        tracing::warn!(topic, error = %err, "{what} failed; retrying");
        Ok(self.wait(shutdown).await)
    }
}

/// Sleeps `delay` unless shutdown comes first; false on shutdown.
async fn sleep_unless_shutdown(delay: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    if *shutdown.borrow() {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(delay) => !*shutdown.borrow(),
        _ = shutdown.changed() => false,
    }
}

/// One of the two topics a stage reads.
struct Lane {
    /// The stage's own topic: records that fail are sent on from it.
    topic: String,
    /// What this lane polls: `topic` or its retry topic.
    source: String,
    group: String,
    /// Whether records wait for their `RETRY_AT` before they are processed.
    delayed: bool,
    metrics: StageLane,
}

/// A stage's two lanes, each subscribed as its consumer group. On the embedded log the
/// groups are journaled by the time [`join`] returns; on Kafka the consumers join on their
/// first poll. Either way a new group starts from the oldest record, so nothing published
/// before the stage polls is missed.
pub struct Joined {
    main: (Lane, Box<dyn Subscription>),
    retry: (Lane, Box<dyn Subscription>),
}

impl std::fmt::Debug for Joined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Joined")
            .field("topic", &self.main.0.topic)
            .field("group", &self.main.0.group)
            .finish_non_exhaustive()
    }
}

/// Joins `topic` (and its retry topic) as consumer group `group`, so that a process can
/// refuse to start when its stages cannot subscribe, and report ready only once they have.
pub async fn join(bus: &dyn Bus, topic: &str, group: &str) -> Result<Joined, BusError> {
    let main = Lane {
        topic: topic.to_string(),
        source: topic.to_string(),
        group: group.to_string(),
        delayed: false,
        metrics: StageLane::new(topic, topic),
    };
    let retry = Lane {
        topic: topic.to_string(),
        source: retry_topic(topic),
        group: format!("{group}.retry"),
        delayed: true,
        metrics: StageLane::new(topic, &retry_topic(topic)),
    };
    let main_sub = bus.subscribe(&main.source, &main.group).await?;
    let retry_sub = bus.subscribe(&retry.source, &retry.group).await?;
    Ok(Joined {
        main: (main, main_sub),
        retry: (retry, retry_sub),
    })
}

impl Joined {
    /// Runs `stage` on both lanes until `shutdown` turns true.
    pub async fn run<S: Stage>(
        self,
        bus: Arc<dyn Bus>,
        stage: Arc<S>,
        cfg: StageConfig,
        shutdown: watch::Receiver<bool>,
    ) -> Result<(), BusError> {
        let Joined { main, retry } = self;
        let lanes = [
            (main.0.source.clone(), main.0.group.clone()),
            (retry.0.source.clone(), retry.0.group.clone()),
        ];
        tokio::try_join!(
            watch_lag(Arc::clone(&bus), lanes, shutdown.clone()),
            consume(
                Arc::clone(&bus),
                main,
                Arc::clone(&stage),
                &cfg,
                shutdown.clone()
            ),
            consume(bus, retry, stage, &cfg, shutdown),
        )?;
        Ok(())
    }
}

/// How often a stage asks the log how far behind its groups are.
pub const LAG_EVERY: Duration = Duration::from_secs(5);

/// Reports each lane's consumer lag every [`LAG_EVERY`] until shutdown. The log is asked
/// rather than the consumer, so a stage that is stuck still shows its lag growing; a log
/// that cannot answer just leaves the last figure.
async fn watch_lag(
    bus: Arc<dyn Bus>,
    lanes: [(String, String); 2],
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    loop {
        for (topic, group) in &lanes {
            match bus.lag(topic, group).await {
                Ok(lags) => Lagging {
                    topic,
                    group,
                    lags: &lags,
                }
                .emit(),
                Err(err) => tracing::debug!(topic, group, error = %err, "cannot read the lag"),
            }
        }
        if !sleep_unless_shutdown(LAG_EVERY, &mut shutdown).await {
            return Ok(());
        }
    }
}

/// Runs `stage` on `topic` (and its retry topic) as consumer group `group` until
/// `shutdown` turns true: [`join`], then [`Joined::run`].
pub async fn run<S: Stage>(
    bus: Arc<dyn Bus>,
    topic: &str,
    group: &str,
    stage: Arc<S>,
    cfg: StageConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    join(&*bus, topic, group)
        .await?
        .run(bus, stage, cfg, shutdown)
        .await
}

/// What becomes of one record that did not simply succeed.
enum Failure {
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    Dead(String),
}

/// One lane of a stage, consuming: the steps of [`Consumer::run`], each its own method.
struct Consumer<'a, S: Stage> {
    bus: Arc<dyn Bus>,
    lane: Lane,
    sub: Box<dyn Subscription>,
    stage: Arc<S>,
    cfg: &'a StageConfig,
    shutdown: watch::Receiver<bool>,
}

/// A record of the batch that did not simply succeed, with its item when it decoded.
type Failed<'b, I> = (&'b Delivered, Option<&'b I>, Failure);

async fn consume<S: Stage>(
    bus: Arc<dyn Bus>,
    (lane, sub): (Lane, Box<dyn Subscription>),
    stage: Arc<S>,
    cfg: &StageConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    Consumer {
        bus,
        lane,
        sub,
        stage,
        cfg,
        shutdown,
    }
    .run()
    .await
}

impl<S: Stage> Consumer<'_, S> {
    /// Until shutdown: next batch, decode, process, send the failures on, commit. A batch
    /// that shutdown interrupts is left uncommitted, to be delivered again.
    async fn run(mut self) -> Result<(), BusError> {
        tracing::info!(
            topic = self.lane.source,
            group = self.lane.group,
            "stage started"
        );
        while let Some(batch) = self.next_batch().await? {
            let started = std::time::Instant::now();
            let mut good: Vec<(&Delivered, S::Item)> = Vec::with_capacity(batch.len());
            let mut failed: Vec<Failed<'_, S::Item>> = Vec::new();
            for d in &batch {
                match self.stage.decode(&d.record) {
                    Ok(item) => good.push((d, item)),
                    Err(reason) => failed.push((
                        d,
                        None,
                        Failure::Dead(format!("malformed record: {reason}")),
                    )),
                }
            }
            let Some(outcomes) = self.process(&good).await else {
                break;
            };
            failed.extend(outcomes.into_iter().map(|(i, failure)| {
                let (d, item) = &good[i];
                (*d, Some(item), failure)
            }));
            if !self.send_on(failed).await? {
                break;
            }
            self.lane.metrics.batch_done(batch.len(), started.elapsed());
            if !self.commit(&batch).await? {
                break;
            }
        }
        tracing::info!(
            topic = self.lane.source,
            group = self.lane.group,
            "stage stopped"
        );
        Ok(())
    }

    /// The next batch: a poll, then, when it found less than a full batch, the linger and
    /// what arrived meanwhile. A poll that fails is retried with growing delay. `None` on
    /// shutdown.
    async fn next_batch(&mut self) -> Result<Option<Vec<Delivered>>, BusError> {
        let cfg = self.cfg;
        let mut backoff = Backoff::new(cfg);
        while !*self.shutdown.borrow() {
            let polled = tokio::select! {
                polled = self.sub.poll(cfg.batch, cfg.poll_wait) => polled,
                _ = self.shutdown.changed() => return Ok(None),
            };
            match polled {
                Ok(batch) if batch.is_empty() => continue,
                Ok(mut batch) => {
                    if batch.len() < cfg.batch
                        && !cfg.linger.is_zero()
                        && sleep_unless_shutdown(cfg.linger, &mut self.shutdown).await
                    {
                        // What arrived meanwhile joins the batch; a failure here only means
                        // those records come with the next poll.
                        if let Ok(more) =
                            self.sub.poll(cfg.batch - batch.len(), Duration::ZERO).await
                        {
                            batch.extend(more);
                        }
                    }
                    return Ok(Some(batch));
                }
                Err(err) => {
                    let source = self.lane.source.as_str();
                    if !backoff
                        .after_failure(err, "poll", source, &mut self.shutdown)
                        .await?
                    {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Processes the decoded items: all at once on the main lane, as they fall due on the
    /// retry lane. The failures, by index into `good`; `None` on shutdown.
    async fn process(&mut self, good: &[(&Delivered, S::Item)]) -> Option<Vec<(usize, Failure)>> {
        let lane = &self.lane;
        if lane.delayed {
            process_when_due(&*self.stage, good, self.cfg, &mut self.shutdown, lane).await
        } else {
            let items: Vec<&S::Item> = good.iter().map(|(_, item)| item).collect();
            process_all(&*self.stage, &items, self.cfg, &mut self.shutdown, lane).await
        }
    }

    /// Sends each failure on: to `<topic>.retry` while it has attempts left, else to
    /// `<topic>.dlq` (telling the stage). False on shutdown.
    async fn send_on(&mut self, failed: Vec<Failed<'_, S::Item>>) -> Result<bool, BusError> {
        let cfg = self.cfg;
        let mut retries = Vec::new();
        let mut dead = Vec::new();
        for (d, item, failure) in failed {
            let attempts = attempts(&d.record).saturating_add(1);
            let reason = match failure {
                Failure::Retry { reason, after } if attempts < cfg.max_attempts => {
                    retries.push(retried(d, &reason, attempts, after, cfg));
                    continue;
                }
                Failure::Retry { reason, .. } => {
                    format!("gave up after {attempts} attempts: {reason}")
                }
                Failure::Dead(reason) => reason,
            };
            if let Some(item) = item {
                self.stage.dead_lettered(item, &reason).await;
            }
            dead.push(dead_letter(d, &reason, attempts, &self.lane.group));
        }
        let (retried, dead_lettered) = (retries.len(), dead.len());
        for (target, records) in [
            (retry_topic(&self.lane.topic), retries),
            (dead_letter_topic(&self.lane.topic), dead),
        ] {
            if records.is_empty() {
                continue;
            }
            let source = self.lane.source.as_str();
            tracing::warn!(
                topic = source,
                to = target,
                count = records.len(),
                "records sent on"
            );
            let mut backoff = Backoff::new(cfg);
            while let Err(err) = self.bus.publish(&target, records.clone()).await {
                if !backoff
                    .after_failure(err, "publish", source, &mut self.shutdown)
                    .await?
                {
                    return Ok(false);
                }
            }
        }
        self.lane.metrics.sent_on(retried, dead_lettered);
        Ok(true)
    }

    /// Commits the batch, retrying while the log may take it. False on shutdown.
    async fn commit(&mut self, batch: &[Delivered]) -> Result<bool, BusError> {
        let source = self.lane.source.as_str();
        let mut backoff = Backoff::new(self.cfg);
        while let Err(err) = self.sub.commit(batch).await {
            if let BusError::Revoked(_) = err {
                // Another consumer owns these partitions now and starts from the last
                // commit; the batch is processed again there, which stages tolerate.
                tracing::warn!(topic = source, error = %err, "batch not committed");
                break;
            }
            if !backoff
                .after_failure(err, "commit", source, &mut self.shutdown)
                .await?
            {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The retry lane's batch: every record that is due is processed together, then the stage
/// sleeps until the earliest of the others is due, and so on. A record due later never
/// holds back one already due, and a storm of retries drains in batches, not one round
/// trip each. Returns what [`process_all`] does, with indices into `good`.
async fn process_when_due<S: Stage>(
    stage: &S,
    good: &[(&Delivered, S::Item)],
    cfg: &StageConfig,
    shutdown: &mut watch::Receiver<bool>,
    lane: &Lane,
) -> Option<Vec<(usize, Failure)>> {
    let mut waiting: Vec<usize> = (0..good.len()).collect();
    let mut outcomes = Vec::new();
    while !waiting.is_empty() {
        let now = SystemTime::now();
        let (ready, later): (Vec<usize>, Vec<usize>) = waiting
            .iter()
            .partition(|&&i| due(&good[i].0.record).is_none_or(|at| at <= now));
        if ready.is_empty() {
            let earliest = later
                .iter()
                .filter_map(|&i| due(&good[i].0.record))
                .min()
                .unwrap_or(now);
            let wait = earliest.duration_since(now).unwrap_or_default();
            if !sleep_unless_shutdown(wait, shutdown).await {
                return None;
            }
            continue;
        }
        let items: Vec<&S::Item> = ready.iter().map(|&i| &good[i].1).collect();
        let done = process_all(stage, &items, cfg, shutdown, lane).await?;
        outcomes.extend(done.into_iter().map(|(j, failure)| (ready[j], failure)));
        waiting = later;
    }
    Some(outcomes)
}

/// Processes the items in order; returns the indices that failed with what becomes of them,
/// or `None` if shutdown interrupted an in-place retry. Items whose dependency is
/// unavailable are held and tried again in place, alone, until it is back.
async fn process_all<S: Stage>(
    stage: &S,
    items: &[&S::Item],
    cfg: &StageConfig,
    shutdown: &mut watch::Receiver<bool>,
    lane: &Lane,
) -> Option<Vec<(usize, Failure)>> {
    let topic = lane.source.as_str();
    let mut pending: Vec<usize> = (0..items.len()).collect();
    let mut failed = Vec::new();
    let mut backoff = Backoff::new(cfg);
    while !pending.is_empty() {
        let batch: Vec<&S::Item> = pending.iter().map(|&i| items[i]).collect();
        let outcomes = stage.process(&batch).await;
        let mut held = Vec::new();
        for (&i, outcome) in pending.iter().zip(outcomes) {
            match outcome {
                Ok(()) => {}
                Err(StageError::Permanent(reason)) => failed.push((i, Failure::Dead(reason))),
                Err(StageError::Retry { reason, after }) => {
                    failed.push((i, Failure::Retry { reason, after }))
                }
                Err(StageError::Unavailable(reason)) => {
                    if held.is_empty() {
                        tracing::warn!(topic, error = %reason, "processing held; retrying");
                        lane.metrics.held();
                    }
                    held.push(i);
                }
            }
        }
        if !held.is_empty() && !backoff.wait(shutdown).await {
            return None;
        }
        pending = held;
    }
    failed.sort_by_key(|(i, _)| *i);
    Some(failed)
}

/// Attempts a record has had; a missing or unreadable header counts as none.
fn attempts(record: &Record) -> u32 {
    record
        .header(headers::ATTEMPTS)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// When a retried record is due; `None` (due now) if the header is missing or unreadable.
fn due(record: &Record) -> Option<SystemTime> {
    let millis: u64 = record.header(headers::RETRY_AT)?.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// Delay before attempt `attempts + 1`: doubling from `retry_initial`, at least what the
/// other side asked for, at most `retry_max`, jittered so retries spread out.
fn retry_delay(attempts: u32, after: Option<Duration>, cfg: &StageConfig) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let grown = cfg
        .retry_initial
        .saturating_mul(1 << doublings)
        .min(cfg.retry_max)
        .mul_f64(jitter());
    grown.max(after.unwrap_or_default()).min(cfg.retry_max)
}

fn set_header(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    headers.retain(|(n, _)| n != name);
    headers.push((name.to_string(), value));
}

/// The record with the error and attempt count set, and the place it first came from.
fn annotated(d: &Delivered, reason: &str, attempts: u32) -> Record {
    let mut record = d.record.clone();
    set_header(&mut record.headers, headers::ERROR, reason.to_string());
    set_header(&mut record.headers, headers::ATTEMPTS, attempts.to_string());
    if record.header(headers::SOURCE_TOPIC).is_none() {
        set_header(&mut record.headers, headers::SOURCE_TOPIC, d.topic.clone());
        set_header(
            &mut record.headers,
            headers::SOURCE_OFFSET,
            d.offset.to_string(),
        );
    }
    record
}

fn retried(
    d: &Delivered,
    reason: &str,
    attempts: u32,
    after: Option<Duration>,
    cfg: &StageConfig,
) -> Record {
    let mut record = annotated(d, reason, attempts);
    let at = SystemTime::now() + retry_delay(attempts, after, cfg);
    set_header(
        &mut record.headers,
        headers::RETRY_AT,
        unix_millis(at).to_string(),
    );
    record
}

fn dead_letter(d: &Delivered, reason: &str, attempts: u32, group: &str) -> Record {
    let mut record = annotated(d, reason, attempts);
    record.headers.retain(|(n, _)| n != headers::RETRY_AT);
    set_header(&mut record.headers, headers::STAGE, group.to_string());
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> StageConfig {
        StageConfig {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        }
    }

    #[test]
    fn retry_delays_grow_and_stay_within_bounds() {
        let cfg = cfg();
        for attempts in 1..=10u32 {
            let d = retry_delay(attempts, None, &cfg);
            let full = Duration::from_secs(1 << (attempts - 1).min(6)).min(cfg.retry_max);
            assert!(d >= full / 2 && d <= full, "attempt {attempts}: {d:?}");
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_maximum() {
        let cfg = cfg();
        assert!(retry_delay(1, Some(Duration::from_secs(30)), &cfg) >= Duration::from_secs(30));
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(3600)), &cfg),
            cfg.retry_max
        );
    }

    #[test]
    fn unreadable_retry_headers_count_as_none() {
        let mut r = Record::new(b"k".to_vec(), b"p".to_vec());
        r.headers.push((headers::ATTEMPTS.into(), "many".into()));
        r.headers.push((headers::RETRY_AT.into(), "-5".into()));
        assert_eq!(attempts(&r), 0);
        assert_eq!(due(&r), None);
    }

    #[test]
    fn a_record_keeps_its_first_source_and_one_value_per_header() {
        let first = Delivered {
            topic: "work".into(),
            partition: 0,
            offset: 7,
            record: Record::new(b"k".to_vec(), b"p".to_vec()),
        };
        let again = Delivered {
            topic: "work.retry".into(),
            partition: 0,
            offset: 2,
            record: retried(&first, "boom", 1, None, &cfg()),
        };
        let dead = dead_letter(&again, "boom again", 2, "g.retry");
        assert_eq!(dead.header(headers::SOURCE_TOPIC), Some("work"));
        assert_eq!(dead.header(headers::SOURCE_OFFSET), Some("7"));
        assert_eq!(dead.header(headers::ATTEMPTS), Some("2"));
        assert_eq!(dead.header(headers::ERROR), Some("boom again"));
        assert_eq!(dead.header(headers::RETRY_AT), None);
        let names: Vec<&str> = dead.headers.iter().map(|(n, _)| n.as_str()).collect();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(names.len(), unique.len(), "{names:?}");
    }
}
