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
