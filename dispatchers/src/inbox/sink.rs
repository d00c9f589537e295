//! The stage that consumes `deliveries.inbox`.

use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{Stage, StageError};
use bus::Record;
use model::channels::ChannelChoice;
use model::pipeline::{decode, DeliveryPlan};
use model::status::{ChannelStatus, MessageStatus, NotificationStatus};
use store::{MessageRecord, Store};

/// Consumer group of the inbox dispatcher.
pub const GROUP: &str = "inbox";

#[derive(Debug)]
pub struct InboxStage {
    store: Arc<dyn Store>,
}

impl InboxStage {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

/// A channel the plan skips is reported SKIPPED at once; one it sends on is reported by its
/// dispatcher.
fn initial_status(choice: &ChannelChoice) -> Option<ChannelStatus> {
    match choice {
        ChannelChoice::Send => None,
        ChannelChoice::Skip(_) => Some(ChannelStatus::Skipped),
    }
}

fn record(plan: &DeliveryPlan, status: MessageStatus) -> MessageRecord {
    MessageRecord {
        notification: NotificationStatus {
            email: initial_status(&plan.channels.email),
            webhook: initial_status(&plan.channels.push),
        },
        ..MessageRecord::new(plan.message.clone(), status)
    }
}

#[async_trait]
impl Stage for InboxStage {
    type Item = DeliveryPlan;

    fn decode(&self, record: &Record) -> Result<DeliveryPlan, String> {
        decode(&record.payload).map_err(|e| e.to_string())
    }

    async fn process(&self, plans: &[&DeliveryPlan]) -> Result<(), StageError> {
        let records = plans
            .iter()
            .map(|p| record(p, MessageStatus::Processed))
            .collect();
        self.store
            .deliver(records)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))
    }

    async fn dead_lettered(&self, plan: &DeliveryPlan, reason: &str) {
        tracing::error!(message_id = %plan.message.id, reason, "message could not be written to the inbox");
        if let Err(err) = self
            .store
            .put_messages(vec![record(plan, MessageStatus::Failed)])
            .await
        {
            tracing::error!(message_id = %plan.message.id, error = %err, "cannot record FAILED status");
        }
    }
}
