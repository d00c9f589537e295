//! What every stage shares about campaigns (Postino's extension, ARCHITECTURE.md §8):
//! - [`progress::Progress`]: what a stage learned about campaigns' items, reported on
//!   `campaign-progress` after the stage's own write;
//! - [`cancel::Cancellations`]: whether a message's campaign was cancelled, asked before
//!   routing or notifying it;
//! - [`tally::TallyStage`]: the consumer of `campaign-progress` that keeps each item's
//!   state and each campaign's counts in the store;
//! - [`schedule`]: records that wait for their time (scheduled campaigns' items, pushes
//!   held over quiet hours), kept in the store and released when due.

pub mod cancel;
pub mod progress;
pub mod schedule;
pub mod tally;

use std::sync::Arc;

/// What a stage needs to take part in campaigns: the cancel check, and the log its
/// progress reports go on.
#[derive(Debug, Clone)]
pub struct CampaignHooks {
    pub cancellations: cancel::Cancellations,
    pub bus: Arc<dyn bus::Bus>,
}

impl CampaignHooks {
    pub fn new(store: Arc<dyn store::Store>, bus: Arc<dyn bus::Bus>) -> Self {
        Self {
            cancellations: cancel::Cancellations::new(store),
            bus,
        }
    }
}
