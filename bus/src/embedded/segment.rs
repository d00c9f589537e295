//! One segment file of a topic: a magic header, then record frames back to back. A topic is a
//! run of segments named by the offset of their first record; only the newest is written to,
//! and a segment every consumer group has passed is deleted whole.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::frame::{self, Parsed};

/// The first bytes of every segment: what the file is, and the format's version.
pub const MAGIC: &[u8; 8] = b"PSTLOG01";
/// Where the first frame starts.
pub const START: u64 = MAGIC.len() as u64;
/// Bytes read at a time when reading or scanning frames.
const CHUNK: usize = 256 << 10;

/// A segment as readers and the writer share it.
#[derive(Debug)]
pub struct Segment {
    /// Offset of the segment's first record.
    pub base: i64,
    pub path: PathBuf,
    pub file: File,
    /// Bytes known to be on disk: readers never read past it.
    end: AtomicU64,
}

pub fn file_name(base: i64) -> String {
    format!("{base:020}.seg")
}

/// The base offset in a segment's file name, or `None` for any other file.
pub fn parse_name(name: &str) -> Option<i64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

impl Segment {
    /// Creates an empty segment file, on disk when this returns (its directory entry is the
    /// caller's to sync).
    pub fn create(dir: &Path, base: i64) -> io::Result<Arc<Self>> {
        let path = dir.join(file_name(base));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        file.write_all_at(MAGIC, 0)?;
        file.sync_data()?;
        Ok(Arc::new(Self {
            base,
            path,
            file,
            end: AtomicU64::new(START),
        }))
    }

    /// Opens an existing segment; its end is the file's length until recovery says otherwise.
    pub fn open(path: PathBuf, base: i64, writable: bool) -> io::Result<Arc<Self>> {
        let file = OpenOptions::new().read(true).write(writable).open(&path)?;
        let mut magic = [0; MAGIC.len()];
        let len = file.metadata()?.len();
        if len < START {
            // Created, not yet stamped, when the process stopped: an empty segment.
            if writable {
                file.write_all_at(MAGIC, 0)?;
                file.set_len(START)?;
                file.sync_data()?;
            }
        } else {
            file.read_exact_at(&mut magic, 0)?;
            if &magic != MAGIC {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} is not a segment of this version of Postino's log",
                        path.display()
                    ),
                ));
            }
        }
        Ok(Arc::new(Self {
            base,
            path,
            file,
            end: AtomicU64::new(len.max(START)),
        }))
    }

    pub fn end(&self) -> u64 {
        self.end.load(Ordering::Acquire)
    }

    /// Publishes bytes up to `end` to readers; the writer calls it once they are synced.
    pub fn set_end(&self, end: u64) {
        self.end.store(end, Ordering::Release);
    }

    /// Steps over up to `max` frames from the segment's start, up to its end: where a
    /// record's offset is found, and where the newest segment's data ends.
    pub fn skip(&self, max: usize) -> io::Result<Walked> {
        self.walk(START, self.end(), max, &mut Vec::new(), |_| Ok(()))
    }

    /// Walks the frames from `pos` up to `limit` bytes, visiting at most `max` of them.
    /// Stops early at a frame that is torn or damaged and says why.
    pub fn walk(
        &self,
        mut pos: u64,
        limit: u64,
        max: usize,
        scratch: &mut Vec<u8>,
        mut visit: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> io::Result<Walked> {
        let mut visited = 0;
        while visited < max && pos < limit {
            let want = usize::try_from(limit - pos)
                .unwrap_or(usize::MAX)
                .min(CHUNK);
            scratch.resize(want, 0);
            self.file.read_exact_at(scratch, pos)?;
            let mut at = 0;
            while visited < max {
                match frame::parse(&scratch[at..]) {
                    Parsed::Frame { body, len } => {
                        if let Err(why) = visit(body) {
                            return Ok(Walked::stopped(pos + at as u64, visited, why));
                        }
                        at += len;
                        visited += 1;
                    }
                    Parsed::Partial { len } if at == 0 => {
                        // A frame bigger than a chunk: read it whole, if the file has it.
                        if pos + len as u64 > limit {
                            return Ok(Walked::stopped(pos, visited, "torn frame".into()));
                        }
                        scratch.resize(len, 0);
                        self.file.read_exact_at(scratch, pos)?;
                        let Parsed::Frame { body, len } = frame::parse(scratch) else {
                            return Ok(Walked::stopped(pos, visited, "damaged frame".into()));
                        };
                        if let Err(why) = visit(body) {
                            return Ok(Walked::stopped(pos, visited, why));
                        }
                        at = len;
                        visited += 1;
                        break;
                    }
                    Parsed::Partial { .. } => break,
                    Parsed::Invalid(why) => {
                        return Ok(Walked::stopped(pos + at as u64, visited, why))
                    }
                }
            }
            pos += at as u64;
        }
        Ok(Walked {
            pos,
            frames: visited,
            stopped: None,
        })
    }
}

/// Where a walk over frames ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Walked {
    /// Byte position after the last frame visited.
    pub pos: u64,
    /// Frames visited.
    pub frames: usize,
    /// Why the walk stopped before `limit`, if it met something that is no whole frame.
    pub stopped: Option<String>,
}

impl Walked {
    fn stopped(pos: u64, frames: usize, why: String) -> Self {
        Self {
            pos,
            frames,
            stopped: Some(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(bodies: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for b in bodies {
            frame::push(&mut out, |o| o.extend_from_slice(b));
        }
        out
    }

    fn bodies_walked(seg: &Segment, limit: u64, max: usize) -> (Vec<Vec<u8>>, Walked) {
        let mut seen = Vec::new();
        let walked = seg
            .walk(START, limit, max, &mut Vec::new(), |b| {
                seen.push(b.to_vec());
                Ok(())
            })
            .expect("walk");
        (seen, walked)
    }

    #[test]
    fn segment_names_sort_by_offset_and_other_files_are_not_segments() {
        assert_eq!(parse_name(&file_name(42)), Some(42));
        assert!(file_name(9) < file_name(10));
        for other in [
            "offsets",
            "42.seg",
            "0000000000000000004x.seg",
            "00000000000000000042.tmp",
        ] {
            assert_eq!(parse_name(other), None, "{other}");
        }
    }

    #[test]
    fn a_walk_stops_at_a_torn_tail_and_at_max() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = Segment::create(dir.path(), 1).expect("create");
        let data = frames(&[b"one", b"two", b"three"]);
        seg.file.write_all_at(&data, START).expect("write");
        let whole = START + data.len() as u64;
        let (seen, walked) = bodies_walked(&seg, whole, usize::MAX);
        assert_eq!(
            seen,
            vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
        );
        assert_eq!((walked.pos, walked.stopped), (whole, None));

        let (seen, walked) = bodies_walked(&seg, whole - 2, usize::MAX);
        assert_eq!(seen.len(), 2);
        assert_eq!(walked.stopped.as_deref(), Some("torn frame"));

        let (seen, walked) = bodies_walked(&seg, whole, 1);
        assert_eq!((seen.len(), walked.frames), (1, 1));
        assert_eq!(walked.pos, START + 8 + 3);
    }

    #[test]
    fn frames_larger_than_a_chunk_are_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let seg = Segment::create(dir.path(), 1).expect("create");
        let big = vec![7u8; CHUNK * 2 + 5];
        let data = frames(&[b"small", &big, b"after"]);
        seg.file.write_all_at(&data, START).expect("write");
        let (seen, walked) = bodies_walked(&seg, START + data.len() as u64, usize::MAX);
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[1], big);
        assert_eq!(walked.stopped, None);
    }

    #[test]
    fn a_file_that_is_not_a_segment_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name(1));
        std::fs::write(&path, b"SQLite format 3\0").expect("write");
        let err = Segment::open(path, 1, true).expect_err("refused");
        assert!(err.to_string().contains("is not a segment"), "{err}");
    }

    #[test]
    fn a_segment_cut_short_before_its_header_opens_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(file_name(5));
        std::fs::write(&path, b"PST").expect("write");
        let seg = Segment::open(path, 5, true).expect("open");
        assert_eq!(seg.end(), START);
        assert_eq!(bodies_walked(&seg, seg.end(), usize::MAX).0.len(), 0);
    }
}
