//! What the notification stages (push, email) share: a batch's jobs are sent concurrently,
//! none past its message's `time_to_live`; each job's outcome is the channel status it leads
//! to and the runner's verdict; the batch's statuses are recorded in one store write, after
//! the sends.

use std::future::Future;

use bus::stage::StageError;
use model::email::EmailJob;
use model::push::PushJob;
use model::status::{Channel, ChannelStatus};
use store::Store;
use ulid::Ulid;

/// A job about one message, worth sending until the message expires.
pub(crate) trait Notification {
    fn message_id(&self) -> Ulid;
    /// Unix seconds after which the job is not sent.
    fn expires_at(&self) -> i64;
}

impl Notification for PushJob {
    fn message_id(&self) -> Ulid {
        self.message_id
    }
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

impl Notification for EmailJob {
    fn message_id(&self) -> Ulid {
        self.message_id
    }
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
}

/// The status a job leads to (none while it may still be retried) and the verdict for the
/// stage runner.
pub(crate) type Outcome = (Option<ChannelStatus>, Result<(), StageError>);

/// Sends each job of a batch with `send`, all at once (the sender bounds its own
/// concurrency), except those whose message expired: `EXPIRED`, not sent. Records the
/// statuses on `channel` and hands back the verdicts, in order.
pub(crate) async fn send_each<'a, J, F, Fut>(
    store: &dyn Store,
    channel: Channel,
    jobs: &[&'a J],
    send: F,
) -> Vec<Result<(), StageError>>
where
    J: Notification,
    F: Fn(&'a J) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let results = futures::future::join_all(jobs.iter().map(|&job| {
        let expired = job.expires_at() <= now;
        if expired {
            tracing::debug!(message_id = %job.message_id(), ?channel, "not sent: the message expired");
        }
        let sent = (!expired).then(|| send(job));
        async move {
            match sent {
                Some(sent) => sent.await,
                None => (Some(ChannelStatus::Expired), Ok(())),
            }
        }
    }))
    .await;
    settle(
        store,
        channel,
        jobs.iter().map(|job| job.message_id()),
        results,
    )
    .await
}

/// Records the statuses of a batch on `channel` and hands back the verdicts, in order.
async fn settle(
    store: &dyn Store,
    channel: Channel,
    ids: impl IntoIterator<Item = Ulid>,
    results: Vec<Outcome>,
) -> Vec<Result<(), StageError>> {
    let statuses: Vec<_> = ids
        .into_iter()
        .zip(&results)
        .filter_map(|(id, (status, _))| status.map(|s| (id, channel, s)))
        .collect();
    // The notifications are out: a store failure here must not make them go out again, so
    // it costs the status report, not a resend.
    if let Err(err) = store.record_channel_outcomes(statuses).await {
        tracing::warn!(?channel, error = %err, "cannot record notification outcomes");
    }
    results.into_iter().map(|(_, verdict)| verdict).collect()
}

/// The first failure of a batch, for the runner's whole-batch `process`.
pub(crate) fn first_failure(verdicts: Vec<Result<(), StageError>>) -> Result<(), StageError> {
    verdicts
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// A job dead-lettered for good: FAILED on its channel.
pub(crate) async fn record_failed(store: &dyn Store, channel: Channel, id: Ulid, reason: &str) {
    tracing::warn!(message_id = %id, ?channel, reason, "notification failed for good");
    let failed = vec![(id, channel, ChannelStatus::Failed)];
    if let Err(err) = store.record_channel_outcomes(failed).await {
        tracing::error!(message_id = %id, error = %err, "cannot record FAILED status");
    }
}
