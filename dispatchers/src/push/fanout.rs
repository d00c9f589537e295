//! Push fan-out: which devices a batch of routed messages goes to, as one push job per
//! device a configured provider reaches. The inbox stage asks it once per batch (one store
//! read for the whole batch) and publishes the jobs after its inbox write.

use std::sync::Arc;

use model::channels::{ChannelChoice, SkipReason};
use model::pipeline::DeliveryPlan;
use model::push::PushJob;
use store::{Store, StoreError};

use super::PushPlatforms;

/// What push makes of one plan.
#[derive(Debug, Clone, PartialEq)]
pub enum PushFanOut {
    /// The plan does not push (the citizen's or the service's choice, recorded elsewhere).
    NotChosen,
    /// Pushing was chosen but nothing can be pushed to, for this reason.
    Skipped(SkipReason),
    /// One job per reachable device.
    Jobs(Vec<PushJob>),
}

/// Finds the devices of a batch's citizens.
#[derive(Debug, Clone)]
pub struct PushTargets {
    store: Arc<dyn Store>,
    platforms: PushPlatforms,
}

impl PushTargets {
    /// `platforms` are those with a push provider: a device on any other gets no job (it
    /// could only fail), and the message says why.
    pub fn new(store: Arc<dyn Store>, platforms: PushPlatforms) -> Self {
        Self { store, platforms }
    }

    /// The fan-out of each plan, in order. No store trip when nobody in the batch is to be
    /// pushed to, or no provider is configured at all.
    pub async fn fan_out(&self, plans: &[&DeliveryPlan]) -> Result<Vec<PushFanOut>, StoreError> {
        let chosen = |plan: &DeliveryPlan| plan.channels.push == ChannelChoice::Send;
        let looked_up = |plan: &DeliveryPlan| self.platforms.any() && chosen(plan);
        let citizens: Vec<_> = plans
            .iter()
            .filter(|plan| looked_up(plan))
            .map(|plan| plan.message.fiscal_code.clone())
            .collect();
        let devices = if citizens.is_empty() {
            Vec::new()
        } else {
            self.store.installations_of(&citizens).await?
        };
        // `devices` follows the looked-up plans in order.
        let mut devices = devices.iter();
        Ok(plans
            .iter()
            .map(|plan| {
                if !chosen(plan) {
                    return PushFanOut::NotChosen;
                }
                if !looked_up(plan) {
                    return PushFanOut::Skipped(SkipReason::NoPushProvider);
                }
                let found = devices.next().map(Vec::as_slice).unwrap_or_default();
                let reachable = found.iter().filter(|d| self.platforms.serves(d.platform));
                match PushJob::for_plan(plan, reachable) {
                    jobs if !jobs.is_empty() => PushFanOut::Jobs(jobs),
                    _ if found.is_empty() => PushFanOut::Skipped(SkipReason::NoDevice),
                    // Devices, but no provider for any of their platforms.
                    _ => PushFanOut::Skipped(SkipReason::NoPushProvider),
                }
            })
            .collect())
    }
}
