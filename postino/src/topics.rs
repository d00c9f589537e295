//! `postino kafka init`: every topic of the pipeline, and its dead-letter twin, created from
//! configuration with its partitions, replication, retention and cleanup policy. Topics
//! that exist are left alone, so running it again changes nothing.

use anyhow::Context;
use bus::kafka::{KafkaBus, TopicOutcome, TopicSpec};
use model::pipeline::topics;

use crate::config::{BusChoice, Config};

/// The topics Postino needs, as configured.
pub fn specs(config: &Config) -> Vec<TopicSpec> {
    let spec = |name: String, retention_ms: u64| TopicSpec {
        name,
        partitions: config.kafka_partitions,
        replication_factor: config.kafka_replication_factor,
        config: vec![
            ("cleanup.policy".into(), "delete".into()),
            ("retention.ms".into(), retention_ms.to_string()),
        ],
    };
    topics::PIPELINE
        .iter()
        .flat_map(|t| {
            [
                spec(t.to_string(), config.kafka_retention_ms),
                spec(topics::dead_letter(t), config.kafka_dlq_retention_ms),
            ]
        })
        .collect()
}

/// Creates what is missing and prints, per topic, what it did.
pub async fn init(config: &Config) -> anyhow::Result<()> {
    let BusChoice::Kafka(kafka) = config.bus()? else {
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
                config.kafka_partitions, config.kafka_replication_factor
            ),
            TopicOutcome::Existed(name) => println!("exists  {name} (left as it is)"),
        }
    }
    Ok(())
}
