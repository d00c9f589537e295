//! The embedded store: one SQLite file (WAL) under the data directory, shared safely by
//! several Postino processes on one host. Writes go through the group-commit writer, so a
//! burst of single-row writes from many requests costs one fsync; batch writes are one
//! job each. [`db`] is the SQLite plumbing underneath: opening a file, the writer, the
//! readers.

pub mod db;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use model::campaign::Campaign;
use model::installation::{DeviceToken, Installation, InstallationId};
use model::profile::{Profile, ServicePreference};
use model::progress::{CampaignCounts, ItemProgress, ProgressRecord};
use model::service::{OrganizationAccount, Service};
use model::status::{Channel, ChannelOutcome, MessageStatus, NotificationStatus};
use model::FiscalCode;
use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use db::{DbError, Readers, Writer};
use ulid::Ulid;

use crate::codec::{self, channel_name, from_json};
use crate::{
    CampaignItem, CampaignStore, IdempotencyStore, IdempotentSubmit, InboxItem, InstallationStore,
    ItemCursor, KeyOwner, MessageRecord, MessageStore, NotificationKey, NotificationStore,
    ProfileStore, QuotaStore, Routing, ScheduleStore, ScheduledRecord, ServiceStore, SettingStore,
    StoreError, SubscriptionFeedStore, FEED_KEPT_DAYS, IDEMPOTENCY_KEPT, QUOTA_KEPT_DAYS,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS services(id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS api_keys(hash TEXT PRIMARY KEY, owner TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settings(name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS profiles(fc TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS preferences(
    fc TEXT NOT NULL, service_id TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY(fc, service_id)) WITHOUT ROWID;
-- A rowid table with a unique index: cheaper to insert into than a (fc, id) keyed B-tree,
-- because the table itself is appended to and only the narrow index takes random inserts.
CREATE TABLE IF NOT EXISTS inbox(
    fc TEXT NOT NULL, id TEXT NOT NULL, is_read INTEGER NOT NULL, body TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS inbox_by_citizen ON inbox(fc, id);
-- Notifications that went out, so a job delivered twice is not sent twice. Message ids
-- grow with time, so rows append, and old ones go by a range delete on the key.
CREATE TABLE IF NOT EXISTS sent_notifications(
    message_id TEXT NOT NULL, channel TEXT NOT NULL, target TEXT NOT NULL,
    PRIMARY KEY(message_id, channel, target)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS installations(
    fc TEXT NOT NULL, id TEXT NOT NULL, token TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY(fc, id)) WITHOUT ROWID;
-- Submits by Idempotency-Key; `kept_until` (Unix seconds) lets old ones be removed.
CREATE TABLE IF NOT EXISTS idempotency_keys(
    service_id TEXT NOT NULL, key TEXT NOT NULL, request_hash TEXT NOT NULL,
    message_id TEXT NOT NULL, created_at TEXT NOT NULL, accepted INTEGER NOT NULL,
    kept_until INTEGER NOT NULL, PRIMARY KEY(service_id, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaigns(id TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
-- Each campaign item's state (`ItemProgress::code`), and each part's counts (written in
-- one transaction).
CREATE TABLE IF NOT EXISTS campaign_item_states(
    campaign_id TEXT NOT NULL, bucket INTEGER NOT NULL, id TEXT NOT NULL, state INTEGER NOT NULL,
    PRIMARY KEY(campaign_id, bucket, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS campaign_counts(
    campaign_id TEXT NOT NULL, bucket INTEGER NOT NULL, counts TEXT NOT NULL,
    PRIMARY KEY(campaign_id, bucket)) WITHOUT ROWID;
-- How many items each published chunk of a campaign's calls holds.
CREATE TABLE IF NOT EXISTS campaign_chunks(
    campaign_id TEXT NOT NULL, chunk TEXT NOT NULL, accepted INTEGER NOT NULL,
    PRIMARY KEY(campaign_id, chunk)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS organizations(fiscal_code TEXT PRIMARY KEY, body TEXT NOT NULL) WITHOUT ROWID;
-- Each citizen's last subscription change of a day in a scope (a service id, or '*' for
-- the inbox). Days sort as text, so old ones go by a range delete on the key.
CREATE TABLE IF NOT EXISTS subscription_changes(
    day TEXT NOT NULL, scope TEXT NOT NULL, fc_hash TEXT NOT NULL, subscribed INTEGER NOT NULL,
    PRIMARY KEY(day, scope, fc_hash)) WITHOUT ROWID;
-- Records to publish later, by due minute; and leases (`until`: Unix milliseconds).
CREATE TABLE IF NOT EXISTS scheduled(
    minute INTEGER NOT NULL, shard INTEGER NOT NULL, id TEXT NOT NULL, due INTEGER NOT NULL,
    topic TEXT NOT NULL, key BLOB NOT NULL, headers TEXT NOT NULL, payload BLOB NOT NULL,
    PRIMARY KEY(minute, shard, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases(
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, until INTEGER NOT NULL) WITHOUT ROWID;
-- Quota counters; `kept_until` (Unix seconds) lets old periods be removed.
CREATE TABLE IF NOT EXISTS quotas(
    counter TEXT NOT NULL, period TEXT NOT NULL, used INTEGER NOT NULL,
    kept_until INTEGER NOT NULL, PRIMARY KEY(counter, period)) WITHOUT ROWID;
";

/// The message table. ULIDs grow with time, so message ids append at the end of the table
/// and of its narrow id index. The message itself (JSON) never changes once written; its
/// status and channel outcomes are columns of their own, so moving a message on rewrites
/// a few short values instead of serialising the whole message again.
const MESSAGES: &str = "
CREATE TABLE IF NOT EXISTS messages(
    id TEXT NOT NULL, rank INTEGER NOT NULL, status TEXT NOT NULL, rejection_reason TEXT,
    email TEXT, webhook TEXT, updated_at TEXT NOT NULL, message TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS messages_by_id ON messages(id);
";

/// The layout this build reads and writes, kept in `PRAGMA user_version`. Version 0 (up
/// to session 5) kept each message row as one JSON body holding the message and its
/// status; opening such a file moves it to version 1 once.
const SCHEMA_VERSION: i64 = 1;

/// Version 0 to 1: the status fields move out of the JSON body into their columns.
const MIGRATE_FROM_0: &str = "
DROP INDEX IF EXISTS messages_by_id;
ALTER TABLE messages RENAME TO messages_v0;
";
const COPY_FROM_0: &str = "
INSERT INTO messages(id, rank, status, rejection_reason, email, webhook, updated_at, message)
SELECT id, rank, json_extract(body, '$.status'), json_extract(body, '$.rejection_reason'),
       json_extract(body, '$.notification.email'), json_extract(body, '$.notification.webhook'),
       json_extract(body, '$.updated_at'), json_extract(body, '$.message')
FROM messages_v0 ORDER BY rowid;
DROP TABLE messages_v0;
";

/// Creates the tables, or brings an older file to [`SCHEMA_VERSION`], in one transaction
/// (several processes may open the file at once; the first one migrates).
fn prepare_schema(conn: &Connection) -> Result<(), StoreError> {
    let migrate = || -> Result<(), StoreError> {
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(DbError::from)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "store.sqlite has layout version {version}, written by a newer Postino; \
                 this build knows versions up to {SCHEMA_VERSION}"
            )));
        }
        let old_messages: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('messages') WHERE name = 'body'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map_err(DbError::from)?
            > 0;
        if old_messages {
            let rows: i64 = conn
                .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
                .map_err(DbError::from)?;
            tracing::info!(
                rows,
                "moving message statuses to their own columns (store layout 0 -> 1)"
            );
            conn.execute_batch(MIGRATE_FROM_0).map_err(DbError::from)?;
            conn.execute_batch(MESSAGES).map_err(DbError::from)?;
            conn.execute_batch(COPY_FROM_0).map_err(DbError::from)?;
        }
        conn.execute_batch(SCHEMA).map_err(DbError::from)?;
        conn.execute_batch(MESSAGES).map_err(DbError::from)?;
        conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
            .map_err(DbError::from)?;
        Ok(())
    };
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(DbError::from)?;
    match migrate() {
        Ok(()) => Ok(conn.execute_batch("COMMIT").map_err(DbError::from)?),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Writer,
    readers: Arc<Readers>,
    /// When sent-notification records past their retention were last dropped (Unix
    /// seconds): once an hour is plenty.
    last_purge: Arc<std::sync::atomic::AtomicI64>,
}

/// Data SQLite refuses for good is `Rejected`; anything else about the database (busy, a
/// full disk, a file it cannot open or write) is the store being unavailable, which holds
/// the stages until it is mended rather than dead-letter every record meanwhile.
impl From<DbError> for StoreError {
    fn from(err: DbError) -> Self {
        match err {
            DbError::Refused(_) => StoreError::Rejected(err.to_string()),
            _ => StoreError::Unavailable(err.to_string()),
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<String, DbError> {
    codec::to_json(value).map_err(DbError::Refused)
}

impl SqliteStore {
    /// Opens the store in `dir` (file `store.sqlite`), creating it if needed.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let path = dir.join("store.sqlite");
        let conn = db::open(&path)?;
        prepare_schema(&conn)?;
        Ok(Self {
            writer: Writer::spawn(conn, "store", 4096, 512),
            readers: Arc::new(Readers::open(&path, 4)?),
            last_purge: Arc::default(),
        })
    }

    async fn read_one<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        keys: Vec<String>,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = self
            .readers
            .read(move |c| {
                Ok(c.prepare_cached(sql)?
                    .query_row(rusqlite::params_from_iter(keys.iter()), |r| r.get(0))
                    .optional()?)
            })
            .await?;
        text.map(|t| from_json(&t)).transpose()
    }

    async fn exec(&self, sql: &'static str, values: Vec<String>) -> Result<usize, StoreError> {
        Ok(self
            .writer
            .write(move |c| {
                Ok(c.prepare_cached(sql)?
                    .execute(rusqlite::params_from_iter(values.iter()))?)
            })
            .await?)
    }
}

#[async_trait]
impl ServiceStore for SqliteStore {
    async fn put_service(&self, service: &Service) -> Result<(), StoreError> {
        let body = to_json(service)?;
        self.exec(
            "INSERT OR REPLACE INTO services(id, body) VALUES (?1, ?2)",
            vec![service.id.clone(), body],
        )
        .await
        .map(drop)
    }
    async fn get_service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        self.read_one("SELECT body FROM services WHERE id = ?1", vec![id.into()])
            .await
    }
    async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let bodies: Vec<String> = self
            .readers
            .read(|c| {
                let mut statement = c.prepare_cached("SELECT body FROM services ORDER BY id")?;
                let rows = statement.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        bodies.iter().map(|body| from_json(body)).collect()
    }
    async fn delete_service(&self, id: &str) -> Result<(), StoreError> {
        self.exec("DELETE FROM services WHERE id = ?1", vec![id.into()])
            .await
            .map(drop)
    }
    async fn put_organization(&self, account: &OrganizationAccount) -> Result<(), StoreError> {
        let body = to_json(account)?;
        self.exec(
            "INSERT OR REPLACE INTO organizations(fiscal_code, body) VALUES (?1, ?2)",
            vec![account.fiscal_code.clone(), body],
        )
        .await
        .map(drop)
    }
    async fn get_organization(
        &self,
        fiscal_code: &str,
    ) -> Result<Option<OrganizationAccount>, StoreError> {
        self.read_one(
            "SELECT body FROM organizations WHERE fiscal_code = ?1",
            vec![fiscal_code.into()],
        )
        .await
    }
    async fn put_key(&self, key_hash: &str, owner: &KeyOwner) -> Result<(), StoreError> {
        let owner = to_json(owner)?;
        self.exec(
            "INSERT OR REPLACE INTO api_keys(hash, owner) VALUES (?1, ?2)",
            vec![key_hash.into(), owner],
        )
        .await
        .map(drop)
    }
    async fn get_key(&self, key_hash: &str) -> Result<Option<KeyOwner>, StoreError> {
        self.read_one(
            "SELECT owner FROM api_keys WHERE hash = ?1",
            vec![key_hash.into()],
        )
        .await
    }
    async fn delete_key(&self, key_hash: &str) -> Result<(), StoreError> {
        self.exec(
            "DELETE FROM api_keys WHERE hash = ?1",
            vec![key_hash.into()],
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl ProfileStore for SqliteStore {
    async fn get_profile(&self, fc: &FiscalCode) -> Result<Option<Profile>, StoreError> {
        self.read_one(
            "SELECT body FROM profiles WHERE fc = ?1",
            vec![fc.as_str().into()],
        )
        .await
    }
    async fn put_profile(&self, fc: &FiscalCode, profile: &Profile) -> Result<(), StoreError> {
        let body = to_json(profile)?;
        self.exec(
            "INSERT OR REPLACE INTO profiles(fc, body) VALUES (?1, ?2)",
            vec![fc.as_str().into(), body],
        )
        .await
        .map(drop)
    }
    async fn get_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
    ) -> Result<Option<ServicePreference>, StoreError> {
        self.read_one(
            "SELECT body FROM preferences WHERE fc = ?1 AND service_id = ?2",
            vec![fc.as_str().into(), service_id.into()],
        )
        .await
    }
    async fn put_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
        preference: &ServicePreference,
    ) -> Result<(), StoreError> {
        let body = to_json(preference)?;
        self.exec(
            "INSERT OR REPLACE INTO preferences(fc, service_id, body) VALUES (?1, ?2, ?3)",
            vec![fc.as_str().into(), service_id.into(), body],
        )
        .await
        .map(drop)
    }

    async fn get_routing(
        &self,
        pairs: &[(FiscalCode, String)],
    ) -> Result<Vec<Routing>, StoreError> {
        let keys: Vec<(String, String)> = pairs
            .iter()
            .map(|(fc, service)| (fc.as_str().to_string(), service.clone()))
            .collect();
        // One trip to a reader thread for the whole batch, not two per message.
        let texts: Vec<(Option<String>, Option<String>)> = self
            .readers
            .read(move |c| {
                let mut profiles = c.prepare_cached("SELECT body FROM profiles WHERE fc = ?1")?;
                let mut preferences = c.prepare_cached(
                    "SELECT body FROM preferences WHERE fc = ?1 AND service_id = ?2",
                )?;
                let mut out = Vec::with_capacity(keys.len());
                for (fc, service) in &keys {
                    let profile: Option<String> =
                        profiles.query_row([fc], |r| r.get(0)).optional()?;
                    let preference: Option<String> = match profile {
                        Some(_) => preferences
                            .query_row([fc, service], |r| r.get(0))
                            .optional()?,
                        None => None,
                    };
                    out.push((profile, preference));
                }
                Ok(out)
            })
            .await?;
        texts
            .into_iter()
            .map(|(profile, preference)| {
                Ok(Routing {
                    profile: profile.map(|t| from_json(&t)).transpose()?,
                    preference: preference.map(|t| from_json(&t)).transpose()?,
                })
            })
            .collect()
    }
}

/// A status or channel outcome as its column holds it.
fn text_of<T: Serialize>(value: &T) -> Result<String, DbError> {
    codec::name_of(value).map_err(unreadable)
}

/// A value that cannot be written or read back as its column holds it: never retried.
fn unreadable(message: String) -> DbError {
    DbError::Refused(message)
}

/// Moves a message to `record`'s status unless it already stands further on, writing the
/// message itself only when its row does not exist yet (the pipeline ran ahead of the
/// ACCEPTED row, or there never was one).
fn upsert_message(c: &Connection, record: &MessageRecord) -> Result<(), DbError> {
    let id = record.message.id.to_string();
    let reason = record.rejection_reason.as_ref().map(text_of).transpose()?;
    let email = record
        .notification
        .email
        .as_ref()
        .map(text_of)
        .transpose()?;
    let webhook = record
        .notification
        .webhook
        .as_ref()
        .map(text_of)
        .transpose()?;
    let updated_at = record.updated_at.to_string();
    // ?1 to ?7 in both statements below.
    let columns: [&dyn rusqlite::ToSql; 7] = [
        &id,
        &record.status.rank(),
        &record.status.as_str(),
        &reason,
        &email,
        &webhook,
        &updated_at,
    ];
    // ACCEPTED ranks lowest, so it only ever writes a row that is not there yet: no need
    // to try moving an existing one first (ingest writes one such row per message).
    let moved = if record.status.rank() == MessageStatus::Accepted.rank() {
        0
    } else {
        c.prepare_cached(
            "UPDATE messages SET rank = ?2, status = ?3, rejection_reason = ?4, email = ?5,
             webhook = ?6, updated_at = ?7 WHERE id = ?1 AND rank <= ?2",
        )?
        .execute(&columns[..])?
    };
    if moved == 0 {
        let message = to_json(&record.message)?;
        c.prepare_cached(
            "INSERT INTO messages(id, rank, status, rejection_reason, email, webhook,
             updated_at, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT(id) DO NOTHING",
        )?
        .execute(rusqlite::params_from_iter(
            columns.iter().chain([&(&message as &dyn rusqlite::ToSql)]),
        ))?;
    }
    Ok(())
}

/// A message row's columns, as read.
type MessageRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    String,
);

fn decode_message(
    (status, rejection_reason, email, webhook, updated_at, message): MessageRow,
) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        message: from_json(&message)?,
        status: codec::parse_name(&status).map_err(StoreError::Corrupt)?,
        rejection_reason: codec::parse_optional_name(rejection_reason)
            .map_err(StoreError::Corrupt)?,
        notification: NotificationStatus {
            email: codec::parse_optional_name(email).map_err(StoreError::Corrupt)?,
            webhook: codec::parse_optional_name(webhook).map_err(StoreError::Corrupt)?,
        },
        updated_at: updated_at
            .parse()
            .map_err(|e: model::timestamp::TimestampError| StoreError::Corrupt(e.to_string()))?,
    })
}

fn inbox_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, bool)> {
    Ok((row.get(0)?, row.get::<_, i64>(1)? != 0))
}

fn decode_inbox((body, is_read): (String, bool)) -> Result<InboxItem, StoreError> {
    let mut item: InboxItem = from_json(&body)?;
    item.is_read = is_read;
    Ok(item)
}

#[async_trait]
impl MessageStore for SqliteStore {
    async fn put_messages(&self, records: Vec<MessageRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        Ok(self
            .writer
            .write(move |c| records.iter().try_for_each(|r| upsert_message(c, r)))
            .await?)
    }

    async fn get_message(&self, id: &Ulid) -> Result<Option<MessageRecord>, StoreError> {
        let id = id.to_string();
        let row: Option<MessageRow> = self
            .readers
            .read(move |c| {
                Ok(c.prepare_cached(
                    "SELECT status, rejection_reason, email, webhook, updated_at, message
                     FROM messages WHERE id = ?1",
                )?
                .query_row([id], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()?)
            })
            .await?;
        row.map(decode_message).transpose()
    }

    async fn deliver(&self, records: Vec<MessageRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        Ok(self
            .writer
            .write(move |c| {
                let mut insert = c.prepare_cached(
                    "INSERT INTO inbox(fc, id, is_read, body) VALUES (?1, ?2, 0, ?3)
                     ON CONFLICT(fc, id) DO NOTHING",
                )?;
                for r in &records {
                    let m = &r.message;
                    insert.execute(params![
                        m.fiscal_code.as_str(),
                        m.id.to_string(),
                        to_json(&InboxItem::of(m))?
                    ])?;
                    upsert_message(c, r)?;
                }
                Ok(())
            })
            .await?)
    }

    async fn list_inbox(
        &self,
        fc: &FiscalCode,
        before: Option<Ulid>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        let fc = fc.as_str().to_string();
        // Every ULID sorts below "~", so "no cursor" is just the highest possible bound.
        let before = before.map(|b| b.to_string()).unwrap_or_else(|| "~".into());
        let rows = self
            .readers
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT body, is_read FROM inbox WHERE fc = ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3",
                )?;
                let rows = stmt
                    .query_map(params![fc, before, limit as i64], inbox_item)?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(rows)
            })
            .await?;
        rows.into_iter().map(decode_inbox).collect()
    }

    async fn get_inbox_item(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
    ) -> Result<Option<InboxItem>, StoreError> {
        let (fc, id) = (fc.as_str().to_string(), id.to_string());
        let row = self
            .readers
            .read(move |c| {
                Ok(
                    c.prepare_cached("SELECT body, is_read FROM inbox WHERE fc = ?1 AND id = ?2")?
                        .query_row(params![fc, id], inbox_item)
                        .optional()?,
                )
            })
            .await?;
        row.map(decode_inbox).transpose()
    }

    async fn set_read(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
        is_read: bool,
    ) -> Result<bool, StoreError> {
        let changed = self
            .exec(
                "UPDATE inbox SET is_read = ?3 WHERE fc = ?1 AND id = ?2",
                vec![
                    fc.as_str().into(),
                    id.to_string(),
                    if is_read { "1" } else { "0" }.into(),
                ],
            )
            .await?;
        Ok(changed > 0)
    }

    async fn record_channel_outcomes(
        &self,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        Ok(self
            .writer
            .write(move |c| record_outcomes(c, &outcomes))
            .await?)
    }
}

/// Merges one part's reports into its items and counts: each item's updates combined, an
/// item seen for the first time inserted (the common case: one statement), another read,
/// merged and written back only if it moved.
fn record_part(c: &Connection, part: &ProgressRecord) -> Result<(), DbError> {
    let (campaign_id, bucket) = (&part.campaign_id, part.bucket);
    let counts: Option<String> = c
        .prepare_cached(
            "SELECT counts FROM campaign_counts WHERE campaign_id = ?1 AND bucket = ?2",
        )?
        .query_row(params![campaign_id, bucket], |r| r.get(0))
        .optional()?;
    let mut counts =
        crate::progress::counts_of(counts.as_deref()).map_err(|e| unreadable(e.to_string()))?;
    let mut insert = c.prepare_cached(
        "INSERT INTO campaign_item_states(campaign_id, bucket, id, state) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
    )?;
    let mut select = c.prepare_cached(
        "SELECT state FROM campaign_item_states WHERE campaign_id = ?1 AND bucket = ?2 AND id = ?3",
    )?;
    let mut update = c.prepare_cached(
        "UPDATE campaign_item_states SET state = ?4 WHERE campaign_id = ?1 AND bucket = ?2 AND id = ?3",
    )?;
    let mut moved = false;
    for (id, change) in crate::progress::combine(&part.items) {
        let id = id.to_string();
        if insert.execute(params![campaign_id, bucket, id, change.code()])? == 1 {
            counts.apply(None, &change);
            moved = true;
            continue;
        }
        let code: i64 = select.query_row(params![campaign_id, bucket, id], |r| r.get(0))?;
        let stored = ItemProgress::from_code(code)
            .ok_or_else(|| unreadable(format!("campaign item {id}: state {code}")))?;
        if let Some(next) = counts.apply(Some(stored), &change) {
            update.execute(params![campaign_id, bucket, id, next.code()])?;
            moved = true;
        }
    }
    if moved {
        c.prepare_cached(
            "INSERT OR REPLACE INTO campaign_counts(campaign_id, bucket, counts) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![campaign_id, bucket, to_json(&counts)?])?;
    }
    Ok(())
}

/// Records channel outcomes, each replacing the stored one only if it ranks higher.
fn record_outcomes(
    c: &Connection,
    outcomes: &[(Ulid, Channel, ChannelOutcome)],
) -> Result<(), DbError> {
    let mut select = c.prepare_cached("SELECT email, webhook FROM messages WHERE id = ?1")?;
    let mut update = c.prepare_cached(
        "UPDATE messages SET email = ?2, webhook = ?3, updated_at = ?4 WHERE id = ?1",
    )?;
    for (id, channel, status) in outcomes {
        let id = id.to_string();
        let Some((email, webhook)) = select
            .query_row([&id], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                ))
            })
            .optional()?
        else {
            continue;
        };
        let mut notification = NotificationStatus {
            email: codec::parse_optional_name(email).map_err(unreadable)?,
            webhook: codec::parse_optional_name(webhook).map_err(unreadable)?,
        };
        if notification.record(*channel, *status) {
            update.execute(params![
                id,
                notification.email.as_ref().map(text_of).transpose()?,
                notification.webhook.as_ref().map(text_of).transpose()?,
                model::timestamp::Timestamp::now().to_string()
            ])?;
        }
    }
    Ok(())
}

/// How often records of sent notifications past their retention are dropped.
const PURGE_EVERY_SECS: i64 = 3600;

#[async_trait]
impl NotificationStore for SqliteStore {
    async fn notifications_sent(&self, keys: &[NotificationKey]) -> Result<Vec<bool>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<_> = keys
            .iter()
            .map(|k| {
                (
                    k.message_id.to_string(),
                    channel_name(k.channel),
                    k.target.clone(),
                )
            })
            .collect();
        Ok(self
            .readers
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT 1 FROM sent_notifications
                     WHERE message_id = ?1 AND channel = ?2 AND target = ?3",
                )?;
                keys.iter()
                    .map(|(id, channel, target)| Ok(stmt.exists(params![id, channel, target])?))
                    .collect()
            })
            .await?)
    }

    async fn record_notifications_sent(
        &self,
        keys: Vec<NotificationKey>,
    ) -> Result<(), StoreError> {
        self.settle_notifications(keys, Vec::new()).await
    }

    async fn settle_notifications(
        &self,
        sent: Vec<NotificationKey>,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        if sent.is_empty() && outcomes.is_empty() {
            return Ok(());
        }
        let cutoff = self.purge_cutoff();
        Ok(self
            .writer
            .write(move |c| {
                insert_sent(c, &sent, cutoff.as_deref())?;
                record_outcomes(c, &outcomes)
            })
            .await?)
    }
}

impl SqliteStore {
    /// Once an hour, the message id below which sent-notification records are past their
    /// retention (message ids are ULIDs: every id below it was made before); else none.
    fn purge_cutoff(&self) -> Option<String> {
        let now = std::time::SystemTime::now();
        let now_secs = now
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let last = self.last_purge.load(std::sync::atomic::Ordering::Relaxed);
        let due = now_secs - last >= PURGE_EVERY_SECS
            && self
                .last_purge
                .compare_exchange(
                    last,
                    now_secs,
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok();
        due.then(|| {
            let oldest = now
                .checked_sub(crate::SENT_NOTIFICATION_RETENTION)
                .unwrap_or(std::time::UNIX_EPOCH);
            Ulid::from_datetime(oldest).to_string()
        })
    }
}

/// Records notifications as sent, after dropping the records older than `cutoff`.
fn insert_sent(
    c: &Connection,
    keys: &[NotificationKey],
    cutoff: Option<&str>,
) -> Result<(), DbError> {
    if let Some(cutoff) = cutoff {
        c.prepare_cached("DELETE FROM sent_notifications WHERE message_id < ?1")?
            .execute([cutoff])?;
    }
    let mut insert = c.prepare_cached(
        "INSERT OR IGNORE INTO sent_notifications(message_id, channel, target)
         VALUES (?1, ?2, ?3)",
    )?;
    for k in keys {
        insert.execute(params![
            k.message_id.to_string(),
            channel_name(k.channel),
            k.target
        ])?;
    }
    Ok(())
}

#[async_trait]
impl InstallationStore for SqliteStore {
    async fn put_installation(
        &self,
        fc: &FiscalCode,
        installation: &Installation,
    ) -> Result<(), StoreError> {
        let body = to_json(installation)?;
        self.exec(
            "INSERT OR REPLACE INTO installations(fc, id, token, body) VALUES (?1, ?2, ?3, ?4)",
            vec![
                fc.as_str().into(),
                installation.id.to_string(),
                installation.token.expose().into(),
                body,
            ],
        )
        .await
        .map(drop)
    }

    async fn list_installations(&self, fc: &FiscalCode) -> Result<Vec<Installation>, StoreError> {
        let mut all = self.installations_of(std::slice::from_ref(fc)).await?;
        Ok(all.pop().unwrap_or_default())
    }

    async fn installations_of(
        &self,
        fcs: &[FiscalCode],
    ) -> Result<Vec<Vec<Installation>>, StoreError> {
        let keys: Vec<String> = fcs.iter().map(|fc| fc.as_str().to_string()).collect();
        let texts: Vec<Vec<String>> = self
            .readers
            .read(move |c| {
                let mut stmt =
                    c.prepare_cached("SELECT body FROM installations WHERE fc = ?1 ORDER BY id")?;
                keys.iter()
                    .map(|fc| {
                        stmt.query_map([fc], |r| r.get(0))?
                            .collect::<Result<Vec<String>, _>>()
                            .map_err(DbError::from)
                    })
                    .collect()
            })
            .await?;
        texts
            .into_iter()
            .map(|bodies| bodies.iter().map(|b| from_json(b)).collect())
            .collect()
    }

    async fn delete_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .exec(
                "DELETE FROM installations WHERE fc = ?1 AND id = ?2",
                vec![fc.as_str().into(), id.to_string()],
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_stale_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
        token: &DeviceToken,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .exec(
                "DELETE FROM installations WHERE fc = ?1 AND id = ?2 AND token = ?3",
                vec![fc.as_str().into(), id.to_string(), token.expose().into()],
            )
            .await?;
        Ok(deleted > 0)
    }

    async fn delete_installations(&self, fc: &FiscalCode) -> Result<usize, StoreError> {
        self.exec(
            "DELETE FROM installations WHERE fc = ?1",
            vec![fc.as_str().into()],
        )
        .await
    }
}

#[async_trait]
impl SettingStore for SqliteStore {
    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let name = name.to_string();
        Ok(self
            .readers
            .read(move |c| {
                Ok(
                    c.prepare_cached("SELECT value FROM settings WHERE name = ?1")?
                        .query_row([name], |r| r.get(0))
                        .optional()?,
                )
            })
            .await?)
    }
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let inserted = self
            .exec(
                "INSERT OR IGNORE INTO settings(name, value) VALUES (?1, ?2)",
                vec![name.into(), value.into()],
            )
            .await?;
        Ok(inserted > 0)
    }
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO settings(name, value) VALUES (?1, ?2)",
            vec![name.into(), value.into()],
        )
        .await
        .map(drop)
    }
}

#[async_trait]
impl CampaignStore for SqliteStore {
    async fn put_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        let body = to_json(campaign)?;
        self.exec(
            "INSERT OR REPLACE INTO campaigns(id, body) VALUES (?1, ?2)",
            vec![campaign.id.clone(), body],
        )
        .await
        .map(drop)
    }
    async fn get_campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        self.read_one("SELECT body FROM campaigns WHERE id = ?1", vec![id.into()])
            .await
    }

    async fn record_progress(&self, parts: &[ProgressRecord]) -> Result<(), StoreError> {
        if parts.iter().all(|p| p.items.is_empty()) {
            return Ok(());
        }
        // A writer job per part, all queued at once: the writer commits them with whatever
        // else is queued, instead of holding the inbox's writes behind one long job.
        let jobs = parts.iter().filter(|p| !p.items.is_empty()).map(|part| {
            let part = part.clone();
            self.writer.write(move |c| record_part(c, &part))
        });
        for done in futures::future::join_all(jobs).await {
            done?;
        }
        Ok(())
    }

    async fn put_campaign_chunk(
        &self,
        campaign_id: &str,
        chunk: &str,
        accepted: u32,
    ) -> Result<(), StoreError> {
        self.exec(
            "INSERT OR REPLACE INTO campaign_chunks(campaign_id, chunk, accepted) VALUES (?1, ?2, ?3)",
            vec![campaign_id.into(), chunk.into(), accepted.to_string()],
        )
        .await
        .map(drop)
    }

    async fn campaign_counts(&self, campaign_id: &str) -> Result<CampaignCounts, StoreError> {
        let campaign_id = campaign_id.to_string();
        let (parts, accepted): (Vec<String>, i64) = self
            .readers
            .read(move |c| {
                let mut statement =
                    c.prepare_cached("SELECT counts FROM campaign_counts WHERE campaign_id = ?1")?;
                let rows = statement.query_map(params![campaign_id], |r| r.get(0))?;
                let parts = rows.collect::<Result<_, _>>()?;
                let accepted: i64 = c
                    .prepare_cached(
                        "SELECT coalesce(sum(accepted), 0) FROM campaign_chunks WHERE campaign_id = ?1",
                    )?
                    .query_row(params![campaign_id], |r| r.get(0))?;
                Ok((parts, accepted))
            })
            .await?;
        Ok(crate::progress::sum_parts(parts)?.with_accepted(accepted))
    }

    async fn campaign_items(
        &self,
        campaign_id: &str,
        after: Option<ItemCursor>,
        limit: usize,
    ) -> Result<Vec<CampaignItem>, StoreError> {
        let campaign_id = campaign_id.to_string();
        // Before every id, a text that sorts first.
        let (bucket, id) = after.map_or((0, String::new()), |a| (a.bucket, a.id.to_string()));
        let rows: Vec<(u16, String, i64)> = self
            .readers
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT bucket, id, state FROM campaign_item_states
                     WHERE campaign_id = ?1 AND (bucket, id) > (?2, ?3)
                     ORDER BY bucket, id LIMIT ?4",
                )?;
                let rows = statement
                    .query_map(params![campaign_id, bucket, id, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        rows.into_iter()
            .map(|(bucket, id, state)| crate::progress::coded_item(bucket, &id, state))
            .collect()
    }
}

#[async_trait]
impl ScheduleStore for SqliteStore {
    async fn schedule(&self, records: Vec<ScheduledRecord>) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        Ok(self
            .writer
            .write(move |c| {
                let mut insert = c.prepare_cached(
                    "INSERT OR REPLACE INTO scheduled(minute, shard, id, due, topic, key, headers, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for r in &records {
                    insert.execute(params![
                        r.minute(),
                        r.shard(),
                        r.id,
                        r.due_ms,
                        r.topic,
                        r.key,
                        to_json(&r.headers)?,
                        r.payload
                    ])?;
                }
                Ok(())
            })
            .await?)
    }

    async fn scheduled_in(
        &self,
        minute: i64,
        shard: u16,
    ) -> Result<Vec<ScheduledRecord>, StoreError> {
        let rows: Vec<crate::StoredSchedule> = self
            .readers
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT id, due, topic, key, headers, payload FROM scheduled
                     WHERE minute = ?1 AND shard = ?2 ORDER BY id",
                )?;
                let rows = statement.query_map(params![minute, shard], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?;
        rows.into_iter().map(ScheduledRecord::stored).collect()
    }

    async fn unschedule(&self, minute: i64, shard: u16, ids: &[String]) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        Ok(self
            .writer
            .write(move |c| {
                let mut delete = c.prepare_cached(
                    "DELETE FROM scheduled WHERE minute = ?1 AND shard = ?2 AND id = ?3",
                )?;
                for id in &ids {
                    delete.execute(params![minute, shard, id])?;
                }
                Ok(())
            })
            .await?)
    }

    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let (name, holder) = (name.to_string(), holder.to_string());
        let now = model::timestamp::Timestamp::now().unix_millis();
        let until = now + ttl.as_millis() as i64;
        Ok(self
            .writer
            .write(move |c| {
                let changed = c
                    .prepare_cached(
                        "INSERT INTO leases(name, holder, until) VALUES (?1, ?2, ?3)
                         ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, until = excluded.until
                         WHERE leases.holder = excluded.holder OR leases.until <= ?4",
                    )?
                    .execute(params![name, holder, until, now])?;
                Ok(changed > 0)
            })
            .await?)
    }
}

#[async_trait]
impl SubscriptionFeedStore for SqliteStore {
    async fn record_subscription_change(
        &self,
        day: &str,
        scope: &str,
        fc_hash: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        let (day, scope, fc_hash) = (day.to_string(), scope.to_string(), fc_hash.to_string());
        let kept = format!("-{FEED_KEPT_DAYS} days");
        Ok(self
            .writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM subscription_changes WHERE day < date('now', ?1)")?
                    .execute(params![kept])?;
                c.prepare_cached(
                    "INSERT OR REPLACE INTO subscription_changes(day, scope, fc_hash, subscribed)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![day, scope, fc_hash, subscribed])?;
                Ok(())
            })
            .await?)
    }
    async fn subscription_changes(
        &self,
        day: &str,
        scope: &str,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        let (day, scope) = (day.to_string(), scope.to_string());
        Ok(self
            .readers
            .read(move |c| {
                let mut statement = c.prepare_cached(
                    "SELECT fc_hash, subscribed FROM subscription_changes
                     WHERE day = ?1 AND scope = ?2 ORDER BY fc_hash",
                )?;
                let rows =
                    statement.query_map(params![day, scope], |r| Ok((r.get(0)?, r.get(1)?)))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await?)
    }
}

#[async_trait]
impl QuotaStore for SqliteStore {
    async fn take_quota(
        &self,
        counter: &str,
        period: &str,
        amount: u32,
        limit: u32,
    ) -> Result<Option<u32>, StoreError> {
        if amount == 0 || amount > limit {
            return Ok(None);
        }
        let (counter, period) = (counter.to_string(), period.to_string());
        let kept_until = unix_now() + i64::from(QUOTA_KEPT_DAYS) * 86_400;
        // One statement, so one atomic step however many processes share the file: it
        // counts the first take, adds `amount` while that stays within the limit, and
        // returns nothing once it would not. Old periods go on the way.
        let taken = self
            .writer
            .write(move |c| {
                c.prepare_cached("DELETE FROM quotas WHERE counter = ?1 AND kept_until < ?2")?
                    .execute(params![counter, unix_now()])?;
                Ok(c.prepare_cached(
                    "INSERT INTO quotas(counter, period, used, kept_until) VALUES (?1, ?2, ?5, ?4)
                     ON CONFLICT(counter, period) DO UPDATE SET used = used + ?5
                     WHERE used + ?5 <= ?3 RETURNING used",
                )?
                .query_row(params![counter, period, limit, kept_until, amount], |r| {
                    r.get::<_, u32>(0)
                })
                .optional()?)
            })
            .await?;
        Ok(taken)
    }
    async fn quota_used(&self, counter: &str, period: &str) -> Result<u32, StoreError> {
        let (counter, period) = (counter.to_string(), period.to_string());
        let used: Option<u32> = self
            .readers
            .read(move |c| {
                Ok(
                    c.prepare_cached("SELECT used FROM quotas WHERE counter = ?1 AND period = ?2")?
                        .query_row(params![counter, period], |r| r.get(0))
                        .optional()?,
                )
            })
            .await?;
        Ok(used.unwrap_or(0))
    }
}

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        service_id: &str,
        key: &str,
        submit: &IdempotentSubmit,
    ) -> Result<Option<IdempotentSubmit>, StoreError> {
        let (service_id, key) = (service_id.to_string(), key.to_string());
        let claim = submit.clone();
        let kept_until = unix_now() + i64::try_from(IDEMPOTENCY_KEPT.as_secs()).unwrap_or(0);
        // Expired keys go first, then one insert that claims the key unless it is taken,
        // and the earlier claim read in the same write, so no other process comes between.
        let earlier = self
            .writer
            .write(move |c| {
                c.prepare_cached(
                    "DELETE FROM idempotency_keys WHERE service_id = ?1 AND key = ?2 AND kept_until < ?3",
                )?
                .execute(params![service_id, key, unix_now()])?;
                let claimed = c
                    .prepare_cached(
                        "INSERT INTO idempotency_keys(service_id, key, request_hash, message_id,
                         created_at, accepted, kept_until) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)
                         ON CONFLICT(service_id, key) DO NOTHING",
                    )?
                    .execute(params![
                        service_id,
                        key,
                        claim.request_hash,
                        claim.message_id.to_string(),
                        claim.created_at.to_string(),
                        kept_until
                    ])?;
                if claimed > 0 {
                    return Ok(None);
                }
                Ok(c.prepare_cached(
                    "SELECT request_hash, message_id, created_at, accepted FROM idempotency_keys
                     WHERE service_id = ?1 AND key = ?2",
                )?
                .query_row(params![service_id, key], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, bool>(3)?,
                    ))
                })
                .optional()?)
            })
            .await?;
        earlier
            .map(|(request_hash, id, created_at, accepted)| {
                codec::idempotent_submit(request_hash, &id, &created_at, accepted)
            })
            .transpose()
    }
    async fn settle_idempotency_key(&self, service_id: &str, key: &str) -> Result<(), StoreError> {
        self.exec(
            "UPDATE idempotency_keys SET accepted = 1 WHERE service_id = ?1 AND key = ?2",
            vec![service_id.into(), key.into()],
        )
        .await
        .map(drop)
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_data_is_never_retried_and_a_failing_database_always_is() {
        let refused = StoreError::from(DbError::Refused("string or blob too big".into()));
        assert!(matches!(refused, StoreError::Rejected(_)) && !refused.is_retryable());
        for down in [
            DbError::Closed,
            DbError::Sqlite {
                message: "attempt to write a readonly database".into(),
                transient: false,
            },
            DbError::Sqlite {
                message: "database is locked".into(),
                transient: true,
            },
        ] {
            let err = StoreError::from(down);
            assert!(err.is_retryable(), "{err}: the stages hold for it");
        }
    }
}
