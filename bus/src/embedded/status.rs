//! What the log holds, read from its files without taking the lock, so an operator (or a
//! benchmark script) can look while Postino runs: each topic's oldest and newest offsets, and
//! how far each consumer group has come.

use std::path::Path;

use super::segment::Segment;
use super::topic::{list_segments, list_topics};
use super::{journal, unavailable, DIR};
use crate::BusError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicStatus {
    pub topic: String,
    /// Offset of the oldest record kept.
    pub first: i64,
    /// Offset of the newest record on disk (`first - 1` when none is kept).
    pub last: i64,
    /// Each group and the offset it has committed, by group name.
    pub groups: Vec<(String, i64)>,
}

/// The status of every topic of the log under the data directory `dir`, by topic name.
pub fn read(dir: &Path) -> Result<Vec<TopicStatus>, BusError> {
    let root = dir.join(DIR);
    if !root.exists() {
        return Ok(Vec::new());
    }
    let committed = journal::read(&root).map_err(|e| unavailable("read", &root, e))?;
    let mut topics = Vec::new();
    for (name, path) in list_topics(&root).map_err(|e| unavailable("read", &root, e))? {
        let segments = list_segments(&path).map_err(|e| unavailable("read", &path, e))?;
        let (Some((first, _)), Some((base, newest_path))) = (segments.first(), segments.last())
        else {
            continue;
        };
        let newest = Segment::open(newest_path.clone(), *base, false)
            .map_err(|e| unavailable("read", newest_path, e))?;
        let walked = newest
            .skip(usize::MAX)
            .map_err(|e| unavailable("read", &newest.path, e))?;
        let mut groups: Vec<(String, i64)> = committed
            .get(&name)
            .map(|g| g.iter().map(|(k, v)| (k.clone(), *v)).collect())
            .unwrap_or_default();
        groups.sort();
        topics.push(TopicStatus {
            topic: name,
            first: *first,
            last: base + walked.frames as i64 - 1,
            groups,
        });
    }
    topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(topics)
}
