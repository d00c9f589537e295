//! The Kafka client: the [`Bus`] on a Kafka cluster, with rdkafka.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

use super::{KafkaConfig, TopicOutcome, TopicSpec};
use crate::{check_topic, Bus, BusError, Delivered, PartitionLag, Record, Subscription};

impl KafkaConfig {
    /// A client configuration: Postino's `defaults` for this kind of client, then the
    /// configured `properties`, which win.
    fn client(&self, defaults: &[(&str, String)]) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers);
        c.set("client.id", "postino");
        // IPv4 first: brokers that listen on 127.0.0.1 only must not be tried over ::1.
        c.set("broker.address.family", "v4");
        for (k, v) in defaults {
            c.set(*k, v);
        }
        for (k, v) in self.properties.iter() {
            c.set(k, v);
        }
        c
    }
}

fn unavailable(err: KafkaError) -> BusError {
    BusError::Unavailable(err.to_string())
}

pub struct KafkaBus {
    config: KafkaConfig,
    /// Replaced when it hits a fatal error (an idempotent producer cannot recover from one).
    producer: std::sync::RwLock<FutureProducer>,
    admin: Arc<AdminClient<DefaultClientContext>>,
    /// Topics known to exist, so publish does not ask the cluster every time.
    topics: Mutex<HashSet<String>>,
    /// One idle consumer per group whose lag is asked for: it reads the group's committed
    /// offsets without joining the group.
    lag_readers: Mutex<std::collections::HashMap<String, Arc<BaseConsumer>>>,
}

impl std::fmt::Debug for KafkaBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBus")
            .field("bootstrap_servers", &self.config.bootstrap_servers)
            .finish_non_exhaustive()
    }
}

impl KafkaBus {
    /// Creates the clients; the cluster is contacted on first use, not here.
    pub fn connect(config: KafkaConfig) -> Result<Arc<Self>, BusError> {
        let producer = Self::producer(&config)?;
        let admin = config.client(&[]).create().map_err(|e| {
            BusError::Unavailable(format!("cannot create the Kafka admin client: {e}"))
        })?;
        Ok(Arc::new(Self {
            config,
            producer: std::sync::RwLock::new(producer),
            admin: Arc::new(admin),
            topics: Mutex::new(HashSet::new()),
            lag_readers: Mutex::new(std::collections::HashMap::new()),
        }))
    }

    fn lag_reader(&self, group: &str) -> Result<Arc<BaseConsumer>, BusError> {
        let mut readers = self.lag_readers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reader) = readers.get(group) {
            return Ok(Arc::clone(reader));
        }
        let reader: BaseConsumer = self
            .config
            .client(&[
                ("group.id", group.to_string()),
                ("enable.auto.commit", "false".into()),
            ])
            .create()
            .map_err(|e| BusError::Unavailable(format!("cannot create a Kafka lag reader: {e}")))?;
        let reader = Arc::new(reader);
        readers.insert(group.to_string(), Arc::clone(&reader));
        Ok(reader)
    }

    fn producer(config: &KafkaConfig) -> Result<FutureProducer, BusError> {
        config
            .client(&[
                ("enable.idempotence", "true".into()),
                ("acks", "all".into()),
                ("compression.type", "lz4".into()),
                ("linger.ms", "2".into()),
                ("batch.num.messages", "10000".into()),
                (
                    "message.timeout.ms",
                    config.publish_timeout.as_millis().to_string(),
                ),
            ])
            .create()
            .map_err(|e| BusError::Unavailable(format!("cannot create the Kafka producer: {e}")))
    }

    /// After a fatal producer error, or an idempotence error that leaves the producer
    /// unusable (the broker fencing its epoch after a delivery timed out), only a new
    /// producer can publish again.
    fn replace_producer_if_broken(&self, failed: &FutureProducer, err: &KafkaError) {
        let broken_idempotence = matches!(
            err.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::OutOfOrderSequenceNumber
                    | RDKafkaErrorCode::InvalidProducerIdMapping
            )
        );
        let Some(reason) = failed
            .client()
            .fatal_error()
            .map(|(code, reason)| format!("{code}: {reason}"))
            .or_else(|| broken_idempotence.then(|| err.to_string()))
        else {
            return;
        };
        let mut current = self.producer.write().unwrap_or_else(|p| p.into_inner());
        if current.client().native_ptr() != failed.client().native_ptr() {
            return; // another publish already replaced it
        }
        match Self::producer(&self.config) {
            Ok(fresh) => {
                tracing::warn!(
                    reason,
                    "Kafka producer unusable; replaced it with a new one"
                );
                *current = fresh;
            }
            Err(err) => tracing::error!(error = %err, "cannot replace the failed Kafka producer"),
        }
    }

    /// Creates each topic in `specs` that is missing, with its partitions, replication and
    /// topic configuration; topics that exist are compared with their spec and left as
    /// they are. Safe to run again.
    pub async fn init_topics(&self, specs: &[TopicSpec]) -> Result<Vec<TopicOutcome>, BusError> {
        let mut outcomes = Vec::with_capacity(specs.len());
        for spec in specs {
            check_topic(&spec.name)?;
            let mut new = NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor),
            );
            for (key, value) in &spec.config {
                new = new.set(key, value);
            }
            let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
            let results = self
                .admin
                .create_topics([&new], &opts)
                .await
                .map_err(unavailable)?;
            for result in results {
                outcomes.push(match result {
                    Ok(name) => {
                        self.wait_until_visible(&name, spec.partitions).await?;
                        TopicOutcome::Created(name)
                    }
                    Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                        let differences = self.differences(spec).await?;
                        if differences.is_empty() {
                            TopicOutcome::Existed(name)
                        } else {
                            TopicOutcome::Differs { name, differences }
                        }
                    }
                    Err((name, code)) => {
                        return Err(BusError::Unavailable(format!(
                            "cannot create topic {name}: {code}"
                        )))
                    }
                });
            }
        }
        Ok(outcomes)
    }

    /// Waits until the cluster's metadata shows topic `name` with all its `partitions`. A
    /// broker answers a creation once its controller has it; the metadata reaches the
    /// brokers a moment later, and until then the topic reads as having no partitions. So
    /// "created" means usable, and a second `kafka init` right after compares real topics.
    async fn wait_until_visible(&self, name: &str, partitions: i32) -> Result<(), BusError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let admin = Arc::clone(&self.admin);
            let topic = name.to_string();
            let found = tokio::task::spawn_blocking(move || {
                admin
                    .inner()
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))
                    .map(|m| m.topics().first().map_or(0, |t| t.partitions().len()))
            })
            .await
            .map_err(|_| BusError::Closed)?
            .map_err(unavailable)?;
            if i32::try_from(found).is_ok_and(|found| found >= partitions) {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(BusError::Unavailable(format!(
                    "topic {name} was created but its {partitions} partitions did not appear in the cluster's metadata within 30 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How an existing topic differs from `spec`: partition count and topic configuration.
    async fn differences(&self, spec: &TopicSpec) -> Result<Vec<String>, BusError> {
        let mut differences = Vec::new();
        let admin = Arc::clone(&self.admin);
        let name = spec.name.clone();
        let partitions = tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(Some(&name), Duration::from_secs(10))
                .map(|m| m.topics().first().map(|t| t.partitions().len()))
        })
        .await
        .map_err(|_| BusError::Closed)?
        .map_err(unavailable)?;
        if let Some(found) = partitions {
            if i32::try_from(found).ok() != Some(spec.partitions) {
                differences.push(format!(
                    "has {found} partitions, configured {}",
                    spec.partitions
                ));
            }
        }
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let described = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(&spec.name)], &opts)
            .await
            .map_err(unavailable)?;
        for resource in described {
            let resource = resource.map_err(|code| {
                BusError::Unavailable(format!("cannot describe topic {}: {code}", spec.name))
            })?;
            for (key, wanted) in &spec.config {
                let actual = resource.get(key).and_then(|e| e.value.as_deref());
                if actual != Some(wanted.as_str()) {
                    differences.push(format!(
                        "{key} is {}, configured {wanted}",
                        actual.unwrap_or("unset")
                    ));
                }
            }
        }
        Ok(differences)
    }

    /// Creates `topic` with the configured partitions and replication if it is missing.
    pub async fn ensure_topic(&self, topic: &str) -> Result<(), BusError> {
        check_topic(topic)?;
        if self
            .topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let new = NewTopic::new(
            topic,
            self.config.partitions,
            TopicReplication::Fixed(self.config.replication_factor),
        );
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = self
            .admin
            .create_topics([&new], &opts)
            .await
            .map_err(unavailable)?;
        // Publishing before the cluster's metadata shows the topic's partitions could put a
        // key's first records on another partition than its later ones (out of order), so
        // wait: for every partition of a topic created here, for any of one another
        // process (or task) just created, whose metadata appears whole.
        for result in results {
            match result {
                Ok(_) => {
                    self.wait_until_visible(topic, self.config.partitions)
                        .await?
                }
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    self.wait_until_visible(topic, 1).await?
                }
                Err((name, code)) => {
                    return Err(BusError::Unavailable(format!(
                        "cannot create topic {name}: {code}"
                    )))
                }
            }
        }
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_string());
        Ok(())
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, topic: &str, records: Vec<Record>) -> Result<(), BusError> {
        if records.is_empty() {
            return Ok(());
        }
        self.ensure_topic(topic).await?;
        let producer = self
            .producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let sends = records.iter().map(|r| {
            let mut headers = OwnedHeaders::new_with_capacity(r.headers.len());
            for (key, value) in &r.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let record = FutureRecord::to(topic)
                .key(&r.key)
                .payload(&r.payload)
                .headers(headers);
            producer.send(record, Timeout::After(self.config.publish_timeout))
        });
        // Polling the sends in order enqueues them in order; the idempotent producer keeps
        // that order per partition through retries.
        let deliveries = futures_util::future::join_all(sends).await;
        if let Some((err, _)) = deliveries.into_iter().find_map(Result::err) {
            self.replace_producer_if_broken(&producer, &err);
            return Err(unavailable(err));
        }
        Ok(())
    }

    /// The cluster answers a metadata request within two seconds.
    async fn check(&self) -> Result<(), BusError> {
        let admin = Arc::clone(&self.admin);
        tokio::task::spawn_blocking(move || {
            admin
                .inner()
                .fetch_metadata(None, Duration::from_secs(2))
                .map(drop)
        })
        .await
        .map_err(|_| BusError::Closed)?
        .map_err(unavailable)
    }

    /// The group's committed offsets against each partition's high watermark, asked of the
    /// cluster (so a stage that is stuck still shows its lag growing).
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>, BusError> {
        check_topic(topic)?;
        let reader = self.lag_reader(group)?;
        let topic = topic.to_string();
        tokio::task::spawn_blocking(move || committed_lag(&reader, &topic))
            .await
            .map_err(|_| BusError::Closed)?
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        crate::check_group(group)?;
        self.ensure_topic(topic).await?;
        let mut defaults = vec![
            ("group.id", group.to_string()),
            ("enable.auto.commit", "false".into()),
            ("auto.offset.reset", "earliest".into()),
            ("enable.partition.eof", "false".into()),
            ("session.timeout.ms", "10000".into()),
            ("partition.assignment.strategy", "cooperative-sticky".into()),
            // Bounded prefetch: a stage that falls behind stops its consumer fetching at
            // this bound, so backpressure reaches the broker instead of memory.
            (
                "queued.max.messages.kbytes",
                self.config.prefetch_kbytes.to_string(),
            ),
            ("queued.min.messages", "10000".into()),
        ];
        if let Some(id) = &self.config.group_instance_id {
            defaults.push(("group.instance.id", format!("{id}-{group}")));
        }
        let consumer: StreamConsumer =
            self.config.client(&defaults).create().map_err(|e| {
                BusError::Unavailable(format!("cannot create the Kafka consumer: {e}"))
            })?;
        consumer.subscribe(&[topic]).map_err(unavailable)?;
        Ok(Box::new(KafkaSubscription {
            consumer: Arc::new(consumer),
        }))
    }
}

/// How long one lag question may take.
const LAG_TIMEOUT: Duration = Duration::from_secs(5);

/// Blocking: each partition's high watermark minus the group's committed offset (a group
/// that has committed nothing is behind by everything the partition holds).
fn committed_lag(reader: &BaseConsumer, topic: &str) -> Result<Vec<PartitionLag>, BusError> {
    let metadata = reader
        .fetch_metadata(Some(topic), LAG_TIMEOUT)
        .map_err(unavailable)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut list = TopicPartitionList::new();
    for p in &partitions {
        list.add_partition(topic, *p);
    }
    let committed = reader
        .committed_offsets(list, LAG_TIMEOUT)
        .map_err(unavailable)?;
    let mut lags = Vec::with_capacity(partitions.len());
    for p in partitions {
        let (low, high) = reader
            .fetch_watermarks(topic, p, LAG_TIMEOUT)
            .map_err(unavailable)?;
        let next = match committed.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(next)) => next,
            _ => low,
        };
        lags.push(PartitionLag {
            partition: p,
            records: (high - next).max(0),
        });
    }
    Ok(lags)
}

struct KafkaSubscription {
    consumer: Arc<StreamConsumer>,
}

impl std::fmt::Debug for KafkaSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSubscription").finish_non_exhaustive()
    }
}

fn delivered(m: &BorrowedMessage<'_>) -> Delivered {
    let headers = m
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Delivered {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        record: Record {
            key: m.key().unwrap_or_default().to_vec(),
            headers,
            payload: m.payload().unwrap_or_default().to_vec(),
        },
    }
}

#[async_trait]
impl Subscription for KafkaSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, BusError> {
        let first = match tokio::time::timeout(wait, self.consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(Err(err)) => return Err(unavailable(err)),
            Ok(Ok(m)) => delivered(&m),
        };
        let mut out = vec![first];
        // Take what is already fetched without waiting again.
        while out.len() < max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(delivered(&m)),
                Some(Err(err)) => return Err(unavailable(err)),
                None => break,
            }
        }
        Ok(out)
    }

    async fn commit(&mut self, done: &[Delivered]) -> Result<(), BusError> {
        let mut next: BTreeMap<(&str, i32), i64> = BTreeMap::new();
        for d in done {
            let slot = next.entry((d.topic.as_str(), d.partition)).or_insert(0);
            *slot = (*slot).max(d.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(topic, partition, Offset::Offset(offset))
                .map_err(unavailable)?;
        }
        let consumer = Arc::clone(&self.consumer);
        // A synchronous commit blocks until the coordinator answers: keep it off the runtime.
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|_| BusError::Closed)?
            .map_err(|err| match err.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::RebalanceInProgress
                    | RDKafkaErrorCode::FencedInstanceId
                    | RDKafkaErrorCode::StaleMemberEpoch,
                ) => BusError::Revoked(err.to_string()),
                _ => unavailable(err),
            })
    }
}
