//! A topic of the embedded log: its directory of segments, what readers may read (each
//! segment's synced end, and the offset after the last synced record), and the writer's
//! place in the newest segment.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::watch;

use super::segment::{self, Segment};
use super::zeroed;
use crate::check_topic;

/// Where the writer appends next. Only the writer thread locks it.
#[derive(Debug)]
pub struct Active {
    pub segment: Arc<Segment>,
    /// Bytes written to the segment so far, synced or not.
    pub len: u64,
    /// Where the zeros written ahead of the data end (see [`zeroed`](super::zeroed)).
    pub allocated: u64,
    /// Offset the next record gets.
    pub next: i64,
}

#[derive(Debug)]
pub struct Topic {
    pub name: String,
    pub dir: PathBuf,
    /// Oldest first; never empty.
    segments: RwLock<Vec<Arc<Segment>>>,
    /// The offset after the last record on disk; consumers wait on it.
    pub synced_next: watch::Sender<i64>,
    active: Mutex<Active>,
}

impl Active {
    /// Seals the segment written so far and moves on to a new one starting at `base`,
    /// returned for the caller to make readable when its predecessor's end is final. A
    /// sealed segment ends at its data: a reopened log takes its length as its end, so the
    /// zeros written ahead must not stay.
    pub fn roll(&mut self, dir: &Path, base: i64) -> io::Result<Arc<Segment>> {
        self.segment.file.set_len(self.len)?;
        self.segment.file.sync_data()?;
        let fresh = Segment::create(dir, base)?;
        sync_dir(dir)?;
        *self = Active {
            segment: Arc::clone(&fresh),
            len: segment::START,
            allocated: segment::START,
            next: base,
        };
        Ok(fresh)
    }
}

/// Syncs a directory, so the files created or renamed in it survive a power cut.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The topics under the log's directory `root`: each subdirectory named as a topic may be.
pub fn list_topics(root: &Path) -> io::Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if path.is_dir() && check_topic(name).is_ok() {
            found.push((name.to_string(), path));
        }
    }
    Ok(found)
}

/// The segment files in a topic's directory, oldest first.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(i64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(base) = entry.file_name().to_str().and_then(segment::parse_name) {
            found.push((base, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(base, _)| *base);
    Ok(found)
}

impl Topic {
    /// Opens the topic stored in `dir`, creating it if the directory has no segment. The
    /// newest segment's data ends at its first zero or broken frame; whatever a crash
    /// mid-append left after it (never acknowledged) is wiped to zeros.
    pub fn open(name: &str, dir: PathBuf) -> io::Result<Arc<Self>> {
        if !dir.exists() {
            std::fs::create_dir(&dir)?;
            if let Some(parent) = dir.parent() {
                sync_dir(parent)?;
            }
        }
        let found = list_segments(&dir)?;
        let mut segments = Vec::with_capacity(found.len().max(1));
        for (base, path) in found {
            segments.push(Segment::open(path, base, true)?);
        }
        let Some(newest) = segments.last().cloned() else {
            let first = Segment::create(&dir, 1)?;
            sync_dir(&dir)?;
            return Ok(Self::assemble(
                name,
                dir,
                vec![Arc::clone(&first)],
                first,
                segment::START,
                segment::START,
                1,
            ));
        };
        let file_len = newest.end();
        let walked = newest.skip(usize::MAX)?;
        let wiped = zeroed::wipe_tail(&newest.file, walked.pos, file_len)?;
        if wiped > 0 {
            tracing::warn!(
                topic = name,
                bytes = wiped,
                reason = walked.stopped.as_deref().unwrap_or(""),
                "wiped an unacknowledged torn write off the end of the log"
            );
        }
        newest.set_end(walked.pos);
        let next = newest.base + walked.frames as i64;
        Ok(Self::assemble(
            name, dir, segments, newest, walked.pos, file_len, next,
        ))
    }

    fn assemble(
        name: &str,
        dir: PathBuf,
        segments: Vec<Arc<Segment>>,
        newest: Arc<Segment>,
        len: u64,
        allocated: u64,
        next: i64,
    ) -> Arc<Self> {
        Arc::new(Self {
            name: name.to_string(),
            dir,
            segments: RwLock::new(segments),
            synced_next: watch::channel(next).0,
            active: Mutex::new(Active {
                segment: newest,
                len,
                allocated,
                next,
            }),
        })
    }

    pub fn active(&self) -> MutexGuard<'_, Active> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn segments(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Offset of the oldest record kept.
    pub fn first(&self) -> i64 {
        self.segments().first().map_or(1, |s| s.base)
    }

    /// The segment holding `offset` (the oldest one if `offset` was trimmed).
    pub fn segment_for(&self, offset: i64) -> Arc<Segment> {
        let segments = self.segments();
        let at = segments.partition_point(|s| s.base <= offset).max(1) - 1;
        Arc::clone(&segments[at])
    }

    /// The segment after the one starting at `base`, once the writer has moved on to it.
    pub fn segment_after(&self, base: i64) -> Option<Arc<Segment>> {
        self.segments().iter().find(|s| s.base > base).cloned()
    }

    /// Moves the topic on to a new segment starting at `base`, past offsets the newest
    /// segment no longer holds. Only at open: when a damaged newest segment lost records a
    /// consumer group had already committed, so that no offset is ever handed out twice.
    pub fn skip_to(&self, base: i64) -> io::Result<()> {
        let mut active = self.active();
        if base <= active.next {
            return Ok(());
        }
        tracing::warn!(
            topic = %self.name,
            lost_from = active.next,
            lost_to = base - 1,
            "records a consumer group had committed are gone from the log's newest segment; \
             new records start after the group's commit"
        );
        let fresh = active.roll(&self.dir, base)?;
        self.push_segment(fresh);
        self.synced_next.send_replace(base);
        Ok(())
    }

    /// Makes a new segment readable; its predecessor's end must be final before.
    pub fn push_segment(&self, segment: Arc<Segment>) {
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(segment);
    }

    /// Takes out of the topic the segments whose every record is at or below `floor`, except
    /// the newest, and returns them for their files to be deleted. Readers still holding one
    /// keep reading it; the file's space goes when they let go.
    pub fn trim(&self, floor: i64) -> Vec<Arc<Segment>> {
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        let keep_from = (1..segments.len())
            .take_while(|&i| segments[i].base - 1 <= floor)
            .last()
            .unwrap_or(0);
        segments.drain(..keep_from).collect()
    }
}
