//! `postino store migrate`: creates the ScyllaDB keyspace and its tables, or brings them up
//! to this build's schema, and says what it did. The embedded store needs no such step.

use store::StoreAddress;

use crate::config::Config;

/// Migrates the store `config` names; the report to print.
pub async fn migrate(config: &Config) -> anyhow::Result<String> {
    let StoreAddress::Scylla(address) = &config.store else {
        anyhow::bail!(
            "store migrate works on a ScyllaDB store (--store scylla://host:port/keyspace or \
             POSTINO_STORE); the embedded SQLite store is brought up to date when it opens"
        );
    };
    run(address, &config.scylla).await
}

#[cfg(feature = "scylla")]
async fn run(
    address: &store::scylla::ScyllaAddress,
    settings: &store::scylla::ScyllaSettings,
) -> anyhow::Result<String> {
    use anyhow::Context;
    let migrated = store::scylla::ScyllaStore::migrate(address, settings)
        .await
        .with_context(|| format!("cannot migrate {address}"))?;
    let mut report = String::new();
    for name in &migrated.applied {
        report.push_str(&format!("applied {name}\n"));
    }
    report.push_str(&format!(
        "keyspace {} is at schema {}\n",
        address.keyspace, migrated.current
    ));
    Ok(report)
}

#[cfg(not(feature = "scylla"))]
async fn run(
    _: &store::scylla::ScyllaAddress,
    _: &store::scylla::ScyllaSettings,
) -> anyhow::Result<String> {
    anyhow::bail!(
        "this build of Postino has no ScyllaDB client (built without the `scylla` feature)"
    )
}
