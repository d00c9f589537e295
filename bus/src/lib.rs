//! The log between Postino's stages (ARCHITECTURE.md §2): what a stage publishes is durable when
//! `publish` returns, and a consumer group sees every record of a topic, in order per key,
//! until it commits past it.
//!
//! One trait, [`Bus`], with the embedded log ([`embedded::EmbeddedBus`]) as the zero-set-up
//! default; Kafka implements the same trait. [`conformance`] is the suite every
//! implementation passes, and [`stage`] the consume-process-commit loop every stage runs.

use std::time::Duration;

use async_trait::async_trait;

#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod embedded;
pub mod kafka;
pub mod metered;
pub mod metrics;
pub mod stage;
#[cfg(all(feature = "testsuite", feature = "kafka"))]
pub mod test_kafka;

/// One record: `key` decides the partition (Postino uses the citizen's keyed hash, so one
/// citizen's records stay in order), `headers` carry metadata such as dead-letter reasons.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl Record {
    pub fn new(key: impl Into<Vec<u8>>, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            key: key.into(),
            headers: Vec::new(),
            payload: payload.into(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The id of the request this record came from, if it carries one.
    pub fn request_id(&self) -> Option<&str> {
        self.header(stage::headers::REQUEST_ID)
    }
}

/// What a stage carries from a record it consumed to the records it makes of it: the key
/// (the citizen's partition, so their order holds) and the id of the request it came from
/// (header [`stage::headers::REQUEST_ID`]), so one message can be followed across roles.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    pub key: Vec<u8>,
    pub request_id: Option<String>,
}

impl Lineage {
    pub fn of(record: &Record) -> Self {
        Self {
            key: record.key.clone(),
            request_id: record.request_id().map(str::to_string),
        }
    }

    /// A record of `payload` with this key and request id, when only one is made of it.
    pub fn into_record(self, payload: Vec<u8>) -> Record {
        let mut record = Record::new(self.key, payload);
        if let Some(id) = self.request_id {
            record
                .headers
                .push((stage::headers::REQUEST_ID.to_string(), id));
        }
        record
    }

    /// A record of `payload` with this key and request id.
    pub fn record(&self, payload: Vec<u8>) -> Record {
        let mut record = Record::new(self.key.clone(), payload);
        if let Some(id) = &self.request_id {
            record
                .headers
                .push((stage::headers::REQUEST_ID.to_string(), id.clone()));
        }
        record
    }
}

/// A record as a consumer receives it, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub record: Record,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum BusError {
    /// The log cannot take or give records now (disk, broker); trying later may work.
    #[error("the log is unavailable: {0}")]
    Unavailable(String),
    #[error("invalid topic name {0:?}: use letters, digits, '.', '_' and '-'")]
    InvalidTopic(String),
    #[error("invalid consumer group name {0:?}: use 1 to 255 bytes")]
    InvalidGroup(String),
    /// A record the log cannot hold (too large, too many headers); sending it again fails too.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    #[error("the log is closed")]
    Closed,
    /// This consumer no longer owns the partitions it tried to commit (the group rebalanced,
    /// e.g. after it outstayed the poll interval); their new owner resumes from the last
    /// commit. Polling again rejoins the group.
    #[error("the partitions were reassigned: {0}")]
    Revoked(String),
}

impl BusError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            Self::InvalidTopic(_)
                | Self::InvalidGroup(_)
                | Self::InvalidRecord(_)
                | Self::Revoked(_)
        )
    }
}

/// The log.
#[async_trait]
pub trait Bus: Send + Sync + std::fmt::Debug + 'static {
    /// Appends `records` to `topic`; returns only once they are durable. Records with the
    /// same key are delivered in the order given.
    async fn publish(&self, topic: &str, records: Vec<Record>) -> Result<(), BusError>;

    /// Joins consumer group `group` on `topic`, resuming after its last commit.
    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError>;

    /// Whether the log answers now (for readiness probes): an error when it cannot be
    /// reached. A log in this process's own files always answers.
    async fn check(&self) -> Result<(), BusError> {
        Ok(())
    }

    /// How far consumer group `group` is behind on each partition of `topic`: records
    /// published that it has not committed. Empty when the log cannot tell.
    async fn lag(&self, _topic: &str, _group: &str) -> Result<Vec<PartitionLag>, BusError> {
        Ok(Vec::new())
    }
}

/// A consumer group's distance from the end of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    /// Records published to the partition that the group has not committed.
    pub records: i64,
}

/// One consumer's view of a topic.
#[async_trait]
pub trait Subscription: Send + std::fmt::Debug {
    /// Returns up to `max` records, waiting up to `wait` for the first; an empty answer
    /// means nothing arrived in time. Records not committed are delivered again after a
    /// restart or rebalance.
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, BusError>;

    /// Marks `done` (and everything before them in their partitions) as processed.
    async fn commit(&mut self, done: &[Delivered]) -> Result<(), BusError>;
}

/// Topic names become directory names or broker topics: keep them to a safe alphabet (and,
/// as Kafka does, refuse `.` and `..`).
pub fn check_topic(topic: &str) -> Result<(), BusError> {
    let ok = !topic.is_empty()
        && topic.len() <= 200
        && topic != "."
        && topic != ".."
        && topic
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(BusError::InvalidTopic(topic.to_string()))
    }
}

/// Group names are stored with each commit: keep them short and non-empty.
pub fn check_group(group: &str) -> Result<(), BusError> {
    if group.is_empty() || group.len() > 255 {
        return Err(BusError::InvalidGroup(group.to_string()));
    }
    Ok(())
}
