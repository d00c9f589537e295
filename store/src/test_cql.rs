//! The CQL server of the test run (Apache Cassandra 5.0, started by `scripts/servers.sh`),
//! and one keyspace on it for every test: schema changes take seconds on Cassandra, so the
//! keyspace is made once per run (by `scripts/test.sh`, or here by the first test that
//! needs it) and tests keep apart by their own ids.

use tokio::sync::OnceCell;

use crate::scylla::{Replication, ScyllaAddress, ScyllaSettings, ScyllaStore};

/// The variable naming the run's CQL server, `host:port`.
pub const SHARED_SERVER: &str = "POSTINO_TEST_CQL";

/// The keyspace every test shares.
pub const KEYSPACE: &str = "postino_test";

/// The run's CQL server with the shared keyspace.
///
/// # Panics
/// When `POSTINO_TEST_CQL` is not set: start one with `scripts/servers.sh start cassandra`
/// and `eval "$(scripts/servers.sh env)"`, or run `scripts/test.sh`, which does both.
pub fn address() -> ScyllaAddress {
    let server = std::env::var(SHARED_SERVER).unwrap_or_else(|_| {
        panic!(
            "{SHARED_SERVER} is not set: run the tests with scripts/test.sh, or start Cassandra \
             with scripts/servers.sh start cassandra and eval \"$(scripts/servers.sh env)\""
        )
    });
    ScyllaAddress::parse(&format!("{}{server}/{KEYSPACE}", ScyllaAddress::SCHEME))
        .expect("POSTINO_TEST_CQL is host:port")
}

/// Settings for the test server: one node, so the keyspace has one replica.
pub fn settings() -> ScyllaSettings {
    let mut settings = ScyllaSettings::default();
    settings.replication = Replication::Simple(1);
    settings
}

/// A store on the shared keyspace, migrated once per process (a no-op when the test
/// command already did it).
pub async fn store() -> ScyllaStore {
    static MIGRATED: OnceCell<()> = OnceCell::const_new();
    let address = address();
    MIGRATED
        .get_or_init(|| async {
            ScyllaStore::migrate(&address, &settings())
                .await
                .expect("migrate the test keyspace");
        })
        .await;
    ScyllaStore::connect(&address, &settings())
        .await
        .expect("connect to the test keyspace")
}
