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
