//! Files written ahead with zeros. An `fdatasync` after an append that grew the file must
//! also write the inode (its size); one after overwriting blocks already written does not.
//! On this project's VM that is a third less CPU and time per sync (BENCHMARKS.md, session 8),
//! so the log keeps a stretch of zeros written ahead of its data and its appends overwrite
//! them. Zeros read as no frame, so the data's end is where the zeros begin.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Writes zeros over `from..to`.
pub fn fill(file: &File, mut from: u64, to: u64) -> io::Result<()> {
    while from < to {
        let n = usize::try_from(to - from)
            .unwrap_or(usize::MAX)
            .min(ZEROS.len());
        file.write_all_at(&ZEROS[..n], from)?;
        from += n as u64;
    }
    Ok(())
}

/// After a crash the bytes past the intact data (`from..len`) may hold the remains of an
/// unacknowledged write. Overwrites them with zeros, synced, so nothing after the data can
/// later read as a frame; returns how many bytes were not zero already.
pub fn wipe_tail(file: &File, from: u64, len: u64) -> io::Result<u64> {
    let mut dirty = 0;
    let mut buf = vec![0; ZEROS.len()];
    let mut at = from;
    while at < len {
        let n = usize::try_from(len - at)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        file.read_exact_at(&mut buf[..n], at)?;
        dirty += buf[..n].iter().filter(|b| **b != 0).count() as u64;
        at += n as u64;
    }
    if dirty > 0 {
        fill(file, from, len)?;
        file.sync_data()?;
    }
    Ok(dirty)
}

/// Keeps `ahead` bytes of zeros written past `end` of a file whose zeros reach `allocated`;
/// returns the new extent. Tops up in steps of `ahead`, so it grows the file (and makes
/// that round's sync write the inode) once per `ahead` bytes of data.
pub fn keep_ahead(file: &File, end: u64, allocated: u64, ahead: u64) -> io::Result<u64> {
    if allocated >= end + ahead / 2 {
        return Ok(allocated);
    }
    let target = end + ahead;
    fill(file, allocated.max(end), target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dirty_tail_is_wiped_and_a_clean_one_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .expect("create");
        file.write_all_at(b"dataXX\0\0Y\0", 0).expect("write");
        assert_eq!(wipe_tail(&file, 4, 10).expect("wipe"), 3);
        let mut back = [1u8; 10];
        file.read_exact_at(&mut back, 0).expect("read");
        assert_eq!(&back, b"data\0\0\0\0\0\0");
        assert_eq!(wipe_tail(&file, 4, 10).expect("wipe again"), 0);
    }

    #[test]
    fn zeros_are_topped_up_only_when_half_of_them_are_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = File::create(dir.path().join("f")).expect("create");
        let allocated = keep_ahead(&file, 0, 0, 1000).expect("first");
        assert_eq!(allocated, 1000);
        assert_eq!(
            keep_ahead(&file, 400, allocated, 1000).expect("enough"),
            1000
        );
        assert_eq!(
            keep_ahead(&file, 600, allocated, 1000).expect("top up"),
            1600
        );
        assert_eq!(file.metadata().expect("len").len(), 1600);
    }
}
