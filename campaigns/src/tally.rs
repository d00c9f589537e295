//! The campaign tally: the stage that reads `campaign-progress` and keeps, in the store,
//! each campaign item's state and each campaign part's counts.
//!
//! Records are keyed by campaign and part, so one consumer at a time owns a part: its
//! read-merge-write ([`store::CampaignStore::record_progress`]) has no other writer. A
//! record applied twice (a batch redelivered after a crash) changes nothing, because an
//! item's state only moves forward.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bus::stage::{self, PipelineStage, Stage, StageError};
use bus::Record;
use model::pipeline::{decode, topics};
use model::progress::{ItemUpdate, ProgressRecord};
use store::Store;

/// Consumer group of the tally.
pub const GROUP: &str = "campaign-tally";

#[derive(Debug)]
pub struct TallyStage {
    store: Arc<dyn Store>,
}

impl TallyStage {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Records a batch: every part it names, in one store call. A store that is down holds the
    /// batch in place (never the retry lane, which would make a second writer of the
    /// part); one that refuses a part for good dead-letters its record.
    async fn tally(&self, records: &[&ProgressRecord]) -> Result<(), StageError> {
        let mut parts: BTreeMap<(&str, u16), Vec<ItemUpdate>> = BTreeMap::new();
        for record in records {
            parts
                .entry((record.campaign_id.as_str(), record.bucket))
                .or_default()
                .extend_from_slice(&record.items);
        }
        let parts: Vec<ProgressRecord> = parts
            .into_iter()
            .map(|((campaign_id, bucket), items)| ProgressRecord {
                campaign_id: campaign_id.to_string(),
                bucket,
                items,
            })
            .collect();
        self.store
            .record_progress(&parts)
            .await
            .map_err(|err| StageError::from_dependency(err.is_retryable(), err))
    }
}

impl PipelineStage for TallyStage {
    const TOPIC: &'static str = topics::CAMPAIGN_PROGRESS;
    const GROUP: &'static str = GROUP;
}

#[async_trait]
impl Stage for TallyStage {
    type Item = ProgressRecord;

    fn decode(&self, record: &Record) -> Result<ProgressRecord, String> {
        let progress: ProgressRecord = decode(&record.payload).map_err(|e| e.to_string())?;
        if progress.bucket >= model::progress::BUCKETS {
            return Err(format!(
                "bucket {} is past the last ({})",
                progress.bucket,
                model::progress::BUCKETS - 1
            ));
        }
        Ok(progress)
    }

    async fn process(&self, items: &[&ProgressRecord]) -> Vec<Result<(), StageError>> {
        stage::by_batch(items, |batch| async move { self.tally(&batch).await }).await
    }

    async fn dead_lettered(&self, record: &ProgressRecord, reason: &str) {
        tracing::error!(
            campaign_id = %record.campaign_id,
            bucket = record.bucket,
            items = record.items.len(),
            reason,
            "campaign progress could not be recorded; the campaign's counts miss these items' changes"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Progress;
    use model::progress::{ItemProgress, ItemStatus};
    use store::sqlite::SqliteStore;

    #[tokio::test]
    async fn a_redelivered_batch_counts_once_and_a_broken_record_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let tally = TallyStage::new(Arc::clone(&store));
        let mut progress = Progress::default();
        let call = ulid::Ulid::new();
        for i in 0..300 {
            let id = model::campaign::item_id(call, i);
            progress.note(Some("c"), id, ItemProgress::status(ItemStatus::Accepted));
            progress.note(Some("c"), id, ItemProgress::status(ItemStatus::Processed));
        }
        let records = progress.into_records();
        let decoded: Vec<ProgressRecord> = records
            .iter()
            .map(|r| tally.decode(r).expect("decodes"))
            .collect();
        let refs: Vec<&ProgressRecord> = decoded.iter().collect();
        for _ in 0..2 {
            assert!(tally.process(&refs).await.iter().all(Result::is_ok));
        }
        let counts = store.campaign_counts("c").await.expect("counts");
        assert_eq!(
            (counts.accepted, counts.processed, counts.pending),
            (300, 300, 0)
        );

        for bad in [
            &br#"{"campaign_id":"c","bucket":64,"items":[]}"#[..],
            br#"{"campaign_id":"c","items":[]}"#,
            br#"{"campaign_id":"c","bucket":1,"items":[{"id":"01JE0000000000000000000000","status":"SENT"}]}"#,
            b"not json",
        ] {
            assert!(tally.decode(&Record::new("k", bad)).is_err(), "{bad:?}");
        }
    }
}
