//! The embedded log against the bus conformance suite, plus what only a local log can show:
//! records survive closing and reopening the files, a crash's torn tail, segments rolling and
//! being trimmed, one process at a time, the move from `log.sqlite`, and the stage runner's
//! failure paths.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bus::embedded::EmbeddedBus;
use bus::stage::{self, Stage, StageConfig, StageError};
use bus::{Bus, BusError, Record};
use tokio::sync::{watch, Mutex};

async fn embedded() -> (Arc<dyn Bus>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus: Arc<dyn Bus> = EmbeddedBus::open(dir.path()).expect("open");
    (bus, dir)
}

bus::bus_conformance!(embedded());

/// The log as every process runs it: wrapped to record its metrics, which must change
/// nothing of what it does.
mod metered {
    use super::*;

    async fn metered_embedded() -> (Arc<dyn Bus>, tempfile::TempDir) {
        let (bus, dir) = embedded().await;
        (bus::metered::Metered::wrap(bus), dir)
    }

    bus::bus_conformance!(metered_embedded());
}

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

fn numbered(n: std::ops::Range<usize>) -> Vec<Record> {
    n.map(|i| Record::new(format!("k{i}").into_bytes(), format!("{i}")))
        .collect()
}

fn payloads(got: &[bus::Delivered]) -> Vec<String> {
    got.iter()
        .map(|d| String::from_utf8_lossy(&d.record.payload).into_owned())
        .collect()
}

fn segment_files(dir: &std::path::Path, topic: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("log").join(topic))
        .expect("topic dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_record_left_by_a_crash_is_cut_off_and_the_log_goes_on_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let bus = EmbeddedBus::open(dir.path()).expect("open");
        bus.publish("t", numbered(0..10)).await.expect("publish");
    }
    // A crash mid-append: half a frame after the last whole record.
    let newest = segment_files(dir.path(), "t").pop().expect("segment");
    let mut bytes = std::fs::read(&newest).expect("read");
    bytes.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, b'h', b'a']);
    std::fs::write(&newest, &bytes).expect("tear");

    let bus = EmbeddedBus::open(dir.path()).expect("reopen");
    bus.publish("t", numbered(10..12))
        .await
        .expect("publish after");
    let mut sub = bus.subscribe("t", "g").await.expect("subscribe");
    let got = bus::conformance::collect(&mut *sub, 12).await;
    assert_eq!(
        payloads(&got),
        (0..12).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(got[11].offset, 12, "offsets go on from the intact records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_roll_and_go_only_once_every_group_has_committed_past_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), 256).expect("open");
    let mut fast = bus.subscribe("t", "fast").await.expect("subscribe");
    let mut slow = bus.subscribe("t", "slow").await.expect("subscribe");
    for chunk in 0..20 {
        bus.publish("t", numbered(chunk * 10..chunk * 10 + 10))
            .await
            .expect("publish");
    }
    let segments = segment_files(dir.path(), "t").len();
    assert!(segments > 5, "200 records in 256-byte segments: {segments}");

    // Read across every segment boundary, in order.
    let all = bus::conformance::collect(&mut *fast, 200).await;
    assert_eq!(
        payloads(&all),
        (0..200).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    fast.commit(&all).await.expect("commit");
    assert_eq!(
        segment_files(dir.path(), "t").len(),
        segments,
        "the slow group still needs them"
    );

    let first_half = bus::conformance::collect(&mut *slow, 100).await;
    slow.commit(&first_half).await.expect("commit");
    // Files are deleted off the writer's path, so their going is waited for.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut left = segment_files(dir.path(), "t").len();
    while left == segments && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = segment_files(dir.path(), "t").len();
    }
    assert!(left < segments && left > 1, "{left} of {segments}");

    // A group that joins now starts at the oldest record kept, and loses none of it.
    let mut late = bus.subscribe("t", "late").await.expect("subscribe");
    let kept = late.poll(500, Duration::from_secs(5)).await.expect("poll");
    let first_kept: usize = payloads(&kept)[0].parse().expect("number");
    assert!(
        first_kept <= 100,
        "nothing the slow group still needed is gone"
    );
    assert_eq!(kept[0].offset, first_kept as i64 + 1);

    // The slow group's restart resumes at its commit, reading the rest across segments.
    drop(slow);
    let mut slow = bus.subscribe("t", "slow").await.expect("resubscribe");
    let rest = bus::conformance::collect(&mut *slow, 100).await;
    assert_eq!(
        payloads(&rest),
        (100..200).map(|i| i.to_string()).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_log_reads_across_its_sealed_segments_and_appends_after_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), 256).expect("open");
        for chunk in 0..10 {
            bus.publish("t", numbered(chunk * 10..chunk * 10 + 10))
                .await
                .expect("publish");
        }
    }
    assert!(segment_files(dir.path(), "t").len() > 3, "segments rolled");
    // Sealed segments must end at their data (not at the zeros written ahead of it), and
    // the newest must take appends right after its last record.
    let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), 256).expect("reopen");
    bus.publish("t", numbered(100..105))
        .await
        .expect("publish after");
    let mut sub = bus.subscribe("t", "g").await.expect("subscribe");
    let got = bus::conformance::collect(&mut *sub, 105).await;
    assert_eq!(
        payloads(&got),
        (0..105).map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(got[104].offset, 105);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_open_a_log_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bus = EmbeddedBus::open(dir.path()).expect("open");
    let sub = bus.subscribe("t", "g").await.expect("subscribe");
    let err = EmbeddedBus::open(dir.path()).expect_err("in use");
    assert!(
        err.to_string()
            .contains("in use by another Postino process"),
        "{err}"
    );
    drop(bus);
    assert!(
        EmbeddedBus::open(dir.path()).is_err(),
        "a subscription still holds it"
    );
    drop(sub);
    EmbeddedBus::open(dir.path()).expect("free once every handle is gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_in_a_sealed_segment_stops_its_reader_after_the_records_before_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        // Tiny segments: each publish fills one, so the first is sealed by the second.
        let bus = EmbeddedBus::open_with_segment_bytes(dir.path(), 32).expect("open");
        bus.publish("t", numbered(0..3)).await.expect("publish");
        bus.publish("t", numbered(3..6)).await.expect("publish");
    }
    // Flip a byte in the sealed segment's second record (magic 8, then frames of 8 + 4 +
    // 2 key + 2 + 1 payload bytes).
    let path = segment_files(dir.path(), "t").remove(0);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8 + 17 + 16] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage");

    let bus = EmbeddedBus::open(dir.path()).expect("reopen");
    let mut sub = bus.subscribe("t", "g").await.expect("subscribe");
    let before = sub.poll(10, Duration::from_secs(5)).await.expect("poll");
    assert_eq!(payloads(&before), ["0"]);
    let err = sub
        .poll(10, Duration::from_secs(5))
        .await
        .expect_err("damaged");
    assert!(
        err.is_retryable() && err.to_string().contains(".seg"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_lost_from_a_damaged_newest_segment_never_have_their_offsets_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let bus = EmbeddedBus::open(dir.path()).expect("open");
        bus.publish("t", numbered(0..5)).await.expect("publish");
        let mut sub = bus.subscribe("t", "g").await.expect("subscribe");
        let got = bus::conformance::collect(&mut *sub, 5).await;
        sub.commit(&got).await.expect("commit all five");
    }
    // Damage the third record on disk: recovery takes it for a torn write and drops it and
    // the two after it, which group g had already committed.
    let path = segment_files(dir.path(), "t").remove(0);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[8 + 2 * 17 + 16] ^= 0xff;
    std::fs::write(&path, &bytes).expect("damage");

    let bus = EmbeddedBus::open(dir.path()).expect("reopen");
    bus.publish("t", numbered(5..7))
        .await
        .expect("publish after");
    let mut g = bus.subscribe("t", "g").await.expect("subscribe");
    let new = bus::conformance::collect(&mut *g, 2).await;
    assert_eq!(
        payloads(&new),
        ["5", "6"],
        "g sees what came after, not nothing"
    );
    assert_eq!(
        (new[0].offset, new[1].offset),
        (6, 7),
        "offsets go on after g's commit"
    );
    // A group reading from the start crosses the gap.
    let mut fresh = bus.subscribe("t", "fresh").await.expect("subscribe");
    let all = bus::conformance::collect(&mut *fresh, 4).await;
    assert_eq!(payloads(&all), ["0", "1", "5", "6"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_sqlite_from_before_is_moved_over_with_each_groups_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let old = rusqlite::Connection::open(dir.path().join("log.sqlite")).expect("old log");
        old.execute_batch(
            "CREATE TABLE offsets(topic TEXT NOT NULL, grp TEXT NOT NULL, committed INTEGER NOT NULL,
                PRIMARY KEY(topic, grp)) WITHOUT ROWID;
             CREATE TABLE \"log/messages\"(seq INTEGER PRIMARY KEY AUTOINCREMENT,
                key BLOB NOT NULL, headers TEXT, payload BLOB NOT NULL);
             INSERT INTO offsets VALUES ('messages', 'router', 7), ('messages', 'audit', 5);",
        )
        .expect("old schema");
        for i in 1..=10 {
            let headers = (i == 9).then_some(r#"[["postino-error","429"]]"#);
            old.execute(
                "INSERT INTO \"log/messages\"(seq, key, headers, payload) VALUES (?1, X'6b', ?2, ?3)",
                rusqlite::params![i, headers, format!("m{i}").into_bytes()],
            )
            .expect("old record");
        }
    }

    let bus = EmbeddedBus::open(dir.path()).expect("open migrates");
    assert!(
        !dir.path().join("log.sqlite").exists(),
        "the old file is gone"
    );
    let mut router = bus
        .subscribe("messages", "router")
        .await
        .expect("subscribe");
    let got = bus::conformance::collect(&mut *router, 3).await;
    assert_eq!(payloads(&got), ["m8", "m9", "m10"]);
    assert_eq!(got[1].record.header("postino-error"), Some("429"));
    let mut audit = bus.subscribe("messages", "audit").await.expect("subscribe");
    let got = bus::conformance::collect(&mut *audit, 5).await;
    assert_eq!(payloads(&got), ["m6", "m7", "m8", "m9", "m10"]);

    let status = bus::embedded::status::read(dir.path()).expect("status");
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].first, status[0].last), (1, 5));
    assert_eq!(
        status[0].groups,
        vec![("audit".to_string(), 0), ("router".to_string(), 2)]
    );
}

/// A stage that records what it processed and how often it was called, fails transiently a
/// few times, and refuses payloads starting with "poison" permanently.
#[derive(Debug, Default)]
struct Recorder {
    calls: std::sync::atomic::AtomicUsize,
    seen: Mutex<Vec<String>>,
    transient_failures_left: Mutex<u32>,
    dead: Mutex<Vec<String>>,
}

impl Recorder {
    async fn batch(&self, items: &[&String]) -> Result<(), StageError> {
        self.calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
}

#[async_trait]
impl Stage for Recorder {
    type Item = String;
    fn decode(&self, record: &Record) -> Result<String, String> {
        String::from_utf8(record.payload.clone()).map_err(|e| e.to_string())
    }
    async fn process(&self, items: &[&String]) -> Vec<Result<(), StageError>> {
        stage::by_batch(items, |batch| async move { self.batch(&batch).await }).await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_that_cannot_hand_a_record_on_stops_with_the_error_and_commits_nothing() {
    let (log, _dir) = embedded().await;
    let recs = [&b"a"[..], b"poison-1", b"b"]
        .into_iter()
        .map(|p| Record::new(b"k".to_vec(), p.to_vec()))
        .collect();
    log.publish("work", recs).await.expect("publish");
    // The embedded log, except that it refuses every dead letter as a record it cannot take.
    let bus: Arc<dyn Bus> = Arc::new(bus::conformance::Refuses::new(Arc::clone(&log), |t| {
        t.ends_with(".dlq")
    }));

    let (_stop, stopped) = watch::channel(false);
    let cfg = StageConfig {
        backoff_initial: Duration::from_millis(1),
        poll_wait: Duration::from_millis(50),
        ..Default::default()
    };
    // Without the error the stage's other lane would run on alone; the guard turns that
    // into a failure instead of a test that never ends.
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        stage::run(
            bus,
            "work",
            "g",
            Arc::new(Recorder::default()),
            cfg,
            stopped,
        ),
    )
    .await
    .expect("the stage ends by itself");
    assert!(
        matches!(ended, Err(BusError::InvalidRecord(_))),
        "the stage ends with the error, not as if shut down: {ended:?}"
    );

    // Nothing was committed: the group gets the whole batch again.
    let mut sub = log.subscribe("work", "g").await.expect("subscribe");
    let again = bus::conformance::collect(&mut *sub, 3).await;
    assert_eq!(payloads(&again), ["a", "poison-1", "b"]);
}

/// A record waiting on `work.retry`, due at `at` (milliseconds since the Unix epoch).
fn waiting(payload: &str, at: u128) -> Record {
    let mut record = Record::new(b"k".to_vec(), payload.as_bytes().to_vec());
    record
        .headers
        .push((stage::headers::RETRY_AT.into(), at.to_string()));
    record
        .headers
        .push((stage::headers::ATTEMPTS.into(), "1".into()));
    record
}

fn unix_millis_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Runs `stage` on `work` until it has seen `n` records (or a minute passes).
async fn run_until_seen(bus: &Arc<dyn Bus>, stage: &Arc<Recorder>, n: usize) {
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(stage::run(
        Arc::clone(bus),
        "work",
        "g",
        Arc::clone(stage),
        StageConfig {
            poll_wait: Duration::from_millis(50),
            ..Default::default()
        },
        stopped,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stage.seen.lock().await.len() < n && tokio::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    stop.send(true).expect("stop");
    runner.await.expect("join").expect("run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_due_retries_drains_in_batches_not_one_round_trip_each() {
    let (bus, _dir) = embedded().await;
    let due = unix_millis_now().saturating_sub(1000);
    for chunk in 0..10 {
        let records = (0..1000)
            .map(|i| waiting(&format!("r-{chunk}-{i}"), due))
            .collect();
        bus.publish("work.retry", records).await.expect("publish");
    }
    let stage = Arc::new(Recorder::default());
    run_until_seen(&bus, &stage, 10_000).await;
    assert_eq!(
        stage.seen.lock().await.len(),
        10_000,
        "every due retry processed"
    );
    let calls = stage.calls.load(std::sync::atomic::Ordering::Relaxed);
    // Batches of 512 need 20 calls; one record at a time would take 10,000.
    assert!(calls <= 40, "{calls} calls for 10,000 due retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_due_later_does_not_hold_back_the_ones_already_due() {
    let (bus, _dir) = embedded().await;
    let now = unix_millis_now();
    let mut records = vec![waiting("in-an-hour", now + 3_600_000)];
    records.extend((0..100).map(|i| waiting(&format!("due-{i}"), now.saturating_sub(1000))));
    bus.publish("work.retry", records).await.expect("publish");
    let stage = Arc::new(Recorder::default());
    run_until_seen(&bus, &stage, 100).await;
    let seen = stage.seen.lock().await;
    assert_eq!(seen.len(), 100, "the due ones, while the later one waits");
    assert!(!seen.iter().any(|s| s == "in-an-hour"));
}
