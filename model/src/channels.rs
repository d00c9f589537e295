//! Which channels may carry a message to a citizen: IO's rules in one pure function, used by
//! the router for every message and by the senders' API for `sender_allowed`.

use serde::{Deserialize, Serialize};

use crate::profile::{BlockedChannel, PreferencesMode, Profile, ServicePreference};
use crate::status::RejectionReason;

/// The router's verdict on one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Rejected(RejectionReason),
    Deliver(ChannelPlan),
}

/// The notification channels for a message that goes to the inbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPlan {
    pub email: ChannelChoice,
    pub push: ChannelChoice,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "choice", content = "reason", rename_all = "snake_case")]
pub enum ChannelChoice {
    Send,
    Skip(SkipReason),
}

pub use crate::status::SkipReason;

/// Applies IO's rules. `preference` is the stored preference of this citizen for the
/// sending service, if any; `secure` is true when the service or the message requires
/// secure channels (no email then).
pub fn decide(
    profile: Option<&Profile>,
    preference: Option<&ServicePreference>,
    service_id: &str,
    secure: bool,
) -> Verdict {
    let Some(profile) = profile else {
        return Verdict::Rejected(RejectionReason::UserNotFound);
    };
    if !profile.is_inbox_enabled {
        return Verdict::Rejected(RejectionReason::ServiceNotAllowed);
    }
    let blocked = |channel: BlockedChannel| -> bool {
        match profile.service_preferences_settings.mode {
            PreferencesMode::Legacy => profile
                .blocked_inbox_or_channels
                .get(service_id)
                .is_some_and(|set| set.contains(&channel)),
            PreferencesMode::Auto | PreferencesMode::Manual => {
                match ServicePreference::effective(profile, preference) {
                    Ok(p) => !match channel {
                        BlockedChannel::Inbox => p.is_inbox_enabled,
                        BlockedChannel::Email => p.is_email_enabled,
                        BlockedChannel::Webhook => p.is_webhook_enabled,
                    },
                    Err(_) => true,
                }
            }
        }
    };
    if blocked(BlockedChannel::Inbox) {
        return Verdict::Rejected(RejectionReason::ServiceNotAllowed);
    }
    let email = if secure {
        ChannelChoice::Skip(SkipReason::SecureChannelRequired)
    } else if blocked(BlockedChannel::Email) {
        ChannelChoice::Skip(SkipReason::BlockedForService)
    } else if !profile.is_email_enabled {
        ChannelChoice::Skip(SkipReason::DisabledInProfile)
    } else if profile.email.is_none() || !profile.is_email_validated {
        ChannelChoice::Skip(SkipReason::NoValidatedEmail)
    } else {
        ChannelChoice::Send
    };
    let push = if blocked(BlockedChannel::Webhook) {
        ChannelChoice::Skip(SkipReason::BlockedForService)
    } else if !profile.is_webhook_enabled {
        ChannelChoice::Skip(SkipReason::DisabledInProfile)
    } else {
        ChannelChoice::Send
    };
    Verdict::Deliver(ChannelPlan { email, push })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::ServicePreferencesSettings;
    use std::collections::BTreeSet;

    fn profile(mode: PreferencesMode) -> Profile {
        let mut p = Profile::new_default();
        p.service_preferences_settings = ServicePreferencesSettings { mode, version: 0 };
        p.email = Some(crate::email::EmailAddress::parse("email", "a@b.it").expect("address"));
        p.is_email_validated = true;
        p
    }

    fn pref(inbox: bool, email: bool, webhook: bool, version: i64) -> ServicePreference {
        ServicePreference {
            is_inbox_enabled: inbox,
            is_email_enabled: email,
            is_webhook_enabled: webhook,
            settings_version: version,
            can_access_message_read_status: true,
        }
    }

    const SEND_ALL: Verdict = Verdict::Deliver(ChannelPlan {
        email: ChannelChoice::Send,
        push: ChannelChoice::Send,
    });

    #[test]
    fn no_profile_or_disabled_inbox_rejects() {
        assert_eq!(
            decide(None, None, "s", false),
            Verdict::Rejected(RejectionReason::UserNotFound)
        );
        let mut p = profile(PreferencesMode::Auto);
        p.is_inbox_enabled = false;
        assert_eq!(
            decide(Some(&p), None, "s", false),
            Verdict::Rejected(RejectionReason::ServiceNotAllowed)
        );
    }

    #[test]
    fn legacy_reads_blocked_inbox_or_channels() {
        let mut p = profile(PreferencesMode::Legacy);
        assert_eq!(decide(Some(&p), None, "s", false), SEND_ALL);
        p.blocked_inbox_or_channels
            .insert("s".into(), BTreeSet::from([BlockedChannel::Email]));
        let Verdict::Deliver(plan) = decide(Some(&p), None, "s", false) else {
            panic!()
        };
        assert_eq!(
            plan.email,
            ChannelChoice::Skip(SkipReason::BlockedForService)
        );
        assert_eq!(plan.push, ChannelChoice::Send);
        assert_eq!(decide(Some(&p), None, "other", false), SEND_ALL);
        // A per-service preference left over from another mode counts for nothing here:
        // the profile's own list decides (the router passes whatever it read).
        let silence = pref(false, false, false, p.service_preferences_settings.version);
        assert_eq!(decide(Some(&p), Some(&silence), "other", false), SEND_ALL);
        p.blocked_inbox_or_channels
            .insert("s".into(), BTreeSet::from([BlockedChannel::Inbox]));
        assert_eq!(
            decide(Some(&p), None, "s", false),
            Verdict::Rejected(RejectionReason::ServiceNotAllowed)
        );
    }

    #[test]
    fn auto_allows_unless_a_preference_says_no() {
        let p = profile(PreferencesMode::Auto);
        assert_eq!(decide(Some(&p), None, "s", false), SEND_ALL);
        let no = pref(false, true, true, 0);
        assert_eq!(
            decide(Some(&p), Some(&no), "s", false),
            Verdict::Rejected(RejectionReason::ServiceNotAllowed)
        );
        let stale = pref(false, true, true, 7);
        assert_eq!(
            decide(Some(&p), Some(&stale), "s", false),
            SEND_ALL,
            "stale preferences do not count"
        );
        let no_push = pref(true, true, false, 0);
        let Verdict::Deliver(plan) = decide(Some(&p), Some(&no_push), "s", false) else {
            panic!()
        };
        assert_eq!(
            plan.push,
            ChannelChoice::Skip(SkipReason::BlockedForService)
        );
    }

    #[test]
    fn manual_blocks_unless_a_preference_says_yes() {
        let p = profile(PreferencesMode::Manual);
        assert_eq!(
            decide(Some(&p), None, "s", false),
            Verdict::Rejected(RejectionReason::ServiceNotAllowed)
        );
        let yes = pref(true, true, true, 0);
        assert_eq!(decide(Some(&p), Some(&yes), "s", false), SEND_ALL);
    }

    #[test]
    fn email_needs_a_validated_enabled_address_and_no_secure_channel() {
        let mut p = profile(PreferencesMode::Auto);
        let Verdict::Deliver(plan) = decide(Some(&p), None, "s", true) else {
            panic!()
        };
        assert_eq!(
            plan.email,
            ChannelChoice::Skip(SkipReason::SecureChannelRequired)
        );
        p.is_email_validated = false;
        let Verdict::Deliver(plan) = decide(Some(&p), None, "s", false) else {
            panic!()
        };
        assert_eq!(
            plan.email,
            ChannelChoice::Skip(SkipReason::NoValidatedEmail)
        );
        p.is_email_enabled = false;
        p.is_webhook_enabled = false;
        let Verdict::Deliver(plan) = decide(Some(&p), None, "s", false) else {
            panic!()
        };
        assert_eq!(
            plan.email,
            ChannelChoice::Skip(SkipReason::DisabledInProfile)
        );
        assert_eq!(
            plan.push,
            ChannelChoice::Skip(SkipReason::DisabledInProfile)
        );
    }
}
