//! The embedded SQLite store against the store conformance suite, plus reopening.

use std::sync::Arc;

use store::sqlite::SqliteStore;
use store::Store;

async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("open"));
    (store, dir)
}

store::store_conformance!(sqlite());

/// The store as every process runs it: wrapped to record its metrics, which must change
/// nothing of what it does.
mod metered {
    use super::*;
    use store::metered::{Backend, Metered};

    async fn metered_sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
        let (store, dir) = sqlite().await;
        (Metered::wrap(store, Backend::Sqlite), dir)
    }

    store::store_conformance!(metered_sqlite());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_file_see_each_others_writes() {
    // Roles running as separate processes share the file; two handles stand in for them.
    let dir = tempfile::tempdir().expect("tempdir");
    let a = SqliteStore::open(dir.path()).expect("open a");
    let b = SqliteStore::open(dir.path()).expect("open b");
    let fc = store::conformance::fresh_fiscal_code();
    let record = store::conformance::sample_record(&fc, 5, model::status::MessageStatus::Processed);
    store::MessageStore::deliver(&a, vec![record.clone()])
        .await
        .expect("deliver via a");
    let seen = store::MessageStore::list_inbox(&b, &fc, None, 10)
        .await
        .expect("list via b");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].id, record.message.id);
}

/// A `store.sqlite` as Postino wrote it up to session 5 (layout 0): each message row one
/// JSON body with the message and its status.
fn layout_0_file(dir: &std::path::Path, records: &[store::MessageRecord]) {
    let conn = rusqlite::Connection::open(dir.join("store.sqlite")).expect("create");
    conn.execute_batch(
        "CREATE TABLE messages(id TEXT NOT NULL, rank INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE UNIQUE INDEX messages_by_id ON messages(id);
         CREATE TABLE inbox(
             fc TEXT NOT NULL, id TEXT NOT NULL, is_read INTEGER NOT NULL, body TEXT NOT NULL);
         CREATE UNIQUE INDEX inbox_by_citizen ON inbox(fc, id);",
    )
    .expect("layout 0");
    for r in records {
        conn.execute(
            "INSERT INTO messages(id, rank, body) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                r.message.id.to_string(),
                r.status.rank(),
                serde_json::to_string(r).expect("json")
            ],
        )
        .expect("old row");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_old_layout_keeps_every_message_and_status_when_opened() {
    use model::status::{
        Channel, ChannelOutcome, ChannelStatus, MessageStatus, RejectionReason, SkipReason,
    };
    use store::conformance::{fresh_fiscal_code, sample_record};
    use store::{MessageRecord, MessageStore};

    let dir = tempfile::tempdir().expect("tempdir");
    let fc = fresh_fiscal_code();
    let accepted = sample_record(&fc, 1, MessageStatus::Accepted);
    let rejected = MessageRecord::rejected(
        sample_record(&fc, 2, MessageStatus::Accepted).message,
        RejectionReason::ServiceNotAllowed,
    );
    let mut processed = sample_record(&fc, 3, MessageStatus::Processed);
    processed.notification.email = Some(ChannelStatus::Sent.into());
    processed.notification.webhook = Some(ChannelOutcome::Skipped(SkipReason::NoDevice));
    let old = [accepted, rejected, processed.clone()];
    layout_0_file(dir.path(), &old);

    let store = SqliteStore::open(dir.path()).expect("open migrates");
    for record in &old {
        let read = store.get_message(&record.message.id).await.expect("read");
        assert_eq!(
            read.as_ref(),
            Some(record),
            "{:?} after migration",
            record.status
        );
    }
    // Migrated rows move on like new ones.
    store
        .record_channel_outcomes(vec![(
            processed.message.id,
            Channel::Push,
            ChannelStatus::Sent.into(),
        )])
        .await
        .expect("outcome");
    let read = store
        .get_message(&processed.message.id)
        .await
        .expect("read")
        .expect("there");
    assert_eq!(read.notification.webhook, Some(ChannelStatus::Sent.into()));
    assert_eq!(read.notification.email, Some(ChannelStatus::Sent.into()));
    drop(store);

    // Opening again finds the new layout and leaves it alone.
    let store = SqliteStore::open(dir.path()).expect("reopen");
    let read = store
        .get_message(&processed.message.id)
        .await
        .expect("read");
    assert_eq!(
        read.map(|r| r.notification.webhook),
        Some(Some(ChannelStatus::Sent.into()))
    );
}

#[test]
fn a_store_written_by_a_newer_postino_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conn = rusqlite::Connection::open(dir.path().join("store.sqlite")).expect("create");
    conn.execute_batch("PRAGMA user_version = 7")
        .expect("version");
    drop(conn);
    let err = SqliteStore::open(dir.path()).expect_err("a newer layout is not guessed at");
    let text = err.to_string();
    assert!(text.contains("layout version 7"), "{text}");
    assert!(!err.is_retryable());
}
