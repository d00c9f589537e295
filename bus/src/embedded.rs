//! The embedded durable log: SQLite tables under the data directory, one per topic, written
//! with group commit so each `publish` waits for an fsync'd commit shared with every other
//! publish queued meanwhile.
//!
//! Each topic is a single partition (total order, so per-key order holds trivially), meant for
//! one process: one consumer per group. Records every known group has committed are trimmed.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use sqlite::{DbError, Readers, Writer};
use tokio::sync::watch;

use crate::{check_topic, Bus, BusError, Delivered, Record, Subscription};

/// How often a topic's consumed records are trimmed at most.
const TRIM_INTERVAL: Duration = Duration::from_millis(100);
/// Most records one trim deletes.
const TRIM_SLICE: i64 = 4096;

#[derive(Debug)]
pub struct EmbeddedBus {
    path: PathBuf,
    writer: Writer,
    /// Tables already created, so publish does not ask SQLite every time.
    tables: Arc<Mutex<HashSet<String>>>,
    /// Per topic, the last appended offset; consumers wait on it instead of polling disk.
    tails: Mutex<HashMap<String, watch::Sender<i64>>>,
}

fn table(topic: &str) -> String {
    format!("\"log/{topic}\"")
}

impl From<DbError> for BusError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Closed => BusError::Closed,
            other => BusError::Unavailable(other.to_string()),
        }
    }
}

impl EmbeddedBus {
    /// Opens the log in `dir` (file `log.sqlite`), creating it if needed.
    pub fn open(dir: &Path) -> Result<Arc<Self>, BusError> {
        let path = dir.join("log.sqlite");
        let conn = sqlite::open(&path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS offsets(
                topic TEXT NOT NULL, grp TEXT NOT NULL, committed INTEGER NOT NULL,
                PRIMARY KEY(topic, grp)) WITHOUT ROWID;",
        )
        .map_err(DbError::from)?;
        Ok(Arc::new(Self {
            path,
            writer: Writer::spawn(conn, "log", 4096, 1024),
            tables: Arc::new(Mutex::new(HashSet::new())),
            tails: Mutex::new(HashMap::new()),
        }))
    }

    fn tail(&self, topic: &str) -> watch::Sender<i64> {
        let mut tails = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        tails
            .entry(topic.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    fn table_known(&self, topic: &str) -> bool {
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
    }
}

fn ensure_table(
    conn: &Connection,
    topic: &str,
    known: &Mutex<HashSet<String>>,
) -> Result<(), DbError> {
    conn.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {}(
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            key BLOB NOT NULL, headers TEXT, payload BLOB NOT NULL)",
        table(topic)
    ))?;
    known
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(topic.to_string());
    Ok(())
}

#[async_trait]
impl Bus for EmbeddedBus {
    async fn publish(&self, topic: &str, records: Vec<Record>) -> Result<(), BusError> {
        check_topic(topic)?;
        if records.is_empty() {
            return Ok(());
        }
        let topic_owned = topic.to_string();
        let known = self.table_known(topic);
        let tables = Arc::clone(&self.tables);
        let last = self
            .writer
            .write(move |conn| {
                if !known {
                    ensure_table(conn, &topic_owned, &tables)?;
                }
                let mut insert = conn.prepare_cached(&format!(
                    "INSERT INTO {}(key, headers, payload) VALUES (?1, ?2, ?3)",
                    table(&topic_owned)
                ))?;
                for r in &records {
                    let headers = if r.headers.is_empty() {
                        None
                    } else {
                        Some(serde_json::to_string(&r.headers).unwrap_or_default())
                    };
                    insert.execute(params![r.key, headers, r.payload])?;
                }
                Ok(conn.last_insert_rowid())
            })
            .await?;
        self.tail(topic).send_modify(|t| *t = (*t).max(last));
        Ok(())
    }

    async fn subscribe(&self, topic: &str, group: &str) -> Result<Box<dyn Subscription>, BusError> {
        check_topic(topic)?;
        let (t, g) = (topic.to_string(), group.to_string());
        let tables = Arc::clone(&self.tables);
        let committed = self
            .writer
            .write(move |conn| {
                ensure_table(conn, &t, &tables)?;
                conn.execute(
                    "INSERT OR IGNORE INTO offsets(topic, grp, committed) VALUES (?1, ?2, 0)",
                    params![t, g],
                )?;
                Ok(conn.query_row(
                    "SELECT committed FROM offsets WHERE topic = ?1 AND grp = ?2",
                    params![t, g],
                    |r| r.get::<_, i64>(0),
                )?)
            })
            .await?;
        Ok(Box::new(EmbeddedSubscription {
            topic: topic.to_string(),
            group: group.to_string(),
            position: committed,
            reader: Readers::open(&self.path, 1)?,
            writer: self.writer.clone(),
            tail: self.tail(topic).subscribe(),
            last_trim: Instant::now(),
        }))
    }
}

#[derive(Debug)]
struct EmbeddedSubscription {
    topic: String,
    group: String,
    /// Offset of the last record handed out.
    position: i64,
    reader: Readers,
    writer: Writer,
    tail: watch::Receiver<i64>,
    last_trim: Instant,
}

impl EmbeddedSubscription {
    async fn read_after(&self, max: usize) -> Result<Vec<Delivered>, BusError> {
        let (topic, after) = (self.topic.clone(), self.position);
        let rows = self
            .reader
            .read(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT seq, key, headers, payload FROM {} WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                    table(&topic)
                ))?;
                let rows = stmt
                    .query_map(params![after, max as i64], |r| {
                        let headers: Option<String> = r.get(2)?;
                        Ok(Delivered {
                            topic: topic.clone(),
                            partition: 0,
                            offset: r.get(0)?,
                            record: Record {
                                key: r.get(1)?,
                                headers: headers
                                    .and_then(|h| serde_json::from_str(&h).ok())
                                    .unwrap_or_default(),
                                payload: r.get(3)?,
                            },
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        Ok(rows)
    }
}

#[async_trait]
impl Subscription for EmbeddedSubscription {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivered>, BusError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Mark the tail seen before reading, so an append after the read wakes us.
            self.tail.borrow_and_update();
            let records = self.read_after(max.max(1)).await?;
            if let Some(last) = records.last() {
                self.position = last.offset;
                return Ok(records);
            }
            match tokio::time::timeout_at(deadline, self.tail.changed()).await {
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
        let trim = self.last_trim.elapsed() >= TRIM_INTERVAL;
        let (topic, group) = (self.topic.clone(), self.group.clone());
        self.writer
            .write(move |conn| {
                conn.execute(
                    "UPDATE offsets SET committed = max(committed, ?3) WHERE topic = ?1 AND grp = ?2",
                    params![topic, group, upto],
                )?;
                if trim {
                    let floor: Option<i64> = conn
                        .query_row(
                            "SELECT min(committed) FROM offsets WHERE topic = ?1",
                            [&topic],
                            |r| r.get(0),
                        )
                        .optional()?
                        .flatten();
                    if let Some(floor) = floor {
                        // A bounded slice per commit: one long delete would hold the writer,
                        // and every append waiting behind it, for tens of milliseconds.
                        let t = table(&topic);
                        conn.execute(
                            &format!(
                                "DELETE FROM {t} WHERE seq <= min(?1, (SELECT min(seq) FROM {t}) + ?2)"
                            ),
                            params![floor, TRIM_SLICE],
                        )?;
                    }
                }
                Ok(())
            })
            .await?;
        if trim {
            self.last_trim = Instant::now();
        }
        Ok(())
    }
}
