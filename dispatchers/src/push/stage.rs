//! The stage that consumes `deliveries.push`: one job per device, sent concurrently within
//! the providers' limits, each job's outcome its own (a device that failed is retried
//! alone; one that succeeded is never sent again by the retry of another).

use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{PipelineStage, Stage, StageError};
use bus::{Bus, Record};
use campaigns::CampaignHooks;
use model::pipeline::{decode, topics};
use model::push::PushJob;
use model::status::{Channel, ChannelStatus};

use crate::outcome::{record_failed, send_each, Outcome};
use store::Store;

use super::provider::PushError;
use super::service::PushService;

/// Consumer group of the push dispatcher.
pub const GROUP: &str = "push";

#[derive(Debug)]
pub struct PushStage {
    store: Arc<dyn Store>,
    campaigns: CampaignHooks,
    service: Arc<PushService>,
}

impl PushStage {
    /// Sends through `service`; campaigns' progress goes on `bus`.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, service: Arc<PushService>) -> Self {
        let campaigns = CampaignHooks::new(Arc::clone(&store), bus);
        Self {
            store,
            campaigns,
            service,
        }
    }

    /// Sends one job; the channel status it leads to and the stage's verdict.
    async fn dispatch(&self, job: &PushJob) -> Outcome {
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

impl PipelineStage for PushStage {
    const TOPIC: &'static str = topics::DELIVERIES_PUSH;
    const GROUP: &'static str = GROUP;
}

#[async_trait]
impl Stage for PushStage {
    type Item = PushJob;

    fn decode(&self, record: &Record) -> Result<PushJob, String> {
        let mut job: PushJob = decode(&record.payload).map_err(|e| e.to_string())?;
        job.request_id = record.request_id().map(str::to_string);
        Ok(job)
    }

    async fn process(&self, jobs: &[&PushJob]) -> Vec<Result<(), StageError>> {
        let provider = |job: &PushJob| job.platform.as_str();
        send_each(
            &*self.store,
            &self.campaigns,
            Channel::Push,
            provider,
            jobs,
            |job| self.dispatch(job),
        )
        .await
    }

    async fn dead_lettered(&self, job: &PushJob, reason: &str) {
        let provider = job.platform.as_str();
        record_failed(
            &*self.store,
            &self.campaigns,
            Channel::Push,
            provider,
            job,
            reason,
        )
        .await;
    }
}
