//! What the notification stages (push, email) share: each job's outcome is the channel
//! status it leads to and the runner's verdict; a batch's statuses are recorded in one
//! store write, after the sends.

use bus::stage::StageError;
use model::status::{Channel, ChannelStatus};
use store::Store;
use ulid::Ulid;

/// The status a job leads to (none while it may still be retried) and the verdict for the
/// stage runner.
pub(crate) type Outcome = (Option<ChannelStatus>, Result<(), StageError>);

/// Records the statuses of a batch on `channel` and hands back the verdicts, in order.
pub(crate) async fn settle(
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
