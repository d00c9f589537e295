//! Measures the embedded store's write ceiling next to Postino's own inbox writes, for
//! BENCHMARKS.md: the same deliveries (an inbox row and a message row each) written
//! (1) with plain SQLite statements in batched transactions, and (2) through
//! `SqliteStore::deliver`, which adds JSON bodies and the group-commit writer.
//!
//! `cargo run --release -p store --example raw_write_rate -- [messages] [batch]`

use std::sync::Arc;
use std::time::Instant;

use rusqlite::params;
use store::conformance::sample_deliveries;
use store::sqlite::SqliteStore;
use store::{MessageRecord, MessageStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(200_000);
    let batch: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(512);
    let rows = sample_deliveries(n, n.min(100_000));
    let bytes: usize = rows
        .iter()
        .map(|r| serde_json::to_vec(&r.message).map(|v| v.len()).unwrap_or(0))
        .sum::<usize>()
        / n;
    println!("{n} deliveries, batches of {batch}, ~{bytes} bytes of message JSON each");

    // (1) Plain SQLite: the store's tables (layout 1) and settings (WAL, synchronous=FULL,
    // its page cache), the same rows, prepared statements, one transaction per batch.
    let dir = tempfile::tempdir()?;
    // Opened as the store opens its file: the same WAL, fsync and page cache settings.
    let conn = store::sqlite::db::open(&dir.path().join("raw.sqlite"))?;
    conn.execute_batch(
        "CREATE TABLE messages(id TEXT NOT NULL, rank INTEGER NOT NULL, status TEXT NOT NULL,
             rejection_reason TEXT, email TEXT, webhook TEXT, updated_at TEXT NOT NULL,
             message TEXT NOT NULL);
         CREATE UNIQUE INDEX messages_by_id ON messages(id);
         CREATE TABLE inbox(fc TEXT NOT NULL, id TEXT NOT NULL, is_read INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE UNIQUE INDEX inbox_by_citizen ON inbox(fc, id);",
    )?;
    let prepared: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            let m = &r.message;
            let item = serde_json::to_string(&store::InboxItem::of(m)).unwrap_or_default();
            (
                m.fiscal_code.as_str().to_string(),
                m.id.to_string(),
                item,
                serde_json::to_string(m).unwrap_or_default(),
            )
        })
        .collect();
    let start = Instant::now();
    for chunk in prepared.chunks(batch) {
        let tx = conn.unchecked_transaction()?;
        {
            let mut inbox = tx.prepare_cached(
                "INSERT INTO inbox(fc, id, is_read, body) VALUES (?1, ?2, 0, ?3)",
            )?;
            let mut msgs = tx.prepare_cached(
                "INSERT INTO messages(id, rank, status, updated_at, message)
                     VALUES (?1, 2, 'PROCESSED', '2026-01-01T00:00:00.000Z', ?2)",
            )?;
            for (fc, id, item, body) in chunk {
                inbox.execute(params![fc, id, item])?;
                msgs.execute(params![id, body])?;
            }
        }
        tx.commit()?;
    }
    let raw = n as f64 / start.elapsed().as_secs_f64();
    println!("raw SQLite:            {raw:>9.0} deliveries/s");

    // (2) Postino's store.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(dir.path())?);
    let batches: Vec<Vec<MessageRecord>> =
        rows.chunks(batch).map(<[MessageRecord]>::to_vec).collect();
    let start = Instant::now();
    runtime.block_on(async {
        for b in batches {
            store.deliver(b).await?;
        }
        Ok::<_, store::StoreError>(())
    })?;
    let postino = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "SqliteStore::deliver:  {postino:>9.0} deliveries/s  ({:.0}% of raw)",
        100.0 * postino / raw
    );
    Ok(())
}
