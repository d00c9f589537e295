//! The loop every pipeline stage runs: poll a batch, decode it, process it, send what can
//! never be processed to the dead-letter topic, and only then commit.
//!
//! Failures have two kinds. A transient one (store or log unavailable) is retried with
//! growing, jittered delay for as long as it lasts: the stage slows down, nothing is lost,
//! and on shutdown the uncommitted batch is simply delivered again later. A permanent one
//! (this record can never be processed) is isolated to the records that cause it, which go
//! to `<topic>.dlq` with the reason in a header; their batch-mates proceed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{Bus, BusError, Delivered, Record};

/// How a stage's processing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageError {
    #[error("transient: {0}")]
    Transient(String),
    #[error("permanent: {0}")]
    Permanent(String),
}

/// One pipeline stage: how to read its records and what to do with them.
#[async_trait]
pub trait Stage: Send + Sync + 'static {
    type Item: Send + Sync;

    /// Parses a record; an error sends it straight to the dead-letter topic.
    fn decode(&self, record: &Record) -> Result<Self::Item, String>;

    /// Processes items in order. Must be idempotent: after a crash a batch is processed again.
    async fn process(&self, items: &[&Self::Item]) -> Result<(), StageError>;

    /// Told about an item that was dead-lettered, e.g. to mark its message FAILED.
    async fn dead_lettered(&self, _item: &Self::Item, _reason: &str) {}
}

#[derive(Debug, Clone)]
pub struct StageConfig {
    pub batch: usize,
    pub poll_wait: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for StageConfig {
    fn default() -> Self {
        Self {
            batch: 512,
            poll_wait: Duration::from_millis(500),
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(10),
        }
    }
}

/// The header names of a dead-lettered record.
pub mod headers {
    pub const ERROR: &str = "postino-error";
    pub const SOURCE_TOPIC: &str = "postino-source-topic";
    pub const SOURCE_OFFSET: &str = "postino-source-offset";
    pub const STAGE: &str = "postino-stage";
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

    /// Waits the next delay (full jitter) unless shutdown comes first; false on shutdown.
    async fn wait(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let delay = self.next.mul_f64(0.5 + f64::from(nanos % 1000) / 2000.0);
        self.next = (self.next * 2).min(self.max);
        tokio::select! {
            _ = tokio::time::sleep(delay) => !*shutdown.borrow(),
            _ = shutdown.changed() => false,
        }
    }

    /// After a failed log operation: logs it and waits the next delay. False when the
    /// error is permanent or shutdown came first, i.e. when the caller must give up.
    async fn after_failure(
        &mut self,
        err: &BusError,
        what: &str,
        topic: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> bool {
        tracing::warn!(topic, error = %err, "{what} failed; retrying");
        err.is_retryable() && self.wait(shutdown).await
    }
}

/// Runs `stage` on `topic` as consumer group `group` until `shutdown` turns true.
pub async fn run<S: Stage>(
    bus: Arc<dyn Bus>,
    topic: &str,
    group: &str,
    stage: Arc<S>,
    cfg: StageConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), BusError> {
    let mut sub = bus.subscribe(topic, group).await?;
    let dlq = format!("{topic}.dlq");
    tracing::info!(topic, group, "stage started");
    let mut poll_backoff = Backoff::new(&cfg);
    'batches: while !*shutdown.borrow() {
        let batch = tokio::select! {
            polled = sub.poll(cfg.batch, cfg.poll_wait) => polled,
            _ = shutdown.changed() => break,
        };
        let batch = match batch {
            Ok(b) if b.is_empty() => continue,
            Ok(b) => {
                poll_backoff = Backoff::new(&cfg);
                b
            }
            Err(err) => {
                if poll_backoff
                    .after_failure(&err, "poll", topic, &mut shutdown)
                    .await
                {
                    continue;
                }
                if err.is_retryable() {
                    break; // shutting down
                }
                return Err(err);
            }
        };

        let mut good: Vec<(&Delivered, S::Item)> = Vec::with_capacity(batch.len());
        let mut dead: Vec<(&Delivered, String)> = Vec::new();
        for d in &batch {
            match stage.decode(&d.record) {
                Ok(item) => good.push((d, item)),
                Err(reason) => dead.push((d, format!("malformed record: {reason}"))),
            }
        }

        let Some(failed) = process_all(&*stage, &good, &cfg, &mut shutdown, topic).await else {
            break; // shutting down mid-retry: leave the batch uncommitted
        };
        for (i, reason) in failed {
            let (d, item) = &good[i];
            stage.dead_lettered(item, &reason).await;
            dead.push((d, reason));
        }
        if !dead.is_empty() {
            let records: Vec<Record> = dead
                .iter()
                .map(|(d, reason)| dead_letter(d, reason, group))
                .collect();
            tracing::warn!(
                topic,
                count = records.len(),
                "records sent to the dead-letter topic"
            );
            let mut backoff = Backoff::new(&cfg);
            while let Err(err) = bus.publish(&dlq, records.clone()).await {
                if !backoff
                    .after_failure(&err, "dead-letter publish", topic, &mut shutdown)
                    .await
                {
                    break 'batches;
                }
            }
        }
        let mut backoff = Backoff::new(&cfg);
        while let Err(err) = sub.commit(&batch).await {
            if !backoff
                .after_failure(&err, "commit", topic, &mut shutdown)
                .await
            {
                break 'batches;
            }
        }
    }
    tracing::info!(topic, group, "stage stopped");
    Ok(())
}

/// Processes the batch; returns the indices that failed permanently with their reasons, or
/// `None` if shutdown interrupted a transient retry.
async fn process_all<S: Stage>(
    stage: &S,
    good: &[(&Delivered, S::Item)],
    cfg: &StageConfig,
    shutdown: &mut watch::Receiver<bool>,
    topic: &str,
) -> Option<Vec<(usize, String)>> {
    if good.is_empty() {
        return Some(Vec::new());
    }
    let items: Vec<&S::Item> = good.iter().map(|(_, item)| item).collect();
    match process_retrying(stage, &items, cfg, shutdown, topic).await? {
        Ok(()) => Some(Vec::new()),
        Err(_) if items.len() > 1 => {
            // Find the culprits one by one, keeping order; the rest of the batch proceeds.
            let mut failed = Vec::new();
            for (i, item) in items.iter().enumerate() {
                if let Err(reason) = process_retrying(stage, &[*item], cfg, shutdown, topic).await?
                {
                    failed.push((i, reason));
                }
            }
            Some(failed)
        }
        Err(reason) => Some(vec![(0, reason)]),
    }
}

async fn process_retrying<S: Stage>(
    stage: &S,
    items: &[&S::Item],
    cfg: &StageConfig,
    shutdown: &mut watch::Receiver<bool>,
    topic: &str,
) -> Option<Result<(), String>> {
    let mut backoff = Backoff::new(cfg);
    loop {
        match stage.process(items).await {
            Ok(()) => return Some(Ok(())),
            Err(StageError::Permanent(reason)) => return Some(Err(reason)),
            Err(StageError::Transient(reason)) => {
                tracing::warn!(topic, error = %reason, "processing failed; retrying");
                if !backoff.wait(shutdown).await {
                    return None;
                }
            }
        }
    }
}

fn dead_letter(d: &Delivered, reason: &str, group: &str) -> Record {
    let mut headers = d.record.headers.clone();
    headers.push((headers::ERROR.into(), reason.to_string()));
    headers.push((headers::SOURCE_TOPIC.into(), d.topic.clone()));
    headers.push((headers::SOURCE_OFFSET.into(), d.offset.to_string()));
    headers.push((headers::STAGE.into(), group.to_string()));
    Record {
        key: d.record.key.clone(),
        headers,
        payload: d.record.payload.clone(),
    }
}
