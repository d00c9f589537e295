//! The stage that consumes `deliveries.inbox`.

use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{self, PipelineStage, Stage, StageError};
use bus::{Bus, Lineage, Record};
use model::channels::{ChannelChoice, SkipReason};
use model::email::EmailJob;
use model::pipeline::{decode, encode, topics, DeliveryPlan, Lane};
use model::status::{Channel, ChannelOutcome, ChannelStatus, MessageStatus, NotificationStatus};
use store::{MessageRecord, Store};

use crate::push::{PushFanOut, PushPlatforms, PushTargets};
use campaigns::progress::{report_failed, Progress};
use model::progress::{ChannelProgress, ItemProgress, ItemStatus};

/// Consumer group of the inbox dispatcher.
pub const GROUP: &str = "inbox";

/// A routed message as the inbox dispatcher reads it from `deliveries.inbox`.
#[derive(Debug)]
pub struct Planned {
    /// The record's key (the citizen's partition) and request id, kept for the push and
    /// email topics.
    lineage: Lineage,
    plan: DeliveryPlan,
}

#[derive(Debug)]
pub struct InboxStage {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
    push: PushTargets,
}

impl InboxStage {
    /// `push` says which platforms this deployment has a push provider for: a device on
    /// any other gets no job (it could only fail), and the message says why.
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>, push: PushPlatforms) -> Self {
        let push = PushTargets::new(Arc::clone(&store), push);
        Self { store, bus, push }
    }

    /// Delivers a batch: the inbox writes in one store write, then the push and email jobs;
    /// it succeeds or fails as a whole.
    async fn deliver_batch(&self, items: &[&Planned]) -> Result<(), StageError> {
        let plans: Vec<&DeliveryPlan> = items.iter().map(|p| &p.plan).collect();
        let pushes = self
            .push
            .fan_out(&plans)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))?;

        let mut records: Vec<MessageRecord> = Vec::with_capacity(items.len());
        let mut progress = Progress::default();
        // By lane: a campaign's notifications stay in the bulk lane.
        let mut jobs: [Vec<Record>; 2] = Default::default();
        let mut emails: [Vec<Record>; 2] = Default::default();
        for (Planned { lineage, plan }, push) in items.iter().copied().zip(pushes) {
            let lane = plan.message.lane().index();
            let mut record = record(plan, MessageStatus::Processed);
            let (mut push_planned, mut email_planned) = (false, false);
            match push {
                PushFanOut::NotChosen => {}
                PushFanOut::Skipped(why) => {
                    record.notification.webhook = Some(ChannelOutcome::Skipped(why));
                }
                PushFanOut::Jobs(reachable) => {
                    push_planned = true;
                    jobs[lane].extend(reachable.iter().map(|job| lineage.record(encode(job))))
                }
            }
            match EmailJob::for_plan(plan) {
                Some(email) => {
                    email_planned = true;
                    emails[lane].push(lineage.record(encode(&email)))
                }
                // Chosen, but no address came with the plan: nothing to send to.
                None if plan.channels.email == ChannelChoice::Send => {
                    record.notification.email =
                        Some(ChannelOutcome::Skipped(SkipReason::NoValidatedEmail));
                }
                None => {}
            }
            progress.note(
                plan.message.campaign_id.as_deref(),
                plan.message.id,
                ItemProgress {
                    status: Some(ItemStatus::Processed),
                    push: channel_progress(record.notification.webhook, push_planned),
                    email: channel_progress(record.notification.email, email_planned),
                },
            );
            records.push(record);
        }
        let readable: Vec<_> = records.iter().map(|r| r.message.id).collect();
        self.store
            .deliver(records)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))?;
        crate::metrics::readable(readable);
        // Only now, with every message of the batch readable, may a push or an email go
        // out (invariant 3).
        for (lane, (jobs, emails)) in Lane::ALL.into_iter().zip(jobs.into_iter().zip(emails)) {
            for (topic, records) in [
                (topics::DELIVERIES_PUSH, jobs),
                (topics::DELIVERIES_EMAIL, emails),
            ] {
                if !records.is_empty() {
                    // A log that refuses the jobs for good dead-letters the plan, as any
                    // permanent error does; a log that is down holds the stage.
                    self.bus.publish(lane.topic(topic), records).await?;
                }
            }
        }
        progress.publish(&*self.bus).await?;
        Ok(())
    }
}

/// What a campaign's tally hears about a channel: its outcome if already known (skipped),
/// planned if a job went out for it.
fn channel_progress(outcome: Option<ChannelOutcome>, planned: bool) -> Option<ChannelProgress> {
    match outcome {
        Some(outcome) => Some(outcome.into()),
        None => planned.then_some(ChannelProgress::Planned),
    }
}

/// A channel the plan skips is recorded with its reason at once; one it sends on is
/// reported by its dispatcher.
fn initial_outcome(choice: &ChannelChoice) -> Option<ChannelOutcome> {
    match choice {
        ChannelChoice::Send => None,
        ChannelChoice::Skip(reason) => Some(ChannelOutcome::Skipped(*reason)),
    }
}

fn record(plan: &DeliveryPlan, status: MessageStatus) -> MessageRecord {
    MessageRecord {
        notification: NotificationStatus {
            email: initial_outcome(&plan.channels.email),
            webhook: initial_outcome(&plan.channels.push),
        },
        ..MessageRecord::new(plan.message.clone(), status)
    }
}

impl PipelineStage for InboxStage {
    const TOPIC: &'static str = topics::DELIVERIES_INBOX;
    const GROUP: &'static str = GROUP;
}

#[async_trait]
impl Stage for InboxStage {
    type Item = Planned;

    fn decode(&self, record: &Record) -> Result<Planned, String> {
        let plan = decode(&record.payload).map_err(|e| e.to_string())?;
        Ok(Planned {
            lineage: Lineage::of(record),
            plan,
        })
    }

    async fn process(&self, items: &[&Self::Item]) -> Vec<Result<(), StageError>> {
        stage::by_batch(
            items,
            |batch| async move { self.deliver_batch(&batch).await },
        )
        .await
    }

    async fn dead_lettered(&self, Planned { plan, .. }: &Planned, reason: &str) {
        let message = &plan.message;
        // The inbox write may have succeeded and only the jobs after it failed: then the
        // message is readable and stays PROCESSED, and what failed are its notifications
        // still pending (a channel skipped keeps its reason).
        let stored = self.store.get_message(&message.id).await;
        let written = match stored {
            Ok(Some(stored)) if stored.status == MessageStatus::Processed => {
                tracing::error!(message_id = %message.id, reason, "the notifications of a message in the inbox could not be queued");
                let pending = [
                    (Channel::Push, stored.notification.webhook),
                    (Channel::Email, stored.notification.email),
                ];
                let failed = pending
                    .into_iter()
                    .filter(|(_, outcome)| outcome.is_none())
                    .map(|(channel, _)| (message.id, channel, ChannelStatus::Failed.into()))
                    .collect();
                self.store.record_channel_outcomes(failed).await
            }
            _ => {
                tracing::error!(message_id = %message.id, reason, "message could not be written to the inbox");
                self.store
                    .put_messages(vec![record(plan, MessageStatus::Failed)])
                    .await
            }
        };
        if let Err(err) = written {
            tracing::error!(message_id = %message.id, error = %err, "cannot record the failure");
        }
        report_failed(&*self.bus, message).await;
    }
}
