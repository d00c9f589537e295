//! The one thread that writes the embedded log. It takes every job queued since its last
//! round (appends, commits, consumers joining), writes them, syncs each file it touched once,
//! and only then makes the records readable and answers: group commit, so one fsync serves
//! every publisher that queued meanwhile.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::journal::Journal;
use super::segment::Segment;
use super::topic::Topic;
use super::zeroed;
use crate::BusError;

/// Most jobs one round takes.
const MAX_JOBS: usize = 4096;
/// Zeros kept written ahead of a segment's data (see [`zeroed`](super::zeroed)).
const SEGMENT_AHEAD: u64 = 1 << 20;

pub type Reply<T> = oneshot::Sender<Result<T, BusError>>;

#[derive(Debug)]
pub enum Job {
    /// Append `count` records, already framed in `frames`.
    Append {
        topic: Arc<Topic>,
        frames: Vec<u8>,
        count: usize,
        done: Reply<()>,
    },
    /// Group `group` has processed `topic` up to `upto`.
    Commit {
        topic: Arc<Topic>,
        group: String,
        upto: i64,
        done: Reply<()>,
    },
    /// A consumer of `group` starts: answers where the group resumes, registering a new group
    /// at the oldest record kept (so nothing it has not seen is trimmed).
    Join {
        topic: Arc<Topic>,
        group: String,
        done: Reply<i64>,
    },
}

#[derive(Debug)]
pub struct Writer {
    journal: Journal,
    /// Paths of trimmed segments, for the thread that deletes them: unlinking a large file
    /// takes the file system a while, and the writer's round must not wait for it.
    trimmed: Option<std::sync::mpsc::Sender<PathBuf>>,
    deleter: Option<std::thread::JoinHandle<()>>,
    segment_bytes: u64,
    /// Set when a write or sync failed: the state of the files is then unknown until a
    /// restart recovers them, so nothing more is written.
    failed: Option<String>,
}

/// What a written and synced round leaves to do.
struct Synced {
    /// The commits journaled, for the offsets in memory.
    commits: Vec<(String, String, i64)>,
    /// Topics a group committed on, which may now be trimmed (each once).
    trim: Vec<Arc<Topic>>,
    /// Per job, where a joining group resumes (0 for the other jobs).
    resumes: Vec<i64>,
}

/// One topic's share of a round.
struct Appends {
    topic: Arc<Topic>,
    bytes: Vec<u8>,
    count: i64,
}

impl Writer {
    pub fn new(journal: Journal, segment_bytes: u64) -> io::Result<Self> {
        let (trimmed, to_delete) = std::sync::mpsc::channel::<PathBuf>();
        let deleter = std::thread::Builder::new()
            .name("log-trim".into())
            .spawn(move || {
                for path in to_delete {
                    if let Err(err) = std::fs::remove_file(&path) {
                        tracing::warn!(path = %path.display(), error = %err, "cannot delete a trimmed log segment");
                    }
                }
            })?;
        Ok(Self {
            journal,
            trimmed: Some(trimmed),
            deleter: Some(deleter),
            segment_bytes,
            failed: None,
        })
    }

    /// Runs rounds until every sender is gone, then waits for the deletions it asked for,
    /// so a log reopened after it finds no file half deleted.
    pub fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
        let mut round = Vec::new();
        while let Some(first) = jobs.blocking_recv() {
            round.push(first);
            while round.len() < MAX_JOBS {
                match jobs.try_recv() {
                    Ok(job) => round.push(job),
                    Err(_) => break,
                }
            }
            self.round(&mut round);
        }
        self.trimmed.take();
        if let Some(deleter) = self.deleter.take() {
            let _ = deleter.join();
        }
    }

    fn round(&mut self, jobs: &mut Vec<Job>) {
        if let Some(why) = &self.failed {
            let err = BusError::Unavailable(why.clone());
            for job in jobs.drain(..) {
                answer(job, Err(err.clone()), 0);
            }
            return;
        }
        match self.write_and_sync(jobs) {
            Ok(synced) => {
                self.journal.apply(synced.commits);
                for (job, resumes_at) in jobs.drain(..).zip(synced.resumes) {
                    answer(job, Ok(()), resumes_at);
                }
                if let Err(err) = self.housekeep(&synced.trim) {
                    tracing::warn!(error = %err, "cannot trim the log");
                }
            }
            Err(err) => {
                let why = format!(
                    "the log could not write to disk ({err}) and takes no more writes until \
                     Postino restarts"
                );
                tracing::error!(error = %err, "the embedded log stopped taking writes");
                let reply = BusError::Unavailable(why.clone());
                self.failed = Some(why);
                for job in jobs.drain(..) {
                    answer(job, Err(reply.clone()), 0);
                }
            }
        }
    }

    /// Writes a round and syncs it.
    fn write_and_sync(&mut self, jobs: &[Job]) -> io::Result<Synced> {
        let mut appends: Vec<Appends> = Vec::new();
        let mut by_topic: HashMap<*const Topic, usize> = HashMap::new();
        let mut commits: Vec<(String, String, i64)> = Vec::new();
        let mut trim: Vec<Arc<Topic>> = Vec::new();
        let mut resumes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut resumes_at = 0;
            match job {
                Job::Append {
                    topic,
                    frames,
                    count,
                    ..
                } => {
                    let at = *by_topic.entry(Arc::as_ptr(topic)).or_insert_with(|| {
                        appends.push(Appends {
                            topic: Arc::clone(topic),
                            bytes: Vec::new(),
                            count: 0,
                        });
                        appends.len() - 1
                    });
                    appends[at].bytes.extend_from_slice(frames);
                    appends[at].count += *count as i64;
                }
                Job::Commit {
                    topic, group, upto, ..
                } => {
                    let known = self.journal.get(&topic.name, group).unwrap_or(i64::MIN);
                    if *upto > known {
                        commits.push((topic.name.clone(), group.clone(), *upto));
                        if !trim.iter().any(|t| Arc::ptr_eq(t, topic)) {
                            trim.push(Arc::clone(topic));
                        }
                    }
                }
                Job::Join { topic, group, .. } => {
                    let staged = commits
                        .iter()
                        .rev()
                        .find(|(t, g, _)| *t == topic.name && g == group)
                        .map(|(_, _, offset)| *offset);
                    resumes_at = match staged.or_else(|| self.journal.get(&topic.name, group)) {
                        Some(offset) => offset,
                        None => {
                            let start = topic.first() - 1;
                            commits.push((topic.name.clone(), group.clone(), start));
                            start
                        }
                    };
                }
            }
            resumes.push(resumes_at);
        }

        // Write everything, then sync each file once.
        let mut written: Vec<(Arc<Segment>, u64)> = Vec::new();
        let mut created: Vec<(Arc<Topic>, Arc<Segment>)> = Vec::new();
        for a in &appends {
            let mut active = a.topic.active();
            if active.len >= self.segment_bytes && active.next > active.segment.base {
                let next = active.next;
                let fresh = active.roll(&a.topic.dir, next)?;
                created.push((Arc::clone(&a.topic), fresh));
            }
            active.segment.file.write_all_at(&a.bytes, active.len)?;
            active.len += a.bytes.len() as u64;
            active.allocated = zeroed::keep_ahead(
                &active.segment.file,
                active.len,
                active.allocated,
                SEGMENT_AHEAD,
            )?;
            active.next += a.count;
            written.push((Arc::clone(&active.segment), active.len));
        }
        if !commits.is_empty() {
            self.journal.append(&commits)?;
        }
        for (segment, _) in &written {
            segment.file.sync_data()?;
        }
        if !commits.is_empty() {
            self.journal.sync()?;
        }

        // On disk: now readers may see it, older segments' ends first.
        for (segment, end) in &written {
            segment.set_end(*end);
        }
        for (topic, segment) in created {
            topic.push_segment(segment);
        }
        for a in &appends {
            let next = a.topic.active().next;
            a.topic.synced_next.send_replace(next);
        }
        Ok(Synced {
            commits,
            trim,
            resumes,
        })
    }

    /// After a round: deletes segments every group has passed, and compacts the journal.
    fn housekeep(&mut self, committed: &[Arc<Topic>]) -> io::Result<()> {
        for topic in committed {
            if let Some(floor) = self.journal.floor(&topic.name) {
                for segment in topic.trim(floor) {
                    if let Some(trimmed) = &self.trimmed {
                        let _ = trimmed.send(segment.path.clone());
                    }
                }
            }
        }
        self.journal.compact_if_large()
    }
}

fn answer(job: Job, outcome: Result<(), BusError>, resumes_at: i64) {
    // A caller that stopped waiting is no error: its job is done either way.
    match job {
        Job::Append { done, .. } | Job::Commit { done, .. } => {
            let _ = done.send(outcome);
        }
        Job::Join { done, .. } => {
            let _ = done.send(outcome.map(|()| resumes_at));
        }
    }
}
