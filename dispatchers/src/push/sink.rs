//! The stage that consumes `deliveries.push`: one job per device, sent concurrently within
//! the providers' limits, each job's outcome its own (a device that failed is retried
//! alone; one that succeeded is never sent again by the retry of another).

use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{Stage, StageError};
use bus::Record;
use model::pipeline::decode;
use model::push::PushJob;
use model::status::{Channel, ChannelStatus};
use store::Store;

use super::provider::PushError;
use super::service::PushService;

/// Consumer group of the push dispatcher.
pub const GROUP: &str = "push";

#[derive(Debug)]
pub struct PushStage {
    store: Arc<dyn Store>,
    service: Arc<PushService>,
}

impl PushStage {
    pub fn new(store: Arc<dyn Store>, service: Arc<PushService>) -> Self {
        Self { store, service }
    }

    /// Sends one job, or not if its message expired; the channel status it leads to and
    /// the stage's verdict.
    async fn dispatch(
        &self,
        job: &PushJob,
        now: i64,
    ) -> (Option<ChannelStatus>, Result<(), StageError>) {
        if job.expires_at <= now {
            tracing::debug!(message_id = %job.message_id, "push not sent: the message expired");
            return (Some(ChannelStatus::Expired), Ok(()));
        }
        match self.service.send(job).await {
            Ok(()) => (Some(ChannelStatus::Sent), Ok(())),
            Err(PushError::TokenGone(reason)) => {
                tracing::info!(message_id = %job.message_id, platform = job.platform.as_str(), reason, "device gone; installation removed");
                if let Err(err) = self
                    .store
                    .delete_stale_installation(&job.fiscal_code, &job.installation_id, &job.token)
                    .await
                {
                    tracing::warn!(error = %err, "cannot remove a gone installation; the next push will try again");
                }
                (Some(ChannelStatus::Failed), Ok(()))
            }
            Err(PushError::Retry { reason, after }) => {
                (None, Err(StageError::Retry { reason, after }))
            }
            // Recorded FAILED when the runner reports it dead-lettered.
            Err(PushError::Rejected(reason)) => (None, Err(StageError::Permanent(reason))),
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[async_trait]
impl Stage for PushStage {
    type Item = PushJob;

    fn decode(&self, record: &Record) -> Result<PushJob, String> {
        decode(&record.payload).map_err(|e| e.to_string())
    }

    async fn process(&self, jobs: &[&PushJob]) -> Result<(), StageError> {
        self.process_each(jobs)
            .await
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    async fn process_each(&self, jobs: &[&PushJob]) -> Vec<Result<(), StageError>> {
        let now = unix_now();
        let results =
            futures::future::join_all(jobs.iter().map(|job| self.dispatch(job, now))).await;
        let outcomes: Vec<_> = jobs
            .iter()
            .zip(&results)
            .filter_map(|(job, (status, _))| status.map(|s| (job.message_id, Channel::Webhook, s)))
            .collect();
        // The pushes are out: a store failure here must not make them go out again, so it
        // costs the status report, not a resend.
        if let Err(err) = self.store.record_channel_outcomes(outcomes).await {
            tracing::warn!(error = %err, "cannot record push outcomes");
        }
        results.into_iter().map(|(_, verdict)| verdict).collect()
    }

    async fn dead_lettered(&self, job: &PushJob, reason: &str) {
        tracing::warn!(message_id = %job.message_id, platform = job.platform.as_str(), reason, "push failed for good");
        let failed = vec![(job.message_id, Channel::Webhook, ChannelStatus::Failed)];
        if let Err(err) = self.store.record_channel_outcomes(failed).await {
            tracing::error!(message_id = %job.message_id, error = %err, "cannot record FAILED push status");
        }
    }
}
