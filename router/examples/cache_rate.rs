//! The router's profile cache, for BENCHMARKS.md: how fast the router's read of a batch's
//! citizens goes with a cold cache (every citizen read from the store) and a warm one (every
//! citizen in memory), on the store it is given; and how much memory a million cached
//! citizens take.
//!
//! `cargo run --release -p router --example cache_rate -- [citizens] [store]`, where store is
//! `sqlite` (a scratch file, the default) or `cql` (the server named by `POSTINO_TEST_CQL`:
//! `scripts/servers.sh start cassandra && eval "$(scripts/servers.sh env)"`). Memory is
//! given as the cache weighs it and as the process's resident memory grew over the passes,
//! which also holds what the store's client cached meanwhile (SQLite: its page caches, at
//! most 4 × 32 MiB).

use std::sync::Arc;
use std::time::Instant;

use model::profile::Profile;
use model::FiscalCode;
use router::cache::{ProfileCache, RouterSettings};
use store::conformance::fresh_fiscal_code;
use store::sqlite::SqliteStore;
use store::Store;

const BATCH: usize = 500;

/// Writes `n` default profiles, many at a time (the store commits them together).
async fn seed(store: &Arc<dyn Store>, n: usize) -> Vec<FiscalCode> {
    let citizens: Vec<FiscalCode> = (0..n).map(|_| fresh_fiscal_code()).collect();
    let profile = Profile::new_default();
    for chunk in citizens.chunks(2000) {
        let writes = chunk.iter().map(|fc| store.put_profile(fc, &profile));
        for written in futures::future::join_all(writes).await {
            written.expect("seed a profile");
        }
    }
    citizens
}

/// Routing reads per second over every citizen, a batch at a time.
async fn pass(cache: &ProfileCache, citizens: &[FiscalCode]) -> f64 {
    let start = Instant::now();
    for chunk in citizens.chunks(BATCH) {
        // As its follower does while it reads the log, so the cache stays in use.
        cache.heard_from_the_log();
        let pairs: Vec<_> = chunk
            .iter()
            .map(|fc| (fc.clone(), "svc-1".to_string()))
            .collect();
        cache.get_routing(&pairs).await.expect("routing");
    }
    citizens.len() as f64 / start.elapsed().as_secs_f64()
}

/// Resident memory of this process, in bytes (Linux).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let which = args.next().unwrap_or_else(|| "sqlite".into());
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = match which.as_str() {
        "cql" => Arc::new(store::test_cql::store().await),
        _ => Arc::new(SqliteStore::open(dir.path())?),
    };
    let cache = ProfileCache::new(
        Arc::clone(&store),
        4096,
        RouterSettings::default().cache_ttl(),
    );
    let seeding = Instant::now();
    let citizens = seed(&store, n).await;
    println!(
        "{n} citizens seeded in {:.1} s on {which}",
        seeding.elapsed().as_secs_f64()
    );
    let before = resident_bytes();
    let cold = pass(&cache, &citizens).await;
    let warm = pass(&cache, &citizens).await;
    let after = resident_bytes();
    let (entries, weight) = cache.usage();
    println!("cold cache (every citizen from the store): {cold:>10.0} citizens/s");
    println!(
        "warm cache (every citizen in memory):      {warm:>10.0} citizens/s  ({:.0}x)",
        warm / cold
    );
    println!(
        "{entries} cached: weighed {:.0} MiB; resident memory grew {:.0} MiB, {:.0} bytes a citizen",
        weight as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / 1_048_576.0,
        after.saturating_sub(before) as f64 / entries.max(1) as f64
    );
    Ok(())
}
