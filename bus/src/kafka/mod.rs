//! The log on Kafka (any Kafka-protocol cluster): its settings, always built, so that every
//! configuration reads the same; and, with the `kafka` feature (on in the `postino`
//! binary), the client itself ([`KafkaBus`], with rdkafka).
//!
//! Publishing uses an idempotent producer with `acks=all`, so `publish` returns only once
//! every in-sync replica has the records and retries never duplicate or reorder them.
//! Consumers join consumer groups with auto-commit off: a position is committed only when
//! the stage says its effects are durable. Records with the same key land in the same
//! partition, so per-key order holds while partitions proceed in parallel.

#[cfg(feature = "kafka")]
mod client;

use std::collections::BTreeMap;
use std::time::Duration;

#[cfg(feature = "kafka")]
pub use client::KafkaBus;

/// How to reach the cluster and how topics are created.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub bootstrap_servers: String,
    /// Partitions of a topic created on first use.
    pub partitions: i32,
    /// Replication factor of a topic created on first use.
    pub replication_factor: i32,
    /// How long a publish may wait for the cluster before it fails (and ingest answers 503).
    pub publish_timeout: Duration,
    /// Static group membership id of this process (`group.instance.id`); each group this
    /// process joins gets `<id>-<group>`, so ids stay unique per group.
    pub group_instance_id: Option<String>,
    /// Further librdkafka properties for every client.
    pub properties: KafkaProperties,
    /// Most a consumer fetches ahead of its stage, in KiB (`queued.max.messages.kbytes`).
    pub prefetch_kbytes: u32,
}

/// The `[kafka]` settings an operator sets; the cluster's address comes from `bus`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaSettings {
    /// Partitions of each topic Postino creates.
    pub partitions: i32,
    /// Replication factor of each topic Postino creates.
    pub replication_factor: i32,
    /// How long a publish waits for the cluster before ingest answers 503, in ms.
    pub publish_timeout_ms: u64,
    /// Retention of the pipeline topics `postino kafka init` creates, in ms (7 days: the
    /// longest `time_to_live`).
    pub retention_ms: u64,
    /// Retention of their `.dlq` topics, in ms (30 days: time to look at them).
    pub dlq_retention_ms: u64,
    /// Static group membership (KIP-345): a stable id for this process, such as a
    /// StatefulSet's pod name.
    pub group_instance_id: Option<String>,
    /// librdkafka properties for every client: security or tuning.
    pub properties: KafkaProperties,
    /// Most a consumer fetches ahead of its stage, in KiB (at least 1024).
    pub prefetch_kbytes: u32,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            partitions: 12,
            replication_factor: 1,
            publish_timeout_ms: 10_000,
            retention_ms: 7 * 24 * 3600 * 1000,
            dlq_retention_ms: 30 * 24 * 3600 * 1000,
            group_instance_id: None,
            properties: KafkaProperties::default(),
            prefetch_kbytes: 16 * 1024,
        }
    }
}

impl KafkaSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.partitions < 1 || self.replication_factor < 1 {
            return Err("kafka.partitions and kafka.replication_factor must be at least 1".into());
        }
        if self.prefetch_kbytes < 1024 {
            return Err("kafka.prefetch_kbytes must be at least 1024 (1 MiB)".into());
        }
        Ok(())
    }

    /// The clients' configuration for the cluster at `bootstrap_servers`.
    pub fn config(&self, bootstrap_servers: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            publish_timeout: Duration::from_millis(self.publish_timeout_ms),
            group_instance_id: self.group_instance_id.clone(),
            properties: self.properties.clone(),
            prefetch_kbytes: self.prefetch_kbytes,
        }
    }
}

/// librdkafka properties (`security.protocol`, `sasl.mechanism`, `sasl.username`,
/// `sasl.password`, `ssl.ca.location`…). `Debug` and `Serialize` hide the value of every
/// property whose name says password or secret.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct KafkaProperties(BTreeMap<String, String>);

impl KafkaProperties {
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

impl KafkaProperties {
    /// The properties as they may be shown.
    fn shown(&self) -> impl Iterator<Item = (&String, &str)> {
        let secret = |name: &str| name.contains("password") || name.contains("secret");
        self.0.iter().map(move |(name, value)| {
            let shown = if secret(name) { "<redacted>" } else { value };
            (name, shown)
        })
    }
}

impl std::fmt::Debug for KafkaProperties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.shown()).finish()
    }
}

impl serde::Serialize for KafkaProperties {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.shown())
    }
}

impl KafkaConfig {
    /// The default settings, for the cluster at `bootstrap_servers`.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaSettings::default().config(bootstrap_servers)
    }
}

/// A topic as `postino kafka init` creates it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    /// Topic configuration such as `retention.ms` and `cleanup.policy`.
    pub config: Vec<(String, String)>,
}

/// What `init_topics` did with one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    Created(String),
    /// It existed, as configured.
    Existed(String),
    /// It existed with other settings, listed; it was left as it is, because shrinking
    /// partitions is impossible and changing a live topic is a decision for its operator.
    Differs {
        name: String,
        differences: Vec<String>,
    },
}
