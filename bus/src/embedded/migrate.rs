//! Moves a log kept in `log.sqlite` (the format before segment files) into `log/`: every
//! record some consumer group has not committed yet, and each group's place, renumbered from
//! offset 1. The new log is built aside and renamed into place, and only then is the old file
//! removed, so a crash at any point leaves one complete log to start from.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::journal::{self, Committed};
use super::segment::{self, Segment};
use super::topic::sync_dir;
use super::{record, unavailable};
use crate::{check_topic, BusError, Record};

const OLD: &str = "log.sqlite";

/// Migrates `data_dir`'s `log.sqlite`, if any, into `root`.
pub fn from_sqlite(data_dir: &Path, root: &Path) -> Result<(), BusError> {
    let old = data_dir.join(OLD);
    if !old.exists() {
        return Ok(());
    }
    if !root.exists() {
        let staging = data_dir.join("log.migrating");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(|e| unavailable("remove", &staging, e))?;
        }
        std::fs::create_dir(&staging).map_err(|e| unavailable("create", &staging, e))?;
        let moved = copy(&old, &staging).map_err(|e| unavailable("migrate", &old, e))?;
        std::fs::rename(&staging, root).map_err(|e| unavailable("rename", &staging, e))?;
        sync_dir(data_dir).map_err(|e| unavailable("sync", data_dir, e))?;
        tracing::info!(
            records = moved,
            "moved the log from log.sqlite to segment files"
        );
    }
    for suffix in ["", "-wal", "-shm"] {
        let file = data_dir.join(format!("{OLD}{suffix}"));
        if let Err(err) = std::fs::remove_file(&file) {
            if err.kind() != std::io::ErrorKind::NotFound {
                return Err(unavailable("remove", &file, err));
            }
        }
    }
    Ok(())
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Copies the unconsumed records and the groups' places; returns how many records moved.
fn copy(old: &Path, staging: &Path) -> Result<u64, Failure> {
    let conn = Connection::open_with_flags(old, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let mut groups: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    let has_offsets: bool = conn.query_row(
        "SELECT count(*) > 0 FROM sqlite_master WHERE name = 'offsets'",
        [],
        |r| r.get(0),
    )?;
    if has_offsets {
        let mut stmt = conn.prepare("SELECT topic, grp, committed FROM offsets")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        for row in rows {
            let (topic, group, committed): (String, String, i64) = row?;
            groups.entry(topic).or_default().push((group, committed));
        }
    }
    let topics: Vec<String> = conn
        .prepare(
            "SELECT substr(name, 5) FROM sqlite_master WHERE type = 'table' AND name LIKE 'log/%'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;

    let mut committed = Committed::new();
    let mut moved = 0;
    for topic in topics.into_iter().filter(|t| check_topic(t).is_ok()) {
        let its_groups = groups.remove(&topic).unwrap_or_default();
        let floor = its_groups.iter().map(|(_, c)| *c).min().unwrap_or(0);
        let dir = staging.join(&topic);
        std::fs::create_dir(&dir)?;
        let segment = Segment::create(&dir, 1)?;
        let mut stmt = conn.prepare(&format!(
            "SELECT seq, key, headers, payload FROM \"log/{topic}\" WHERE seq > ?1 ORDER BY seq"
        ))?;
        let mut rows = stmt.query([floor])?;
        let (mut frames, mut len, mut seqs) = (Vec::new(), segment::START, Vec::new());
        while let Some(row) = rows.next()? {
            let headers: Option<String> = row.get(2)?;
            let record = Record {
                key: row.get(1)?,
                headers: headers
                    .and_then(|h| serde_json::from_str(&h).ok())
                    .unwrap_or_default(),
                payload: row.get(3)?,
            };
            record::encode_all(std::slice::from_ref(&record), &mut frames)?;
            seqs.push(row.get::<_, i64>(0)?);
            if frames.len() >= 1 << 20 {
                segment.file.write_all_at(&frames, len)?;
                len += frames.len() as u64;
                frames.clear();
            }
        }
        segment.file.write_all_at(&frames, len)?;
        segment.file.sync_all()?;
        sync_dir(&dir)?;
        // A group's new place: how many moved records it had already committed.
        for (group, old_committed) in its_groups {
            let done = seqs.partition_point(|s| *s <= old_committed) as i64;
            committed
                .entry(topic.clone())
                .or_default()
                .insert(group, done);
        }
        moved += seqs.len() as u64;
    }
    journal::write_new(staging, &committed)?;
    Ok(moved)
}
