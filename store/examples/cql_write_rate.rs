//! Measures the ScyllaDB store's inbox writes next to the raw write rate of the same CQL
//! server, for BENCHMARKS.md: the same deliveries (an inbox row, its bucket's row and a
//! message row each) written (1) with plain prepared INSERTs, all in flight at once up to
//! the store's concurrency, and (2) through `ScyllaStore::deliver` in a stage's batches.
//!
//! Needs a CQL server: `scripts/servers.sh start cassandra && eval "$(scripts/servers.sh env)"`.
//! `cargo run --release -p store --features scylla,testsuite --example cql_write_rate -- [messages] [batch]`

use std::time::Instant;

use futures::StreamExt;
use scylla::client::session_builder::SessionBuilder;
use store::conformance::sample_deliveries;
use store::{test_cql, MessageStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(512);
    let address = test_cql::address();
    let settings = test_cql::settings();
    let store = test_cql::store().await;
    println!(
        "{n} deliveries to {address}, batches of {batch}, {} statements in flight",
        settings.concurrency
    );

    // (1) Raw: the store's own tables, the same rows, prepared statements, no JSON made
    // while timing, as many in flight as the store allows itself.
    let session = SessionBuilder::new()
        .known_nodes(&address.nodes)
        .use_keyspace(address.keyspace.as_str(), true)
        .build()
        .await?;
    let inbox = session
        .prepare("INSERT INTO inbox (fc, bucket, id, body) VALUES (?, ?, ?, ?)")
        .await?;
    let bucket = session
        .prepare("INSERT INTO inbox_buckets (fc, bucket) VALUES (?, ?)")
        .await?;
    let message = session
        .prepare(
            "UPDATE messages USING TIMESTAMP 2 SET message = ?, status = 'PROCESSED', \
             updated_at = '2026-01-01T00:00:00.000Z' WHERE id = ?",
        )
        .await?;
    let raw_rows: Vec<(String, i32, String, String, String)> = sample_deliveries(n, n.min(100_000))
        .iter()
        .map(|r| {
            let m = &r.message;
            (
                m.fiscal_code.as_str().to_string(),
                i32::try_from(m.id.timestamp_ms() / (30 * 24 * 3600 * 1000)).unwrap_or(0),
                m.id.to_string(),
                serde_json::to_string(&store::InboxItem::of(m)).unwrap_or_default(),
                serde_json::to_string(m).unwrap_or_default(),
            )
        })
        .collect();
    let start = Instant::now();
    let writes = futures::stream::iter(raw_rows.iter().map(|(fc, b, id, item, body)| {
        let (session, inbox, bucket, message) = (&session, &inbox, &bucket, &message);
        async move {
            futures::try_join!(
                session.execute_unpaged(inbox, (fc, b, id, item)),
                session.execute_unpaged(bucket, (fc, b)),
                session.execute_unpaged(message, (body, id)),
            )
        }
    }))
    .buffer_unordered(settings.concurrency / 3);
    let failed = writes
        .filter(|r| futures::future::ready(r.is_err()))
        .count()
        .await;
    let raw = n as f64 / start.elapsed().as_secs_f64();
    println!("raw CQL:                {raw:>9.0} deliveries/s ({failed} failed)");

    // (2) Postino's store, a stage's batch at a time.
    let rows = sample_deliveries(n, n.min(100_000));
    let start = Instant::now();
    for chunk in rows.chunks(batch) {
        store.deliver(chunk.to_vec()).await?;
    }
    let postino = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "ScyllaStore::deliver:   {postino:>9.0} deliveries/s  ({:.0}% of raw)",
        100.0 * postino / raw
    );
    Ok(())
}
