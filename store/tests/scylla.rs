//! The ScyllaDB store against the store conformance suite, on the run's CQL server
//! (Apache Cassandra), plus its schema and its answers when the cluster is away.

use std::sync::Arc;

use store::scylla::schema::{self, MIGRATIONS};
use store::scylla::{ScyllaAddress, ScyllaStore};
use store::{test_cql, Store, StoreError};

async fn scylla() -> (Arc<dyn Store>, ()) {
    (Arc::new(test_cql::store().await), ())
}

store::store_conformance!(scylla());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrating_again_changes_nothing() {
    let _ = test_cql::store().await;
    let again = ScyllaStore::migrate(&test_cql::address(), &test_cql::settings())
        .await
        .expect("migrate again");
    assert!(again.applied.is_empty(), "applied {:?}", again.applied);
    assert_eq!(again.current, MIGRATIONS[MIGRATIONS.len() - 1].name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyspace_without_the_schema_is_refused_with_what_to_run() {
    let mut address = test_cql::address();
    address.keyspace = store::scylla::Keyspace::parse("postino_never_migrated").expect("name");
    let err = ScyllaStore::connect(&address, &test_cql::settings())
        .await
        .expect_err("no schema there");
    assert!(matches!(err, StoreError::Schema(_)), "{err}");
    assert!(err.to_string().contains("postino store migrate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_unavailable_not_a_panic() {
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let address =
        ScyllaAddress::parse(&format!("scylla://127.0.0.1:{port}/postino")).expect("address");
    let err = ScyllaStore::connect(&address, &test_cql::settings())
        .await
        .expect_err("nothing listens");
    assert!(err.is_retryable(), "{err}");
}

#[test]
fn the_schema_files_are_valid_statements() {
    for migration in MIGRATIONS {
        for statement in schema::statements(migration.cql) {
            assert!(statement.starts_with("CREATE "), "{statement}");
        }
    }
}
