//! The store with its series recorded: every operation timed and its errors counted, by
//! operation and backend, whichever store is underneath. The process wraps its store in
//! [`Metered`] once; everything else sees an ordinary [`Store`].

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use model::campaign::Campaign;
use model::installation::{DeviceToken, Installation, InstallationId};
use model::profile::{Profile, ServicePreference};
use model::progress::{CampaignCounts, ProgressRecord};
use model::service::{OrganizationAccount, Service};
use model::status::{Channel, ChannelOutcome};
use model::FiscalCode;
use telemetry::metrics::{counter, histogram};
use telemetry::Metric;
use ulid::Ulid;

use crate::{
    CampaignItem, CampaignStore, IdempotencyStore, IdempotentSubmit, InboxItem, InstallationStore,
    ItemCursor, KeyOwner, MessageRecord, MessageStore, NotificationKey, NotificationStore,
    ProfileStore, QuotaStore, Routing, ServiceStore, SettingStore, Store, StoreError,
    SubscriptionFeedStore,
};
use crate::{ScheduleStore, ScheduledRecord};

pub const OPERATION_DURATION: Metric = Metric::histogram(
    "postino_store_operation_duration_seconds",
    "Time of a store operation, by operation and backend (sqlite, scylla), failures included.",
    &["operation", "backend"],
);
pub const ERRORS: Metric = Metric::counter(
    "postino_store_errors_total",
    "Store operations that failed, by operation, backend and kind (unavailable, rejected, corrupt, schema).",
    &["operation", "backend", "kind"],
);

pub const ALL: &[Metric] = &[OPERATION_DURATION, ERRORS];

/// The `operation` label values: one per store method.
pub const OPERATIONS: &[&str] = &[
    "put_service",
    "get_service",
    "list_services",
    "delete_service",
    "put_organization",
    "get_organization",
    "put_key",
    "get_key",
    "delete_key",
    "get_profile",
    "put_profile",
    "get_preference",
    "put_preference",
    "get_routing",
    "put_messages",
    "get_message",
    "deliver",
    "list_inbox",
    "get_inbox_item",
    "set_read",
    "record_channel_outcomes",
    "notifications_sent",
    "record_notifications_sent",
    "settle_notifications",
    "put_installation",
    "list_installations",
    "installations_of",
    "delete_installation",
    "delete_stale_installation",
    "delete_installations",
    "get_setting",
    "put_setting_if_absent",
    "put_setting",
    "take_quota",
    "quota_used",
    "claim_idempotency_key",
    "settle_idempotency_key",
    "record_subscription_change",
    "subscription_changes",
    "put_campaign",
    "record_progress",
    "put_campaign_chunk",
    "campaign_counts",
    "campaign_items",
    "schedule",
    "scheduled_in",
    "unschedule",
    "hold_lease",
    "get_campaign",
];

/// The backend label: `sqlite` or `scylla`.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Scylla,
}

impl Backend {
    fn label(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Scylla => "scylla",
        }
    }
}

impl StoreError {
    /// The `kind` label of [`ERRORS`].
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Corrupt(_) => "corrupt",
            Self::Rejected(_) => "rejected",
            Self::Schema(_) => "schema",
        }
    }
}

/// A [`Store`] that records `postino_store_*` around another.
#[derive(Debug)]
pub struct Metered {
    inner: Arc<dyn Store>,
    backend: &'static str,
}

impl Metered {
    pub fn wrap(inner: Arc<dyn Store>, backend: Backend) -> Arc<dyn Store> {
        // Every operation's unavailability counted from zero, so an alert on its rate sees
        // the first failure.
        for operation in OPERATIONS {
            counter!(ERRORS.name, "operation" => *operation, "backend" => backend.label(), "kind" => "unavailable")
                .absolute(0);
        }
        Arc::new(Self {
            inner,
            backend: backend.label(),
        })
    }

    async fn timed<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        debug_assert!(
            OPERATIONS.contains(&operation),
            "{operation} is not in OPERATIONS"
        );
        let started = Instant::now();
        let outcome = call.await;
        histogram!(OPERATION_DURATION.name, "operation" => operation, "backend" => self.backend)
            .record(telemetry::seconds(started.elapsed()));
        if let Err(err) = &outcome {
            counter!(ERRORS.name, "operation" => operation, "backend" => self.backend, "kind" => err.kind())
                .increment(1);
        }
        outcome
    }
}

#[async_trait]
impl ServiceStore for Metered {
    async fn put_service(&self, service: &Service) -> Result<(), StoreError> {
        self.timed("put_service", self.inner.put_service(service))
            .await
    }
    async fn get_service(&self, id: &str) -> Result<Option<Service>, StoreError> {
        self.timed("get_service", self.inner.get_service(id)).await
    }
    async fn list_services(&self) -> Result<Vec<Service>, StoreError> {
        self.timed("list_services", self.inner.list_services())
            .await
    }
    async fn delete_service(&self, id: &str) -> Result<(), StoreError> {
        self.timed("delete_service", self.inner.delete_service(id))
            .await
    }
    async fn put_organization(&self, account: &OrganizationAccount) -> Result<(), StoreError> {
        self.timed("put_organization", self.inner.put_organization(account))
            .await
    }
    async fn get_organization(
        &self,
        fiscal_code: &str,
    ) -> Result<Option<OrganizationAccount>, StoreError> {
        self.timed("get_organization", self.inner.get_organization(fiscal_code))
            .await
    }
    async fn put_key(&self, key_hash: &str, owner: &KeyOwner) -> Result<(), StoreError> {
        self.timed("put_key", self.inner.put_key(key_hash, owner))
            .await
    }
    async fn get_key(&self, key_hash: &str) -> Result<Option<KeyOwner>, StoreError> {
        self.timed("get_key", self.inner.get_key(key_hash)).await
    }
    async fn delete_key(&self, key_hash: &str) -> Result<(), StoreError> {
        self.timed("delete_key", self.inner.delete_key(key_hash))
            .await
    }
}

#[async_trait]
impl ProfileStore for Metered {
    async fn get_profile(&self, fc: &FiscalCode) -> Result<Option<Profile>, StoreError> {
        self.timed("get_profile", self.inner.get_profile(fc)).await
    }
    async fn put_profile(&self, fc: &FiscalCode, profile: &Profile) -> Result<(), StoreError> {
        self.timed("put_profile", self.inner.put_profile(fc, profile))
            .await
    }
    async fn get_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
    ) -> Result<Option<ServicePreference>, StoreError> {
        self.timed("get_preference", self.inner.get_preference(fc, service_id))
            .await
    }
    async fn put_preference(
        &self,
        fc: &FiscalCode,
        service_id: &str,
        preference: &ServicePreference,
    ) -> Result<(), StoreError> {
        let call = self.inner.put_preference(fc, service_id, preference);
        self.timed("put_preference", call).await
    }
    async fn get_routing(
        &self,
        pairs: &[(FiscalCode, String)],
    ) -> Result<Vec<Routing>, StoreError> {
        self.timed("get_routing", self.inner.get_routing(pairs))
            .await
    }
}

#[async_trait]
impl MessageStore for Metered {
    async fn put_messages(&self, records: Vec<MessageRecord>) -> Result<(), StoreError> {
        self.timed("put_messages", self.inner.put_messages(records))
            .await
    }
    async fn get_message(&self, id: &Ulid) -> Result<Option<MessageRecord>, StoreError> {
        self.timed("get_message", self.inner.get_message(id)).await
    }
    async fn deliver(&self, records: Vec<MessageRecord>) -> Result<(), StoreError> {
        self.timed("deliver", self.inner.deliver(records)).await
    }
    async fn list_inbox(
        &self,
        fc: &FiscalCode,
        before: Option<Ulid>,
        limit: usize,
    ) -> Result<Vec<InboxItem>, StoreError> {
        self.timed("list_inbox", self.inner.list_inbox(fc, before, limit))
            .await
    }
    async fn get_inbox_item(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
    ) -> Result<Option<InboxItem>, StoreError> {
        self.timed("get_inbox_item", self.inner.get_inbox_item(fc, id))
            .await
    }
    async fn set_read(
        &self,
        fc: &FiscalCode,
        id: &Ulid,
        is_read: bool,
    ) -> Result<bool, StoreError> {
        self.timed("set_read", self.inner.set_read(fc, id, is_read))
            .await
    }
    async fn record_channel_outcomes(
        &self,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        let call = self.inner.record_channel_outcomes(outcomes);
        self.timed("record_channel_outcomes", call).await
    }
}

#[async_trait]
impl NotificationStore for Metered {
    async fn notifications_sent(&self, keys: &[NotificationKey]) -> Result<Vec<bool>, StoreError> {
        self.timed("notifications_sent", self.inner.notifications_sent(keys))
            .await
    }
    async fn record_notifications_sent(
        &self,
        keys: Vec<NotificationKey>,
    ) -> Result<(), StoreError> {
        let call = self.inner.record_notifications_sent(keys);
        self.timed("record_notifications_sent", call).await
    }
    async fn settle_notifications(
        &self,
        sent: Vec<NotificationKey>,
        outcomes: Vec<(Ulid, Channel, ChannelOutcome)>,
    ) -> Result<(), StoreError> {
        let call = self.inner.settle_notifications(sent, outcomes);
        self.timed("settle_notifications", call).await
    }
}

#[async_trait]
impl InstallationStore for Metered {
    async fn put_installation(
        &self,
        fc: &FiscalCode,
        installation: &Installation,
    ) -> Result<(), StoreError> {
        let call = self.inner.put_installation(fc, installation);
        self.timed("put_installation", call).await
    }
    async fn list_installations(&self, fc: &FiscalCode) -> Result<Vec<Installation>, StoreError> {
        self.timed("list_installations", self.inner.list_installations(fc))
            .await
    }
    async fn installations_of(
        &self,
        fcs: &[FiscalCode],
    ) -> Result<Vec<Vec<Installation>>, StoreError> {
        self.timed("installations_of", self.inner.installations_of(fcs))
            .await
    }
    async fn delete_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
    ) -> Result<bool, StoreError> {
        self.timed(
            "delete_installation",
            self.inner.delete_installation(fc, id),
        )
        .await
    }
    async fn delete_stale_installation(
        &self,
        fc: &FiscalCode,
        id: &InstallationId,
        token: &DeviceToken,
    ) -> Result<bool, StoreError> {
        let call = self.inner.delete_stale_installation(fc, id, token);
        self.timed("delete_stale_installation", call).await
    }
    async fn delete_installations(&self, fc: &FiscalCode) -> Result<usize, StoreError> {
        self.timed("delete_installations", self.inner.delete_installations(fc))
            .await
    }
}

#[async_trait]
impl SettingStore for Metered {
    async fn get_setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.timed("get_setting", self.inner.get_setting(name))
            .await
    }
    async fn put_setting_if_absent(&self, name: &str, value: &str) -> Result<bool, StoreError> {
        let call = self.inner.put_setting_if_absent(name, value);
        self.timed("put_setting_if_absent", call).await
    }
    async fn put_setting(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.timed("put_setting", self.inner.put_setting(name, value))
            .await
    }
}

#[async_trait]
impl QuotaStore for Metered {
    async fn take_quota(
        &self,
        counter: &str,
        period: &str,
        amount: u32,
        limit: u32,
    ) -> Result<Option<u32>, StoreError> {
        let call = self.inner.take_quota(counter, period, amount, limit);
        self.timed("take_quota", call).await
    }
    async fn quota_used(&self, counter: &str, period: &str) -> Result<u32, StoreError> {
        self.timed("quota_used", self.inner.quota_used(counter, period))
            .await
    }
}

#[async_trait]
impl CampaignStore for Metered {
    async fn put_campaign(&self, campaign: &Campaign) -> Result<(), StoreError> {
        self.timed("put_campaign", self.inner.put_campaign(campaign))
            .await
    }
    async fn get_campaign(&self, id: &str) -> Result<Option<Campaign>, StoreError> {
        self.timed("get_campaign", self.inner.get_campaign(id))
            .await
    }
    async fn record_progress(&self, parts: &[ProgressRecord]) -> Result<(), StoreError> {
        self.timed("record_progress", self.inner.record_progress(parts))
            .await
    }
    async fn put_campaign_chunk(
        &self,
        campaign_id: &str,
        chunk: &str,
        accepted: u32,
    ) -> Result<(), StoreError> {
        let call = self.inner.put_campaign_chunk(campaign_id, chunk, accepted);
        self.timed("put_campaign_chunk", call).await
    }
    async fn campaign_counts(&self, campaign_id: &str) -> Result<CampaignCounts, StoreError> {
        self.timed("campaign_counts", self.inner.campaign_counts(campaign_id))
            .await
    }
    async fn campaign_items(
        &self,
        campaign_id: &str,
        after: Option<ItemCursor>,
        limit: usize,
    ) -> Result<Vec<CampaignItem>, StoreError> {
        let call = self.inner.campaign_items(campaign_id, after, limit);
        self.timed("campaign_items", call).await
    }
}

#[async_trait]
impl ScheduleStore for Metered {
    async fn schedule(&self, records: Vec<ScheduledRecord>) -> Result<(), StoreError> {
        self.timed("schedule", self.inner.schedule(records)).await
    }
    async fn scheduled_in(
        &self,
        minute: i64,
        shard: u16,
    ) -> Result<Vec<ScheduledRecord>, StoreError> {
        self.timed("scheduled_in", self.inner.scheduled_in(minute, shard))
            .await
    }
    async fn unschedule(&self, minute: i64, shard: u16, ids: &[String]) -> Result<(), StoreError> {
        self.timed("unschedule", self.inner.unschedule(minute, shard, ids))
            .await
    }
    async fn hold_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.timed("hold_lease", self.inner.hold_lease(name, holder, ttl))
            .await
    }
}

#[async_trait]
impl SubscriptionFeedStore for Metered {
    async fn record_subscription_change(
        &self,
        day: &str,
        scope: &str,
        fc_hash: &str,
        subscribed: bool,
    ) -> Result<(), StoreError> {
        self.timed(
            "record_subscription_change",
            self.inner
                .record_subscription_change(day, scope, fc_hash, subscribed),
        )
        .await
    }
    async fn subscription_changes(
        &self,
        day: &str,
        scope: &str,
    ) -> Result<Vec<(String, bool)>, StoreError> {
        self.timed(
            "subscription_changes",
            self.inner.subscription_changes(day, scope),
        )
        .await
    }
}

#[async_trait]
impl IdempotencyStore for Metered {
    async fn claim_idempotency_key(
        &self,
        service_id: &str,
        key: &str,
        submit: &IdempotentSubmit,
    ) -> Result<Option<IdempotentSubmit>, StoreError> {
        let call = self.inner.claim_idempotency_key(service_id, key, submit);
        self.timed("claim_idempotency_key", call).await
    }
    async fn settle_idempotency_key(&self, service_id: &str, key: &str) -> Result<(), StoreError> {
        let call = self.inner.settle_idempotency_key(service_id, key);
        self.timed("settle_idempotency_key", call).await
    }
}
