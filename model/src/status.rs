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
    /// Postino's extension (IO's enum is extensible): the message belonged to a campaign
    /// its sender cancelled before it was routed.
    CancelledBySender,
}

impl RejectionReason {
    /// Its name in lowercase, as metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            Self::UserNotFound => "user_not_found",
            Self::ServiceNotAllowed => "service_not_allowed",
            Self::CancelledBySender => "cancelled_by_sender",
        }
    }

    /// Its serde name (`USER_NOT_FOUND`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserNotFound => "USER_NOT_FOUND",
            Self::ServiceNotAllowed => "SERVICE_NOT_ALLOWED",
            Self::CancelledBySender => "CANCELLED_BY_SENDER",
        }
    }

    /// From its serde name.
    pub fn parse(text: &str) -> Option<Self> {
        parse_name(text)
    }
}

/// IO `NotificationChannelStatusValue`: what happened on a channel Postino used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ChannelStatus {
    /// Handed to the provider (a device reached, the relay took the email).
    Sent,
    /// A temporary failure: the notification is being retried.
    Throttled,
    /// The message's `time_to_live` ran out before the notification could go.
    Expired,
    /// A permanent failure: no notification goes on this channel.
    Failed,
}

impl ChannelStatus {
    /// The name IO gives it (its serde name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sent => "SENT",
            Self::Throttled => "THROTTLED",
            Self::Expired => "EXPIRED",
            Self::Failed => "FAILED",
        }
    }
}

/// Why Postino did not use a channel for a message: a choice or a lack, not a failure.
/// Postino's own detail (IO simply leaves such a channel out of `notification`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The citizen blocked this channel for the sending service.
    BlockedForService,
    /// The citizen turned this channel off in the profile.
    DisabledInProfile,
    /// No email address, or one not validated.
    NoValidatedEmail,
    /// The service or the message requires secure channels: no email.
    SecureChannelRequired,
    /// Push allowed, but the citizen has no registered device.
    NoDevice,
    /// Push allowed, but this Postino has no push provider for the citizen's devices.
    NoPushProvider,
    /// The sender cancelled the message's campaign before this notification went.
    CampaignCancelled,
    /// Skipped by a Postino that did not record why (stores written before 2026-11-29).
    NotRecorded,
}

impl SkipReason {
    /// Its serde name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BlockedForService => "blocked_for_service",
            Self::DisabledInProfile => "disabled_in_profile",
            Self::NoValidatedEmail => "no_validated_email",
            Self::SecureChannelRequired => "secure_channel_required",
            Self::NoDevice => "no_device",
            Self::NoPushProvider => "no_push_provider",
            Self::CampaignCancelled => "campaign_cancelled",
            Self::NotRecorded => "not_recorded",
        }
    }
}

/// What a message's channel came to, as Postino records it: IO's status when the channel
/// was used, or why it was not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelOutcome {
    Used(ChannelStatus),
    Skipped(SkipReason),
}

impl ChannelOutcome {
    /// Which outcome wins when a channel reports several for one message (one per device):
    /// reaching any device beats every failure, a failure beats having expired, and any
    /// attempt beats not using the channel.
    pub fn rank(self) -> u8 {
        match self {
            Self::Skipped(_) => 0,
            Self::Used(ChannelStatus::Throttled) => 1,
            Self::Used(ChannelStatus::Expired) => 2,
            Self::Used(ChannelStatus::Failed) => 3,
            Self::Used(ChannelStatus::Sent) => 4,
        }
    }

    /// IO's value, or none for a channel that was not used.
    pub fn status(self) -> Option<ChannelStatus> {
        match self {
            Self::Used(status) => Some(status),
            Self::Skipped(_) => None,
        }
    }

    pub fn skip_reason(self) -> Option<SkipReason> {
        match self {
            Self::Skipped(reason) => Some(reason),
            Self::Used(_) => None,
        }
    }
}

impl From<ChannelStatus> for ChannelOutcome {
    fn from(status: ChannelStatus) -> Self {
        Self::Used(status)
    }
}

/// Stored as one word: IO's status name (`SENT`), or `SKIPPED:<reason>`.
impl std::fmt::Display for ChannelOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Used(status) => f.write_str(status.as_str()),
            Self::Skipped(reason) => write!(f, "SKIPPED:{}", reason.as_str()),
        }
    }
}

impl std::str::FromStr for ChannelOutcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let unreadable = || format!("not a channel outcome: {text:?}");
        match text.split_once(':') {
            Some(("SKIPPED", reason)) => {
                parse_name(reason).map(Self::Skipped).ok_or_else(unreadable)
            }
            Some(_) => Err(unreadable()),
            None if text == "SKIPPED" => Ok(Self::Skipped(SkipReason::NotRecorded)),
            None => parse_name(text).map(Self::Used).ok_or_else(unreadable),
        }
    }
}

impl Serialize for ChannelOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelOutcome {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A unit variant from its serde name (`SENT`, `no_device`).
fn parse_name<T: serde::de::DeserializeOwned>(text: &str) -> Option<T> {
    use serde::de::IntoDeserializer;
    T::deserialize(IntoDeserializer::<serde::de::value::Error>::into_deserializer(text)).ok()
}

/// A notification channel whose outcome a message records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    /// Push notifications; `webhook` on the wire, as IO names it.
    #[serde(rename = "webhook")]
    Push,
}

/// What each notification channel came to for one message, as Postino records it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<ChannelOutcome>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ChannelOutcome>,
}

impl NotificationStatus {
    /// Records `outcome` for `channel` unless a higher-ranked one is there; true if it
    /// changed.
    pub fn record(&mut self, channel: Channel, outcome: impl Into<ChannelOutcome>) -> bool {
        let outcome = outcome.into();
        let slot = match channel {
            Channel::Email => &mut self.email,
            Channel::Push => &mut self.webhook,
        };
        if slot.is_some_and(|current| current.rank() >= outcome.rank()) {
            return false;
        }
        *slot = Some(outcome);
        true
    }

    /// IO's view: only the channels that were used.
    pub fn io(&self) -> IoNotificationStatus {
        IoNotificationStatus {
            email: self.email.and_then(ChannelOutcome::status),
            webhook: self.webhook.and_then(ChannelOutcome::status),
        }
    }

    /// Postino's detail beside IO's view: the channels not used, and why.
    pub fn skipped(&self) -> SkippedChannels {
        SkippedChannels {
            email: self.email.and_then(ChannelOutcome::skip_reason),
            webhook: self.webhook.and_then(ChannelOutcome::skip_reason),
        }
    }
}

/// IO `MessageResponseNotificationStatus`: the status of each channel that was used; a
/// channel not used is absent (`webhook` is IO's name for push).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct IoNotificationStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<ChannelStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<ChannelStatus>,
}

/// Postino's extension: the channels Postino did not use for a message, and why (a
/// choice of the citizen's or the service's, or nothing to send to).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct SkippedChannels {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<SkipReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<SkipReason>,
}

impl SkippedChannels {
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.webhook.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_stored_as_one_word_and_read_back() {
        let every = [
            ChannelOutcome::Used(ChannelStatus::Sent),
            ChannelOutcome::Used(ChannelStatus::Throttled),
            ChannelOutcome::Used(ChannelStatus::Expired),
            ChannelOutcome::Used(ChannelStatus::Failed),
            ChannelOutcome::Skipped(SkipReason::BlockedForService),
            ChannelOutcome::Skipped(SkipReason::DisabledInProfile),
            ChannelOutcome::Skipped(SkipReason::NoValidatedEmail),
            ChannelOutcome::Skipped(SkipReason::SecureChannelRequired),
            ChannelOutcome::Skipped(SkipReason::NoDevice),
            ChannelOutcome::Skipped(SkipReason::NoPushProvider),
            ChannelOutcome::Skipped(SkipReason::NotRecorded),
        ];
        for outcome in every {
            let text = outcome.to_string();
            assert_eq!(text.parse::<ChannelOutcome>(), Ok(outcome), "{text}");
            let json = serde_json::to_string(&outcome).expect("json");
            assert_eq!(json, format!("{text:?}"));
            assert_eq!(
                serde_json::from_str::<ChannelOutcome>(&json).ok(),
                Some(outcome)
            );
        }
        // The names are serde's, which the API shows.
        assert_eq!(
            serde_json::to_value(SkipReason::NoPushProvider).ok(),
            Some(serde_json::json!("no_push_provider"))
        );
        assert_eq!(
            serde_json::to_value(ChannelStatus::Throttled).ok(),
            Some(serde_json::json!("THROTTLED"))
        );
        // A store from before the reasons were kept.
        assert_eq!(
            "SKIPPED".parse(),
            Ok(ChannelOutcome::Skipped(SkipReason::NotRecorded))
        );
        for bad in [
            "",
            "sent",
            "SKIPPED:",
            "SKIPPED:asleep",
            "SENT:no_device",
            "QUEUED",
        ] {
            assert!(bad.parse::<ChannelOutcome>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn io_sees_only_used_channels_and_postino_says_why_the_others_were_not() {
        let mut n = NotificationStatus::default();
        assert!(n.record(Channel::Push, ChannelOutcome::Skipped(SkipReason::NoDevice)));
        assert!(n.record(Channel::Email, ChannelStatus::Throttled));
        assert_eq!(
            n.io(),
            IoNotificationStatus {
                email: Some(ChannelStatus::Throttled),
                webhook: None
            }
        );
        assert_eq!(
            n.skipped(),
            SkippedChannels {
                email: None,
                webhook: Some(SkipReason::NoDevice)
            }
        );
        // A retry that then reaches the relay moves THROTTLED on; nothing moves SENT back.
        assert!(n.record(Channel::Email, ChannelStatus::Sent));
        assert!(!n.record(Channel::Email, ChannelStatus::Failed));
        assert!(!n.record(Channel::Email, ChannelStatus::Throttled));
        assert_eq!(n.io().email, Some(ChannelStatus::Sent));
    }
}
