//! Whether a campaign was cancelled, as the router and the dispatchers ask it for each
//! campaign message before they route or notify it.

use std::sync::Arc;
use std::time::Duration;

use store::{Store, StoreError};

/// How long an answer is reused: a cancel takes effect within this long everywhere.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Campaigns' cancel state, read through a small cache: a batch of a thousand messages of
/// one campaign costs one store read at most every [`FRESH_FOR`].
#[derive(Clone)]
pub struct Cancellations {
    store: Arc<dyn Store>,
    cancelled: moka::sync::Cache<String, bool>,
}

impl std::fmt::Debug for Cancellations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancellations").finish_non_exhaustive()
    }
}

impl Cancellations {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self::with_freshness(store, FRESH_FOR)
    }

    /// Answers reused for `fresh_for` (tests use zero: every question reads the store).
    pub fn with_freshness(store: Arc<dyn Store>, fresh_for: Duration) -> Self {
        Self {
            store,
            // Campaigns in flight at once are few; the bound only keeps a mistake small.
            cancelled: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(fresh_for)
                .build(),
        }
    }

    /// Whether the campaign `id` (none: a one-off message) was cancelled. A campaign the
    /// store does not hold is not cancelled.
    pub async fn is_cancelled(&self, id: Option<&str>) -> Result<bool, StoreError> {
        let Some(id) = id else {
            return Ok(false);
        };
        if let Some(known) = self.cancelled.get(id) {
            return Ok(known);
        }
        let cancelled = self
            .store
            .get_campaign(id)
            .await?
            .is_some_and(|campaign| campaign.cancelled_at.is_some());
        self.cancelled.insert(id.to_string(), cancelled);
        Ok(cancelled)
    }

    /// The campaigns among `ids` that were cancelled, each asked once.
    pub async fn cancelled_among<'a>(
        &self,
        ids: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut asked = std::collections::HashSet::new();
        let mut cancelled = std::collections::HashSet::new();
        for id in ids.into_iter().flatten() {
            if asked.insert(id) && self.is_cancelled(Some(id)).await? {
                cancelled.insert(id.to_string());
            }
        }
        Ok(cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::campaign::Campaign;
    use store::sqlite::SqliteStore;

    #[tokio::test]
    async fn only_a_stored_cancelled_campaign_is_cancelled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
        let mut campaign = Campaign {
            id: "c".into(),
            service_id: "svc".into(),
            name: "Bollo".into(),
            created_at: model::timestamp::Timestamp::now(),
            cancelled_at: None,
            schedule: None,
        };
        store.put_campaign(&campaign).await.expect("put");
        let fresh = Cancellations::with_freshness(Arc::clone(&store), Duration::ZERO);
        let cached = Cancellations::with_freshness(Arc::clone(&store), Duration::from_secs(3600));
        for asked in [&fresh, &cached] {
            assert!(!asked.is_cancelled(Some("c")).await.expect("ask"));
        }
        campaign.cancelled_at = Some(model::timestamp::Timestamp::now());
        store.put_campaign(&campaign).await.expect("cancel");
        assert!(fresh.is_cancelled(Some("c")).await.expect("ask"));
        // An answer is reused for as long as it is fresh: that is the cancel's delay.
        assert!(!cached.is_cancelled(Some("c")).await.expect("ask"));
        assert!(!fresh.is_cancelled(Some("unknown")).await.expect("ask"));
        assert!(!fresh.is_cancelled(None).await.expect("ask"));
        let among = fresh
            .cancelled_among([Some("c"), None, Some("unknown"), Some("c")])
            .await
            .expect("ask");
        assert_eq!(among.into_iter().collect::<Vec<_>>(), ["c"]);
    }
}
