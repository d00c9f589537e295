//! The ACCEPTED status rows, written behind the response. The `201` waits only for the log
//! (invariant 1); the row that lets `getMessage` show ACCEPTED is queued here and written in
//! batches, one store commit for many messages instead of one wait per request.
//!
//! Until its row is written, a message is served from memory by this process, so a sender
//! reading right after its `201` through the same process always finds it. Through another
//! ingest process it may be missing for the few milliseconds of one batch. If the process
//! dies before the row is written, nothing is lost: the message is in the log, and the
//! pipeline writes its next status (PROCESSED or REJECTED) as usual.
//!
//! The store never holds up a `201`: when it falls so far behind that the queue is full
//! (a store down or overloaded), further rows are skipped, and those messages show their
//! status once the pipeline records the next one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use store::{MessageRecord, Store};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use ulid::Ulid;

/// Rows waiting to be written; beyond it rows are skipped, so memory stays bounded and
/// requests never wait on the store.
const QUEUE: usize = 8192;
/// Rows written in one store job.
const BATCH: usize = 512;
/// How long the writer waits for more rows when fewer than a batch are queued. Each batch is
/// a store commit (an fsync); at a steady rate without it a commit carried only the handful
/// of rows that arrived during the previous one.
const LINGER: Duration = Duration::from_millis(5);
/// Tries for a batch while the store is unavailable, before its rows are left to the
/// pipeline's next status.
const ATTEMPTS: u32 = 5;

type Pending = Arc<Mutex<HashMap<Ulid, MessageRecord>>>;

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<Ulid, MessageRecord>> {
    pending.lock().unwrap_or_else(|p| p.into_inner())
}

/// The queued rows: each lives in `pending` until written; the queue carries only its id.
#[derive(Debug, Clone)]
pub struct AcceptedRows {
    queue: mpsc::Sender<Ulid>,
    pending: Pending,
}

impl AcceptedRows {
    /// Starts the writer; it ends once every handle is dropped and the queue is written.
    pub fn spawn(store: Arc<dyn Store>) -> (Self, JoinHandle<()>) {
        let (queue, ids) = mpsc::channel(QUEUE);
        let pending = Pending::default();
        let writer = tokio::spawn(write_rows(store, ids, Arc::clone(&pending)));
        (Self { queue, pending }, writer)
    }

    /// Queues `record`'s row, or skips it when the queue is full or the writer gone.
    pub async fn add(&self, record: MessageRecord) {
        let id = record.message.id;
        lock(&self.pending).insert(id, record);
        if let Err(err) = self.queue.try_send(id) {
            lock(&self.pending).remove(&id);
            match err {
                mpsc::error::TrySendError::Full(_) => tracing::debug!(
                    "ACCEPTED rows are queued to the limit (the store is behind); this one is skipped"
                ),
                mpsc::error::TrySendError::Closed(_) => tracing::warn!(
                    "ACCEPTED writer stopped; the pipeline will record the status"
                ),
            }
        }
    }

    /// A message accepted here whose row is not written yet.
    pub fn get(&self, id: &Ulid) -> Option<MessageRecord> {
        lock(&self.pending).get(id).cloned()
    }
}

/// Waits for the next batch of ids: what is queued, and, short of a full batch, what comes
/// within [`LINGER`]. Returns 0 once the queue is closed and empty.
async fn gather(queued: &mut mpsc::Receiver<Ulid>, ids: &mut Vec<Ulid>) -> usize {
    if queued.recv_many(ids, BATCH).await == 0 {
        return 0;
    }
    if ids.len() < BATCH {
        tokio::time::sleep(LINGER).await;
        while ids.len() < BATCH {
            match queued.try_recv() {
                Ok(id) => ids.push(id),
                Err(_) => break,
            }
        }
    }
    ids.len()
}

async fn write_rows(store: Arc<dyn Store>, mut queued: mpsc::Receiver<Ulid>, pending: Pending) {
    let mut ids = Vec::with_capacity(BATCH);
    while gather(&mut queued, &mut ids).await > 0 {
        let mut delay = Duration::from_millis(50);
        for attempt in 1..=ATTEMPTS {
            let batch: Vec<MessageRecord> = {
                let p = lock(&pending);
                ids.iter().filter_map(|id| p.get(id).cloned()).collect()
            };
            match store.put_messages(batch).await {
                Ok(()) => break,
                Err(err) if err.is_retryable() && attempt < ATTEMPTS => {
                    tracing::warn!(error = %err, count = ids.len(), "cannot write ACCEPTED rows yet; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(err) => {
                    tracing::warn!(error = %err, count = ids.len(), "ACCEPTED rows not written; the pipeline will record the next status");
                    break;
                }
            }
        }
        let mut p = lock(&pending);
        for id in ids.drain(..) {
            p.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::status::MessageStatus;
    use store::conformance::{fresh_fiscal_code, sample_record};
    use store::sqlite::SqliteStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_has_fallen_behind_never_holds_up_a_request() {
        // A writer stuck on a store that does not answer: nothing reads the queue.
        let (queue, _stuck) = mpsc::channel(2);
        let rows = AcceptedRows {
            queue,
            pending: Pending::default(),
        };
        let fc = fresh_fiscal_code();
        let records: Vec<MessageRecord> = (0..5)
            .map(|ms| sample_record(&fc, ms, MessageStatus::Accepted))
            .collect();
        for r in &records {
            tokio::time::timeout(Duration::from_secs(10), rows.add(r.clone()))
                .await
                .expect("add never waits for the store");
        }
        let kept: Vec<bool> = records
            .iter()
            .map(|r| rows.get(&r.message.id).is_some())
            .collect();
        assert_eq!(
            kept,
            [true, true, false, false, false],
            "the queue's worth is kept, the rest skipped, memory bounded"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queued_row_is_served_until_written_and_written_before_the_writer_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let (rows, writer) = AcceptedRows::spawn(Arc::clone(&store));
        let fc = fresh_fiscal_code();
        let records: Vec<MessageRecord> = (0..1000)
            .map(|ms| sample_record(&fc, ms, MessageStatus::Accepted))
            .collect();
        for r in &records {
            rows.add(r.clone()).await;
            // Readable at once: from memory, or from the store once written.
            let id = r.message.id;
            let found = match rows.get(&id) {
                Some(found) => Some(found),
                None => store.get_message(&id).await.expect("read"),
            };
            assert_eq!(found.map(|f| f.status), Some(MessageStatus::Accepted));
        }
        drop(rows);
        writer.await.expect("writer ends once its handles are gone");
        for r in &records {
            let stored = store.get_message(&r.message.id).await.expect("read");
            assert_eq!(stored.map(|s| s.status), Some(MessageStatus::Accepted));
        }
    }

    /// On a paused clock the gathering task sleeps until this test has queued everything and
    /// waits, so the test needs no timing of its own.
    #[tokio::test(start_paused = true)]
    async fn rows_queued_while_a_batch_gathers_join_it_and_a_full_batch_does_not_wait() {
        let (queue, mut queued) = mpsc::channel(QUEUE);
        queue.send(Ulid::new()).await.expect("send");
        let gathering = tokio::spawn(async move {
            let mut ids = Vec::new();
            let n = gather(&mut queued, &mut ids).await;
            (n, queued)
        });
        // Let it take the first id; then more arrive while it lingers.
        tokio::task::yield_now().await;
        for _ in 0..9 {
            queue.send(Ulid::new()).await.expect("send");
        }
        let (n, mut queued) = gathering.await.expect("join");
        assert_eq!(n, 10, "one batch, not a batch for the first row alone");

        for _ in 0..BATCH + 3 {
            queue.send(Ulid::new()).await.expect("send");
        }
        let started = tokio::time::Instant::now();
        let mut ids = Vec::new();
        assert_eq!(gather(&mut queued, &mut ids).await, BATCH);
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "a full batch goes at once"
        );
        drop(queue);
        ids.clear();
        assert_eq!(gather(&mut queued, &mut ids).await, 3);
        ids.clear();
        assert_eq!(gather(&mut queued, &mut ids).await, 0, "closed and empty");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_later_status_is_never_replaced_by_a_late_accepted_row() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let fc = fresh_fiscal_code();
        let processed = sample_record(&fc, 1, MessageStatus::Processed);
        store
            .put_messages(vec![processed.clone()])
            .await
            .expect("put");
        let (rows, writer) = AcceptedRows::spawn(Arc::clone(&store));
        let accepted = MessageRecord {
            status: MessageStatus::Accepted,
            ..processed.clone()
        };
        rows.add(accepted).await;
        drop(rows);
        writer.await.expect("writer");
        let stored = store
            .get_message(&processed.message.id)
            .await
            .expect("read");
        assert_eq!(stored.map(|s| s.status), Some(MessageStatus::Processed));
    }
}
