//! What the notification stages (push, email) share: a batch's jobs are sent concurrently,
//! none past its message's `time_to_live`; each job's outcome is the channel status it leads
//! to and the runner's verdict; the batch's statuses are recorded in one store write, after
//! the sends.

use std::future::Future;

use bus::stage::StageError;
use model::email::EmailJob;
use model::push::PushJob;
use model::status::{Channel, ChannelStatus};
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
}

/// The status a job leads to (none while it may still be retried) and the verdict for the
/// stage runner.
pub(crate) type Outcome = (Option<ChannelStatus>, Result<(), StageError>);

/// Sends each job of a batch with `send`, all at once (the sender bounds its own
/// concurrency), except those already sent (a job published or delivered twice: not sent
/// again) and those whose message expired (`EXPIRED`, not sent). Records what went out and
/// the statuses on `channel`, and hands back the verdicts, in order.
pub(crate) async fn send_each<'a, J, F, Fut>(
    store: &dyn Store,
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
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let send = &send;
    let results = futures::future::join_all(jobs.iter().zip(&already_sent).map(|(&job, &sent)| {
        async move {
            let outcome = if sent {
                tracing::debug!("already sent; not sent again");
                (Some(ChannelStatus::Sent), Ok(()))
            } else if job.expires_at() <= now {
                tracing::debug!("not sent: the message expired");
                (Some(ChannelStatus::Expired), Ok(()))
            } else {
                send(job).await
            };
            tracing::debug!(status = ?outcome.0, verdict = ?outcome.1, "notification handled");
            outcome
        }
        .instrument(notification_span(job, channel))
    }))
    .await;
    for ((job, &before), (status, verdict)) in jobs.iter().zip(&already_sent).zip(&results) {
        let outcome = if before {
            Some(SendOutcome::AlreadySent)
        } else {
            SendOutcome::of(*status, verdict.as_ref().map(|_| ()))
        };
        if let Some(outcome) = outcome {
            outcome.emit(channel, provider(job), job.message_id());
        }
    }
    let newly_sent = keys
        .into_iter()
        .zip(&already_sent)
        .zip(&results)
        .filter(|((_, &before), (status, _))| !before && *status == Some(ChannelStatus::Sent))
        .map(|((key, _), _)| key)
        .collect();
    settle(
        store,
        channel,
        newly_sent,
        jobs.iter().map(|job| job.message_id()),
        results,
    )
    .await
}

/// Records what went out and the statuses of a batch on `channel` (`THROTTLED` for a job
/// that will be tried again), and hands back the verdicts, in order.
async fn settle(
    store: &dyn Store,
    channel: Channel,
    newly_sent: Vec<NotificationKey>,
    ids: impl IntoIterator<Item = Ulid>,
    results: Vec<Outcome>,
) -> Vec<Result<(), StageError>> {
    let statuses: Vec<_> = ids
        .into_iter()
        .zip(&results)
        .filter_map(|(id, (status, verdict))| {
            let status = match (status, verdict) {
                (Some(status), _) => *status,
                (None, Err(StageError::Retry { .. } | StageError::Unavailable(_))) => {
                    ChannelStatus::Throttled
                }
                (None, _) => return None,
            };
            Some((id, channel, status))
        })
        .collect();
    // The notifications are out: a store failure here must not make them go out again, so
    // it costs the record (a redelivery of the same job could then repeat one) and the
    // status report, not a resend now.
    if let Err(err) = store.settle_notifications(newly_sent, statuses).await {
        tracing::warn!(?channel, error = %err, "cannot record which notifications went out and how");
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

/// A job dead-lettered for good: FAILED on its channel.
pub(crate) async fn record_failed(
    store: &dyn Store,
    channel: Channel,
    provider: &'static str,
    job: &impl Notification,
    reason: &str,
) {
    let id = job.message_id();
    SendOutcome::Failed.emit(channel, provider, id);
    async {
        tracing::warn!(reason, "notification failed for good");
        let failed = vec![(id, channel, ChannelStatus::Failed)];
        if let Err(err) = store.record_channel_outcomes(failed).await {
            tracing::error!(error = %err, "cannot record FAILED status");
        }
    }
    .instrument(notification_span(job, channel))
    .await
}
