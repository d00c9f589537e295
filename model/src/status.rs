//! Where a message stands in the pipeline (IO `MessageStatusValue`) and what each
//! notification channel did with it (IO `NotificationChannelStatusValue`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum MessageStatus {
    Accepted,
    Throttled,
    Processed,
    Rejected,
    Failed,
}

impl MessageStatus {
    /// Statuses only move forward: a write of a lower rank never replaces a higher one, so
    /// stages that write out of order (a redelivered record, a slow ingest replica) cannot
    /// send a message back to an earlier state.
    pub fn rank(self) -> u8 {
        match self {
            Self::Accepted => 0,
            Self::Throttled => 1,
            Self::Processed | Self::Rejected | Self::Failed => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Throttled => "THROTTLED",
            Self::Processed => "PROCESSED",
            Self::Rejected => "REJECTED",
            Self::Failed => "FAILED",
        }
    }
}

/// IO `RejectionReason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RejectionReason {
    UserNotFound,
    ServiceNotAllowed,
}

/// IO `NotificationChannelStatusValue`, plus `SKIPPED` (Postino's: the citizen's
/// preferences or the service's rules excluded the channel, so nothing was attempted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelStatus {
    Sent,
    Throttled,
    Expired,
    Failed,
    Skipped,
}

impl ChannelStatus {
    /// Which outcome wins when a channel reports several for one message (one per device):
    /// reaching any device beats every failure, and a failure beats having expired.
    pub fn rank(self) -> u8 {
        match self {
            Self::Skipped => 0,
            Self::Throttled => 1,
            Self::Expired => 2,
            Self::Failed => 3,
            Self::Sent => 4,
        }
    }
}

/// A notification channel whose outcome a message records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    /// Push (IO calls it `webhook`).
    Webhook,
}

/// Per-channel outcome as IO reports it (`webhook` is IO's name for push).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotificationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<ChannelStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ChannelStatus>,
}

impl NotificationStatus {
    /// Records `status` for `channel` unless a higher-ranked outcome is there; true if it
    /// changed.
    pub fn record(&mut self, channel: Channel, status: ChannelStatus) -> bool {
        let slot = match channel {
            Channel::Email => &mut self.email,
            Channel::Webhook => &mut self.webhook,
        };
        if slot.is_some_and(|current| current.rank() >= status.rank()) {
            return false;
        }
        *slot = Some(status);
        true
    }
}
