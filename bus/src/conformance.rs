//! The behaviour every [`Bus`](crate::Bus) implementation must show, as test functions.
//! An implementation's test file instantiates them all with [`bus_conformance!`](crate::bus_conformance).
//!
//! Each check uses fresh topic names, so one broker can serve them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{Bus, Delivered, PartitionLag, Record};

const WAIT: Duration = Duration::from_millis(200);
/// Long enough that a correct implementation never hits it; only a bug waits this long.
const PATIENCE: Duration = Duration::from_secs(30);

/// A topic name no other check uses.
pub fn fresh_topic(name: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("t-{name}-{nanos}-{}", N.fetch_add(1, Ordering::Relaxed))
}

fn records(key: &str, n: usize, tag: &str) -> Vec<Record> {
    (0..n)
        .map(|i| Record::new(key.as_bytes().to_vec(), format!("{tag}-{i}").into_bytes()))
        .collect()
}

/// Polls until `n` records arrived (or patience runs out).
pub async fn collect(sub: &mut dyn crate::Subscription, n: usize) -> Vec<Delivered> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(sub.poll(n - got.len(), WAIT).await.expect("poll"));
    }
    got
}

/// A log that refuses, as records it can never take, every publish to topics `refused`
/// picks, and passes everything else to the log it wraps: how tests plant a permanent log
/// error in a stage.
pub struct Refuses {
    inner: Arc<dyn Bus>,
    refused: Box<dyn Fn(&str) -> bool + Send + Sync>,
}

impl Refuses {
    pub fn new(
        inner: Arc<dyn Bus>,
        refused: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        Self {
            inner,
            refused: Box::new(refused),
        }
    }
}

impl std::fmt::Debug for Refuses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Refuses")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Bus for Refuses {
    async fn publish(&self, topic: &str, records: Vec<Record>) -> Result<(), crate::BusError> {
        if (self.refused)(topic) {
            return Err(crate::BusError::InvalidRecord(format!(
                "too large for {topic}"
            )));
        }
        self.inner.publish(topic, records).await
    }
    async fn subscribe(
        &self,
        topic: &str,
        group: &str,
    ) -> Result<Box<dyn crate::Subscription>, crate::BusError> {
        self.inner.subscribe(topic, group).await
    }
}

fn payloads(d: &[Delivered]) -> Vec<String> {
    d.iter()
        .map(|d| String::from_utf8_lossy(&d.record.payload).into_owned())
        .collect()
}

pub async fn published_records_arrive_in_order_with_headers(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("order");
    let mut batch = records("citizen-a", 50, "m");
    batch[3].headers.push(("h".into(), "v".into()));
    bus.publish(&topic, batch.clone()).await.expect("publish");
    let mut sub = bus.subscribe(&topic, "g").await.expect("subscribe");
    let got = collect(&mut *sub, 50).await;
    assert_eq!(payloads(&got), payloads_of(&batch));
    assert_eq!(got[3].record.header("h"), Some("v"));
    assert_eq!(got[0].record.key, b"citizen-a");
}

fn payloads_of(r: &[Record]) -> Vec<String> {
    r.iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

pub async fn a_group_resumes_after_its_last_commit(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("resume");
    bus.publish(&topic, records("k", 10, "m"))
        .await
        .expect("publish");
    let mut sub = bus.subscribe(&topic, "g").await.expect("subscribe");
    let got = collect(&mut *sub, 10).await;
    sub.commit(&got[..4]).await.expect("commit");
    drop(sub);
    let mut again = bus.subscribe(&topic, "g").await.expect("resubscribe");
    let rest = collect(&mut *again, 6).await;
    assert_eq!(
        payloads(&rest),
        payloads(&got[4..]),
        "uncommitted records come back, committed ones do not"
    );
}

pub async fn groups_consume_independently(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("groups");
    bus.publish(&topic, records("k", 5, "m"))
        .await
        .expect("publish");
    let mut a = bus.subscribe(&topic, "a").await.expect("subscribe a");
    let got_a = collect(&mut *a, 5).await;
    a.commit(&got_a).await.expect("commit");
    let mut b = bus.subscribe(&topic, "b").await.expect("subscribe b");
    assert_eq!(
        collect(&mut *b, 5).await.len(),
        5,
        "group b still sees what a committed"
    );
}

pub async fn a_waiting_poll_wakes_for_a_new_record(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("wake");
    let mut sub = bus.subscribe(&topic, "g").await.expect("subscribe");
    assert!(
        sub.poll(10, WAIT).await.expect("poll").is_empty(),
        "nothing published yet"
    );
    let publisher = Arc::clone(&bus);
    let t = topic.clone();
    let handle = tokio::spawn(async move {
        publisher
            .publish(&t, records("k", 1, "late"))
            .await
            .expect("publish");
    });
    let got = sub.poll(10, PATIENCE).await.expect("poll");
    handle.await.expect("publisher");
    assert_eq!(payloads(&got), vec!["late-0".to_string()]);
}

pub async fn concurrent_publishers_all_land_once_in_per_key_order(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("concurrent");
    let mut tasks = Vec::new();
    for p in 0..20 {
        let bus = Arc::clone(&bus);
        let topic = topic.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                let r = Record::new(
                    format!("key-{p}").into_bytes(),
                    format!("{p}-{i}").into_bytes(),
                );
                bus.publish(&topic, vec![r]).await.expect("publish");
            }
        }));
    }
    for t in tasks {
        t.await.expect("publisher");
    }
    let mut sub = bus.subscribe(&topic, "g").await.expect("subscribe");
    let got = collect(&mut *sub, 200).await;
    let mut seen = std::collections::HashSet::new();
    let mut last_per_key: std::collections::HashMap<String, i32> = Default::default();
    for p in payloads(&got) {
        assert!(seen.insert(p.clone()), "{p} delivered twice");
        let (key, i) = p.split_once('-').expect("payload shape");
        let i: i32 = i.parse().expect("index");
        let prev = last_per_key.insert(key.to_string(), i).unwrap_or(-1);
        assert_eq!(i, prev + 1, "records of key {key} out of order");
    }
    assert_eq!(seen.len(), 200);
}

pub async fn invalid_topic_names_are_refused(bus: Arc<dyn Bus>) {
    for bad in ["", "has space", "quote\"", "semi;colon", ".", "..", "a/b"] {
        let err = bus.publish(bad, records("k", 1, "m")).await.expect_err(bad);
        assert!(!err.is_retryable(), "{bad}: {err}");
    }
}

pub async fn invalid_group_names_are_refused(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("groups");
    for bad in [String::new(), "g".repeat(256)] {
        let err = bus.subscribe(&topic, &bad).await.expect_err("refused");
        assert!(
            matches!(err, crate::BusError::InvalidGroup(_)) && !err.is_retryable(),
            "{err}"
        );
    }
}

/// A stage for the retry check: "flaky" records fail twice and then succeed, "doomed" ones
/// always fail; a batch holding either fails as a whole, as a real stage's would.
struct Flaky {
    failures_left: tokio::sync::Mutex<std::collections::HashMap<String, u32>>,
    done: tokio::sync::mpsc::UnboundedSender<String>,
}

impl Flaky {
    async fn batch(&self, items: &[&String]) -> Result<(), crate::stage::StageError> {
        let mut left = self.failures_left.lock().await;
        for item in items {
            let failing = item.starts_with("doomed") || left.get(*item).is_some_and(|n| *n > 0);
            if failing {
                if items.len() == 1 {
                    if let Some(n) = left.get_mut(*item) {
                        *n -= 1;
                    }
                }
                return Err(crate::stage::StageError::Retry {
                    reason: format!("{item} failed"),
                    after: None,
                });
            }
        }
        for item in items {
            let _ = self.done.send(item.to_string());
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl crate::stage::Stage for Flaky {
    type Item = String;

    fn decode(&self, record: &Record) -> Result<String, String> {
        String::from_utf8(record.payload.clone()).map_err(|e| e.to_string())
    }

    async fn process(&self, items: &[&String]) -> Vec<Result<(), crate::stage::StageError>> {
        crate::stage::by_batch(items, |batch| async move { self.batch(&batch).await }).await
    }
}

/// A record that fails is retried through `<topic>.retry` with growing attempt counts while
/// the records behind it proceed, and lands in `<topic>.dlq` after the configured attempts.
pub async fn failing_records_go_through_the_retry_topic_without_blocking_their_partition(
    bus: Arc<dyn Bus>,
) {
    use crate::stage::{self, headers, StageConfig};

    let topic = fresh_topic("retry");
    let (done, mut processed) = tokio::sync::mpsc::unbounded_channel();
    let stage = Arc::new(Flaky {
        failures_left: tokio::sync::Mutex::new([("flaky".to_string(), 2)].into()),
        done,
    });
    let sent = ["flaky", "doomed", "after-0", "after-1"];
    let batch = sent
        .iter()
        .map(|p| Record::new(b"one-citizen".to_vec(), p.as_bytes().to_vec()))
        .collect();
    bus.publish(&topic, batch).await.expect("publish");

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cfg = StageConfig {
        poll_wait: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(1),
        max_attempts: 3,
        retry_initial: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        ..Default::default()
    };
    let runner = {
        let (bus, topic, stage) = (Arc::clone(&bus), topic.clone(), Arc::clone(&stage));
        tokio::spawn(async move { stage::run(bus, &topic, "g", stage, cfg, stopped).await })
    };
    let mut order = Vec::new();
    while !order.iter().any(|p| p == "flaky") {
        match tokio::time::timeout(PATIENCE, processed.recv()).await {
            Ok(Some(p)) => order.push(p),
            _ => panic!("flaky was never processed; processed so far: {order:?}"),
        }
    }
    let mut dlq = bus
        .subscribe(&stage::dead_letter_topic(&topic), "inspect")
        .await
        .expect("subscribe dlq");
    let dead = collect(&mut *dlq, 1).await;
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("runner");

    assert_eq!(
        order,
        vec!["after-0", "after-1", "flaky"],
        "the records behind the failing ones were not held up"
    );
    assert_eq!(payloads(&dead), vec!["doomed".to_string()]);
    let dead = &dead[0].record;
    assert_eq!(dead.header(headers::ATTEMPTS), Some("3"));
    assert!(
        dead.header(headers::ERROR)
            .is_some_and(|e| e.contains("doomed failed") && e.contains("3 attempts")),
        "{:?}",
        dead.header(headers::ERROR)
    );
    assert_eq!(dead.header(headers::SOURCE_TOPIC), Some(topic.as_str()));

    let mut retries = bus
        .subscribe(&stage::retry_topic(&topic), "inspect")
        .await
        .expect("subscribe retry topic");
    let retried: Vec<(String, String)> = collect(&mut *retries, 4)
        .await
        .iter()
        .map(|d| {
            (
                String::from_utf8_lossy(&d.record.payload).into_owned(),
                d.record
                    .header(headers::ATTEMPTS)
                    .unwrap_or("-")
                    .to_string(),
            )
        })
        .collect();
    for expected in [
        ("flaky", "1"),
        ("flaky", "2"),
        ("doomed", "1"),
        ("doomed", "2"),
    ] {
        assert!(
            retried.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} missing from the retry topic: {retried:?}"
        );
    }
}

/// A group's lag is what was published to the topic and it has not committed, and it falls
/// as the group commits.
pub async fn a_group_lags_by_what_it_has_not_committed(bus: Arc<dyn Bus>) {
    let topic = fresh_topic("lag");
    let mut sub = bus.subscribe(&topic, "lagging").await.expect("subscribe");
    bus.publish(&topic, records("k", 5, "r"))
        .await
        .expect("publish");
    let got = collect(&mut *sub, 5).await;
    assert_eq!(got.len(), 5);
    let total = |lags: &[PartitionLag]| lags.iter().map(|l| l.records).sum::<i64>();
    for (committed, behind) in [(2, 3), (5, 0)] {
        sub.commit(&got[..committed]).await.expect("commit");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let lags = bus.lag(&topic, "lagging").await.expect("lag");
            if total(&lags) == behind {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "after committing {committed} of 5 the lag is {lags:?}, not {behind}"
            );
            tokio::time::sleep(WAIT).await;
        }
    }
}

/// Instantiates every conformance check as a `#[tokio::test]`. `$make` is an async
/// expression giving `(Arc<dyn Bus>, guard)`; the guard lives as long as the test.
#[macro_export]
macro_rules! bus_conformance {
    ($make:expr) => {
        $crate::bus_conformance!(@one $make, published_records_arrive_in_order_with_headers);
        $crate::bus_conformance!(@one $make, a_group_resumes_after_its_last_commit);
        $crate::bus_conformance!(@one $make, groups_consume_independently);
        $crate::bus_conformance!(@one $make, a_waiting_poll_wakes_for_a_new_record);
        $crate::bus_conformance!(@one $make, concurrent_publishers_all_land_once_in_per_key_order);
        $crate::bus_conformance!(@one $make, invalid_topic_names_are_refused);
        $crate::bus_conformance!(@one $make, invalid_group_names_are_refused);
        $crate::bus_conformance!(@one $make, failing_records_go_through_the_retry_topic_without_blocking_their_partition);
        $crate::bus_conformance!(@one $make, a_group_lags_by_what_it_has_not_committed);
    };
    (@one $make:expr, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (bus, _guard) = $make.await;
            $crate::conformance::$name(bus).await;
        }
    };
}
