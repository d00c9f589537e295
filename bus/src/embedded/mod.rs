//! The embedded durable log: the zero-set-up [`Bus`] of `postino serve`, in `log/` under the
//! data directory.
//!
//! Each topic is a directory of append-only segment files, each record one checksummed frame
//! (key, headers, payload); a record's offset is its segment's base offset plus its place in
//! it. One writer thread appends with group commit: every `publish` waits for an fsync, and
//! one fsync per file serves every publish queued meanwhile. Consumer groups' commits go to
//! one journal file (`offsets`) in the same round. A segment that every group has committed
//! past is deleted whole.
//!
//! Each topic is a single partition (total order, so per-key order holds trivially), meant for
//! one process, which a lock file enforces, with one consumer per group. A crash can leave at
//! most a torn last write, never acknowledged; opening the log wipes it. Files are kept
//! written with zeros ahead of their data ([`zeroed`]).
//!
//! Data directories written before this format held the log in `log.sqlite`; opening one
//! moves its unconsumed records over ([`migrate`]).

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, watch};

use crate::{check_topic, Bus, BusError, Delivered, PartitionLag, Subscription};

mod frame;
mod journal;
mod migrate;
mod record;
mod segment;
pub mod status;
mod topic;
mod writer;
mod zeroed;

use segment::Segment;
use topic::Topic;
use writer::{Job, Writer};

/// Size at which a topic moves on to a new segment file; also the unit of trimming.
pub const SEGMENT_BYTES: u64 = 64 << 20;
/// Jobs waiting for the writer at most; publishers wait beyond it.
const QUEUE: usize = 4096;
/// The log's directory under the data directory.
pub const DIR: &str = "log";
/// The lock file under the data directory that keeps a second process off the log.
const LOCK: &str = "log.lock";

#[derive(Debug)]
pub struct EmbeddedBus {
    root: PathBuf,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    writer: Arc<WriterHandle>,
    /// Each (topic, group)'s last commit made through this log, for [`Bus::lag`]: only
    /// this process consumes it.
    committed: Committed,
}

/// The last offset each (topic, group) committed, shared by the log and its subscriptions.
type Committed = Arc<Mutex<HashMap<(String, String), i64>>>;

/// The writer thread, and the lock that keeps other processes out while it may write.
/// Dropped by the last bus or subscription: the thread finishes its round first, so a log
/// reopened right after never meets a write in flight.
#[derive(Debug)]
struct WriterHandle {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    _lock: File,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl WriterHandle {
    async fn send<T>(&self, job: impl FnOnce(writer::Reply<T>) -> Job) -> Result<T, BusError> {
        let (done, answer) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or(BusError::Closed)?;
        jobs.send(job(done)).await.map_err(|_| BusError::Closed)?;
        answer.await.map_err(|_| BusError::Closed)?
    }
}

fn unavailable(what: &str, path: &Path, err: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("cannot {what} {}: {err}", path.display()))
}

impl EmbeddedBus {
    /// Opens the log under the data directory `dir`, creating it if needed.
    pub fn open(dir: &Path) -> Result<Arc<Self>, BusError> {
        Self::open_with_segment_bytes(dir, SEGMENT_BYTES)
    }

    /// [`open`](Self::open) with segments of `segment_bytes`: smaller segments trim sooner.
    pub fn open_with_segment_bytes(dir: &Path, segment_bytes: u64) -> Result<Arc<Self>, BusError> {
        let root = dir.join(DIR);
        // Taken before anything else, the move from log.sqlite included; it lives beside
        // `log/` because that directory may not exist yet.
        let lock_path = dir.join(LOCK);
        let lock = File::create(&lock_path).map_err(|e| unavailable("create", &lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(BusError::Unavailable(format!(
                    "the log in {} is in use by another Postino process",
                    root.display()
                )))
            }
            Err(TryLockError::Error(e)) => return Err(unavailable("lock", &lock_path, e)),
        }
        migrate::from_sqlite(dir, &root)?;
        std::fs::create_dir_all(&root).map_err(|e| unavailable("create", &root, e))?;
        let journal = journal::Journal::open(&root).map_err(|e| unavailable("open", &root, e))?;
        let mut topics = HashMap::new();
        let found = topic::list_topics(&root).map_err(|e| unavailable("read", &root, e))?;
        for (name, path) in found {
            let topic =
                Topic::open(&name, path.clone()).map_err(|e| unavailable("open", &path, e))?;
            if let Some(highest) = journal.highest(&name) {
                topic
                    .skip_to(highest + 1)
                    .map_err(|e| unavailable("repair", &path, e))?;
            }
            topics.insert(name, topic);
        }

        let (jobs, queued) = mpsc::channel(QUEUE);
        let writer = Writer::new(journal, segment_bytes.max(segment::START + 1))
            .map_err(|e| BusError::Unavailable(format!("cannot start the log's writer: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.run(queued))
            .map_err(|e| BusError::Unavailable(format!("cannot start the log's writer: {e}")))?;
        Ok(Arc::new(Self {
            root,
            topics: Mutex::new(topics),
            writer: Arc::new(WriterHandle {
                jobs: Some(jobs),
                thread: Some(thread),
                _lock: lock,
            }),
            committed: Committed::default(),
        }))
    }

    fn topic(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        check_topic(name)?;
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(topic) = topics.get(name) {
            return Ok(Arc::clone(topic));
        }
        let dir = self.root.join(name);
        let topic = Topic::open(name, dir.clone()).map_err(|e| unavailable("create", &dir, e))?;
        topics.insert(name.to_string(), Arc::clone(&topic));
        Ok(topic)
    }
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, topic: &str, records: Vec<crate::Record>) -> Result<(), BusError> {
        check_topic(topic)?;
        if records.is_empty() {
            return Ok(());
        }
        let topic = self.topic(topic)?;
        let mut frames = Vec::new();
        record::encode_all(&records, &mut frames)?;
        let count = records.len();
        drop(records);
        self.writer
            .send(|done| Job::Append {
                topic,
                frames,
                count,
                done,
            })
            .await
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        crate::check_group(group)?;
        let topic = self.topic(topic)?;
        let committed = self
            .writer
            .send(|done| Job::Join {
                topic: Arc::clone(&topic),
                group: group.to_string(),
                done,
            })
            .await?;
        let seek_in = Arc::clone(&topic);
        let cursor = tokio::task::spawn_blocking(move || Cursor::after(&seek_in, committed))
            .await
            .map_err(|e| BusError::Unavailable(e.to_string()))??;
        lock(&self.committed).insert((topic.name.clone(), group.to_string()), committed);
        Ok(Box::new(EmbeddedSubscription {
            shared_commits: Arc::clone(&self.committed),
            synced: topic.synced_next.subscribe(),
            topic,
            group: group.to_string(),
            writer: Arc::clone(&self.writer),
            cursor,
            committed,
            scratch: Vec::new(),
        }))
    }

    /// One partition: the records after the group's last commit.
    async fn lag(&self, topic: &str, group: &str) -> Result<Vec<PartitionLag>, BusError> {
        let topic = self.topic(topic)?;
        let next = *topic.synced_next.borrow();
        let key = (topic.name.clone(), group.to_string());
        let Some(committed) = lock(&self.committed).get(&key).copied() else {
            return Ok(Vec::new());
        };
        Ok(vec![PartitionLag {
            partition: 0,
            records: (next - 1 - committed).max(0),
        }])
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where a consumer reads next.
#[derive(Debug, Clone)]
struct Cursor {
    segment: Arc<Segment>,
    /// Byte position of the next record in `segment`.
    pos: u64,
    /// Its offset.
    next: i64,
}

fn damaged(segment: &Segment, pos: u64, why: &str) -> BusError {
    BusError::Unavailable(format!(
        "damaged record in {} at byte {pos}: {why}",
        segment.path.display()
    ))
}

impl Cursor {
    /// A cursor on the record after `committed` (or on the oldest record kept).
    fn after(topic: &Topic, committed: i64) -> Result<Self, BusError> {
        let target = committed.saturating_add(1);
        let segment = topic.segment_for(target);
        let skip = usize::try_from(target - segment.base).unwrap_or(0);
        let walked = segment
            .skip(skip)
            .map_err(|e| unavailable("read", &segment.path, e))?;
        if let Some(why) = &walked.stopped {
            return Err(damaged(&segment, walked.pos, why));
        }
        Ok(Self {
            next: segment.base + walked.frames as i64,
            pos: walked.pos,
            segment,
        })
    }

    /// Reads up to `max` synced records from here on.
    fn read(
        &mut self,
        topic: &Topic,
        max: usize,
        scratch: &mut Vec<u8>,
    ) -> Result<Vec<Delivered>, BusError> {
        let mut out = Vec::with_capacity(max.min(1024));
        while out.len() < max {
            let end = self.segment.end();
            if self.pos >= end {
                let Some(after) = topic.segment_after(self.segment.base) else {
                    break;
                };
                if self.pos < self.segment.end() {
                    continue; // the writer finished this segment meanwhile
                }
                if after.base < self.next {
                    return Err(damaged(
                        &self.segment,
                        self.pos,
                        &format!(
                            "ends at offset {} but the next segment starts at {}",
                            self.next, after.base
                        ),
                    ));
                }
                // A gap is offsets lost to a damaged segment and skipped at open (Topic::skip_to).
                self.next = after.base;
                self.segment = after;
                self.pos = segment::START;
                continue;
            }
            let mut next = self.next;
            let walked = self
                .segment
                .walk(self.pos, end, max - out.len(), scratch, |body| {
                    out.push(Delivered {
                        topic: topic.name.clone(),
                        partition: 0,
                        offset: next,
                        record: record::decode(body)?,
                    });
                    next += 1;
                    Ok(())
                })
                .map_err(|e| unavailable("read", &self.segment.path, e))?;
            self.pos = walked.pos;
            self.next = next;
            if let Some(why) = walked.stopped {
                if out.is_empty() {
                    return Err(damaged(&self.segment, walked.pos, &why));
                }
                break; // hand out what came before; the next poll reports the damage
            }
        }
        Ok(out)
    }
}

#[derive(Debug)]
struct EmbeddedSubscription {
    topic: Arc<Topic>,
    group: String,
    writer: Arc<WriterHandle>,
    cursor: Cursor,
    /// The offset after the last synced record, as the writer announces it.
    synced: watch::Receiver<i64>,
    committed: i64,
    shared_commits: Committed,
    scratch: Vec<u8>,
}

impl EmbeddedSubscription {
    async fn read(&mut self, max: usize) -> Result<Vec<Delivered>, BusError> {
        let topic = Arc::clone(&self.topic);
        let mut cursor = self.cursor.clone();
        let mut scratch = std::mem::take(&mut self.scratch);
        // Reads usually hit the page cache, but a backlog may not: keep them off the runtime.
        let (records, cursor, scratch) = tokio::task::spawn_blocking(move || {
            let records = cursor.read(&topic, max, &mut scratch);
            (records, cursor, scratch)
        })
        .await
        .map_err(|e| BusError::Unavailable(e.to_string()))?;
        self.scratch = scratch;
        let records = records?;
        self.cursor = cursor;
        Ok(records)
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark the announcement seen before reading, so a later one wakes us.
            let synced = *self.synced.borrow_and_update();
            if self.cursor.next < synced {
                let records = self.read(max.max(1)).await?;
                if !records.is_empty() {
                    return Ok(records);
                }
            }
            match tokio::time::timeout_at(deadline, self.synced.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(BusError::Closed),
                Err(_) => return Ok(Vec::new()),
            }
        }
    }

    async fn commit(&mut self, done: &[Delivered]) -> Result<(), BusError> {
        let Some(upto) = done.iter().map(|d| d.offset).max() else {
            return Ok(());
        };
        if upto <= self.committed {
            return Ok(());
        }
        self.writer
            .send(|done| Job::Commit {
                topic: Arc::clone(&self.topic),
                group: self.group.clone(),
                upto,
                done,
            })
            .await?;
        self.committed = upto;
        lock(&self.shared_commits).insert((self.topic.name.clone(), self.group.clone()), upto);
        Ok(())
    }
}
