//! What the notification stages (push, email) share: a batch's jobs are sent concurrently,
//! none past its message's `time_to_live`; each job's outcome is the channel status it leads
//! to and the runner's verdict; the batch's statuses are recorded in one store write, after
//! the sends.

use std::future::Future;

use bus::stage::StageError;
use campaigns::progress::Progress;
use campaigns::CampaignHooks;
use model::email::EmailJob;
use model::progress::ItemProgress;
use model::push::PushJob;
use model::status::{Channel, ChannelOutcome, ChannelStatus, SkipReason};
use store::{NotificationKey, Store};

use tracing::Instrument;

use crate::metrics::SendOutcome;
use ulid::Ulid;

/// A job about one message, worth sending until the message expires.
pub(crate) trait Notification {
    fn message_id(&self) -> Ulid;
    /// Unix seconds after which the job is not sent.
    fn expires_at(&self) -> i64;
    /// Who within the message it goes to: at most one notification per message, channel
    /// and target is sent.
    fn target(&self) -> &str;
    /// The request its message came from, for the log lines about it.
    fn request_id(&self) -> Option<&str>;
    /// The campaign its message belongs to.
    fn campaign_id(&self) -> Option<&str>;

    fn key(&self, channel: Channel) -> NotificationKey {
        NotificationKey {
            message_id: self.message_id(),
            channel,
            target: self.target().to_string(),
        }
    }
}

impl Notification for PushJob {
    fn message_id(&self) -> Ulid {
        self.message_id
    }
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// One push per device.
    fn target(&self) -> &str {
        self.installation_id.as_str()
    }
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    fn campaign_id(&self) -> Option<&str> {
        self.campaign_id.as_deref()
    }
}

impl Notification for EmailJob {
    fn message_id(&self) -> Ulid {
        self.message_id
    }
    fn expires_at(&self) -> i64 {
        self.expires_at
    }
    /// One email per message.
    fn target(&self) -> &str {
        ""
    }
    fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    fn campaign_id(&self) -> Option<&str> {
        self.campaign_id.as_deref()
    }
}

/// The status a job leads to (none while it may still be retried) and the verdict for the
/// stage runner.
pub(crate) type Outcome = (Option<ChannelStatus>, Result<(), StageError>);

/// [`Outcome`] with a job not sent for a reason of Postino's own (its campaign cancelled).
type Handled = (Option<ChannelOutcome>, Result<(), StageError>);

/// Sends each job of a batch with `send`, all at once (the sender bounds its own
/// concurrency), except those already sent (a job published or delivered twice: not sent
/// again), those whose campaign was cancelled (not sent), and those whose message expired
/// (`EXPIRED`, not sent). Records what went out and the statuses on `channel`, reports
/// campaigns' jobs to their tally, and hands back the verdicts, in order.
pub(crate) async fn send_each<'a, J, F, Fut>(
    store: &dyn Store,
    campaigns: &CampaignHooks,
    channel: Channel,
    provider: impl Fn(&J) -> &'static str,
    jobs: &[&'a J],
    send: F,
) -> Vec<Result<(), StageError>>
where
    J: Notification,
    F: Fn(&'a J) -> Fut,
    Fut: Future<Output = Outcome>,
{
    let keys: Vec<NotificationKey> = jobs.iter().map(|job| job.key(channel)).collect();
    let already_sent = match store.notifications_sent(&keys).await {
        Ok(sent) => sent,
        // Sending without knowing could send twice: the batch waits for the store.
        Err(err) => {
            let err = StageError::from_dependency(err.is_retryable(), err);
            return jobs.iter().map(|_| Err(err.clone())).collect();
        }
    };
    let campaign_ids: Vec<Option<&str>> = jobs.iter().map(|job| job.campaign_id()).collect();
    let cancelled = match campaigns.cancellations.cancelled_among(campaign_ids).await {
        Ok(cancelled) => cancelled,
        // Sending without knowing could send what the sender withdrew: the batch waits.
        Err(err) => {
            let err = StageError::from_dependency(err.is_retryable(), err);
            return jobs.iter().map(|_| Err(err.clone())).collect();
        }
    };
    let is_cancelled = |job: &J| job.campaign_id().is_some_and(|id| cancelled.contains(id));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let send = &send;
    let results = futures::future::join_all(jobs.iter().zip(&already_sent).map(|(&job, &sent)| {
        async move {
            let outcome = if sent {
                tracing::debug!("already sent; not sent again");
                (Some(ChannelStatus::Sent.into()), Ok(()))
            } else if is_cancelled(job) {
                tracing::debug!("not sent: its campaign was cancelled");
                (
                    Some(ChannelOutcome::Skipped(SkipReason::CampaignCancelled)),
                    Ok(()),
                )
            } else if job.expires_at() <= now {
                tracing::debug!("not sent: the message expired");
                (Some(ChannelStatus::Expired.into()), Ok(()))
            } else {
                let (status, verdict) = send(job).await;
                (status.map(ChannelOutcome::from), verdict)
            };
            tracing::debug!(status = ?outcome.0, verdict = ?outcome.1, "notification handled");
            outcome
        }
        .instrument(notification_span(job, channel))
    }))
    .await;
    for ((job, &before), (status, verdict)) in jobs.iter().zip(&already_sent).zip(&results) {
        let outcome = match status {
            _ if before => Some(SendOutcome::AlreadySent),
            Some(ChannelOutcome::Skipped(_)) => Some(SendOutcome::Cancelled),
            Some(ChannelOutcome::Used(status)) => {
                SendOutcome::of(Some(*status), verdict.as_ref().map(|_| ()))
            }
            None => SendOutcome::of(None, verdict.as_ref().map(|_| ())),
        };
        if let Some(outcome) = outcome {
            outcome.emit(channel, provider(job), job.message_id());
        }
    }
    let newly_sent = keys
        .into_iter()
        .zip(&already_sent)
        .zip(&results)
        .filter(|((_, &before), (status, _))| {
            !before && *status == Some(ChannelStatus::Sent.into())
        })
        .map(|((key, _), _)| key)
        .collect();
    settle(store, campaigns, channel, newly_sent, jobs, results).await
}

/// Records what went out and the statuses of a batch on `channel` (`THROTTLED` for a job
/// that will be tried again), reports campaigns' jobs, and hands back the verdicts, in
/// order.
async fn settle<J: Notification>(
    store: &dyn Store,
    campaigns: &CampaignHooks,
    channel: Channel,
    newly_sent: Vec<NotificationKey>,
    jobs: &[&J],
    results: Vec<Handled>,
) -> Vec<Result<(), StageError>> {
    let mut progress = Progress::default();
    let statuses: Vec<_> = jobs
        .iter()
        .zip(&results)
        .filter_map(|(job, (status, verdict))| {
            let status = match (status, verdict) {
                (Some(status), _) => *status,
                (None, Err(StageError::Retry { .. } | StageError::Unavailable(_))) => {
                    ChannelStatus::Throttled.into()
                }
                (None, _) => return None,
            };
            let id = job.message_id();
            progress.note(
                job.campaign_id(),
                id,
                ItemProgress::channel(channel, status),
            );
            Some((id, channel, status))
        })
        .collect();
    // The notifications are out: a store or log failure here must not make them go out
    // again, so it costs the record (a redelivery of the same job could then repeat one)
    // and the status report, not a resend now.
    if let Err(err) = store.settle_notifications(newly_sent, statuses).await {
        tracing::warn!(?channel, error = %err, "cannot record which notifications went out and how");
    }
    if let Err(err) = progress.publish(&*campaigns.bus).await {
        tracing::warn!(?channel, error = %err, "cannot report campaign notifications to the tally");
    }
    results.into_iter().map(|(_, verdict)| verdict).collect()
}

/// The span of the log lines about one job: its request and message, never its recipient.
fn notification_span(job: &impl Notification, channel: Channel) -> tracing::Span {
    tracing::info_span!(
        "notification",
        request_id = job.request_id(),
        message_id = %job.message_id(),
        ?channel
    )
}

/// A job dead-lettered for good: FAILED on its channel (and so reported to its campaign's
/// tally).
pub(crate) async fn record_failed(
    store: &dyn Store,
    campaigns: &CampaignHooks,
    channel: Channel,
    provider: &'static str,
    job: &impl Notification,
    reason: &str,
) {
    let id = job.message_id();
    SendOutcome::Failed.emit(channel, provider, id);
    async {
        tracing::warn!(reason, "notification failed for good");
        let failed = vec![(id, channel, ChannelStatus::Failed.into())];
        if let Err(err) = store.record_channel_outcomes(failed).await {
            tracing::error!(error = %err, "cannot record FAILED status");
        }
        let mut progress = Progress::default();
        let failed = ItemProgress::channel(channel, ChannelStatus::Failed);
        progress.note(job.campaign_id(), id, failed);
        if let Err(err) = progress.publish(&*campaigns.bus).await {
            tracing::error!(error = %err, "cannot report the FAILED status to the campaign's tally");
        }
    }
    .instrument(notification_span(job, channel))
    .await
}
