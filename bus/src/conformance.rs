//! The behaviour every [`Bus`](crate::Bus) implementation must show, as test functions.
//! An implementation's test file instantiates them all with [`bus_conformance!`](crate::bus_conformance).
//!
//! Each check uses fresh topic names, so one broker can serve them all.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::{Bus, Delivered, Record};

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
    for bad in ["", "has space", "quote\"", "semi;colon"] {
        let err = bus.publish(bad, records("k", 1, "m")).await.expect_err(bad);
        assert!(!err.is_retryable(), "{bad}: {err}");
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
    };
    (@one $make:expr, $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let (bus, _guard) = $make.await;
            $crate::conformance::$name(bus).await;
        }
    };
}
