//! Produce and consume rates of the Kafka bus next to the raw rate of the same broker with
//! a plain rdkafka producer and consumer, measured in one run, for BENCHMARKS.md. Starts its
//! own Kafka broker (see `bus::test_kafka`).
//!
//! `cargo run --release -p bus --example kafka_rate -- [records] [payload_bytes]`

use std::time::{Duration, Instant};

use bus::kafka::KafkaBus;
use bus::{Bus, Record};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

const BATCH: usize = 512;

fn records(n: usize, size: usize) -> Vec<Record> {
    (0..n)
        .map(|i| {
            Record::new(
                format!("citizen-{}", i % 1000).into_bytes(),
                vec![b'x'; size],
            )
        })
        .collect()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let size: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(600);
    let broker = bus::test_kafka::own();
    let config = broker.config();
    println!(
        "{n} records of {size} bytes, Kafka (scripts/servers.sh) on {}",
        broker.bootstrap
    );

    // Raw: a plain idempotent acks=all producer, every send in flight at once.
    let bus = KafkaBus::connect(config.clone())?;
    bus.ensure_topic("raw").await?;
    bus.ensure_topic("bus").await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("broker.address.family", "v4")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("linger.ms", "2")
        .create()?;
    let data = records(n, size);
    // Warm both producers up (connections, metadata, producer id) outside the timing.
    bus.ensure_topic("warm").await?;
    let warm = records(1_000, size);
    bus.publish("warm", warm.clone()).await?;
    for r in &warm[..100] {
        producer
            .send(
                FutureRecord::to("warm").key(&r.key).payload(&r.payload),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| e)?;
    }
    let start = Instant::now();
    let sends = data.iter().map(|r| {
        producer.send(
            FutureRecord::to("raw").key(&r.key).payload(&r.payload),
            Timeout::After(Duration::from_secs(30)),
        )
    });
    for result in futures_util::future::join_all(sends).await {
        result.map_err(|(e, _)| e)?;
    }
    let raw_produce = n as f64 / start.elapsed().as_secs_f64();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", "raw-reader")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&["raw"])?;
    let start = Instant::now();
    for _ in 0..n {
        consumer.recv().await?;
    }
    let raw_consume = n as f64 / start.elapsed().as_secs_f64();

    // The bus: publish in batches as the stages do; consume with poll + commit.
    let start = Instant::now();
    let mut pending = Vec::new();
    for chunk in data.chunks(BATCH) {
        pending.push(bus.publish("bus", chunk.to_vec()));
        if pending.len() == 8 {
            for r in futures_util::future::join_all(pending.drain(..)).await {
                r?;
            }
        }
    }
    for r in futures_util::future::join_all(pending).await {
        r?;
    }
    let bus_produce = n as f64 / start.elapsed().as_secs_f64();

    let mut sub = bus.subscribe("bus", "bus-reader").await?;
    let start = Instant::now();
    let mut got = 0;
    while got < n {
        let batch = sub.poll(BATCH, Duration::from_secs(5)).await?;
        got += batch.len();
        sub.commit(&batch).await?;
    }
    let bus_consume = n as f64 / start.elapsed().as_secs_f64();

    println!("produce: raw {raw_produce:>8.0} records/s   bus {bus_produce:>8.0} records/s  ({:.0}% of raw)", 100.0 * bus_produce / raw_produce);
    println!("consume: raw {raw_consume:>8.0} records/s   bus {bus_consume:>8.0} records/s  ({:.0}% of raw; bus commits every poll)", 100.0 * bus_consume / raw_consume);
    Ok(())
}
