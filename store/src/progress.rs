//! The one rule every store follows to record a campaign's progress: combine each item's
//! reported changes ([`combine`]), merge them into its stored state, and move the part's
//! counts by what actually changed ([`model::progress::CampaignCounts::apply`]).

use std::collections::HashMap;

use model::progress::{CampaignCounts, ItemProgress, ItemUpdate};
use ulid::Ulid;

use crate::codec::from_json;
use crate::{CampaignItem, StoreError};

/// Each distinct id `updates` name, with all of its updates merged into one (merging is
/// taking each field's highest rank, so one merge of the combination is the same as the
/// updates merged one by one).
pub fn combine(updates: &[ItemUpdate]) -> Vec<(Ulid, ItemProgress)> {
    let mut combined: HashMap<Ulid, ItemProgress> = HashMap::new();
    for update in updates {
        combined
            .entry(update.id)
            .or_default()
            .merge(&update.progress);
    }
    combined.into_iter().collect()
}

/// A part's stored counts (none yet: all zero).
pub(crate) fn counts_of(stored: Option<&str>) -> Result<CampaignCounts, StoreError> {
    stored.map_or(Ok(CampaignCounts::default()), from_json)
}

/// A campaign's counts from its parts' stored counts.
pub(crate) fn sum_parts(
    parts: impl IntoIterator<Item = String>,
) -> Result<CampaignCounts, StoreError> {
    let mut total = CampaignCounts::default();
    for part in parts {
        total.sum(&from_json(&part)?);
    }
    Ok(total)
}

/// An item's id and state as stored.
#[cfg(feature = "scylla")]
pub(crate) fn state_of(id: &str, state: &str) -> Result<(Ulid, ItemProgress), StoreError> {
    let id = id
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("campaign item id {id:?}")))?;
    Ok((id, from_json(state)?))
}

/// An item stored as a number ([`ItemProgress::code`]) in part `bucket`.
pub(crate) fn coded_item(bucket: u16, id: &str, code: i64) -> Result<CampaignItem, StoreError> {
    let corrupt = || StoreError::Corrupt(format!("campaign item {id:?}: state {code}"));
    Ok(CampaignItem {
        bucket,
        id: id.parse().map_err(|_| corrupt())?,
        progress: ItemProgress::from_code(code).ok_or_else(corrupt)?,
    })
}

/// An item as stored in part `bucket`.
#[cfg(feature = "scylla")]
pub(crate) fn item_of(bucket: u16, id: &str, state: &str) -> Result<CampaignItem, StoreError> {
    let (id, progress) = state_of(id, state)?;
    Ok(CampaignItem {
        bucket,
        id,
        progress,
    })
}
