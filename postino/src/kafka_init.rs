//! `postino kafka init`: every topic of the pipeline, with its retry and dead-letter twins, and
//! `profile-changes` (kept as long as the routers' caches keep a citizen), created from
//! configuration with its partitions, replication, retention and cleanup policy. Topics
//! that exist are compared with the configuration and reported where they differ, but left
//! alone, so running it again changes nothing.

use bus::kafka::TopicSpec;
use bus::stage::{dead_letter_topic, retry_topic};
use model::pipeline::topics;

use crate::config::Config;

/// The topics Postino needs, as configured.
pub fn specs(config: &Config) -> Vec<TopicSpec> {
    let spec = |name: String, retention_ms: u64| TopicSpec {
        name,
        partitions: config.kafka.partitions,
        replication_factor: config.kafka.replication_factor,
        config: vec![
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), retention_ms.to_string()),
        ],
    };
    let pipeline = topics::PIPELINE.iter().flat_map(|t| {
        [
            spec(t.to_string(), config.kafka.retention_ms),
            spec(retry_topic(t), config.kafka.retention_ms),
            spec(dead_letter_topic(t), config.kafka.dlq_retention_ms),
        ]
    });
    // A router that starts without a group of its own reads the whole topic: keep only what
    // a cache could still hold, up to its time to live.
    let changes = spec(
        topics::PROFILE_CHANGES.to_string(),
        config.router.cache_ttl_secs.saturating_mul(1000),
    );
    pipeline.chain([changes]).collect()
}

/// Without the Kafka client there is nothing to create topics with.
#[cfg(not(feature = "kafka"))]
pub async fn init(_: &Config) -> anyhow::Result<()> {
    anyhow::bail!("this build of Postino has no Kafka client (built without the `kafka` feature)")
}

/// Creates what is missing and prints, per topic, what it did.
#[cfg(feature = "kafka")]
pub async fn init(config: &Config) -> anyhow::Result<()> {
    use anyhow::Context;
    use bus::kafka::{KafkaBus, TopicOutcome};

    use crate::config::BusChoice;

    let BusChoice::Kafka(kafka) = config.bus_choice() else {
        anyhow::bail!("`postino kafka init` needs bus = \"kafka://host:port\" (--bus, POSTINO_BUS or the config file)");
    };
    let bus = KafkaBus::connect(kafka)?;
    let outcomes = bus
        .init_topics(&specs(config))
        .await
        .context("cannot create the topics")?;
    for outcome in outcomes {
        match outcome {
            TopicOutcome::Created(name) => println!(
                "created {name} ({} partitions, replication factor {})",
                config.kafka.partitions, config.kafka.replication_factor
            ),
            TopicOutcome::Existed(name) => println!("exists  {name} (as configured)"),
            TopicOutcome::Differs { name, differences } => println!(
                "differs {name}: {} (left as it is; change it with the cluster's tools, e.g. kafka-configs.sh --alter, or kafka-topics.sh --alter for more partitions)",
                differences.join("; ")
            ),
        }
    }
    Ok(())
}
