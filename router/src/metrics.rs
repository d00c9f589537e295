//! The router's series: what it decided for each channel, why it rejected messages, and how
//! its profile cache does.

use std::collections::BTreeMap;

use model::channels::{ChannelChoice, ChannelPlan};
use model::status::RejectionReason;
use telemetry::metrics::{counter, gauge};
use telemetry::Metric;

pub const DECISIONS: Metric = Metric::counter(
    "postino_router_decisions_total",
    "Channel decisions for messages routed to the inbox, by channel (push, email) and outcome (send, or the skip reason such as disabled_in_profile or no_validated_email).",
    &["channel", "outcome"],
);
pub const REJECTIONS: Metric = Metric::counter(
    "postino_router_rejections_total",
    "Messages rejected by the router (status REJECTED), by reason (user_not_found, service_not_allowed, cancelled_by_sender: its campaign was cancelled).",
    &["reason"],
);
pub const CACHE_HITS: Metric = Metric::counter(
    "postino_router_profile_cache_hits_total",
    "Routing reads answered from the profile cache.",
    &[],
);
pub const CACHE_MISSES: Metric = Metric::counter(
    "postino_router_profile_cache_misses_total",
    "Routing reads that went to the store (not cached, or the cache off or not fresh).",
    &[],
);
pub const CACHE_EVICTIONS: Metric = Metric::counter(
    "postino_router_profile_cache_evictions_total",
    "Citizens dropped from the profile cache to stay within its size or time to live (not counting invalidations by changes).",
    &[],
);
pub const CACHE_ENTRIES: Metric = Metric::gauge(
    "postino_router_profile_cache_entries",
    "Citizens held in the profile cache.",
    &[],
);
pub const CACHE_SIZE: Metric = Metric::gauge(
    "postino_router_profile_cache_size_bytes",
    "Estimated memory the profile cache holds (bounded by router.cache_max_mb).",
    &[],
);

pub const ALL: &[Metric] = &[
    DECISIONS,
    REJECTIONS,
    CACHE_HITS,
    CACHE_MISSES,
    CACHE_EVICTIONS,
    CACHE_ENTRIES,
    CACHE_SIZE,
];

/// What a batch decided, counted in memory and recorded once per label set, so a batch of
/// 512 messages costs a handful of recorder lookups, not a thousand.
#[derive(Debug, Default)]
pub(crate) struct Decisions {
    planned: BTreeMap<(&'static str, &'static str), u64>,
    rejected: BTreeMap<&'static str, u64>,
}

impl Decisions {
    /// A message goes on to the inbox with this plan.
    pub(crate) fn planned(&mut self, plan: &ChannelPlan) {
        for (channel, choice) in [("push", &plan.push), ("email", &plan.email)] {
            let outcome = match choice {
                ChannelChoice::Send => "send",
                ChannelChoice::Skip(reason) => reason.as_str(),
            };
            *self.planned.entry((channel, outcome)).or_default() += 1;
        }
    }

    /// A message was rejected.
    pub(crate) fn rejected(&mut self, reason: RejectionReason) {
        *self.rejected.entry(reason.label()).or_default() += 1;
    }

    /// Records the batch's counts.
    pub(crate) fn emit(self) {
        for ((channel, outcome), n) in self.planned {
            counter!(DECISIONS.name, "channel" => channel, "outcome" => outcome).increment(n);
        }
        for (reason, n) in self.rejected {
            counter!(REJECTIONS.name, "reason" => reason).increment(n);
        }
    }
}

/// A batch's routing reads: how many the cache answered and how many went to the store.
pub(crate) fn cache_reads(hits: usize, misses: usize) {
    counter!(CACHE_HITS.name).increment(hits as u64);
    counter!(CACHE_MISSES.name).increment(misses as u64);
}

/// A cache was built: its series start at zero.
pub(crate) fn cache_built() {
    counter!(CACHE_EVICTIONS.name).absolute(0);
    cache_usage(0, 0);
}

/// Citizens the cache dropped for size or age.
pub(crate) fn cache_evicted() {
    counter!(CACHE_EVICTIONS.name).increment(1);
}

/// What the cache holds now.
pub(crate) fn cache_usage(entries: u64, bytes: u64) {
    gauge!(CACHE_ENTRIES.name).set(entries as f64);
    gauge!(CACHE_SIZE.name).set(bytes as f64);
}
