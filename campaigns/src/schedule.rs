//! Records that wait for their time: a scheduled campaign's items, pushes held over quiet
//! hours. Whoever defers a record publishes it on `scheduled` with [`defer`] (so it is in
//! the log when the sender is answered); the [`IntakeStage`] keeps it in the store
//! ([`store::ScheduleStore`]) by due minute; the [`Releaser`], one at a time across the
//! deployment by a lease, publishes each on its topic once it is due and forgets it. A
//! record released twice (a releaser that died between publishing and forgetting) is taken
//! once downstream, as every record of the pipeline is.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::stage::{self, PipelineStage, Stage, StageError};
use bus::{Bus, BusError, Record};
use model::pipeline::topics;
use model::timestamp::Timestamp;
use store::{ScheduledRecord, Store, StoreError, SCHEDULE_SHARDS};
use tokio::sync::watch;

/// Headers of a record on `scheduled`: when it is due (ms since the epoch), the topic it
/// goes to then, and what it is (its id, unique per thing scheduled).
pub mod headers {
    pub const DUE_AT: &str = "postino-due-at";
    pub const TARGET: &str = "postino-target-topic";
    pub const ID: &str = "postino-scheduled-id";
}

/// `record`, to go on `target` at `due` instead of now: the record to publish on
/// `scheduled`. `id` names what it is.
pub fn defer(mut record: Record, target: &str, id: &str, due: Timestamp) -> Record {
    record.headers.extend([
        (headers::DUE_AT.to_string(), due.unix_millis().to_string()),
        (headers::TARGET.to_string(), target.to_string()),
        (headers::ID.to_string(), id.to_string()),
    ]);
    record
}

/// Consumer group of the intake.
pub const GROUP: &str = "scheduler";

/// The stage that keeps what arrives on `scheduled` in the store (or publishes it at once
/// when it is due already).
#[derive(Debug)]
pub struct IntakeStage {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
}

impl IntakeStage {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        Self { store, bus }
    }

    async fn take(&self, records: &[&ScheduledRecord]) -> Result<(), StageError> {
        let now = Timestamp::now().unix_millis();
        let (due, later): (Vec<_>, Vec<_>) = records.iter().partition(|r| r.due_ms <= now);
        publish(&*self.bus, due.into_iter().copied()).await?;
        self.store
            .schedule(later.into_iter().map(|r| (*r).clone()).collect())
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))
    }
}

impl PipelineStage for IntakeStage {
    const TOPIC: &'static str = topics::SCHEDULED;
    const GROUP: &'static str = GROUP;
}

#[async_trait]
impl Stage for IntakeStage {
    type Item = ScheduledRecord;

    fn decode(&self, record: &Record) -> Result<ScheduledRecord, String> {
        let header = |name: &str| {
            record
                .header(name)
                .ok_or_else(|| format!("no {name} header"))
        };
        let due_ms = header(headers::DUE_AT)?
            .parse()
            .map_err(|_| format!("{} is not a number of milliseconds", headers::DUE_AT))?;
        let topic = header(headers::TARGET)?.to_string();
        if !topics::DEFERRABLE.contains(&topic.as_str()) {
            return Err(format!(
                "{topic:?} is not a topic records are scheduled for"
            ));
        }
        let id = header(headers::ID)?.to_string();
        let kept = record
            .headers
            .iter()
            .filter(|(name, _)| {
                ![headers::DUE_AT, headers::TARGET, headers::ID].contains(&name.as_str())
            })
            .cloned()
            .collect();
        Ok(ScheduledRecord {
            id,
            due_ms,
            topic,
            key: record.key.clone(),
            headers: kept,
            payload: record.payload.clone(),
        })
    }

    async fn process(&self, items: &[&ScheduledRecord]) -> Vec<Result<(), StageError>> {
        stage::by_batch(items, |batch| async move { self.take(&batch).await }).await
    }
}

/// Publishes scheduled records on their topics, a log write per topic.
async fn publish<'a>(
    bus: &dyn Bus,
    records: impl IntoIterator<Item = &'a ScheduledRecord>,
) -> Result<(), BusError> {
    let mut by_topic: BTreeMap<&str, Vec<Record>> = BTreeMap::new();
    for r in records {
        by_topic.entry(r.topic.as_str()).or_default().push(Record {
            key: r.key.clone(),
            headers: r.headers.clone(),
            payload: r.payload.clone(),
        });
    }
    for (topic, records) in by_topic {
        bus.publish(topic, records).await?;
    }
    Ok(())
}

/// The lease a releaser holds.
const LEASE: &str = "scheduler";
/// Where the releaser has released everything before (a minute since the epoch).
const RELEASED_THROUGH: &str = "scheduler.released_through";
/// Minutes re-read after they pass, so a record kept a little late (processes' clocks
/// differ) is still released.
const SETTLE_MINUTES: i64 = 2;
/// The most minutes one round reads, so a releaser far behind catches up in steps.
const MINUTES_PER_ROUND: i64 = 60;

/// Releases due records, while it holds the lease.
#[derive(Debug)]
pub struct Releaser {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    holder: String,
    every: Duration,
}

impl Releaser {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        Self {
            store,
            bus,
            holder: ulid::Ulid::new().to_string(),
            every: Duration::from_secs(1),
        }
    }

    /// Releases until `stopped`; a store or log that is down is tried again next round.
    pub async fn run(self, mut stopped: watch::Receiver<bool>) -> Result<(), BusError> {
        let lease_for = self.every * 15;
        loop {
            match self.store.hold_lease(LEASE, &self.holder, lease_for).await {
                Ok(true) => {
                    if let Err(err) = self.round().await {
                        tracing::warn!(error = %err, "releasing scheduled records failed; trying again");
                    }
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "cannot take the scheduler's lease"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stopped.changed() => return Ok(()),
            }
            if *stopped.borrow() {
                return Ok(());
            }
        }
    }

    /// Releases what is due in the minutes from where the last round stopped to now.
    pub async fn round(&self) -> Result<usize, ReleaseError> {
        let now = Timestamp::now().unix_millis();
        let this_minute = now.div_euclid(60_000);
        let from = match self.store.get_setting(RELEASED_THROUGH).await? {
            Some(text) => text.parse().unwrap_or(this_minute),
            None => this_minute - SETTLE_MINUTES,
        };
        let mut released = 0;
        let mut done_through = None;
        for minute in from..=this_minute.min(from + MINUTES_PER_ROUND) {
            for shard in 0..SCHEDULE_SHARDS {
                let kept = self.store.scheduled_in(minute, shard).await?;
                let due: Vec<_> = kept.iter().filter(|r| r.due_ms <= now).collect();
                if due.is_empty() {
                    continue;
                }
                publish(&*self.bus, due.iter().copied()).await?;
                let ids: Vec<String> = due.iter().map(|r| r.id.clone()).collect();
                self.store.unschedule(minute, shard, &ids).await?;
                released += ids.len();
            }
            if minute < this_minute - SETTLE_MINUTES {
                done_through = Some(minute + 1);
            }
        }
        if let Some(next) = done_through {
            self.store
                .put_setting(RELEASED_THROUGH, &next.to_string())
                .await?;
        }
        if released > 0 {
            tracing::debug!(released, "scheduled records released");
        }
        Ok(released)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Log(#[from] BusError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use bus::embedded::EmbeddedBus;
    use store::sqlite::SqliteStore;

    fn deferred(id: &str, due: Timestamp) -> Record {
        let mut record = Record::new(b"citizen".to_vec(), format!("{{\"id\":\"{id}\"}}"));
        record
            .headers
            .push((bus::stage::headers::REQUEST_ID.into(), "r-1".into()));
        defer(record, topics::BULK_MESSAGES, id, due)
    }

    #[tokio::test]
    async fn a_deferred_record_waits_in_the_store_and_goes_on_its_topic_when_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
        let intake = IntakeStage::new(Arc::clone(&store), Arc::clone(&bus));
        let now = Timestamp::now().unix_millis();
        let records = [
            deferred("past", Timestamp::from_unix_millis(now - 1000)),
            deferred("soon", Timestamp::from_unix_millis(now + 300)),
            deferred("tomorrow", Timestamp::from_unix_millis(now + 86_400_000)),
        ];
        let items: Vec<_> = records
            .iter()
            .map(|r| intake.decode(r).expect("decodes"))
            .collect();
        assert_eq!(
            items[0].headers,
            [(
                bus::stage::headers::REQUEST_ID.to_string(),
                "r-1".to_string()
            )]
        );
        let refs: Vec<_> = items.iter().collect();
        assert!(intake.process(&refs).await.iter().all(Result::is_ok));

        let mut out = bus
            .subscribe(topics::BULK_MESSAGES, "t")
            .await
            .expect("subscribe");
        // Due already: published at once.
        let first = bus::conformance::collect(&mut *out, 1).await;
        assert_eq!(first[0].record.payload, br#"{"id":"past"}"#);
        assert_eq!(first[0].record.request_id(), Some("r-1"));

        let releaser = Releaser::new(Arc::clone(&store), Arc::clone(&bus));
        let mut released = 0;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while released == 0 {
            assert!(std::time::Instant::now() < deadline, "never released");
            released = releaser.round().await.expect("round");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(released, 1, "only what is due");
        let next = bus::conformance::collect(&mut *out, 1).await;
        assert_eq!(next[0].record.payload, br#"{"id":"soon"}"#);
        assert_eq!(next[0].record.key, b"citizen");
        // Released once: a second round finds nothing more due.
        assert_eq!(releaser.round().await.expect("round"), 0);
    }

    #[test]
    fn a_record_without_its_schedule_or_for_another_topic_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("bus");
        let intake = IntakeStage::new(store, bus);
        let plain = Record::new("k", "{}");
        assert!(intake.decode(&plain).is_err());
        let elsewhere = defer(
            Record::new("k", "{}"),
            "profile-changes",
            "x",
            Timestamp::now(),
        );
        assert!(intake.decode(&elsewhere).is_err());
        let mut bad_time = deferred("x", Timestamp::now());
        for (name, value) in &mut bad_time.headers {
            if name == headers::DUE_AT {
                *value = "soon".into();
            }
        }
        assert!(intake.decode(&bad_time).is_err());
    }
}
