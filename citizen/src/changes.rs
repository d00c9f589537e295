//! Telling the routers that a citizen changed: after every profile, preference or device
//! write, a [`ProfileChange`] on `profile-changes`, which each router process follows to drop
//! what its cache holds of the citizen (invariant 4). The store is written first, so a
//! router that reads the change finds the new values.

use std::sync::Arc;

use bus::{Bus, Record};
use model::pipeline::{topics, ProfileChange};
use model::FiscalCode;
use problem::Problem;

/// Publishes that `fc` changed. If the log cannot take it the caller answers `503`: the
/// write is in the store, and the app's retry (every citizen write is idempotent) announces
/// it again.
pub(crate) async fn announce(bus: &Arc<dyn Bus>, fc: &FiscalCode) -> Result<(), Problem> {
    let change = ProfileChange {
        fiscal_code: fc.clone(),
    };
    let payload = serde_json::to_vec(&change)
        .map_err(|e| Problem::internal(format!("cannot encode a profile change: {e}")))?;
    let record = Record::new(fc.as_str().as_bytes().to_vec(), payload);
    bus.publish(topics::PROFILE_CHANGES, vec![record])
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "cannot announce a profile change");
            Problem::unavailable("the change is saved but could not be announced; retry", 1)
        })
}

/// Records for the subscriptions feed that `fc` subscribed to (`true`) or unsubscribed from
/// `scope` today: a service id, or [`store::FEED_SCOPE_INBOX`] for the whole inbox. Written
/// before the change itself: a change the feed missed would leave a sender writing to
/// someone who left, while a change recorded and then not made is recorded again, right,
/// when the app retries.
pub(crate) async fn record_subscription(
    store: &Arc<dyn store::Store>,
    fc: &FiscalCode,
    scope: &str,
    subscribed: bool,
) -> Result<(), Problem> {
    let day = model::timestamp::Timestamp::now().utc_day();
    store
        .record_subscription_change(&day, scope, &fc.feed_hash(), subscribed)
        .await?;
    Ok(())
}
