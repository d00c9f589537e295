//! How fast the embedded log takes appends the way ingest makes them: many concurrent
//! publishers, one record each, every `publish` waiting for its group commit. Prints
//! records/s and the process's CPU time per record, which is steadier than the rate on a
//! shared machine.
//!
//! `cargo run --release -p bus --example embedded_append_rate -- [RECORDS] [PUBLISHERS] [BYTES]`

use std::sync::Arc;
use std::time::Instant;

use bus::embedded::EmbeddedBus;
use bus::{Bus, Record};

fn cpu_seconds() -> f64 {
    // utime + stime of this process, in clock ticks (100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let records: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let publishers: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(64);
    let bytes: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(600);
    let dir = tempfile::tempdir()?;
    let bus = EmbeddedBus::open(dir.path())?;
    bus.publish(
        "warmup",
        vec![Record::new(b"k".to_vec(), vec![b'x'; bytes])],
    )
    .await?;
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let bus = Arc::clone(&bus);
        let mine = records / publishers + usize::from(p < records % publishers);
        tasks.push(tokio::spawn(async move {
            for i in 0..mine {
                let key = format!("citizen-{p}-{i}").into_bytes();
                bus.publish("messages", vec![Record::new(key, vec![b'x'; bytes])])
                    .await?;
            }
            Ok::<_, bus::BusError>(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    let (elapsed, cpu) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    println!(
        "{records} appends of {bytes} bytes from {publishers} publishers: {:.0}/s, {:.1} µs CPU each",
        records as f64 / elapsed,
        cpu / records as f64 * 1e6
    );
    Ok(())
}
