//! The stage that consumes `deliveries.push`: one job per device, sent concurrently within
//! the providers' limits, each job's outcome its own (a device that failed is retried
//! alone; one that succeeded is never sent again by the retry of another).

use std::sync::Arc;

use crate::metrics::SendOutcome;
use async_trait::async_trait;
use bus::stage::{PipelineStage, Stage, StageError};
use bus::{Bus, Record};
use campaigns::CampaignHooks;
use jiff::SignedDuration;
use model::pipeline::{decode, encode, topics, Lane};
use model::push::PushJob;
use model::schedule::{spread, DailyWindow};
use model::status::{Channel, ChannelStatus};
use model::timestamp::Timestamp;
use store::ScheduledRecord;

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
    /// When only urgent messages are pushed; the others wait for the end.
    quiet: Option<DailyWindow>,
}

impl PushStage {
    /// Sends through `service`; campaigns' progress goes on `bus`.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, service: Arc<PushService>) -> Self {
        let campaigns = CampaignHooks::new(Arc::clone(&store), bus);
        Self {
            store,
            campaigns,
            service,
            quiet: None,
        }
    }

    /// Holds pushes that are not urgent during `quiet` hours (none: every push goes).
    pub fn with_quiet_hours(mut self, quiet: Option<DailyWindow>) -> Self {
        self.quiet = quiet;
        self
    }

    /// Keeps `jobs` in the store until `end` of the quiet hours, spread over the hour
    /// after it, each on the push topic of its lane and its own key.
    async fn hold(&self, jobs: &[&PushJob], end: Timestamp) -> Result<(), StageError> {
        let records = jobs
            .iter()
            .map(|job| {
                let due = spread(end, SignedDuration::from_hours(1), job.message_id);
                let lane = if job.campaign_id.is_some() {
                    Lane::Bulk
                } else {
                    Lane::Priority
                };
                ScheduledRecord {
                    id: format!("push/{}/{}", job.message_id, job.installation_id.as_str()),
                    due_ms: due.unix_millis(),
                    topic: lane.topic(topics::DELIVERIES_PUSH).to_string(),
                    key: job.key.clone(),
                    headers: job
                        .request_id
                        .iter()
                        .map(|id| (bus::stage::headers::REQUEST_ID.to_string(), id.clone()))
                        .collect(),
                    payload: encode(job),
                }
            })
            .collect();
        self.store
            .schedule(records)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))?;
        for job in jobs {
            SendOutcome::Held.emit(Channel::Push, job.platform.as_str(), job.message_id);
        }
        Ok(())
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
        job.key = record.key.clone();
        Ok(job)
    }

    async fn process(&self, jobs: &[&PushJob]) -> Vec<Result<(), StageError>> {
        let now = Timestamp::now();
        let quiet_until = self
            .quiet
            .as_ref()
            .filter(|quiet| quiet.contains(now))
            .map(|quiet| quiet.next_close(now));
        let (held, sent): (Vec<&PushJob>, Vec<&PushJob>) = match quiet_until {
            Some(_) => jobs.iter().copied().partition(|job| !job.urgent),
            None => (Vec::new(), jobs.to_vec()),
        };
        let held_outcome = match quiet_until {
            Some(end) if !held.is_empty() => self.hold(&held, end).await,
            _ => Ok(()),
        };
        let provider = |job: &PushJob| job.platform.as_str();
        let mut verdicts = send_each(
            &*self.store,
            &self.campaigns,
            Channel::Push,
            provider,
            &sent,
            |job| self.dispatch(job),
        )
        .await
        .into_iter();
        // In the batch's order: a held job's verdict is its hold's.
        jobs.iter()
            .map(|job| match quiet_until {
                Some(_) if !job.urgent => held_outcome.clone(),
                _ => verdicts.next().unwrap_or(Ok(())),
            })
            .collect()
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
