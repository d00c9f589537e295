//! Schema as code: the versioned CQL files under `schema/`, applied in order by
//! `postino store migrate` and recorded in the keyspace's `schema_migrations` table.
//!
//! Migrating is idempotent (every statement says `IF NOT EXISTS`, applied versions are
//! skipped), so a second run changes nothing. A running Postino never changes the schema:
//! it checks at start that the keyspace holds exactly the versions it knows, and refuses,
//! by name, a keyspace migrated by a newer Postino.

use scylla::client::session::Session;

use super::{Keyspace, Replication};
use crate::StoreError;

/// One schema change.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub cql: &'static str,
}

/// Every schema change this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_initial",
        cql: include_str!("schema/0001_initial.cql"),
    },
    Migration {
        version: 2,
        name: "0002_quotas",
        cql: include_str!("schema/0002_quotas.cql"),
    },
    Migration {
        version: 3,
        name: "0003_idempotency_keys",
        cql: include_str!("schema/0003_idempotency_keys.cql"),
    },
    Migration {
        version: 4,
        name: "0004_organizations_and_feed",
        cql: include_str!("schema/0004_organizations_and_feed.cql"),
    },
    Migration {
        version: 5,
        name: "0005_campaigns",
        cql: include_str!("schema/0005_campaigns.cql"),
    },
    Migration {
        version: 6,
        name: "0006_campaign_items",
        cql: include_str!("schema/0006_campaign_items.cql"),
    },
    Migration {
        version: 7,
        name: "0007_schedule",
        cql: include_str!("schema/0007_schedule.cql"),
    },
    Migration {
        version: 8,
        name: "0008_campaign_chunks",
        cql: include_str!("schema/0008_campaign_chunks.cql"),
    },
];

/// The table recording which migrations a keyspace has had.
const RECORD: &str = "schema_migrations";

/// The statements of a CQL file: `--` comments dropped, split at `;`.
pub fn statements(cql: &str) -> Vec<String> {
    let code: String = cql
        .lines()
        .map(|line| line.split_once("--").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join("\n");
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What `migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations applied by this run, by name; empty when the schema was current.
    pub applied: Vec<&'static str>,
    /// The keyspace's version now.
    pub current: &'static str,
}

/// Creates `keyspace` (with `replication`) if needed and applies every migration it has
/// not had. `session` must not be in a keyspace yet.
pub async fn migrate(
    session: &Session,
    keyspace: &Keyspace,
    replication: &Replication,
) -> Result<Migrated, StoreError> {
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {}",
                replication.cql()
            ),
            (),
        )
        .await?;
    session
        .query_unpaged(
            format!(
                "CREATE TABLE IF NOT EXISTS {keyspace}.{RECORD} \
                 (version int PRIMARY KEY, name text, applied_at timestamp)"
            ),
            (),
        )
        .await?;
    let had = applied(session, keyspace).await?;
    refuse_newer(keyspace, &had)?;
    session
        .use_keyspace(keyspace.as_str(), true)
        .await
        .map_err(|e| StoreError::Unavailable(format!("cql: USE {keyspace}: {e}")))?;
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        if had.iter().any(|(version, _)| *version == migration.version) {
            continue;
        }
        tracing::info!(keyspace = %keyspace, migration = migration.name, "applying");
        for statement in statements(migration.cql) {
            session.query_unpaged(statement, ()).await?;
        }
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {RECORD} (version, name, applied_at) \
                     VALUES (?, ?, toTimestamp(now()))"
                ),
                (migration.version, migration.name),
            )
            .await?;
        done.push(migration.name);
    }
    Ok(Migrated {
        applied: done,
        current: LATEST.name,
    })
}

/// Fails unless `keyspace` holds exactly the migrations this build knows.
pub async fn check(session: &Session, keyspace: &Keyspace) -> Result<(), StoreError> {
    let exists = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables \
             WHERE keyspace_name = ? AND table_name = ?",
            (keyspace.as_str(), RECORD),
        )
        .await?
        .into_rows_result()
        .map_err(|e| StoreError::Corrupt(format!("cql: {e}")))?
        .rows_num()
        > 0;
    if !exists {
        return Err(StoreError::Schema(format!(
            "keyspace {keyspace} holds no Postino schema: run `postino store migrate` first"
        )));
    }
    let had = applied(session, keyspace).await?;
    refuse_newer(keyspace, &had)?;
    let missing: Vec<&str> = MIGRATIONS
        .iter()
        .filter(|m| !had.iter().any(|(version, _)| *version == m.version))
        .map(|m| m.name)
        .collect();
    if !missing.is_empty() {
        return Err(StoreError::Schema(format!(
            "keyspace {keyspace} lacks schema {}: run `postino store migrate`",
            missing.join(", ")
        )));
    }
    Ok(())
}

/// The newest migration this build knows.
const LATEST: &Migration = &MIGRATIONS[MIGRATIONS.len() - 1];

/// The migrations `keyspace` has had, as (version, name).
async fn applied(session: &Session, keyspace: &Keyspace) -> Result<Vec<(i32, String)>, StoreError> {
    let rows = session
        .query_unpaged(format!("SELECT version, name FROM {keyspace}.{RECORD}"), ())
        .await?
        .into_rows_result()
        .map_err(|e| StoreError::Corrupt(format!("cql: {e}")))?;
    let mut had = rows
        .rows::<(i32, Option<String>)>()
        .map_err(|e| StoreError::Corrupt(format!("cql: {e}")))?
        .map(|row| {
            row.map(|(version, name)| (version, name.unwrap_or_default()))
                .map_err(|e| StoreError::Corrupt(format!("cql: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    had.sort();
    Ok(had)
}

/// A keyspace migrated by a newer Postino is refused, naming what this build does not know.
fn refuse_newer(keyspace: &Keyspace, had: &[(i32, String)]) -> Result<(), StoreError> {
    let newest_known = LATEST;
    let unknown: Vec<&str> = had
        .iter()
        .filter(|(version, _)| *version > newest_known.version)
        .map(|(_, name)| name.as_str())
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    Err(StoreError::Schema(format!(
        "keyspace {keyspace} has schema {}, newer than this Postino knows (up to {}): \
         run the Postino that migrated it, or a newer one",
        unknown.join(", "),
        newest_known.name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_statements_without_their_comments() {
        let got = statements(
            "-- a comment; with a semicolon\nCREATE TABLE a (x int PRIMARY KEY); -- trailing\n\n\
             CREATE TABLE b (\n  y int PRIMARY KEY -- inline\n);\n",
        );
        assert_eq!(
            got,
            [
                "CREATE TABLE a (x int PRIMARY KEY)",
                "CREATE TABLE b (\n  y int PRIMARY KEY \n)"
            ]
        );
    }

    #[test]
    fn every_migration_is_numbered_in_order_opens_with_its_reasoning_and_is_idempotent() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, index as i32 + 1, "{}", migration.name);
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version)),
                "{}",
                migration.name
            );
            assert!(
                migration
                    .cql
                    .starts_with(&format!("-- {}:", migration.name)),
                "{} must open with a comment on its partitions and tombstones",
                migration.name
            );
            for statement in statements(migration.cql) {
                assert!(
                    statement.contains("IF NOT EXISTS"),
                    "{}: running it twice must change nothing: {statement}",
                    migration.name
                );
            }
        }
    }

    #[test]
    fn a_newer_schema_is_refused_by_name() {
        let ks = Keyspace::parse("postino").expect("valid");
        let had = vec![
            (1, "0001_initial".to_string()),
            (99, "0099_from_the_future".to_string()),
        ];
        let err = refuse_newer(&ks, &had).expect_err("newer");
        assert!(err.to_string().contains("0099_from_the_future"), "{err}");
        assert!(refuse_newer(&ks, &had[..1]).is_ok());
    }
}
