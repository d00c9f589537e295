//! A stage's report of what it learned about campaigns' items during one batch.

use std::collections::BTreeMap;

use bus::{Bus, BusError, Record};
use model::pipeline::{encode, topics};
use model::progress::{bucket_of, ItemProgress, ItemUpdate, ProgressRecord};
use ulid::Ulid;

/// What a batch learned, grouped by campaign and part: one record per part, so a batch of
/// a thousand items of one campaign makes at most [`model::progress::BUCKETS`] records.
#[derive(Debug, Default)]
pub struct Progress {
    parts: BTreeMap<(String, u16), Vec<ItemUpdate>>,
}

impl Progress {
    /// Notes `progress` for the message `id` when it belongs to a campaign.
    pub fn note(&mut self, campaign_id: Option<&str>, id: Ulid, progress: ItemProgress) {
        let Some(campaign_id) = campaign_id else {
            return;
        };
        self.parts
            .entry((campaign_id.to_string(), bucket_of(id)))
            .or_default()
            .push(ItemUpdate { id, progress });
    }

    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// The records to publish, keyed by campaign and part.
    pub fn into_records(self) -> Vec<Record> {
        self.parts
            .into_iter()
            .map(|((campaign_id, bucket), items)| {
                let record = ProgressRecord {
                    campaign_id,
                    bucket,
                    items,
                };
                Record::new(record.key(), encode(&record))
            })
            .collect()
    }

    /// Publishes the report on `campaign-progress`. A stage publishes it after its own
    /// write, in the same batch: a failure holds the batch, and its retry reports again,
    /// which the tally takes once.
    pub async fn publish(self, bus: &dyn Bus) -> Result<(), BusError> {
        if self.is_empty() {
            return Ok(());
        }
        bus.publish(topics::CAMPAIGN_PROGRESS, self.into_records())
            .await
    }
}

/// Reports a campaign's message dead-lettered by a stage as FAILED, as well as it can: the
/// stage has nothing left to hold, so a log that is down costs the report (logged).
pub async fn report_failed(bus: &dyn Bus, message: &model::pipeline::AcceptedMessage) {
    let mut progress = Progress::default();
    let failed = ItemProgress::status(model::progress::ItemStatus::Failed);
    progress.note(message.campaign_id.as_deref(), message.id, failed);
    if let Err(err) = progress.publish(bus).await {
        tracing::error!(message_id = %message.id, error = %err, "cannot report a FAILED campaign message to the tally");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::progress::ItemStatus;

    #[test]
    fn one_record_per_campaign_part_and_none_for_one_off_messages() {
        let mut progress = Progress::default();
        let accepted = ItemProgress::status(ItemStatus::Accepted);
        let call = Ulid::new();
        for i in 0..200 {
            progress.note(Some("c1"), model::campaign::item_id(call, i), accepted);
        }
        progress.note(Some("c2"), Ulid::new(), accepted);
        progress.note(None, Ulid::new(), accepted);
        let records = progress.into_records();
        assert_eq!(records.len(), usize::from(model::progress::BUCKETS) + 1);
        let decoded: Vec<ProgressRecord> = records
            .iter()
            .map(|r| model::pipeline::decode(&r.payload).expect("decodes"))
            .collect();
        assert_eq!(decoded.iter().map(|r| r.items.len()).sum::<usize>(), 201);
        for (record, decoded) in records.iter().zip(&decoded) {
            assert_eq!(record.key, decoded.key().into_bytes());
            assert!(decoded
                .items
                .iter()
                .all(|i| bucket_of(i.id) == decoded.bucket));
        }
    }
}
