//! The stage that consumes `deliveries.email`: renders and sends each email, a bounded
//! number at once, each email's outcome its own (one that was handed over is never sent
//! again by the retry of another).

use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{PipelineStage, Stage, StageError};
use bus::{Bus, Record};
use campaigns::CampaignHooks;
use lettre::Address;
use model::email::EmailJob;
use model::pipeline::{decode, topics};
use model::status::{Channel, ChannelStatus};

use crate::metrics::Call;
use crate::outcome::{record_failed, send_each, Outcome};
use store::Store;
use tokio::sync::Semaphore;

use super::mailer::{MailError, Mailer};
use super::render::compose;

/// Consumer group of the email dispatcher.
pub const GROUP: &str = "email";

#[derive(Debug)]
pub struct EmailStage {
    store: Arc<dyn Store>,
    campaigns: CampaignHooks,
    mailer: Arc<dyn Mailer>,
    from: Address,
    in_flight: Semaphore,
}

impl EmailStage {
    /// Sends through `mailer` from `from`, at most `max_in_flight` emails at once;
    /// campaigns' progress goes on `bus`.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        mailer: Arc<dyn Mailer>,
        from: Address,
        max_in_flight: usize,
    ) -> Self {
        Self {
            campaigns: CampaignHooks::new(Arc::clone(&store), bus),
            store,
            mailer,
            from,
            in_flight: Semaphore::new(max_in_flight.max(1)),
        }
    }

    async fn dispatch(&self, job: &EmailJob) -> Outcome {
        let email = match compose(job, &self.from) {
            Ok(email) => email,
            Err(err) => return (None, Err(StageError::Permanent(err.to_string()))),
        };
        let mut call = Call::new(Channel::Email, self.mailer.name());
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.in_flight.acquire().await;
        call.started();
        let sent = self.mailer.send(job.message_id, &email).await;
        drop(call);
        match sent {
            Ok(()) => (Some(ChannelStatus::Sent), Ok(())),
            Err(MailError::Retry(reason)) => (
                None,
                Err(StageError::Retry {
                    reason,
                    after: None,
                }),
            ),
            Err(MailError::Unavailable(reason)) => (None, Err(StageError::Unavailable(reason))),
            // Recorded FAILED when the runner reports it dead-lettered.
            Err(MailError::Rejected(reason)) => (None, Err(StageError::Permanent(reason))),
        }
    }
}

impl PipelineStage for EmailStage {
    const TOPIC: &'static str = topics::DELIVERIES_EMAIL;
    const GROUP: &'static str = GROUP;
}

#[async_trait]
impl Stage for EmailStage {
    type Item = EmailJob;

    fn decode(&self, record: &Record) -> Result<EmailJob, String> {
        let mut job: EmailJob = decode(&record.payload).map_err(|e| e.to_string())?;
        job.request_id = record.request_id().map(str::to_string);
        Ok(job)
    }

    async fn process(&self, jobs: &[&EmailJob]) -> Vec<Result<(), StageError>> {
        let provider = |_: &EmailJob| self.mailer.name();
        send_each(
            &*self.store,
            &self.campaigns,
            Channel::Email,
            provider,
            jobs,
            |job| self.dispatch(job),
        )
        .await
    }

    async fn dead_lettered(&self, job: &EmailJob, reason: &str) {
        let provider = self.mailer.name();
        record_failed(
            &*self.store,
            &self.campaigns,
            Channel::Email,
            provider,
            job,
            reason,
        )
        .await;
    }
}
