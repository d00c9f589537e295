//! [`ScyllaStore`]: every store trait on a CQL cluster, with prepared statements only.
//!
//! Writes never read first, except where the trait answers whether something was there
//! (`set_read`, the installation deletes). Status never goes backwards because each write's
//! timestamp is its rank (`USING TIMESTAMP`), so the cluster itself keeps the highest. A
//! batch of records is many single-partition statements in flight at once, at most
//! `scylla.concurrency`; the writes of one message's partition go as one unlogged batch,
//! which the cluster applies as one mutation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use model::campaign::Campaign;
use model::installation::{DeviceToken, Installation, InstallationId};
use model::profile::{Profile, ServicePreference};
use model::progress::{CampaignCounts, ProgressRecord, BUCKETS};
use model::service::{OrganizationAccount, Service};
use model::status::{Channel, ChannelOutcome, NotificationStatus};
use model::FiscalCode;
use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, MaybeUnset, Row};
use ulid::Ulid;

use super::schema::{self, Migrated};
use super::session::connect;
use super::statements::Statements;
use super::{ScyllaAddress, ScyllaSettings};
use crate::codec::{
    self, channel_name, from_json, name_of, parse_name, parse_optional_name, to_json,
};
use crate::{
    CampaignItem, CampaignStore, IdempotencyStore, IdempotentSubmit, InboxItem, InstallationStore,
    ItemCursor, KeyOwner, MessageRecord, MessageStore, NotificationKey, NotificationStore,
    ProfileStore, QuotaStore, Routing, ServiceStore, SettingStore, StoreError,
    SubscriptionFeedStore,
};
use crate::{ScheduleStore, ScheduledRecord};

/// How much time one inbox partition covers: 30 days of message ids.
const INBOX_BUCKET_MS: u64 = 30 * 24 * 3600 * 1000;

/// Every ULID's text sorts below this, so it bounds "the newest" from above.
const ABOVE_EVERY_ID: &str = "~";

/// The store on a CQL cluster.
#[derive(Debug, Clone)]
pub struct ScyllaStore {
    session: Arc<Session>,
    statements: Arc<Statements>,
    concurrency: usize,
}

impl ScyllaStore {
    /// Connects to the cluster at `address` and checks that its keyspace holds the schema
    /// this build knows (see [`schema::check`]).
    pub async fn connect(
        address: &ScyllaAddress,
        settings: &ScyllaSettings,
    ) -> Result<Self, StoreError> {
        let session = connect(address, settings).await?;
        schema::check(&session, &address.keyspace).await?;
        session
            .use_keyspace(address.keyspace.as_str(), true)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cql: USE {}: {e}", address.keyspace)))?;
        let statements = Statements::prepare(&session).await?;
        Ok(Self {
            session: Arc::new(session),
            statements: Arc::new(statements),
            concurrency: settings.concurrency,
        })
    }

    /// Creates or upgrades the keyspace at `address` (`postino store migrate`).
    pub async fn migrate(
        address: &ScyllaAddress,
        settings: &ScyllaSettings,
    ) -> Result<Migrated, StoreError> {
        let session = connect(address, settings).await?;
        schema::migrate(&session, &address.keyspace, &settings.replication).await
    }

    async fn execute(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        Ok(self.session.execute_unpaged(statement, values).await?)
    }

    /// The rows a statement reads.
    async fn rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'frame> DeserializeRow<'frame, 'frame>,
    {
        let result = self.execute(statement, values).await?;
        let rows = result.into_rows_result().map_err(corrupt)?;
        let decoded = rows.rows::<R>().map_err(corrupt)?;
        decoded.map(|row| row.map_err(corrupt)).collect()
    }

    /// Every row a statement reads, fetched page by page: for reads that may hold more
    /// than one answer frame should carry (a table scan, a day's feed).
    async fn paged_rows<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'frame, 'metadata> DeserializeRow<'frame, 'metadata> + 'static,
    {
        let unavailable = |e: &dyn std::fmt::Display| StoreError::Unavailable(format!("cql: {e}"));
        let pager = self
            .session
            .execute_iter(statement.clone(), values)
            .await
            .map_err(|e| unavailable(&e))?;
        pager
            .rows_stream::<R>()
            .map_err(corrupt)?
            .try_collect()
            .await
            .map_err(|e| unavailable(&e))
    }

    /// The one text value a statement reads, if there is a row.
    async fn text(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<String>, StoreError> {
        let rows: Vec<(Option<String>,)> = self.rows(statement, values).await?;
        Ok(rows.into_iter().next().and_then(|(text,)| text))
    }

    /// Runs `operations`, `concurrency` at a time; answers in their order. (The futures
    /// are made before they are streamed: a closure inside the stream would tie the
    /// stream's type to one borrow, which `async_trait`'s `Send` check cannot prove.)
    async fn each<T, Fut>(&self, operations: Vec<Fut>) -> Result<Vec<T>, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        self.each_of(operations, 1).await
    }

    /// [`Self::each`] for operations of `statements` statements each, so that no more than
    /// `concurrency` statements are in flight.
    async fn each_of<T, Fut>(
        &self,
        operations: Vec<Fut>,
        statements: usize,
    ) -> Result<Vec<T>, StoreError>
    where
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let at_once = (self.concurrency / statements.max(1)).max(1);
        futures::stream::iter(operations)
            .buffered(at_once)
            .try_collect()
            .await
    }

    /// The rows of one message's partition: one statement, or an unlogged batch (one
    /// mutation) when the writes carry different timestamps.
    async fn write_message_rows(&self, rows: Vec<MessageWrite>) -> Result<(), StoreError> {
        match rows.len() {
            0 => Ok(()),
            1 => {
                self.execute(&self.statements.write_message, &rows[0])
                    .await?;
                Ok(())
            }
            n => {
                let mut batch = Batch::new(BatchType::Unlogged);
                for _ in 0..n {
                    batch.append_statement(self.statements.write_message.clone());
                }
                batch.set_is_idempotent(true);
                self.session.batch(&batch, rows).await?;
                Ok(())
            }
        }
    }

    /// Whether a conditional write (LWT) was applied: its answer's `[applied]` column.
    fn applied(result: QueryResult) -> Result<bool, StoreError> {
        let rows = result.into_rows_result().map_err(corrupt)?;
        let row: Option<Row> = rows.maybe_first_row().map_err(corrupt)?;
        match row.and_then(|r| r.columns.into_iter().next().flatten()) {
            Some(CqlValue::Boolean(applied)) => Ok(applied),
            other => Err(StoreError::Corrupt(format!(
                "cql: a conditional write answered {other:?}, not [applied]"
            ))),
        }
    }
}

fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("cql: {err}"))
}

fn refused(message: String) -> StoreError {
    StoreError::Rejected(message)
}

/// One write of `write_message`'s columns, in its bind order: timestamp, message, status,
/// rejection_reason, updated_at, email, webhook, id. Columns a write does not set are
/// unset, not null, so no write leaves a tombstone.
type MessageWrite = (
    i64,
    MaybeUnset<String>,
    MaybeUnset<&'static str>,
    MaybeUnset<String>,
    MaybeUnset<String>,
    MaybeUnset<String>,
    MaybeUnset<String>,
    String,
);

fn set<T>(value: Option<T>) -> MaybeUnset<T> {
    value.map_or(MaybeUnset::Unset, MaybeUnset::Set)
}

/// The writes that bring a message's row to `record`: its status (timestamped by the
/// status's rank) and each channel outcome it holds (timestamped by the outcome's rank).
fn message_writes(record: &MessageRecord) -> Result<Vec<MessageWrite>, StoreError> {
    let id = record.message.id.to_string();
    let reason = record
        .rejection_reason
        .as_ref()
        .map(name_of)
        .transpose()
        .map_err(refused)?;
    let mut writes = vec![(
        i64::from(record.status.rank()),
        MaybeUnset::Set(to_json(&record.message).map_err(refused)?),
        MaybeUnset::Set(record.status.as_str()),
        set(reason),
        MaybeUnset::Set(record.updated_at.to_string()),
        MaybeUnset::Unset,
        MaybeUnset::Unset,
        id.clone(),
    )];
    for (channel, outcome) in [
        (Channel::Email, record.notification.email),
        (Channel::Push, record.notification.webhook),
    ] {
        if let Some(outcome) = outcome {
            writes.push(outcome_write(&id, channel, outcome)?);
        }
    }
    Ok(writes)
}

/// The write of one channel's outcome, timestamped by its rank.
fn outcome_write(
    id: &str,
    channel: Channel,
    outcome: ChannelOutcome,
) -> Result<MessageWrite, StoreError> {
    let text = name_of(&outcome).map_err(refused)?;
    let (email, webhook) = match channel {
        Channel::Email => (MaybeUnset::Set(text), MaybeUnset::Unset),
        Channel::Push => (MaybeUnset::Unset, MaybeUnset::Set(text)),
    };
    Ok((
        i64::from(outcome.rank()),
        MaybeUnset::Unset,
        MaybeUnset::Unset,
        MaybeUnset::Unset,
        MaybeUnset::Unset,
        email,
        webhook,
        id.to_string(),
    ))
}

/// The inbox partition of a message: its citizen and the 30 days its id's time falls in.
fn bucket_of(id: &Ulid) -> i32 {
    i32::try_from(id.timestamp_ms() / INBOX_BUCKET_MS).unwrap_or(i32::MAX)
}

fn limit(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn decode_inbox((body, is_read): (Option<String>, Option<bool>)) -> Result<InboxItem, StoreError> {
    let body = body.ok_or_else(|| StoreError::Corrupt("an inbox row without its body".into()))?;
    let mut item: InboxItem = from_json(&body)?;
    item.is_read = is_read.unwrap_or(false);
    Ok(item)
}

#[async_trait]
impl ServiceStore for ScyllaStore {
    async fn put_service(&self, service: &Service) -> Result<(), StoreError> {
        let body = to_json(service).map_err(refused)?;
        self.execute(&self.statements.put_service, (&service.id, body))
            .await
            .map(drop)
    }
    async fn get_service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        let body = self.text(&self.statements.get_service, (id,)).await?;
        body.map(|b| from_json(&b)).transpose()
    }
    async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        let bodies: Vec<(String,)> = self.paged_rows(&self.statements.list_services, ()).await?;
        let mut services = bodies
            .into_iter()
            .map(|(body,)| from_json::<Service>(&body))
            .collect::<Result<Vec<_>, _>>()?;
        services.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(services)
    }
    async fn delete_service(&self, id: &str) -> Result<(), StoreError> {
        self.execute(&self.statements.delete_service, (id,))
            .await
            .map(drop)
    }
    async fn put_organization(&self, account: &OrganizationAccount) -> Result<(), StoreError> {
        let body = to_json(account).map_err(refused)?;
        self.execute(
            &self.statements.put_organization,
            (&account.fiscal_code, body),
        )
        .await
        .map(drop)
    }
    async fn get_organization(
        &self,
        fiscal_code: &str,
    ) -> Result<Option<OrganizationAccount>, StoreError> {
        let body = self
            .text(&self.statements.get_organization, (fiscal_code,))
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }
    async fn put_key(&self, key_hash: &str, owner: &KeyOwner) -> Result<(), StoreError> {
        let owner = to_json(owner).map_err(refused)?;
        self.execute(&self.statements.put_key, (key_hash, owner))
            .await
            .map(drop)
    }
    async fn get_key(&self, key_hash: &str) -> Result<Option<KeyOwner>, StoreError> {
        let owner = self.text(&self.statements.get_key, (key_hash,)).await?;
        owner.map(|o| from_json(&o)).transpose()
    }
    async fn delete_key(&self, key_hash: &str) -> Result<(), StoreError> {
        self.execute(&self.statements.delete_key, (key_hash,))
            .await
            .map(drop)
    }
}

#[async_trait]
impl ProfileStore for ScyllaStore {
    async fn get_profile(&self, fc: &FiscalCode) -> Result<Option<Profile>, StoreError> {
        let body = self
            .text(&self.statements.get_profile, (fc.as_str(),))
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }
    async fn put_profile(&self, fc: &FiscalCode, profile: &Profile) -> Result<(), StoreError> {
        let body = to_json(profile).map_err(refused)?;
        self.execute(&self.statements.put_profile, (fc.as_str(), body))
            .await
            .map(drop)
    }
    async fn get_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
    ) -> Result<Option<ServicePreference>, StoreError> {
        let body = self
            .text(&self.statements.get_preference, (fc.as_str(), service_id))
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }
    async fn put_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
        preference: &ServicePreference,
    ) -> Result<(), StoreError> {
        let body = to_json(preference).map_err(refused)?;
        self.execute(
            &self.statements.put_preference,
            (fc.as_str(), service_id, body),
        )
        .await
        .map(drop)
    }

    /// Both reads of every pair at once: the round trips overlap instead of adding up.
    async fn get_routing(
        &self,
        pairs: &[(FiscalCode, String)],
    ) -> Result<Vec<Routing>, StoreError> {
        self.each(
            pairs
                .iter()
                .map(|(fc, service_id)| async move {
                    let (profile, preference) = futures::try_join!(
                        self.get_profile(fc),
                        self.get_preference(fc, service_id)
                    )?;
                    // A preference without a profile is never read: the citizen has no inbox.
                    let preference = preference.filter(|_| profile.is_some());
                    Ok(Routing {
                        profile,
                        preference,
                    })
                })
                .collect(),
        )
        .await
    }
}

/// A message row's columns, as read: message, status, rejection_reason, updated_at,
/// email, webhook.
type MessageRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn decode_message(row: MessageRow) -> Result<Option<MessageRecord>, StoreError> {
    let (message, status, rejection_reason, updated_at, email, webhook) = row;
    // A row holding only channel outcomes is of a message this store never had: the
    // outcomes of unknown ids are ignored.
    let (Some(message), Some(status)) = (message, status) else {
        return Ok(None);
    };
    let updated_at =
        updated_at.ok_or_else(|| StoreError::Corrupt("a message row without updated_at".into()))?;
    Ok(Some(MessageRecord {
        message: from_json(&message)?,
        status: parse_name(&status).map_err(StoreError::Corrupt)?,
        rejection_reason: parse_optional_name(rejection_reason).map_err(StoreError::Corrupt)?,
        notification: NotificationStatus {
            email: parse_optional_name(email).map_err(StoreError::Corrupt)?,
            webhook: parse_optional_name(webhook).map_err(StoreError::Corrupt)?,
        },
        updated_at: updated_at
            .parse()
            .map_err(|e: model::timestamp::TimestampError| StoreError::Corrupt(e.to_string()))?,
    }))
}

#[async_trait]
impl MessageStore for ScyllaStore {
    async fn put_messages(&self, records: Vec<MessageRecord>) -> Result<(), StoreError> {
        let writes = records
            .iter()
            .map(message_writes)
            .collect::<Result<Vec<_>, _>>()?;
        self.each(
            writes
                .into_iter()
                .map(|rows| self.write_message_rows(rows))
                .collect(),
        )
        .await
        .map(drop)
    }

    async fn get_message(&self, id: &Ulid) -> Result<Option<MessageRecord>, StoreError> {
        let rows: Vec<MessageRow> = self
            .rows(&self.statements.get_message, (id.to_string(),))
            .await?;
        match rows.into_iter().next() {
            Some(row) => decode_message(row),
            None => Ok(None),
        }
    }

    async fn deliver(&self, records: Vec<MessageRecord>) -> Result<(), StoreError> {
        let items = records
            .iter()
            .map(|r| {
                let m = &r.message;
                let body = to_json(&InboxItem::of(m)).map_err(refused)?;
                let item = (
                    m.fiscal_code.as_str(),
                    bucket_of(&m.id),
                    m.id.to_string(),
                    body,
                );
                Ok((item, message_writes(r)?))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Each message's inbox rows first, then its PROCESSED row: a message is PROCESSED
        // only once it is readable. Messages do not wait for one another.
        let writes = items
            .into_iter()
            .map(|((fc, bucket, id, body), status)| async move {
                let row = self.execute(&self.statements.put_inbox, (fc, bucket, id, body));
                let index = self.execute(&self.statements.put_inbox_bucket, (fc, bucket));
                futures::try_join!(row, index)?;
                self.write_message_rows(status).await
            });
        // Two inbox statements, then one or a batch.
        self.each_of(writes.collect(), 3).await.map(drop)
    }

    async fn list_inbox(
        &self,
        fc: &FiscalCode,
        before: Option<Ulid>,
        limit_to: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        if limit_to == 0 {
            return Ok(Vec::new());
        }
        let fc = fc.as_str();
        // Every bucket listed holds a message, and each one older than the cursor's holds
        // one below the cursor: the cursor's own bucket and `limit_to` more suffice.
        let buckets: Vec<(i32,)> = match before {
            Some(before) => {
                self.rows(
                    &self.statements.buckets_up_to,
                    (fc, bucket_of(&before), limit(limit_to.saturating_add(1))),
                )
                .await?
            }
            None => {
                self.rows(&self.statements.newest_buckets, (fc, limit(limit_to)))
                    .await?
            }
        };
        let upper = before.map_or_else(|| ABOVE_EVERY_ID.to_string(), |b| b.to_string());
        let mut items = Vec::with_capacity(limit_to);
        for (bucket,) in buckets {
            let wanted = limit_to - items.len();
            let rows: Vec<(Option<String>, Option<bool>)> = self
                .rows(
                    &self.statements.inbox_page,
                    (fc, bucket, upper.as_str(), limit(wanted)),
                )
                .await?;
            for row in rows {
                items.push(decode_inbox(row)?);
            }
            if items.len() >= limit_to {
                break;
            }
        }
        Ok(items)
    }

    async fn get_inbox_item(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
    ) -> Result<Option<InboxItem>, StoreError> {
        let rows: Vec<(Option<String>, Option<bool>)> = self
            .rows(
                &self.statements.get_inbox_item,
                (fc.as_str(), bucket_of(id), id.to_string()),
            )
            .await?;
        rows.into_iter().next().map(decode_inbox).transpose()
    }

    async fn set_read(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
        is_read: bool,
    ) -> Result<bool, StoreError> {
        // Inbox rows are never deleted, so one that is there now stays: reading first
        // cannot race a delete, and spares the cost of a conditional write.
        if self.get_inbox_item(fc, id).await?.is_none() {
            return Ok(false);
        }
        self.execute(
            &self.statements.set_read,
            (is_read, fc.as_str(), bucket_of(id), id.to_string()),
        )
        .await?;
        Ok(true)
    }

    async fn record_channel_outcomes(
        &self,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        self.settle_notifications(Vec::new(), outcomes).await
    }
}

#[async_trait]
impl NotificationStore for ScyllaStore {
    async fn notifications_sent(&self, keys: &[NotificationKey]) -> Result<Vec<bool>, StoreError> {
        let ids: Vec<Ulid> = {
            let mut seen = HashSet::new();
            keys.iter()
                .map(|k| k.message_id)
                .filter(|id| seen.insert(*id))
                .collect()
        };
        let sent = self
            .each(
                ids.into_iter()
                    .map(|id| async move {
                        let rows: Vec<(String, String)> = self
                            .rows(&self.statements.sent_of_message, (id.to_string(),))
                            .await?;
                        Ok((id, rows))
                    })
                    .collect(),
            )
            .await?;
        let sent: HashSet<(Ulid, String, String)> = sent
            .into_iter()
            .flat_map(|(id, rows)| rows.into_iter().map(move |(c, t)| (id, c, t)))
            .collect();
        Ok(keys
            .iter()
            .map(|k| {
                sent.contains(&(
                    k.message_id,
                    channel_name(k.channel).to_string(),
                    k.target.clone(),
                ))
            })
            .collect())
    }

    async fn record_notifications_sent(
        &self,
        keys: Vec<NotificationKey>,
    ) -> Result<(), StoreError> {
        self.settle_notifications(keys, Vec::new()).await
    }

    /// One unlogged batch per message: its sent records and its outcomes share the
    /// message id as partition key, so the batch goes to one replica set at once.
    async fn settle_notifications(
        &self,
        sent: Vec<NotificationKey>,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        let mut per_message: BTreeMap<Ulid, Vec<Settle>> = BTreeMap::new();
        for key in sent {
            per_message
                .entry(key.message_id)
                .or_default()
                .push(EitherRow::First((
                    key.message_id.to_string(),
                    channel_name(key.channel),
                    key.target,
                )));
        }
        for (id, channel, status) in outcomes {
            let write = outcome_write(&id.to_string(), channel, status)?;
            per_message
                .entry(id)
                .or_default()
                .push(EitherRow::Second(write));
        }
        let batches = per_message.into_values().map(|rows| async move {
            let mut batch = Batch::new(BatchType::Unlogged);
            for row in &rows {
                batch.append_statement(match row {
                    EitherRow::First(_) => self.statements.put_sent.clone(),
                    EitherRow::Second(_) => self.statements.write_message.clone(),
                });
            }
            batch.set_is_idempotent(true);
            self.session.batch(&batch, rows).await?;
            Ok(())
        });
        self.each(batches.collect()).await.map(drop)
    }
}

/// A row of a batch mixing two statements: the values of the one or of the other.
enum EitherRow<A, B> {
    First(A),
    Second(B),
}

impl<A: SerializeRow, B: SerializeRow> SerializeRow for EitherRow<A, B> {
    fn serialize(
        &self,
        ctx: &scylla::serialize::row::RowSerializationContext<'_>,
        writer: &mut scylla::serialize::writers::RowWriter,
    ) -> Result<(), scylla::serialize::SerializationError> {
        match self {
            Self::First(row) => row.serialize(ctx, writer),
            Self::Second(row) => row.serialize(ctx, writer),
        }
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// A row of a settling batch: a sent record (message id, channel, target) or an outcome.
type Settle = EitherRow<(String, &'static str, String), MessageWrite>;

#[async_trait]
impl InstallationStore for ScyllaStore {
    async fn put_installation(
        &self,
        fc: &FiscalCode,
        installation: &Installation,
    ) -> Result<(), StoreError> {
        let body = to_json(installation).map_err(refused)?;
        self.execute(
            &self.statements.put_installation,
            (
                fc.as_str(),
                installation.id.to_string(),
                installation.token.expose(),
                body,
            ),
        )
        .await
        .map(drop)
    }

    async fn list_installations(&self, fc: &FiscalCode) -> Result<Vec<Installation>, StoreError> {
        let rows: Vec<(String, Option<String>)> = self
            .rows(&self.statements.installations_of, (fc.as_str(),))
            .await?;
        rows.into_iter()
            .filter_map(|(_, body)| body)
            .map(|body| from_json(&body))
            .collect()
    }

    async fn installations_of(
        &self,
        fcs: &[FiscalCode],
    ) -> Result<Vec<Vec<Installation>>, StoreError> {
        self.each(fcs.iter().map(|fc| self.list_installations(fc)).collect())
            .await
    }

    async fn delete_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
    ) -> Result<bool, StoreError> {
        let result = self
            .execute(
                &self.statements.delete_installation,
                (fc.as_str(), id.to_string()),
            )
            .await?;
        Self::applied(result)
    }

    async fn delete_stale_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
        token: &DeviceToken,
    ) -> Result<bool, StoreError> {
        let result = self
            .execute(
                &self.statements.delete_stale_installation,
                (fc.as_str(), id.to_string(), token.expose()),
            )
            .await?;
        Self::applied(result)
    }

    async fn delete_installations(&self, fc: &FiscalCode) -> Result<usize, StoreError> {
        let rows: Vec<(String, Option<String>)> = self
            .rows(&self.statements.installations_of, (fc.as_str(),))
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        self.execute(&self.statements.delete_installations, (fc.as_str(),))
            .await?;
        Ok(rows.len())
    }
}

#[async_trait]
impl SettingStore for ScyllaStore {
    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.text(&self.statements.get_setting, (name,)).await
    }
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let result = self
            .execute(&self.statements.put_setting_if_absent, (name, value))
            .await?;
        Self::applied(result)
    }
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.execute(&self.statements.put_setting, (name, value))
            .await
            .map(drop)
    }
}

/// Conditional writes one take may make before giving up: each lost race means another
/// process took one meanwhile, so this many only under heavy contention for one counter.
const QUOTA_ATTEMPTS: usize = 32;

#[async_trait]
impl QuotaStore for ScyllaStore {
    async fn take_quota(
        &self,
        counter: &str,
        period: &str,
        amount: u32,
        limit: u32,
    ) -> Result<Option<u32>, StoreError> {
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let amount = i32::try_from(amount).unwrap_or(i32::MAX);
        if amount == 0 || amount > limit {
            return Ok(None);
        }
        // Compare-and-set on what the last conditional write saw, with no plain read: the
        // first write starts the period's count, and when the row exists its answer carries
        // the count; each advance that loses answers with the count that beat it.
        let mut used: Option<i32> = None;
        for _ in 0..QUOTA_ATTEMPTS {
            let (applied, now) = match used {
                None => {
                    let started = self
                        .execute(&self.statements.start_quota, (counter, period, amount))
                        .await?;
                    let (applied, now) = Self::compared(started)?;
                    if applied {
                        return Ok(u32::try_from(amount).ok());
                    }
                    (applied, now)
                }
                Some(seen) if seen > limit - amount => return Ok(None),
                Some(seen) => {
                    let advanced = self
                        .execute(
                            &self.statements.advance_quota,
                            (seen + amount, counter, period, seen),
                        )
                        .await?;
                    let (applied, now) = Self::compared(advanced)?;
                    if applied {
                        return Ok(u32::try_from(seen + amount).ok());
                    }
                    (applied, now)
                }
            };
            debug_assert!(!applied);
            // The row may have expired meanwhile (`None`): then start it again.
            used = now;
        }
        Err(StoreError::Unavailable(format!(
            "cql: quota {counter:?} is contended: {QUOTA_ATTEMPTS} conditional writes lost"
        )))
    }
    async fn quota_used(&self, counter: &str, period: &str) -> Result<u32, StoreError> {
        let rows: Vec<(Option<i32>,)> = self
            .rows(&self.statements.get_quota, (counter, period))
            .await?;
        let used = rows
            .into_iter()
            .next()
            .and_then(|(used,)| used)
            .unwrap_or(0);
        Ok(u32::try_from(used).unwrap_or(0))
    }
}

#[async_trait]
impl CampaignStore for ScyllaStore {
    async fn put_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        let body = to_json(campaign).map_err(refused)?;
        self.execute(&self.statements.put_campaign, (&campaign.id, body))
            .await
            .map(drop)
    }
    async fn get_campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        let body = self.text(&self.statements.get_campaign, (id,)).await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn record_progress(&self, parts: &[ProgressRecord]) -> Result<(), StoreError> {
        let writes = parts.iter().map(|part| self.record_part(part)).collect();
        self.each(writes).await.map(drop)
    }

    async fn put_campaign_chunk(
        &self,
        campaign_id: &str,
        chunk: &str,
        accepted: u32,
    ) -> Result<(), StoreError> {
        let accepted = i32::try_from(accepted).unwrap_or(i32::MAX);
        self.execute(
            &self.statements.put_campaign_chunk,
            (campaign_id, chunk, accepted),
        )
        .await
        .map(drop)
    }

    async fn campaign_counts(&self, campaign_id: &str) -> Result<CampaignCounts, StoreError> {
        let reads = (0..BUCKETS)
            .map(|bucket| {
                self.text(
                    &self.statements.campaign_part_counts,
                    (campaign_id, bucket as i16),
                )
            })
            .collect();
        let parts = crate::progress::sum_parts(self.each(reads).await?.into_iter().flatten())?;
        let chunks: Vec<(Option<i32>,)> = self
            .paged_rows(&self.statements.campaign_chunks, (campaign_id,))
            .await?;
        let accepted = chunks.into_iter().filter_map(|(n,)| n).map(i64::from).sum();
        Ok(parts.with_accepted(accepted))
    }

    async fn campaign_items(
        &self,
        campaign_id: &str,
        after: Option<ItemCursor>,
        limit: usize,
    ) -> Result<Vec<CampaignItem>, StoreError> {
        let (first, mut after_id) =
            after.map_or((0, String::new()), |a| (a.bucket, a.id.to_string()));
        let mut items = Vec::new();
        for bucket in first..BUCKETS {
            let wanted = limit.saturating_sub(items.len());
            if wanted == 0 {
                break;
            }
            let rows: Vec<(String, String)> = self
                .rows(
                    &self.statements.campaign_items_after,
                    (campaign_id, bucket as i16, &after_id, wanted as i32),
                )
                .await?;
            for (id, state) in rows {
                items.push(crate::progress::item_of(bucket, &id, &state)?);
            }
            // Every id sorts after the empty text.
            after_id = String::new();
        }
        Ok(items)
    }
}

impl ScyllaStore {
    /// One part's reports merged into its items and counts, written as one
    /// single-partition batch.
    async fn record_part(&self, part: &ProgressRecord) -> Result<(), StoreError> {
        let (campaign_id, bucket, items) =
            (part.campaign_id.as_str(), part.bucket, &part.items[..]);
        if items.is_empty() {
            return Ok(());
        }
        let part = (campaign_id, bucket as i16);
        let counts = self
            .text(&self.statements.campaign_part_counts, part)
            .await?;
        let mut counts = crate::progress::counts_of(counts.as_deref())?;
        let combined = crate::progress::combine(items);
        let ids: Vec<String> = combined.iter().map(|(id, _)| id.to_string()).collect();
        let reads = ids
            .chunks(IN_LIST_LIMIT)
            .map(|ids| {
                self.rows::<(String, String)>(
                    &self.statements.campaign_item_states,
                    (campaign_id, bucket as i16, ids),
                )
            })
            .collect();
        let stored = self
            .each(reads)
            .await?
            .into_iter()
            .flatten()
            .map(|(id, state)| crate::progress::state_of(&id, &state))
            .collect::<Result<HashMap<_, _>, _>>()?;
        let changed: Vec<_> = combined
            .into_iter()
            .filter_map(|(id, change)| {
                let next = counts.apply(stored.get(&id).copied(), &change)?;
                Some((id, next))
            })
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        // One partition: the batch is applied atomically and in isolation, so the counts
        // and the states they count are written together or not at all.
        let mut batch = Batch::new(BatchType::Unlogged);
        let mut rows: Vec<PartRow> = Vec::with_capacity(changed.len() + 1);
        for (id, state) in changed {
            batch.append_statement(self.statements.put_campaign_item.clone());
            rows.push(EitherRow::First((
                campaign_id.to_string(),
                bucket as i16,
                id.to_string(),
                to_json(&state).map_err(refused)?,
            )));
        }
        batch.append_statement(self.statements.put_campaign_part_counts.clone());
        rows.push(EitherRow::Second((
            to_json(&counts).map_err(refused)?,
            campaign_id.to_string(),
            bucket as i16,
        )));
        batch.set_is_idempotent(true);
        self.session.batch(&batch, rows).await?;
        Ok(())
    }
}

/// The most ids one `IN` list of a read names.
const IN_LIST_LIMIT: usize = 100;

/// A row of a campaign part's batch: an item's state, or the part's counts.
type PartRow = EitherRow<(String, i16, String, String), (String, String, i16)>;

#[async_trait]
impl ScheduleStore for ScyllaStore {
    async fn schedule(&self, records: Vec<ScheduledRecord>) -> Result<(), StoreError> {
        let writes = records
            .into_iter()
            .map(|r| async move {
                let headers = to_json(&r.headers).map_err(refused)?;
                let values = (
                    r.minute(),
                    r.shard() as i16,
                    &r.id,
                    r.due_ms,
                    &r.topic,
                    &r.key,
                    headers,
                    &r.payload,
                );
                self.execute(&self.statements.schedule, values)
                    .await
                    .map(drop)
            })
            .collect();
        self.each(writes).await.map(drop)
    }

    async fn scheduled_in(
        &self,
        minute: i64,
        shard: u16,
    ) -> Result<Vec<ScheduledRecord>, StoreError> {
        let rows: Vec<crate::StoredSchedule> = self
            .paged_rows(&self.statements.scheduled_in, (minute, shard as i16))
            .await?;
        rows.into_iter().map(ScheduledRecord::stored).collect()
    }

    async fn unschedule(&self, minute: i64, shard: u16, ids: &[String]) -> Result<(), StoreError> {
        let deletes = ids
            .chunks(IN_LIST_LIMIT)
            .map(|ids| self.execute(&self.statements.unschedule, (minute, shard as i16, ids)))
            .collect();
        self.each(deletes).await.map(drop)
    }

    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let ttl = i32::try_from(ttl.as_secs().max(1)).unwrap_or(i32::MAX);
        let renewed = self
            .execute(&self.statements.renew_lease, (ttl, holder, name, holder))
            .await?;
        if Self::applied(renewed)? {
            return Ok(true);
        }
        let taken = self
            .execute(&self.statements.take_lease, (name, holder, ttl))
            .await?;
        Self::applied(taken)
    }
}

#[async_trait]
impl SubscriptionFeedStore for ScyllaStore {
    async fn record_subscription_change(
        &self,
        day: &str,
        scope: &str,
        fc_hash: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        self.execute(
            &self.statements.record_subscription_change,
            (day, scope, fc_hash, subscribed),
        )
        .await
        .map(drop)
    }
    async fn subscription_changes(
        &self,
        day: &str,
        scope: &str,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        self.paged_rows(&self.statements.subscription_changes, (day, scope))
            .await
    }
}

#[async_trait]
impl IdempotencyStore for ScyllaStore {
    async fn claim_idempotency_key(
        &self,
        service_id: &str,
        key: &str,
        submit: &IdempotentSubmit,
    ) -> Result<Option<IdempotentSubmit>, StoreError> {
        let claimed = self
            .execute(
                &self.statements.claim_idempotency_key,
                (
                    service_id,
                    key,
                    submit.request_hash.as_str(),
                    submit.message_id.to_string(),
                    submit.created_at.to_string(),
                ),
            )
            .await?;
        let (applied, earlier) = Self::conditional(claimed)?;
        if applied {
            return Ok(None);
        }
        let text = |name: &str| match earlier.get(name) {
            Some(CqlValue::Text(text)) => Some(text.clone()),
            _ => None,
        };
        let accepted = matches!(earlier.get("accepted"), Some(CqlValue::Boolean(true)));
        match (text("request_hash"), text("message_id"), text("created_at")) {
            (Some(hash), Some(id), Some(created_at)) => {
                codec::idempotent_submit(hash, &id, &created_at, accepted).map(Some)
            }
            // The row is expiring (its cells a few milliseconds apart): try again soon.
            _ => Err(StoreError::Unavailable(
                "cql: an idempotency key is expiring; retry".into(),
            )),
        }
    }
    async fn settle_idempotency_key(&self, service_id: &str, key: &str) -> Result<(), StoreError> {
        self.execute(&self.statements.settle_idempotency_key, (service_id, key))
            .await
            .map(drop)
    }
}

impl ScyllaStore {
    /// A conditional write's answer: whether it was applied, and, when it was not, the
    /// values of the row that stopped it, by column name.
    fn conditional(
        result: QueryResult,
    ) -> Result<(bool, std::collections::HashMap<String, CqlValue>), StoreError> {
        let rows = result.into_rows_result().map_err(corrupt)?;
        let names: Vec<String> = rows
            .column_specs()
            .iter()
            .map(|spec| spec.name().to_string())
            .collect();
        let row: Option<Row> = rows.maybe_first_row().map_err(corrupt)?;
        let Some(row) = row else {
            return Err(StoreError::Corrupt(
                "cql: a conditional write answered no row".into(),
            ));
        };
        let mut values: std::collections::HashMap<String, CqlValue> = names
            .into_iter()
            .zip(row.columns)
            .filter_map(|(name, value)| Some((name, value?)))
            .collect();
        match values.remove("[applied]") {
            Some(CqlValue::Boolean(applied)) => Ok((applied, values)),
            other => Err(StoreError::Corrupt(format!(
                "cql: a conditional write answered {other:?}, not [applied]"
            ))),
        }
    }

    /// A quota's conditional write: whether it was applied, and the `used` it found.
    fn compared(result: QueryResult) -> Result<(bool, Option<i32>), StoreError> {
        let (applied, values) = Self::conditional(result)?;
        let used = match values.get("used") {
            Some(CqlValue::Int(used)) => Some(*used),
            _ => None,
        };
        Ok((applied, used))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_covers_thirty_days_of_ids() {
        let at = |ms: u64| Ulid::from_parts(ms, 7);
        assert_eq!(bucket_of(&at(0)), 0);
        assert_eq!(bucket_of(&at(INBOX_BUCKET_MS - 1)), 0);
        assert_eq!(bucket_of(&at(INBOX_BUCKET_MS)), 1);
        // Late 2026: about 57 years of 30-day buckets since 1970.
        assert_eq!(bucket_of(&at(1_796_000_000_000)), 692);
    }

    #[test]
    fn every_id_sorts_below_the_upper_bound() {
        assert!(
            Ulid::from_parts(u64::MAX >> 16, u128::MAX)
                .to_string()
                .as_str()
                < ABOVE_EVERY_ID
        );
    }
}
