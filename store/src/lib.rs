//! Postino's state (ARCHITECTURE.md §7): services and their keys, citizens' profiles and
//! preferences, messages with their status, and each citizen's inbox.
//!
//! The traits are shaped for ScyllaDB: every operation names its partition (service id,
//! key hash, fiscal code, message id), every write is an idempotent upsert, and no operation
//! needs a transaction across partitions. Message status never goes backwards: a write
//! carries its status rank and a lower rank never replaces a higher one (in ScyllaDB, the
//! rank becomes the write timestamp). [`sqlite::SqliteStore`] is the embedded
//! implementation, [`scylla`] the one on a ScyllaDB cluster (its client with the `scylla`
//! feature); [`conformance`] is the suite every implementation passes.

use async_trait::async_trait;
use model::campaign::Campaign;
use model::installation::{DeviceToken, Installation, InstallationId};
use model::pipeline::AcceptedMessage;
use model::profile::{Profile, ServicePreference};
use model::progress::{CampaignCounts, ItemProgress, ProgressRecord};
use model::service::{KeySlot, OrganizationAccount, Service};
use model::status::{Channel, ChannelOutcome, MessageStatus, NotificationStatus, RejectionReason};
use model::timestamp::Timestamp;
use model::FiscalCode;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

mod address;
mod codec;
#[cfg(feature = "testsuite")]
pub mod conformance;
pub mod metered;
pub mod progress;
pub mod scylla;
pub mod sqlite;
#[cfg(all(feature = "testsuite", feature = "scylla"))]
pub mod test_cql;

pub use address::StoreAddress;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The store cannot answer now (disk, network, overload); retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back: a bug or a damaged row, never retried.
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The store refuses this data for good (too large, breaks a constraint): writing it
    /// again fails again, so a stage dead-letters the record instead of holding.
    #[error("the store refused the data: {0}")]
    Rejected(String),
    /// The store's schema does not fit this build (missing, older or newer): an operator
    /// runs `postino store migrate` or the Postino that knows it. Found at start-up.
    #[error("{0}")]
    Schema(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Who an API key belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KeyOwner {
    /// The operators' key for the manage API.
    Manage,
    /// One of a service's two keys.
    Service { service_id: String, slot: KeySlot },
    /// One of an organisation's two manage keys: the manage API for its own services.
    Organization { fiscal_code: String, slot: KeySlot },
}

/// Services, organisations, and the hashes of their keys (partitions: service id,
/// organisation fiscal code, key hash).
#[async_trait]
pub trait ServiceStore: Send + Sync {
    async fn put_service(&self, service: &Service) -> Result<(), StoreError>;
    async fn get_service(&self, id: &str) -> Result<Option<Service>, StoreError>;
    /// Every service, by id. A deployment has thousands at most (one per public body's
    /// service), so the manage API pages them in memory; in ScyllaDB this is a scan.
    async fn list_services(&self) -> Result<Vec<Service>, StoreError>;
    async fn delete_service(&self, id: &str) -> Result<(), StoreError>;
    async fn put_organization(&self, account: &OrganizationAccount) -> Result<(), StoreError>;
    async fn get_organization(
        &self,
        fiscal_code: &str,
    ) -> Result<Option<OrganizationAccount>, StoreError>;
    async fn put_key(&self, key_hash: &str, owner: &KeyOwner) -> Result<(), StoreError>;
    async fn get_key(&self, key_hash: &str) -> Result<Option<KeyOwner>, StoreError>;
    async fn delete_key(&self, key_hash: &str) -> Result<(), StoreError>;
}

/// Citizens' profiles and per-service preferences (partition: fiscal code).
#[async_trait]
pub trait ProfileStore: Send + Sync {
    async fn get_profile(&self, fc: &FiscalCode) -> Result<Option<Profile>, StoreError>;
    async fn put_profile(&self, fc: &FiscalCode, profile: &Profile) -> Result<(), StoreError>;
    async fn get_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
    ) -> Result<Option<ServicePreference>, StoreError>;
    async fn put_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
        preference: &ServicePreference,
    ) -> Result<(), StoreError>;

    /// For each (citizen, service) pair, in order: the citizen's profile and their
    /// preference for that service — what the router needs for a batch, read in one go.
    /// The preference is read whatever the profile's mode; the rules decide if it counts.
    async fn get_routing(
        &self,
        pairs: &[(FiscalCode, String)],
    ) -> Result<Vec<Routing>, StoreError> {
        let mut out = Vec::with_capacity(pairs.len());
        for (fc, service_id) in pairs {
            let profile = self.get_profile(fc).await?;
            let preference = match profile {
                Some(_) => self.get_preference(fc, service_id).await?,
                None => None,
            };
            out.push(Routing {
                profile,
                preference,
            });
        }
        Ok(out)
    }
}

/// What the router reads about one citizen for one service.
#[derive(Debug, Clone, PartialEq)]
pub struct Routing {
    pub profile: Option<Profile>,
    pub preference: Option<ServicePreference>,
}

/// A message with where it stands (partition: message id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageRecord {
    pub message: AcceptedMessage,
    pub status: MessageStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<RejectionReason>,
    #[serde(default)]
    pub notification: NotificationStatus,
    pub updated_at: Timestamp,
}

impl MessageRecord {
    /// `message` at `status`, stamped now, with no rejection reason and no channel outcome.
    pub fn new(message: AcceptedMessage, status: MessageStatus) -> Self {
        Self {
            message,
            status,
            rejection_reason: None,
            notification: NotificationStatus::default(),
            updated_at: Timestamp::now(),
        }
    }

    /// `message` REJECTED for `reason`.
    pub fn rejected(message: AcceptedMessage, reason: RejectionReason) -> Self {
        Self {
            rejection_reason: Some(reason),
            ..Self::new(message, MessageStatus::Rejected)
        }
    }
}

/// One message in a citizen's inbox, as listed (partition: fiscal code, clustered by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxItem {
    pub id: Ulid,
    pub sender_service_id: String,
    pub created_at: Timestamp,
    pub subject: String,
    pub service_name: String,
    pub organization_name: String,
    pub has_payment: bool,
    pub is_read: bool,
}

impl InboxItem {
    pub fn of(message: &AcceptedMessage) -> Self {
        Self {
            id: message.id,
            sender_service_id: message.sender_service_id.clone(),
            created_at: message.created_at,
            subject: message.content.subject.clone(),
            service_name: message.sender.service_name.clone(),
            organization_name: message.sender.organization_name.clone(),
            has_payment: message.content.payment_data.is_some(),
            is_read: false,
        }
    }
}

/// Messages, their status, and inboxes.
#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Upserts message records; a record whose status ranks lower than the stored one is
    /// ignored, so a late ACCEPTED never hides PROCESSED.
    async fn put_messages(&self, records: Vec<MessageRecord>) -> Result<(), StoreError>;

    async fn get_message(&self, id: &Ulid) -> Result<Option<MessageRecord>, StoreError>;

    /// Puts each message in its citizen's inbox (unread; a message already there keeps its
    /// read state) and then records it PROCESSED. Idempotent: delivering twice changes
    /// nothing.
    async fn deliver(&self, records: Vec<MessageRecord>) -> Result<(), StoreError>;

    /// A citizen's inbox, newest first, starting after `before` (exclusive) when given.
    async fn list_inbox(
        &self,
        fc: &FiscalCode,
        before: Option<Ulid>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError>;

    async fn get_inbox_item(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
    ) -> Result<Option<InboxItem>, StoreError>;

    /// Sets the read state; false if the message is not in this citizen's inbox.
    async fn set_read(&self, fc: &FiscalCode, id: &Ulid, is_read: bool)
        -> Result<bool, StoreError>;

    /// Records what a channel did with messages. An outcome replaces the stored one only if
    /// it ranks higher ([`model::status::ChannelOutcome::rank`]): one device reached makes the push SENT
    /// whatever its citizen's other devices did. Unknown message ids are ignored.
    async fn record_channel_outcomes(
        &self,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError>;
}

/// One notification: a message on a channel to one target (the device's installation id
/// for push; empty for email, which goes once per message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationKey {
    pub message_id: Ulid,
    pub channel: Channel,
    pub target: String,
}

/// How long a record of a sent notification is kept: past the longest `time_to_live`
/// (7 days), no job of its message is sent anyway, so none needs checking.
pub const SENT_NOTIFICATION_RETENTION: std::time::Duration =
    std::time::Duration::from_secs(8 * 24 * 3600);

/// Which notifications went out (partition: message id). A dispatcher checks before it
/// sends and records right after the provider's answer, so a job published or delivered
/// twice (a replayed batch, a redelivery after a crash) is not sent twice: only a crash
/// between the provider's answer and the record can repeat one.
#[async_trait]
pub trait NotificationStore: MessageStore {
    /// For each key, in order: whether it was recorded sent.
    async fn notifications_sent(&self, keys: &[NotificationKey]) -> Result<Vec<bool>, StoreError>;

    /// Records notifications as sent. Idempotent. Records older than
    /// [`SENT_NOTIFICATION_RETENTION`] (by their message's id) may be dropped.
    async fn record_notifications_sent(&self, keys: Vec<NotificationKey>)
        -> Result<(), StoreError>;

    /// What a dispatcher records after a batch's sends: the notifications that went out
    /// ([`Self::record_notifications_sent`]), then the channel outcomes
    /// ([`MessageStore::record_channel_outcomes`]). A store that can do both in one write
    /// does (one commit per batch instead of two).
    async fn settle_notifications(
        &self,
        sent: Vec<NotificationKey>,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        self.record_notifications_sent(sent).await?;
        self.record_channel_outcomes(outcomes).await
    }
}

/// Citizens' devices (partition: fiscal code, clustered by installation id).
#[async_trait]
pub trait InstallationStore: Send + Sync {
    /// Adds or replaces (same id) one installation.
    async fn put_installation(
        &self,
        fc: &FiscalCode,
        installation: &Installation,
    ) -> Result<(), StoreError>;

    /// One citizen's installations, by id.
    async fn list_installations(&self, fc: &FiscalCode) -> Result<Vec<Installation>, StoreError>;

    /// Installations of many citizens in one trip, in the order asked.
    async fn installations_of(
        &self,
        fcs: &[FiscalCode],
    ) -> Result<Vec<Vec<Installation>>, StoreError>;

    /// Removes one installation; false if there was none.
    async fn delete_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
    ) -> Result<bool, StoreError>;

    /// Removes an installation only while it still holds `token`: a provider said the token
    /// is gone, and the app may have registered a fresh one under the same id since.
    async fn delete_stale_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
        token: &DeviceToken,
    ) -> Result<bool, StoreError>;

    /// Removes every installation of a citizen ("log out of all devices"); how many.
    async fn delete_installations(&self, fc: &FiscalCode) -> Result<usize, StoreError>;
}

/// Small named values set once per deployment (e.g. whether the bootstrap manage key was
/// issued). `put_setting_if_absent` is a conditional write (an LWT in ScyllaDB), used only
/// at start-up, never on a hot path.
#[async_trait]
pub trait SettingStore: Send + Sync {
    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` unless `name` is set; true if this call stored it.
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, StoreError>;
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError>;
}

/// Counters of requests per key and period, for quotas that hold exactly across every
/// process sharing the store (a sandbox key's 1000 requests a week): each take is one
/// conditional write, a single atomic statement in SQLite and a lightweight transaction in
/// ScyllaDB, never a count of rows.
#[async_trait]
pub trait QuotaStore: Send + Sync {
    /// Takes `amount` (at least 1) of `limit` for `counter` in `period` (e.g. `2026-W49`),
    /// all or none: how many are taken now, these included, or `None` when fewer than
    /// `amount` were left (then nothing changes). A period's count is kept at least
    /// [`QUOTA_KEPT_DAYS`].
    async fn take_quota(
        &self,
        counter: &str,
        period: &str,
        amount: u32,
        limit: u32,
    ) -> Result<Option<u32>, StoreError>;
    /// How many were taken for `counter` in `period`.
    async fn quota_used(&self, counter: &str, period: &str) -> Result<u32, StoreError>;
}

/// What a submit made with an `Idempotency-Key` claimed: the request it was (its hash), and
/// the message it became. A retry with the same key finds it and answers with the same
/// message; until the log confirmed that message (`accepted`), a retry publishes it again,
/// with the same id, which the pipeline takes once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotentSubmit {
    /// A hash of what was submitted (the path's fiscal code and the body).
    pub request_hash: String,
    pub message_id: Ulid,
    pub created_at: model::timestamp::Timestamp,
    /// Whether the log confirmed the message.
    pub accepted: bool,
}

/// How long an idempotency key is kept: IO's senders retry for at most a day.
pub const IDEMPOTENCY_KEPT: std::time::Duration = std::time::Duration::from_secs(48 * 3600);

/// Submits by `Idempotency-Key`, per service, kept at least [`IDEMPOTENCY_KEPT`].
#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` of `service_id` for `submit` with a conditional write, unless it is
    /// claimed already: `None` when this call claimed it, else the earlier claim.
    async fn claim_idempotency_key(
        &self,
        service_id: &str,
        key: &str,
        submit: &IdempotentSubmit,
    ) -> Result<Option<IdempotentSubmit>, StoreError>;
    /// Records that the claim's message is in the log.
    async fn settle_idempotency_key(&self, service_id: &str, key: &str) -> Result<(), StoreError>;
}

/// The scope of the subscription changes that concern every service: a citizen's inbox
/// enabled or disabled (IO: the profile's `is_inbox_enabled`).
pub const FEED_SCOPE_INBOX: &str = "*";

/// How long a day's subscription changes are kept (IO serves the feed of recent days).
pub const FEED_KEPT_DAYS: u32 = 31;

/// Who subscribed to or unsubscribed from a service on a UTC day (IO's subscriptions feed),
/// by the SHA-256 of their fiscal code (partition: day and scope). A scope is a service id,
/// or [`FEED_SCOPE_INBOX`] for changes concerning every service. A citizen's last change
/// of the day in a scope is the one kept.
#[async_trait]
pub trait SubscriptionFeedStore: Send + Sync {
    /// Records that the citizen hashed `fc_hash` subscribed (`true`) or unsubscribed on
    /// `day` (`YYYY-MM-DD`) in `scope`, replacing their earlier change that day there.
    async fn record_subscription_change(
        &self,
        day: &str,
        scope: &str,
        fc_hash: &str,
        subscribed: bool,
    ) -> Result<(), StoreError>;
    /// The changes of `day` in `scope`, as (fiscal code hash, subscribed), by hash.
    async fn subscription_changes(
        &self,
        day: &str,
        scope: &str,
    ) -> Result<Vec<(String, bool)>, StoreError>;
}

/// Campaigns (partition: campaign id) and what became of their items (partition: campaign
/// id and part, [`model::progress::BUCKETS`] parts per campaign).
#[async_trait]
pub trait CampaignStore: Send + Sync {
    /// Stores `campaign`, replacing one with its id (a retried call writes the same).
    async fn put_campaign(&self, campaign: &Campaign) -> Result<(), StoreError>;
    async fn get_campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError>;

    /// Merges what stages learned about items of campaign parts into their states and the
    /// parts' counts ([`progress::combine`]): each part read, then written in one atomic
    /// write (a transaction in SQLite, for the whole call; a single-partition batch per part
    /// in ScyllaDB). Reporting the same thing twice changes nothing. One writer per part
    /// at a time: the tally consumer that owns the part's key.
    async fn record_progress(&self, parts: &[ProgressRecord]) -> Result<(), StoreError>;

    /// Records that the chunk `chunk` of a campaign's calls put `accepted` items in the
    /// log (again: the same). A campaign's `accepted` is the sum of its chunks'.
    async fn put_campaign_chunk(
        &self,
        campaign_id: &str,
        chunk: &str,
        accepted: u32,
    ) -> Result<(), StoreError>;

    /// A campaign's counts: the sum of its parts', with `accepted` from its chunks (all zero
    /// for one with no items).
    async fn campaign_counts(&self, campaign_id: &str) -> Result<CampaignCounts, StoreError>;

    /// Up to `limit` of a campaign's items, by part then id, after `after` (from the first
    /// when none).
    async fn campaign_items(
        &self,
        campaign_id: &str,
        after: Option<ItemCursor>,
        limit: usize,
    ) -> Result<Vec<CampaignItem>, StoreError>;
}

/// Where a listing of a campaign's items stands: the last item it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ItemCursor {
    pub bucket: u16,
    pub id: Ulid,
}

/// One item of a campaign, where it stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CampaignItem {
    pub bucket: u16,
    pub id: Ulid,
    pub progress: ItemProgress,
}

impl CampaignItem {
    pub fn cursor(&self) -> ItemCursor {
        ItemCursor {
            bucket: self.bucket,
            id: self.id,
        }
    }
}

/// A record to publish later: on `topic`, with its key, headers and payload, once it is
/// due. Its `id` names what it is (a message, a message's push to one device), so
/// scheduling the same thing twice keeps one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledRecord {
    pub id: String,
    /// When it is due, in milliseconds since the Unix epoch.
    pub due_ms: i64,
    pub topic: String,
    pub key: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

/// How many partitions each minute's scheduled records are spread over.
pub const SCHEDULE_SHARDS: u16 = 16;

impl ScheduledRecord {
    /// The minute (since the Unix epoch) it is kept under.
    pub fn minute(&self) -> i64 {
        self.due_ms.div_euclid(60_000)
    }

    /// Its partition within its minute.
    pub fn shard(&self) -> u16 {
        (blake3::hash(self.id.as_bytes()).as_bytes()[0] as u16) % SCHEDULE_SHARDS
    }

    /// As a store keeps it: the headers as JSON, the rest as they are.
    pub(crate) fn stored(
        (id, due_ms, topic, key, headers, payload): StoredSchedule,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            id,
            due_ms,
            topic,
            key,
            headers: codec::from_json(&headers)?,
            payload,
        })
    }
}

/// A scheduled record's row: id, due, topic, key, headers (JSON), payload.
pub(crate) type StoredSchedule = (String, i64, String, Vec<u8>, String, Vec<u8>);

/// Records waiting for their time (partition: due minute and shard), and the lease that
/// lets one process at a time release them.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Keeps `records` until they are released. Idempotent by id.
    async fn schedule(&self, records: Vec<ScheduledRecord>) -> Result<(), StoreError>;
    /// The records kept under `minute` and `shard`, by id.
    async fn scheduled_in(
        &self,
        minute: i64,
        shard: u16,
    ) -> Result<Vec<ScheduledRecord>, StoreError>;
    /// Forgets released records.
    async fn unschedule(&self, minute: i64, shard: u16, ids: &[String]) -> Result<(), StoreError>;
    /// Takes the lease `name` for `holder`, or keeps it if `holder` holds it, for `ttl`
    /// from now (a conditional write): whether `holder` holds it now.
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;
}

/// How long a quota period's count is kept: longer than any period (a week).
pub const QUOTA_KEPT_DAYS: u32 = 15;

/// Everything Postino keeps.
pub trait Store:
    ServiceStore
    + ProfileStore
    + MessageStore
    + NotificationStore
    + InstallationStore
    + SettingStore
    + QuotaStore
    + IdempotencyStore
    + SubscriptionFeedStore
    + CampaignStore
    + ScheduleStore
    + std::fmt::Debug
{
}
impl<
        T: ServiceStore
            + ProfileStore
            + MessageStore
            + NotificationStore
            + InstallationStore
            + SettingStore
            + QuotaStore
            + IdempotencyStore
            + SubscriptionFeedStore
            + CampaignStore
            + ScheduleStore
            + std::fmt::Debug,
    > Store for T
{
}
