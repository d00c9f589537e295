//! The committed offset of every consumer group, kept in one append-only file (`offsets`) of
//! `(topic, group, offset)` frames: the last frame for a pair wins. The writer appends the
//! commits of a whole group commit at once and syncs them with the records; when the file
//! grows past a bound it is rewritten with one frame per pair.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::frame::{self, Fields, Parsed};
use super::topic::sync_dir;
use super::zeroed;

pub const FILE: &str = "offsets";
/// Past this size the journal is rewritten compactly.
const COMPACT_AT: u64 = 4 << 20;
/// Zeros kept written ahead of the journal's data (see [`zeroed`](super::zeroed)).
const AHEAD: u64 = 256 << 10;

/// Committed offsets by topic, then group.
pub type Committed = HashMap<String, HashMap<String, i64>>;

#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: File,
    len: u64,
    allocated: u64,
    committed: Committed,
}

fn entry(out: &mut Vec<u8>, topic: &str, group: &str, offset: i64) {
    frame::push(out, |body| {
        frame::put_short_str(body, topic);
        frame::put_short_str(body, group);
        body.extend_from_slice(&offset.to_le_bytes());
    });
}

fn decode(body: &[u8]) -> Result<(String, String, i64), String> {
    let mut f = Fields::new(body);
    let topic = f.short_str()?.to_string();
    let group = f.short_str()?.to_string();
    Ok((topic, group, f.i64()?))
}

/// Replays the journal's bytes: the offsets, and the length of its intact part.
fn replay(bytes: &[u8]) -> (Committed, usize) {
    let mut committed = Committed::new();
    let mut at = 0;
    while let Parsed::Frame { body, len } = frame::parse(&bytes[at..]) {
        let Ok((topic, group, offset)) = decode(body) else {
            break;
        };
        committed.entry(topic).or_default().insert(group, offset);
        at += len;
    }
    (committed, at)
}

/// Reads the committed offsets without opening the journal for writing (for inspection
/// while Postino runs).
pub fn read(dir: &Path) -> io::Result<Committed> {
    match std::fs::read(dir.join(FILE)) {
        Ok(bytes) => Ok(replay(&bytes).0),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(Committed::new()),
        Err(err) => Err(err),
    }
}

/// Writes `committed` as a fresh journal file in `dir`, synced, replacing any other.
pub fn write_new(dir: &Path, committed: &Committed) -> io::Result<()> {
    let mut bytes = Vec::new();
    for (topic, groups) in committed {
        for (group, offset) in groups {
            entry(&mut bytes, topic, group, *offset);
        }
    }
    let tmp = dir.join(format!("{FILE}.tmp"));
    let file = File::create(&tmp)?;
    file.write_all_at(&bytes, 0)?;
    file.sync_all()?;
    std::fs::rename(&tmp, dir.join(FILE))?;
    sync_dir(dir)
}

impl Journal {
    /// Opens the journal in `dir`; whatever follows the intact frames (a torn last write,
    /// never acknowledged) is wiped to zeros.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let path = dir.join(FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let bytes = std::fs::read(&path)?;
        let (committed, intact) = replay(&bytes);
        let wiped = zeroed::wipe_tail(&file, intact as u64, bytes.len() as u64)?;
        if wiped > 0 {
            tracing::warn!(
                bytes = wiped,
                "wiped a torn commit off the end of the log's offsets"
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            file,
            len: intact as u64,
            allocated: bytes.len() as u64,
            committed,
        })
    }

    pub fn get(&self, topic: &str, group: &str) -> Option<i64> {
        self.committed.get(topic)?.get(group).copied()
    }

    /// The highest offset any group of `topic` has committed.
    pub fn highest(&self, topic: &str) -> Option<i64> {
        self.committed.get(topic)?.values().copied().max()
    }

    /// The lowest offset every group of `topic` has committed.
    pub fn floor(&self, topic: &str) -> Option<i64> {
        self.committed.get(topic)?.values().copied().min()
    }

    /// Appends `commits` to the file, not yet synced.
    pub fn append(&mut self, commits: &[(String, String, i64)]) -> io::Result<()> {
        let mut bytes = Vec::new();
        for (topic, group, offset) in commits {
            entry(&mut bytes, topic, group, *offset);
        }
        self.file.write_all_at(&bytes, self.len)?;
        self.len += bytes.len() as u64;
        self.allocated = zeroed::keep_ahead(&self.file, self.len, self.allocated, AHEAD)?;
        Ok(())
    }

    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Takes synced `commits` into the offsets that trimming and new consumers go by.
    pub fn apply(&mut self, commits: Vec<(String, String, i64)>) {
        for (topic, group, offset) in commits {
            let slot = self
                .committed
                .entry(topic)
                .or_default()
                .entry(group)
                .or_insert(offset);
            *slot = (*slot).max(offset);
        }
    }

    /// Rewrites the file with one frame per group once it has grown past its bound.
    pub fn compact_if_large(&mut self) -> io::Result<()> {
        if self.len < COMPACT_AT {
            return Ok(());
        }
        write_new(&self.dir, &self.committed)?;
        *self = Self::open(&self.dir)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(topic: &str, group: &str, offset: i64) -> (String, String, i64) {
        (topic.into(), group.into(), offset)
    }

    #[test]
    fn the_last_commit_of_each_group_survives_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        let commits = vec![
            commit("t", "a", 5),
            commit("t", "b", 3),
            commit("t", "a", 9),
        ];
        journal.append(&commits).expect("append");
        journal.sync().expect("sync");
        let journal = Journal::open(dir.path()).expect("reopen");
        assert_eq!(journal.get("t", "a"), Some(9));
        assert_eq!(journal.floor("t"), Some(3));
        assert_eq!(journal.floor("other"), None);
    }

    #[test]
    fn a_torn_last_commit_is_wiped_and_later_commits_land_after_the_intact_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        journal.append(&[commit("t", "g", 7)]).expect("append");
        let intact = journal.len;
        journal.append(&[commit("t", "g", 8)]).expect("append");
        // Torn: the last frame's final bytes never reached the disk.
        journal
            .file
            .write_all_at(&[0xff; 3], journal.len - 3)
            .expect("tear");

        let mut journal = Journal::open(dir.path()).expect("reopen");
        assert_eq!(journal.get("t", "g"), Some(7));
        assert_eq!(journal.len, intact);
        journal.append(&[commit("t", "g", 10)]).expect("append");
        assert_eq!(read(dir.path()).expect("read")["t"]["g"], 10);
    }

    #[test]
    fn garbage_in_place_of_the_journal_reads_as_no_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(FILE), b"not a journal at all").expect("write");
        assert!(read(dir.path()).expect("read").is_empty());
    }

    #[test]
    fn compacting_keeps_every_groups_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut journal = Journal::open(dir.path()).expect("open");
        let mut last = 0;
        while journal.len < COMPACT_AT {
            let batch: Vec<_> = (0..1000).map(|i| commit("t", "g", last + i)).collect();
            last += 1000;
            journal.append(&batch).expect("append");
            journal.apply(batch);
        }
        journal.apply(vec![commit("u", "h", 1)]);
        journal.compact_if_large().expect("compact");
        assert!(journal.len < 100, "one frame per group: {}", journal.len);
        let reread = read(dir.path()).expect("read");
        assert_eq!(reread["t"]["g"], last - 1);
        assert_eq!(reread["u"]["h"], 1);
    }
}
