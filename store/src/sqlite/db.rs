//! SQLite plumbing of the embedded store: how a database file is opened, one writer
//! thread per file that commits many callers' writes in one transaction (group commit), and a
//! small pool of reader connections.
//!
//! Group commit is what makes "accepted means durable" affordable: every caller waits for an
//! fsync'd commit, but one commit serves all the callers that queued while the previous one
//! was on disk.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

/// Why a database operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DbError {
    /// SQLite refused or failed; `transient` errors (busy, locked, I/O, full disk) may
    /// succeed if tried again later.
    #[error("sqlite: {message}")]
    Sqlite { message: String, transient: bool },
    /// SQLite refuses this data for good (a value too large, a constraint it breaks), or
    /// the data cannot be put in its columns: writing it again fails again.
    #[error("sqlite refused the data: {0}")]
    Refused(String),
    /// The writer thread is gone (shutting down).
    #[error("database writer is closed")]
    Closed,
}

impl DbError {
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Sqlite { transient, .. } => *transient,
            Self::Refused(_) => false,
            Self::Closed => true,
        }
    }
}

impl From<rusqlite::Error> for DbError {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::*;
        if matches!(
            err.sqlite_error_code(),
            Some(TooBig | ConstraintViolation | TypeMismatch)
        ) {
            return Self::Refused(err.to_string());
        }
        let transient = matches!(
            err.sqlite_error_code(),
            Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | DiskFull | OutOfMemory)
        );
        Self::Sqlite {
            message: err.to_string(),
            transient,
        }
    }
}

/// Opens (creating if needed) a database in WAL mode. `synchronous=FULL` makes every commit
/// reach the disk before it returns, which is what acknowledged writes promise.
pub fn open(path: &Path) -> Result<Connection, DbError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| DbError::Sqlite {
            message: format!("cannot create {}: {e}", dir.display()),
            transient: false,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL;
         PRAGMA synchronous=FULL;
         PRAGMA temp_store=MEMORY;
         PRAGMA cache_size=-32768;",
    )?;
    Ok(conn)
}

type Completion = Box<dyn FnOnce(Result<(), DbError>) + Send>;
/// A queued write: given the connection inside the open transaction it runs and returns how
/// to answer once the commit is known; given `None` (no transaction could be opened) it
/// does not run at all.
type Job = Box<dyn FnOnce(Option<&Connection>) -> Completion + Send>;

/// The single writer of one database file. Jobs queue on a bounded channel (so callers feel
/// backpressure instead of memory growing); the writer thread takes every queued job, runs
/// each inside its own savepoint of one transaction, commits once, then answers them all.
#[derive(Debug, Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread on `conn`. `queue` bounds waiting jobs, `max_batch` bounds
    /// how many jobs share one commit.
    pub fn spawn(conn: Connection, name: &str, queue: usize, max_batch: usize) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(queue);
        let thread_name = format!("{name}-writer");
        let checkpoints = Checkpointer::spawn(&conn, name);
        if checkpoints.is_some() {
            // The background thread does the copying; the writer's own checkpoint stays only
            // as the bound on the WAL should that thread fall behind.
            if let Err(err) = conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}"
            )) {
                tracing::warn!(error = %err, "cannot move the writer's checkpoint back");
            }
        }
        let spawned = std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                writer_loop(conn, rx, max_batch);
                drop(checkpoints);
            });
        if let Err(err) = spawned {
            // Without the thread every write answers `Closed`, which callers already handle.
            tracing::error!(error = %err, "cannot start database writer thread");
        }
        Self { jobs: tx }
    }

    /// Runs `f` in the next group commit and returns its value once the commit is on disk.
    /// If `f` fails, only its own changes are rolled back; the other jobs still commit.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn: Option<&Connection>| -> Completion {
            let outcome = match conn {
                Some(conn) => run_in_savepoint(conn, f),
                None => Err(DbError::Closed),
            };
            Box::new(move |committed: Result<(), DbError>| {
                // A failed commit outranks the job's own result: nothing of it was kept.
                let result = committed.and(outcome);
                let _ = answer.send(result);
            })
        });
        self.jobs.send(job).await.map_err(|_| DbError::Closed)?;
        answered.await.map_err(|_| DbError::Closed)?
    }
}

/// Copies the WAL back into the database file from a thread of its own, so the writer's
/// commits (and the requests waiting on them) rarely pause for it. With the writer's own
/// checkpoint at SQLite's default of 1000 pages, a busy file (the log, when it was kept in
/// SQLite) reached it between two background passes and the writer did the copying itself:
/// 1.5–3 µs of writer CPU per message in a mass notice (BENCHMARKS.md, session 7). It now
/// comes due only at [`WRITER_CHECKPOINT_PAGES`].
#[derive(Debug)]
struct Checkpointer {
    /// Dropped when the writer stops; the checkpointer then does a last pass and ends.
    _stop: std::sync::mpsc::Sender<()>,
}

/// The WAL size (pages of 4 KiB) at which the writer checkpoints by itself: the most disk
/// the WAL takes if the background checkpoint falls behind.
const WRITER_CHECKPOINT_PAGES: u32 = 10_000;

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Checkpointer {
    fn spawn(writer: &Connection, name: &str) -> Option<Self> {
        let path = writer.path().filter(|p| !p.is_empty())?.to_string();
        let own = open(Path::new(&path)).ok()?;
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name(format!("{name}-checkpoint"))
            .spawn(move || loop {
                let last = matches!(
                    stopped.recv_timeout(CHECKPOINT_EVERY),
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
                );
                if let Err(err) = own.execute_batch("PRAGMA wal_checkpoint(PASSIVE);") {
                    tracing::warn!(error = %err, "background checkpoint failed");
                }
                if last {
                    break;
                }
            });
        match spawned {
            Ok(_) => Some(Self { _stop: stop }),
            Err(err) => {
                // The writer's own checkpoints still run.
                tracing::warn!(error = %err, "cannot start the checkpoint thread");
                None
            }
        }
    }
}

fn run_in_savepoint<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    // Prepared once per connection: parsing these two statements for every job showed up
    // in profiles of single-record appends.
    conn.prepare_cached("SAVEPOINT job")?.execute([])?;
    match f(conn) {
        Ok(value) => {
            conn.prepare_cached("RELEASE job")?.execute([])?;
            Ok(value)
        }
        Err(err) => {
            conn.execute_batch("ROLLBACK TO job; RELEASE job")?;
            Err(err)
        }
    }
}

fn writer_loop(conn: Connection, mut jobs: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(err) = conn.execute_batch("BEGIN IMMEDIATE") {
            let err = DbError::from(err);
            for job in batch {
                job(None)(Err(err.clone()));
            }
            continue;
        }
        let completions: Vec<Completion> = batch.into_iter().map(|job| job(Some(&conn))).collect();
        let committed = conn.execute_batch("COMMIT").map_err(DbError::from);
        if committed.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        for completion in completions {
            completion(committed.clone());
        }
    }
}

/// A few read connections, used round-robin from blocking threads so async tasks never wait
/// on disk. WAL lets them read while the writer commits.
///
/// Each read runs in one transaction, however many statements it makes: every transaction
/// start takes the WAL read lock (`fcntl` calls) and, when the writer has committed since,
/// empties the connection's page cache. A batch read statement by statement paid that per
/// statement (the router's profile lookups: about five `fcntl` calls per message).
#[derive(Debug)]
pub struct Readers {
    conns: Vec<Arc<Mutex<Connection>>>,
    next: AtomicUsize,
}

impl Readers {
    pub fn open(path: &Path, count: usize) -> Result<Self, DbError> {
        let conns = (0..count.max(1))
            .map(|_| open(path).map(|c| Arc::new(Mutex::new(c))))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conns,
            next: AtomicUsize::new(0),
        })
    }

    pub async fn read<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, DbError> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        let conn = Arc::clone(&self.conns[i]);
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().map_err(|_| DbError::Sqlite {
                message: "reader connection poisoned by an earlier panic".into(),
                transient: false,
            })?;
            in_read_transaction(&guard, f)
        })
        .await
        .map_err(|_| DbError::Closed)?
    }
}

/// Runs `f` in one read transaction (one snapshot, one lock) and ends it either way.
fn in_read_transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, DbError>,
) -> Result<T, DbError> {
    conn.prepare_cached("BEGIN")?.execute([])?;
    let result = f(conn);
    // Nothing was written, so ending it either way keeps the same; a read that failed
    // part-way must not leave its snapshot (and the WAL behind it) held.
    let ended = conn
        .prepare_cached("COMMIT")
        .and_then(|mut s| s.execute([]));
    if ended.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_sqlite_refuses_is_told_from_a_database_that_fails() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t(v INTEGER UNIQUE); INSERT INTO t(v) VALUES (1);")
            .unwrap();
        let duplicate = DbError::from(conn.execute("INSERT INTO t(v) VALUES (1)", []).unwrap_err());
        assert!(matches!(duplicate, DbError::Refused(_)), "{duplicate:?}");
        assert!(!duplicate.is_transient());
        let no_table = DbError::from(
            conn.execute("INSERT INTO gone(v) VALUES (1)", [])
                .unwrap_err(),
        );
        assert!(
            matches!(
                no_table,
                DbError::Sqlite {
                    transient: false,
                    ..
                }
            ),
            "not the data's fault: {no_table:?}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_commits_and_a_failing_job_rolls_back_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t(v INTEGER UNIQUE)")
            .unwrap();
        let writer = Writer::spawn(conn, "test", 64, 16);
        let mut tasks = Vec::new();
        for v in 0..200 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.write(move |c| {
                    c.execute("INSERT INTO t(v) VALUES (?1)", [v % 150])?;
                    Ok(())
                })
                .await
            }));
        }
        let mut failed = 0;
        for t in tasks {
            if t.await.unwrap().is_err() {
                failed += 1;
            }
        }
        assert_eq!(failed, 50, "the 50 duplicate values fail, the rest commit");
        let readers = Readers::open(&path, 2).unwrap();
        let n: i64 = readers
            .read(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(n, 150);
    }

    #[tokio::test]
    async fn a_read_sees_one_snapshot_and_a_failed_read_leaves_the_connection_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = open(&path).unwrap();
        conn.execute_batch("CREATE TABLE t(v INTEGER); INSERT INTO t VALUES (1);")
            .unwrap();
        let readers = Readers::open(&path, 1).unwrap();
        fn count(c: &Connection) -> Result<i64, DbError> {
            Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?)
        }
        let other_writer = Arc::new(Mutex::new(conn));
        let writer = Arc::clone(&other_writer);
        let (before, after) = readers
            .read(move |c| {
                let before = count(c)?;
                // Another connection commits between this read's two statements.
                writer
                    .lock()
                    .unwrap()
                    .execute("INSERT INTO t VALUES (2)", [])?;
                Ok((before, count(c)?))
            })
            .await
            .unwrap();
        assert_eq!(
            (before, after),
            (1, 1),
            "both statements see the same snapshot"
        );

        let failed = readers
            .read(|c| {
                count(c)?;
                Ok(c.query_row("SELECT nothing FROM t", [], |r| r.get::<_, i64>(0))?)
            })
            .await;
        assert!(failed.is_err());
        let now = readers.read(count).await.expect("the next read works");
        assert_eq!(now, 2, "and sees the commit made meanwhile");
    }
}
