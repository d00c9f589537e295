//! The embedded log against the bus conformance suite, plus what only a local log can show:
//! records survive closing and reopening the files, and the stage runner's failure paths.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::embedded::EmbeddedBus;
use bus::stage::{self, Stage, StageConfig, StageError};
use bus::{Bus, Record};
use tokio::sync::{watch, Mutex};

async fn embedded() -> (Arc<dyn Bus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("open");
    (bus, dir)
}

bus::bus_conformance!(embedded());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_records_survive_reopening_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let bus = EmbeddedBus::open(dir.path()).expect("open");
        let recs = (0..100)
            .map(|i| Record::new(b"k".to_vec(), format!("{i}")))
            .collect();
        bus.publish("durable", recs).await.expect("publish");
        let mut sub = bus.subscribe("durable", "g").await.expect("subscribe");
        let got = bus::conformance::collect(&mut *sub, 30).await;
        sub.commit(&got).await.expect("commit");
    }
    let bus = EmbeddedBus::open(dir.path()).expect("reopen");
    let mut sub = bus.subscribe("durable", "g").await.expect("subscribe");
    let got = bus::conformance::collect(&mut *sub, 70).await;
    assert_eq!(got.len(), 70);
    assert_eq!(got[0].record.payload, b"30");
    assert_eq!(got[69].record.payload, b"99");
}

/// A stage that records what it processed, fails transiently a few times, and refuses
/// payloads starting with "poison" permanently.
#[derive(Debug, Default)]
struct Recorder {
    seen: Mutex<Vec<String>>,
    transient_failures_left: Mutex<u32>,
    dead: Mutex<Vec<String>>,
}

#[async_trait]
impl Stage for Recorder {
    type Item = String;
    fn decode(&self, record: &Record) -> Result<String, String> {
        String::from_utf8(record.payload.clone()).map_err(|e| e.to_string())
    }
    async fn process(&self, items: &[&String]) -> Result<(), StageError> {
        let mut left = self.transient_failures_left.lock().await;
        if *left > 0 {
            *left -= 1;
            return Err(StageError::Unavailable("store unavailable".into()));
        }
        if let Some(p) = items.iter().find(|i| i.starts_with("poison")) {
            return Err(StageError::Permanent(format!("cannot handle {p}")));
        }
        self.seen
            .lock()
            .await
            .extend(items.iter().map(|s| s.to_string()));
        Ok(())
    }
    async fn dead_lettered(&self, item: &String, _reason: &str) {
        self.dead.lock().await.push(item.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stage_runner_retries_transient_failures_and_dead_letters_only_the_culprits() {
    let (bus, _dir) = embedded().await;
    let payloads: Vec<Vec<u8>> = vec![
        b"a".to_vec(),
        b"poison-1".to_vec(),
        vec![0xff, 0xfe], // not UTF-8: malformed
        b"b".to_vec(),
    ];
    let recs = payloads
        .into_iter()
        .map(|p| Record::new(b"k".to_vec(), p))
        .collect();
    bus.publish("work", recs).await.expect("publish");

    let stage = Arc::new(Recorder {
        transient_failures_left: Mutex::new(3),
        ..Default::default()
    });
    let (stop, stopped) = watch::channel(false);
    let cfg = StageConfig {
        backoff_initial: Duration::from_millis(1),
        poll_wait: Duration::from_millis(50),
        ..Default::default()
    };
    let runner = tokio::spawn(stage::run(
        Arc::clone(&bus),
        "work",
        "g",
        Arc::clone(&stage),
        cfg,
        stopped,
    ));

    let mut dlq = bus
        .subscribe("work.dlq", "inspect")
        .await
        .expect("subscribe dlq");
    let dead = bus::conformance::collect(&mut *dlq, 2).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("runner");

    assert_eq!(
        *stage.seen.lock().await,
        vec!["a".to_string(), "b".to_string()],
        "good records processed in order"
    );
    assert_eq!(*stage.dead.lock().await, vec!["poison-1".to_string()]);
    assert_eq!(dead.len(), 2);
    let reasons: Vec<&str> = dead
        .iter()
        .filter_map(|d| d.record.header(stage::headers::ERROR))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("cannot handle poison-1")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.starts_with("malformed record")),
        "{reasons:?}"
    );
    assert!(dead
        .iter()
        .all(|d| d.record.header(stage::headers::SOURCE_TOPIC) == Some("work")));

    // Everything was committed: a new runner of the same group finds nothing to do.
    let mut sub = bus.subscribe("work", "g").await.expect("subscribe");
    assert!(sub
        .poll(10, Duration::from_millis(100))
        .await
        .expect("poll")
        .is_empty());
}
