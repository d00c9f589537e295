//! What became of a campaign's items, as the pipeline reports it (Postino's extension).
//!
//! Every stage that moves a campaign's message on reports the change as an
//! [`ItemProgress`] (a partial one: only what that stage learned) in a [`ProgressRecord`]
//! on `campaign-progress`. One tally merges them into each item's state and keeps the
//! campaign's [`CampaignCounts`]. A state only moves forward ([`ItemProgress::merge`]), so
//! a change reported twice, or late, changes nothing, and the counts stay exact.

use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::status::{Channel, ChannelOutcome, RejectionReason, SkipReason};

/// How many parts a campaign's items are kept in: each part is one store partition (a
/// 10M campaign puts about 156k small rows in each) with its own counts, and one writer.
pub const BUCKETS: u16 = 64;

/// The part of its campaign an item is kept in. Item ids of one call differ in their
/// low bits ([`crate::campaign::item_id`]), so a call's items spread over every part.
pub fn bucket_of(id: Ulid) -> u16 {
    (id.random() % u128::from(BUCKETS)) as u16
}

/// Where a campaign's message stands in the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemStatus {
    /// In the log, not yet routed.
    Accepted,
    /// In the citizen's inbox.
    Processed,
    /// Not delivered, for this reason (the sender's cancel included).
    Rejected(RejectionReason),
    /// Could not be processed; no notification goes.
    Failed,
}

impl ItemStatus {
    fn rank(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Processed | Self::Rejected(_) | Self::Failed => 1,
        }
    }

    /// How the item listing's `status` names it.
    pub fn filter(self) -> StatusFilter {
        match self {
            Self::Accepted => StatusFilter::Pending,
            Self::Processed => StatusFilter::Processed,
            Self::Rejected(_) => StatusFilter::Rejected,
            Self::Failed => StatusFilter::Failed,
        }
    }
}

/// Stored and sent as one word: `ACCEPTED`, `PROCESSED`, `FAILED`, `REJECTED:<reason>`.
impl std::fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Accepted => f.write_str("ACCEPTED"),
            Self::Processed => f.write_str("PROCESSED"),
            Self::Failed => f.write_str("FAILED"),
            Self::Rejected(reason) => write!(f, "REJECTED:{}", reason.as_str()),
        }
    }
}

impl std::str::FromStr for ItemStatus {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ACCEPTED" => Ok(Self::Accepted),
            "PROCESSED" => Ok(Self::Processed),
            "FAILED" => Ok(Self::Failed),
            _ => text
                .strip_prefix("REJECTED:")
                .and_then(RejectionReason::parse)
                .map(Self::Rejected)
                .ok_or_else(|| format!("not an item status: {text:?}")),
        }
    }
}

/// Where one notification channel of a campaign's message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelProgress {
    /// Chosen by the router, not sent yet.
    Planned,
    /// What it came to (or why it was not used).
    Outcome(ChannelOutcome),
}

impl ChannelProgress {
    /// A planned channel is retried (throttled), then skipped (a cancel), expires, fails or
    /// goes; reaching any device beats every failure, as for the message's own status.
    fn rank(self) -> u8 {
        use crate::status::ChannelStatus::*;
        match self {
            Self::Planned => 0,
            Self::Outcome(ChannelOutcome::Used(Throttled)) => 1,
            Self::Outcome(ChannelOutcome::Skipped(_)) => 2,
            Self::Outcome(ChannelOutcome::Used(Expired)) => 3,
            Self::Outcome(ChannelOutcome::Used(Failed)) => 4,
            Self::Outcome(ChannelOutcome::Used(Sent)) => 5,
        }
    }
}

impl From<crate::status::ChannelStatus> for ChannelProgress {
    fn from(status: crate::status::ChannelStatus) -> Self {
        Self::Outcome(status.into())
    }
}

impl From<ChannelOutcome> for ChannelProgress {
    fn from(outcome: ChannelOutcome) -> Self {
        Self::Outcome(outcome)
    }
}

/// `PLANNED`, or the outcome's own word (`SENT`, `SKIPPED:no_device`).
impl std::fmt::Display for ChannelProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Planned => f.write_str("PLANNED"),
            Self::Outcome(outcome) => outcome.fmt(f),
        }
    }
}

impl std::str::FromStr for ChannelProgress {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "PLANNED" => Ok(Self::Planned),
            _ => text.parse().map(Self::Outcome),
        }
    }
}

/// Serde through `Display`/`FromStr`: the one word they read and write.
macro_rules! serde_as_word {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_word!(ItemStatus);
serde_as_word!(ChannelProgress);

/// One item's state, or (on the log) what one stage learned about it: only the fields it
/// knows are set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ItemStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push: Option<ChannelProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<ChannelProgress>,
}

impl ItemProgress {
    pub fn status(status: ItemStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    pub fn channel(channel: Channel, progress: impl Into<ChannelProgress>) -> Self {
        let progress = Some(progress.into());
        match channel {
            Channel::Push => Self {
                push: progress,
                ..Self::default()
            },
            Channel::Email => Self {
                email: progress,
                ..Self::default()
            },
        }
    }

    /// Takes from `change` each field that ranks higher than what is here; true if
    /// anything changed.
    pub fn merge(&mut self, change: &ItemProgress) -> bool {
        fn take<T: Copy + PartialEq>(
            here: &mut Option<T>,
            there: Option<T>,
            rank: fn(T) -> u8,
        ) -> bool {
            match (*here, there) {
                (_, None) => false,
                (Some(now), Some(new)) if rank(now) >= rank(new) => false,
                (_, new) => {
                    *here = new;
                    true
                }
            }
        }
        let status = take(&mut self.status, change.status, ItemStatus::rank);
        let push = take(&mut self.push, change.push, ChannelProgress::rank);
        let email = take(&mut self.email, change.email, ChannelProgress::rank);
        status || push || email
    }
}

/// The skip reasons, in the order of their codes ([`ItemProgress::code`]); new ones go at
/// the end.
const SKIP_REASONS: [SkipReason; 8] = [
    SkipReason::BlockedForService,
    SkipReason::DisabledInProfile,
    SkipReason::NoValidatedEmail,
    SkipReason::SecureChannelRequired,
    SkipReason::NoDevice,
    SkipReason::NoPushProvider,
    SkipReason::CampaignCancelled,
    SkipReason::NotRecorded,
];

fn status_code(status: Option<ItemStatus>) -> i64 {
    match status {
        None => 0,
        Some(ItemStatus::Accepted) => 1,
        Some(ItemStatus::Processed) => 2,
        Some(ItemStatus::Failed) => 3,
        Some(ItemStatus::Rejected(RejectionReason::UserNotFound)) => 4,
        Some(ItemStatus::Rejected(RejectionReason::ServiceNotAllowed)) => 5,
        Some(ItemStatus::Rejected(RejectionReason::CancelledBySender)) => 6,
    }
}

fn status_of(code: i64) -> Option<Option<ItemStatus>> {
    Some(match code {
        0 => None,
        1 => Some(ItemStatus::Accepted),
        2 => Some(ItemStatus::Processed),
        3 => Some(ItemStatus::Failed),
        4 => Some(ItemStatus::Rejected(RejectionReason::UserNotFound)),
        5 => Some(ItemStatus::Rejected(RejectionReason::ServiceNotAllowed)),
        6 => Some(ItemStatus::Rejected(RejectionReason::CancelledBySender)),
        _ => return None,
    })
}

fn channel_code(progress: Option<ChannelProgress>) -> i64 {
    use crate::status::ChannelStatus::*;
    match progress {
        None => 0,
        Some(ChannelProgress::Planned) => 1,
        Some(ChannelProgress::Outcome(ChannelOutcome::Used(Throttled))) => 2,
        Some(ChannelProgress::Outcome(ChannelOutcome::Used(Sent))) => 3,
        Some(ChannelProgress::Outcome(ChannelOutcome::Used(Failed))) => 4,
        Some(ChannelProgress::Outcome(ChannelOutcome::Used(Expired))) => 5,
        Some(ChannelProgress::Outcome(ChannelOutcome::Skipped(reason))) => {
            16 + SKIP_REASONS.iter().position(|r| *r == reason).unwrap_or(7) as i64
        }
    }
}

fn channel_of(code: i64) -> Option<Option<ChannelProgress>> {
    use crate::status::ChannelStatus::*;
    let used = |status| Some(Some(ChannelProgress::Outcome(ChannelOutcome::Used(status))));
    match code {
        0 => Some(None),
        1 => Some(Some(ChannelProgress::Planned)),
        2 => used(Throttled),
        3 => used(Sent),
        4 => used(Failed),
        5 => used(Expired),
        16.. => SKIP_REASONS
            .get(usize::try_from(code - 16).ok()?)
            .map(|reason| Some(ChannelProgress::Outcome(ChannelOutcome::Skipped(*reason)))),
        _ => None,
    }
}

impl ItemProgress {
    /// One number for the whole state, for a store to keep in an integer column:
    /// status, push and email codes a byte each.
    pub fn code(&self) -> i64 {
        status_code(self.status) << 16 | channel_code(self.push) << 8 | channel_code(self.email)
    }

    /// The state [`Self::code`] made; `None` for a number it never makes.
    pub fn from_code(code: i64) -> Option<Self> {
        if !(0..1 << 24).contains(&code) {
            return None;
        }
        Some(Self {
            status: status_of(code >> 16)?,
            push: channel_of((code >> 8) & 0xff)?,
            email: channel_of(code & 0xff)?,
        })
    }
}

/// What stages learned about some items of one campaign's part (a record on
/// `campaign-progress`, keyed by campaign and part so that one consumer writes each part).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressRecord {
    pub campaign_id: String,
    pub bucket: u16,
    pub items: Vec<ItemUpdate>,
}

impl ProgressRecord {
    /// Its key on the log.
    pub fn key(&self) -> String {
        format!("{}/{}", self.campaign_id, self.bucket)
    }
}

/// What a stage learned about one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemUpdate {
    pub id: Ulid,
    #[serde(flatten)]
    pub progress: ItemProgress,
}

/// A campaign's items by where they stand, as `GET /api/v1/campaigns/{id}` shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CampaignCounts {
    /// Items in the log: every item the campaign accepted, whatever became of it.
    pub accepted: i64,
    /// Accepted, not yet routed.
    pub pending: i64,
    /// In their citizen's inbox.
    pub processed: i64,
    pub rejected: RejectedCounts,
    /// Could not be processed.
    pub failed: i64,
    pub push: ChannelCounts,
    pub email: ChannelCounts,
}

/// Rejected items by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RejectedCounts {
    /// No profile, or the citizen's inbox is off.
    pub user_not_found: i64,
    /// The citizen blocked the service.
    pub service_not_allowed: i64,
    /// The sender cancelled them before they were routed.
    pub cancelled: i64,
}

/// One channel's notifications of a campaign, by where they stand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChannelCounts {
    /// Chosen, not sent yet.
    pub pending: i64,
    /// Failed for now, being retried.
    pub throttled: i64,
    pub sent: i64,
    pub failed: i64,
    /// The message's `time_to_live` ran out first.
    pub expired: i64,
    /// Not used: the citizen's choice, no device, no address.
    pub skipped: i64,
    /// Not sent because the sender cancelled the campaign.
    pub cancelled: i64,
}

impl ChannelCounts {
    fn add(&mut self, progress: Option<ChannelProgress>, by: i64) {
        use crate::status::ChannelStatus::*;
        let slot = match progress {
            None => return,
            Some(ChannelProgress::Planned) => &mut self.pending,
            Some(ChannelProgress::Outcome(outcome)) => match outcome {
                ChannelOutcome::Used(Throttled) => &mut self.throttled,
                ChannelOutcome::Used(Sent) => &mut self.sent,
                ChannelOutcome::Used(Failed) => &mut self.failed,
                ChannelOutcome::Used(Expired) => &mut self.expired,
                ChannelOutcome::Skipped(SkipReason::CampaignCancelled) => &mut self.cancelled,
                ChannelOutcome::Skipped(_) => &mut self.skipped,
            },
        };
        *slot += by;
    }

    fn sum(&mut self, other: &Self) {
        self.pending += other.pending;
        self.throttled += other.throttled;
        self.sent += other.sent;
        self.failed += other.failed;
        self.expired += other.expired;
        self.skipped += other.skipped;
        self.cancelled += other.cancelled;
    }
}

impl CampaignCounts {
    /// Counts `item` in (`by` 1) or out (`by` -1).
    fn add(&mut self, item: &ItemProgress, by: i64) {
        self.accepted += by;
        match item.status {
            // Known only from a later stage's report so far: in the log, so accepted.
            None | Some(ItemStatus::Accepted) => self.pending += by,
            Some(ItemStatus::Processed) => self.processed += by,
            Some(ItemStatus::Failed) => self.failed += by,
            Some(ItemStatus::Rejected(reason)) => match reason {
                RejectionReason::UserNotFound => self.rejected.user_not_found += by,
                RejectionReason::ServiceNotAllowed => self.rejected.service_not_allowed += by,
                RejectionReason::CancelledBySender => self.rejected.cancelled += by,
            },
        }
        self.push.add(item.push, by);
        self.email.add(item.email, by);
    }

    /// Applies `change` to the item whose state is `item` (`None`: not seen yet), keeping
    /// the counts; the item's new state when it changed.
    pub fn apply(
        &mut self,
        item: Option<ItemProgress>,
        change: &ItemProgress,
    ) -> Option<ItemProgress> {
        let mut next = item.unwrap_or_default();
        if !next.merge(change) && item.is_some() {
            return None;
        }
        if let Some(before) = &item {
            self.add(before, -1);
        }
        self.add(&next, 1);
        Some(next)
    }

    /// These counts (of the items the pipeline reported) with `accepted` the items in the
    /// log (the campaign's chunks): those not reported yet are pending. Never fewer than
    /// the items reported (a chunk not recorded yet).
    pub fn with_accepted(mut self, accepted: i64) -> Self {
        let settled = self.processed
            + self.rejected.user_not_found
            + self.rejected.service_not_allowed
            + self.rejected.cancelled
            + self.failed;
        self.accepted = self.accepted.max(accepted);
        self.pending = self.accepted - settled;
        self
    }

    /// Adds another part's counts.
    pub fn sum(&mut self, other: &Self) {
        self.accepted += other.accepted;
        self.pending += other.pending;
        self.processed += other.processed;
        self.rejected.user_not_found += other.rejected.user_not_found;
        self.rejected.service_not_allowed += other.rejected.service_not_allowed;
        self.rejected.cancelled += other.rejected.cancelled;
        self.failed += other.failed;
        self.push.sum(&other.push);
        self.email.sum(&other.email);
    }
}

/// Which items the listing shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFilter {
    Pending,
    Processed,
    Rejected,
    Failed,
}

impl StatusFilter {
    pub fn matches(self, item: &ItemProgress) -> bool {
        item.status.unwrap_or(ItemStatus::Accepted).filter() == self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ChannelStatus;

    fn processed() -> ItemProgress {
        ItemProgress::status(ItemStatus::Processed)
    }

    #[test]
    fn an_item_only_moves_forward_and_counts_follow_it() {
        let mut counts = CampaignCounts::default();
        let accepted = ItemProgress::status(ItemStatus::Accepted);
        let item = counts.apply(None, &accepted).expect("new item");
        assert_eq!((counts.accepted, counts.pending), (1, 1));
        let item = counts.apply(Some(item), &processed()).expect("routed");
        let planned = ItemProgress::channel(Channel::Push, ChannelProgress::Planned);
        let item = counts.apply(Some(item), &planned).expect("planned");
        assert_eq!(counts.push.pending, 1);
        // A late ACCEPTED, or the same report again, changes nothing.
        assert_eq!(counts.apply(Some(item), &accepted), None);
        assert_eq!(counts.apply(Some(item), &planned), None);
        let sent = ItemProgress::channel(Channel::Push, ChannelOutcome::Used(ChannelStatus::Sent));
        let item = counts.apply(Some(item), &sent).expect("sent");
        let failed =
            ItemProgress::channel(Channel::Push, ChannelOutcome::Used(ChannelStatus::Failed));
        assert_eq!(
            counts.apply(Some(item), &failed),
            None,
            "one device reached wins"
        );
        assert_eq!(
            (counts.accepted, counts.pending, counts.processed),
            (1, 0, 1)
        );
        assert_eq!((counts.push.pending, counts.push.sent), (0, 1));
    }

    #[test]
    fn a_report_that_comes_before_the_acceptance_still_counts_the_item_once() {
        let mut counts = CampaignCounts::default();
        let item = counts.apply(None, &processed()).expect("new");
        assert_eq!(
            counts.apply(Some(item), &ItemProgress::status(ItemStatus::Accepted)),
            None
        );
        assert_eq!((counts.accepted, counts.processed), (1, 1));
    }

    #[test]
    fn states_read_back_as_written_and_nonsense_is_refused() {
        let item = ItemProgress {
            status: Some(ItemStatus::Rejected(RejectionReason::CancelledBySender)),
            push: Some(ChannelProgress::Planned),
            email: Some(ChannelOutcome::Skipped(SkipReason::NoValidatedEmail).into()),
        };
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(
            json,
            r#"{"status":"REJECTED:CANCELLED_BY_SENDER","push":"PLANNED","email":"SKIPPED:no_validated_email"}"#
        );
        assert_eq!(serde_json::from_str::<ItemProgress>(&json).unwrap(), item);
        for bad in [
            r#"{"status":"REJECTED:"}"#,
            r#"{"status":"DONE"}"#,
            r#"{"push":"LATER"}"#,
            r#"{"status":3}"#,
        ] {
            assert!(serde_json::from_str::<ItemProgress>(bad).is_err(), "{bad}");
        }
        let record: ProgressRecord = serde_json::from_str(
            r#"{"campaign_id":"c","bucket":3,"items":[{"id":"01JDZZZZZZZZZZZZZZZZZZZZZZ","status":"ACCEPTED"}]}"#,
        )
        .unwrap();
        assert_eq!(record.key(), "c/3");
        assert!(serde_json::from_str::<ProgressRecord>(
            r#"{"campaign_id":"c","bucket":3,"items":[{"id":"nope"}]}"#
        )
        .is_err());
    }

    #[test]
    fn every_state_reads_back_from_its_code_and_other_numbers_are_refused() {
        use crate::status::ChannelStatus::*;
        let statuses = [
            None,
            Some(ItemStatus::Accepted),
            Some(ItemStatus::Processed),
            Some(ItemStatus::Failed),
            Some(ItemStatus::Rejected(RejectionReason::UserNotFound)),
            Some(ItemStatus::Rejected(RejectionReason::ServiceNotAllowed)),
            Some(ItemStatus::Rejected(RejectionReason::CancelledBySender)),
        ];
        let mut channels: Vec<Option<ChannelProgress>> = vec![None, Some(ChannelProgress::Planned)];
        channels.extend(
            [Throttled, Sent, Failed, Expired]
                .map(|s| Some(ChannelProgress::Outcome(ChannelOutcome::Used(s)))),
        );
        channels.extend(
            SKIP_REASONS.map(|r| Some(ChannelProgress::Outcome(ChannelOutcome::Skipped(r)))),
        );
        let mut codes = std::collections::HashSet::new();
        for status in statuses {
            for push in &channels {
                let item = ItemProgress {
                    status,
                    push: *push,
                    email: channels[3],
                };
                assert_eq!(ItemProgress::from_code(item.code()), Some(item));
                assert!(codes.insert(item.code()));
            }
        }
        for bad in [-1, 7 << 16, 6 << 8, 24 + 16, 1 << 24] {
            assert_eq!(ItemProgress::from_code(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_campaigns_items_spread_over_every_bucket() {
        let call = Ulid::new();
        let buckets: std::collections::HashSet<_> = (0..1000)
            .map(|i| bucket_of(crate::campaign::item_id(call, i)))
            .collect();
        assert_eq!(buckets.len(), usize::from(BUCKETS));
    }

    #[test]
    fn the_filter_reads_an_item_not_yet_seen_as_pending() {
        assert!(StatusFilter::Pending.matches(&ItemProgress::default()));
        assert!(
            StatusFilter::Rejected.matches(&ItemProgress::status(ItemStatus::Rejected(
                RejectionReason::UserNotFound
            )))
        );
        assert!(!StatusFilter::Processed.matches(&ItemProgress::default()));
    }
}
