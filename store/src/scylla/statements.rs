//! Every statement the store runs, prepared once per session. Prepared statements carry
//! their partition key's position, which is what lets the driver send each one straight
//! to a replica (token-aware routing). Statements that can run twice with the same effect
//! are marked idempotent, so the driver may retry them and run them speculatively; the
//! conditional ones (LWT) are not.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use crate::{
    StoreError, FEED_KEPT_DAYS, IDEMPOTENCY_KEPT, QUOTA_KEPT_DAYS, SENT_NOTIFICATION_RETENTION,
};

#[derive(Debug)]
pub(crate) struct Statements {
    pub put_service: PreparedStatement,
    pub get_service: PreparedStatement,
    pub list_services: PreparedStatement,
    pub delete_service: PreparedStatement,
    pub put_campaign: PreparedStatement,
    pub get_campaign: PreparedStatement,
    pub campaign_item_states: PreparedStatement,
    pub campaign_part_counts: PreparedStatement,
    pub put_campaign_item: PreparedStatement,
    pub put_campaign_part_counts: PreparedStatement,
    pub campaign_items_after: PreparedStatement,
    pub put_campaign_chunk: PreparedStatement,
    pub campaign_chunks: PreparedStatement,
    pub schedule: PreparedStatement,
    pub scheduled_in: PreparedStatement,
    pub unschedule: PreparedStatement,
    pub take_lease: PreparedStatement,
    pub renew_lease: PreparedStatement,
    pub put_organization: PreparedStatement,
    pub get_organization: PreparedStatement,
    pub record_subscription_change: PreparedStatement,
    pub subscription_changes: PreparedStatement,
    pub put_key: PreparedStatement,
    pub get_key: PreparedStatement,
    pub delete_key: PreparedStatement,
    pub get_profile: PreparedStatement,
    pub put_profile: PreparedStatement,
    pub get_preference: PreparedStatement,
    pub put_preference: PreparedStatement,
    pub write_message: PreparedStatement,
    pub get_message: PreparedStatement,
    pub put_inbox: PreparedStatement,
    pub put_inbox_bucket: PreparedStatement,
    pub newest_buckets: PreparedStatement,
    pub buckets_up_to: PreparedStatement,
    pub inbox_page: PreparedStatement,
    pub get_inbox_item: PreparedStatement,
    pub set_read: PreparedStatement,
    pub sent_of_message: PreparedStatement,
    pub put_sent: PreparedStatement,
    pub put_installation: PreparedStatement,
    pub installations_of: PreparedStatement,
    pub delete_installation: PreparedStatement,
    pub delete_stale_installation: PreparedStatement,
    pub delete_installations: PreparedStatement,
    pub get_setting: PreparedStatement,
    pub put_setting: PreparedStatement,
    pub put_setting_if_absent: PreparedStatement,
    pub start_quota: PreparedStatement,
    pub advance_quota: PreparedStatement,
    pub get_quota: PreparedStatement,
    pub claim_idempotency_key: PreparedStatement,
    pub settle_idempotency_key: PreparedStatement,
}

/// Whether running a statement twice does what running it once does.
#[derive(Clone, Copy, PartialEq)]
enum Idempotent {
    Yes,
    /// Conditional writes: a retry after a lost answer would report "not applied".
    No,
}

impl Statements {
    pub(crate) async fn prepare(session: &Session) -> Result<Self, StoreError> {
        use Idempotent::{No, Yes};
        let prepare = |cql: String, idempotent: Idempotent| async move {
            let mut statement = session.prepare(cql.as_str()).await.map_err(|e| {
                StoreError::Unavailable(format!("cql: cannot prepare {cql:?}: {e}"))
            })?;
            statement.set_is_idempotent(idempotent == Yes);
            Ok::<_, StoreError>(statement)
        };
        let q = |cql: &str| cql.to_string();
        let ttl = SENT_NOTIFICATION_RETENTION.as_secs();
        let quota_ttl = u64::from(QUOTA_KEPT_DAYS) * 86_400;
        let idempotency_ttl = IDEMPOTENCY_KEPT.as_secs();
        Ok(Self {
            put_service: prepare(q("INSERT INTO services (id, body) VALUES (?, ?)"), Yes).await?,
            get_service: prepare(q("SELECT body FROM services WHERE id = ?"), Yes).await?,
            list_services: prepare(q("SELECT body FROM services"), Yes).await?,
            delete_service: prepare(q("DELETE FROM services WHERE id = ?"), Yes).await?,
            put_campaign: prepare(q("INSERT INTO campaigns (id, body) VALUES (?, ?)"), Yes).await?,
            get_campaign: prepare(q("SELECT body FROM campaigns WHERE id = ?"), Yes).await?,
            campaign_item_states: prepare(
                q("SELECT message_id, state FROM campaign_items \
                   WHERE campaign_id = ? AND bucket = ? AND message_id IN ?"),
                Yes,
            )
            .await?,
            campaign_part_counts: prepare(
                q("SELECT counts FROM campaign_items WHERE campaign_id = ? AND bucket = ? LIMIT 1"),
                Yes,
            )
            .await?,
            put_campaign_item: prepare(
                q("INSERT INTO campaign_items (campaign_id, bucket, message_id, state) \
                   VALUES (?, ?, ?, ?)"),
                Yes,
            )
            .await?,
            put_campaign_part_counts: prepare(
                q("UPDATE campaign_items SET counts = ? WHERE campaign_id = ? AND bucket = ?"),
                Yes,
            )
            .await?,
            schedule: prepare(
                q("INSERT INTO scheduled (minute, shard, id, due, topic, key, headers, payload) \
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                Yes,
            )
            .await?,
            scheduled_in: prepare(
                q("SELECT id, due, topic, key, headers, payload FROM scheduled \
                   WHERE minute = ? AND shard = ?"),
                Yes,
            )
            .await?,
            unschedule: prepare(
                q("DELETE FROM scheduled WHERE minute = ? AND shard = ? AND id IN ?"),
                Yes,
            )
            .await?,
            take_lease: prepare(
                q("INSERT INTO leases (name, holder) VALUES (?, ?) IF NOT EXISTS USING TTL ?"),
                No,
            )
            .await?,
            renew_lease: prepare(
                q("UPDATE leases USING TTL ? SET holder = ? WHERE name = ? IF holder = ?"),
                No,
            )
            .await?,
            put_campaign_chunk: prepare(
                q("INSERT INTO campaign_chunks (campaign_id, chunk, accepted) VALUES (?, ?, ?)"),
                Yes,
            )
            .await?,
            campaign_chunks: prepare(
                q("SELECT accepted FROM campaign_chunks WHERE campaign_id = ?"),
                Yes,
            )
            .await?,
            campaign_items_after: prepare(
                q("SELECT message_id, state FROM campaign_items \
                   WHERE campaign_id = ? AND bucket = ? AND message_id > ? LIMIT ?"),
                Yes,
            )
            .await?,
            put_organization: prepare(
                q("INSERT INTO organizations (fiscal_code, body) VALUES (?, ?)"),
                Yes,
            )
            .await?,
            get_organization: prepare(
                q("SELECT body FROM organizations WHERE fiscal_code = ?"),
                Yes,
            )
            .await?,
            record_subscription_change: prepare(
                format!(
                    "INSERT INTO subscription_changes (day, scope, fc_hash, subscribed) \
                     VALUES (?, ?, ?, ?) USING TTL {}",
                    u64::from(FEED_KEPT_DAYS) * 86_400
                ),
                Yes,
            )
            .await?,
            subscription_changes: prepare(
                q("SELECT fc_hash, subscribed FROM subscription_changes WHERE day = ? AND scope = ?"),
                Yes,
            )
            .await?,
            put_key: prepare(q("INSERT INTO api_keys (hash, owner) VALUES (?, ?)"), Yes).await?,
            get_key: prepare(q("SELECT owner FROM api_keys WHERE hash = ?"), Yes).await?,
            delete_key: prepare(q("DELETE FROM api_keys WHERE hash = ?"), Yes).await?,
            get_profile: prepare(q("SELECT body FROM profiles WHERE fc = ?"), Yes).await?,
            put_profile: prepare(q("INSERT INTO profiles (fc, body) VALUES (?, ?)"), Yes).await?,
            get_preference: prepare(
                q("SELECT body FROM preferences WHERE fc = ? AND service_id = ?"),
                Yes,
            )
            .await?,
            put_preference: prepare(
                q("INSERT INTO preferences (fc, service_id, body) VALUES (?, ?, ?)"),
                Yes,
            )
            .await?,
            // The write timestamp is the rank: see schema/0001_initial.cql.
            write_message: prepare(
                q(
                    "UPDATE messages USING TIMESTAMP ? SET message = ?, status = ?, \
                   rejection_reason = ?, updated_at = ?, email = ?, webhook = ? WHERE id = ?",
                ),
                Yes,
            )
            .await?,
            get_message: prepare(
                q(
                    "SELECT message, status, rejection_reason, updated_at, email, webhook \
                   FROM messages WHERE id = ?",
                ),
                Yes,
            )
            .await?,
            put_inbox: prepare(
                q("INSERT INTO inbox (fc, bucket, id, body) VALUES (?, ?, ?, ?)"),
                Yes,
            )
            .await?,
            put_inbox_bucket: prepare(
                q("INSERT INTO inbox_buckets (fc, bucket) VALUES (?, ?)"),
                Yes,
            )
            .await?,
            newest_buckets: prepare(
                q("SELECT bucket FROM inbox_buckets WHERE fc = ? LIMIT ?"),
                Yes,
            )
            .await?,
            buckets_up_to: prepare(
                q("SELECT bucket FROM inbox_buckets WHERE fc = ? AND bucket <= ? LIMIT ?"),
                Yes,
            )
            .await?,
            inbox_page: prepare(
                q("SELECT body, is_read FROM inbox \
                   WHERE fc = ? AND bucket = ? AND id < ? LIMIT ?"),
                Yes,
            )
            .await?,
            get_inbox_item: prepare(
                q("SELECT body, is_read FROM inbox WHERE fc = ? AND bucket = ? AND id = ?"),
                Yes,
            )
            .await?,
            set_read: prepare(
                q("UPDATE inbox SET is_read = ? WHERE fc = ? AND bucket = ? AND id = ?"),
                Yes,
            )
            .await?,
            sent_of_message: prepare(
                q("SELECT channel, target FROM sent_notifications WHERE message_id = ?"),
                Yes,
            )
            .await?,
            put_sent: prepare(
                format!(
                    "INSERT INTO sent_notifications (message_id, channel, target) \
                     VALUES (?, ?, ?) USING TTL {ttl}"
                ),
                Yes,
            )
            .await?,
            put_installation: prepare(
                q("INSERT INTO installations (fc, id, device_token, body) VALUES (?, ?, ?, ?)"),
                Yes,
            )
            .await?,
            installations_of: prepare(q("SELECT id, body FROM installations WHERE fc = ?"), Yes)
                .await?,
            delete_installation: prepare(
                q("DELETE FROM installations WHERE fc = ? AND id = ? IF EXISTS"),
                No,
            )
            .await?,
            delete_stale_installation: prepare(
                q("DELETE FROM installations WHERE fc = ? AND id = ? IF device_token = ?"),
                No,
            )
            .await?,
            delete_installations: prepare(q("DELETE FROM installations WHERE fc = ?"), Yes).await?,
            get_setting: prepare(q("SELECT value FROM settings WHERE name = ?"), Yes).await?,
            put_setting: prepare(q("INSERT INTO settings (name, value) VALUES (?, ?)"), Yes)
                .await?,
            put_setting_if_absent: prepare(
                q("INSERT INTO settings (name, value) VALUES (?, ?) IF NOT EXISTS"),
                No,
            )
            .await?,
            start_quota: prepare(
                format!(
                    "INSERT INTO quotas (counter, period, used) VALUES (?, ?, ?) \
                     IF NOT EXISTS USING TTL {quota_ttl}"
                ),
                No,
            )
            .await?,
            advance_quota: prepare(
                format!(
                    "UPDATE quotas USING TTL {quota_ttl} SET used = ? \
                     WHERE counter = ? AND period = ? IF used = ?"
                ),
                No,
            )
            .await?,
            get_quota: prepare(
                q("SELECT used FROM quotas WHERE counter = ? AND period = ?"),
                Yes,
            )
            .await?,
            claim_idempotency_key: prepare(
                format!(
                    "INSERT INTO idempotency_keys (service_id, key, request_hash, message_id, \
                     created_at, accepted) VALUES (?, ?, ?, ?, ?, false) \
                     IF NOT EXISTS USING TTL {idempotency_ttl}"
                ),
                No,
            )
            .await?,
            settle_idempotency_key: prepare(
                format!(
                    "UPDATE idempotency_keys USING TTL {idempotency_ttl} SET accepted = true \
                     WHERE service_id = ? AND key = ?"
                ),
                Yes,
            )
            .await?,
        })
    }
}
