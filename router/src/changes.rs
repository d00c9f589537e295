//! Following `profile-changes`: every router process reads every change, in a consumer group
//! of its own, and drops the changed citizens from its [`ProfileCache`]. The cache is used
//! only while this follower hears from the log (see [`ProfileCache::heard_from_the_log`]),
//! so a change is honoured within [`crate::cache::FRESHNESS`] even when the log cannot be read.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, BusError, Subscription};
use model::pipeline::{decode, topics, ProfileChange};
use tokio::sync::watch;

use crate::cache::ProfileCache;

/// What the follower's consumer groups are called: this, a dot, and the process's own id.
pub const GROUP_PREFIX: &str = "router-cache";

/// Changes read per poll.
const BATCH: usize = 1000;
/// How long a poll waits for changes: well inside the cache's freshness bound.
const POLL_WAIT: Duration = Duration::from_millis(250);

/// A router process's follower of `profile-changes`, subscribed.
#[derive(Debug)]
pub struct ChangeFollower {
    subscription: Box<dyn Subscription>,
    cache: Arc<ProfileCache>,
}

impl ChangeFollower {
    /// Subscribes as `group`, which no other router process may share.
    pub async fn join(
        bus: &dyn Bus,
        group: &str,
        cache: Arc<ProfileCache>,
    ) -> Result<Self, BusError> {
        let subscription = bus.subscribe(topics::PROFILE_CHANGES, group).await?;
        Ok(Self {
            subscription,
            cache,
        })
    }

    /// Reads changes until `stopped`. A record that is not a change is skipped (it names no
    /// one to forget); a log that fails is tried again, the cache unused meanwhile.
    pub async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Result<(), BusError> {
        let mut backoff = Duration::from_millis(100);
        while !*stopped.borrow() {
            let polled = tokio::select! {
                polled = self.subscription.poll(BATCH, POLL_WAIT) => polled,
                _ = stopped.changed() => return Ok(()),
            };
            let batch = match polled {
                Ok(batch) => batch,
                Err(err) if err.is_retryable() => {
                    tracing::warn!(error = %err, "cannot read profile changes; the cache is bypassed until it can");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stopped.changed() => return Ok(()),
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
                Err(err) => return Err(err),
            };
            backoff = Duration::from_millis(100);
            let changed: Vec<_> = batch
                .iter()
                .filter_map(|d| match decode::<ProfileChange>(&d.record.payload) {
                    Ok(change) => Some(change.fiscal_code),
                    Err(err) => {
                        tracing::warn!(partition = d.partition, offset = d.offset, error = %err, "skipping a record of profile-changes that is not a change");
                        None
                    }
                })
                .collect();
            self.cache.invalidate(&changed);
            self.cache.heard_from_the_log();
            if !batch.is_empty() {
                if let Err(err) = self.subscription.commit(&batch).await {
                    // Not committing only means reading these again after a restart.
                    tracing::warn!(error = %err, "cannot commit profile changes");
                }
            }
        }
        Ok(())
    }
}
