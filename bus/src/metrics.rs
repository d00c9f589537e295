//! The log's and the stages' series (README, "Metrics"), and the events that record them.
//! Topic and group names are the label values: a fixed set per deployment.

use std::time::Duration;

use telemetry::metrics::{counter, gauge, histogram};
use telemetry::Metric;

pub const PUBLISH_DURATION: Metric = Metric::histogram(
    "postino_log_publish_duration_seconds",
    "Time for a publish to become durable (embedded: written and synced; Kafka: acknowledged by all in-sync replicas).",
    &["topic"],
);
pub const PUBLISHED: Metric = Metric::counter(
    "postino_log_records_published_total",
    "Records published, by topic.",
    &["topic"],
);
pub const PUBLISH_ERRORS: Metric = Metric::counter(
    "postino_log_publish_errors_total",
    "Publishes that failed (the records were not taken), by topic.",
    &["topic"],
);
pub const CONSUMED: Metric = Metric::counter(
    "postino_log_records_consumed_total",
    "Records handed to a consumer group, by topic and group (a record delivered again after a restart counts again).",
    &["topic", "group"],
);
pub const LAG: Metric = Metric::gauge(
    "postino_log_consumer_lag_records",
    "Records published that a consumer group has not committed yet, by topic, partition and group; read from the log every 5 s.",
    &["topic", "partition", "group"],
);
pub const RETRIED: Metric = Metric::counter(
    "postino_log_records_retried_total",
    "Records a stage sent to <topic>.retry to be tried again later, by the stage's topic.",
    &["topic"],
);
pub const DEAD_LETTERED: Metric = Metric::counter(
    "postino_log_records_dead_lettered_total",
    "Records a stage sent to <topic>.dlq (malformed, permanently failing, or out of attempts), by the stage's topic.",
    &["topic"],
);
pub const BATCH_DURATION: Metric = Metric::histogram(
    "postino_stage_batch_duration_seconds",
    "Time a stage took to process one batch, by the topic it consumes (the retry lane as <topic>.retry).",
    &["topic"],
);
pub const BATCH_RECORDS: Metric = Metric::histogram(
    "postino_stage_batch_records",
    "Records per batch a stage processed, by topic: near the batch size (512) means the stage is saturated.",
    &["topic"],
);
pub const HOLDS: Metric = Metric::counter(
    "postino_stage_holds_total",
    "Times a stage held its batch because a dependency every record needs (store, log) was unavailable, by topic.",
    &["topic"],
);

pub const ALL: &[Metric] = &[
    PUBLISH_DURATION,
    PUBLISHED,
    PUBLISH_ERRORS,
    CONSUMED,
    LAG,
    RETRIED,
    DEAD_LETTERED,
    BATCH_DURATION,
    BATCH_RECORDS,
    HOLDS,
];

/// One topic's publish series, registered (errors at zero) on its first publish.
#[derive(Debug, Clone)]
pub struct TopicPublishes {
    published: telemetry::metrics::Counter,
    errors: telemetry::metrics::Counter,
    duration: telemetry::metrics::Histogram,
}

impl TopicPublishes {
    pub fn new(topic: &str) -> Self {
        Self {
            published: counter!(PUBLISHED.name, "topic" => topic.to_string()),
            errors: counter!(PUBLISH_ERRORS.name, "topic" => topic.to_string()),
            duration: histogram!(PUBLISH_DURATION.name, "topic" => topic.to_string()),
        }
    }

    /// A publish of `records` ended, taken (`ok`) or not, after `elapsed`.
    pub fn emit(&self, records: usize, elapsed: Duration, ok: bool) {
        if ok {
            self.published.increment(records as u64);
            self.duration.record(telemetry::seconds(elapsed));
        } else {
            self.errors.increment(1);
        }
    }
}

/// A consumer group's view of one topic: its counter registered once.
#[derive(Debug, Clone)]
pub struct Consumed {
    records: telemetry::metrics::Counter,
}

impl Consumed {
    pub fn new(topic: &str, group: &str) -> Self {
        Self {
            records: counter!(CONSUMED.name, "topic" => topic.to_string(), "group" => group.to_string()),
        }
    }

    pub fn emit(&self, records: usize) {
        self.records.increment(records as u64);
    }
}

/// A consumer group's lag, as the log reported it.
#[derive(Debug)]
pub struct Lagging<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    pub lags: &'a [crate::PartitionLag],
}

impl Lagging<'_> {
    pub fn emit(self) {
        for lag in self.lags {
            gauge!(LAG.name, "topic" => self.topic.to_string(), "partition" => lag.partition.to_string(), "group" => self.group.to_string())
                .set(lag.records as f64);
        }
    }
}

/// One stage lane's series, registered once when it starts.
#[derive(Debug, Clone)]
pub struct StageLane {
    retried: telemetry::metrics::Counter,
    dead_lettered: telemetry::metrics::Counter,
    batch_duration: telemetry::metrics::Histogram,
    batch_records: telemetry::metrics::Histogram,
    holds: telemetry::metrics::Counter,
}

impl StageLane {
    /// `topic` is the stage's topic (retries and dead letters count against it); `source`
    /// what this lane reads (the topic or its retry lane).
    pub fn new(topic: &str, source: &str) -> Self {
        Self {
            retried: counter!(RETRIED.name, "topic" => topic.to_string()),
            dead_lettered: counter!(DEAD_LETTERED.name, "topic" => topic.to_string()),
            batch_duration: histogram!(BATCH_DURATION.name, "topic" => source.to_string()),
            batch_records: histogram!(BATCH_RECORDS.name, "topic" => source.to_string()),
            holds: counter!(HOLDS.name, "topic" => source.to_string()),
        }
    }

    /// A batch was processed (failures sent on included).
    pub fn batch_done(&self, records: usize, elapsed: Duration) {
        self.batch_records.record(records as f64);
        self.batch_duration.record(telemetry::seconds(elapsed));
    }

    /// Records were sent on: to the retry lane, or dead-lettered.
    pub fn sent_on(&self, retried: usize, dead_lettered: usize) {
        self.retried.increment(retried as u64);
        self.dead_lettered.increment(dead_lettered as u64);
    }

    /// The batch is held: a dependency is unavailable.
    pub fn held(&self) {
        self.holds.increment(1);
    }
}
