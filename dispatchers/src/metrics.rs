//! The dispatchers' series: what became of each notification, by channel and provider; how
//! the providers answer and how long senders wait for their limits; and the end-to-end
//! times from a message's acceptance to its being readable, pushed and emailed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use model::status::{Channel, ChannelStatus};
use telemetry::metrics::{counter, gauge, histogram};
use telemetry::Metric;
use ulid::Ulid;

pub const SENDS: Metric = Metric::counter(
    "postino_dispatch_sends_total",
    "Notifications by channel (push, email), provider (fcm, apns, smtp, outbox) and outcome: sent; retried (an attempt failed and may be tried again); failed (given up: refused for good or out of attempts, so dead-lettered); expired (time_to_live ran out); token_removed (the provider said the device is gone); already_sent (a redelivered job, not sent again); cancelled (its campaign was cancelled, not sent); held (not urgent, in quiet hours: kept to go when they end).",
    &["channel", "provider", "outcome"],
);
pub const PROVIDER_DURATION: Metric = Metric::histogram(
    "postino_dispatch_provider_duration_seconds",
    "Time a provider took to answer one request (push: the FCM or APNs call; email: the SMTP transaction or the outbox write).",
    &["channel", "provider"],
);
pub const THROTTLE_WAIT: Metric = Metric::histogram(
    "postino_dispatch_throttle_wait_seconds",
    "Time a notification waited for its provider's limits (rate and requests in flight) before it was sent.",
    &["channel", "provider"],
);
pub const IN_FLIGHT: Metric = Metric::gauge(
    "postino_dispatch_in_flight_requests",
    "Requests to a provider awaiting its answer.",
    &["channel", "provider"],
);
pub const INBOX_READABLE: Metric = Metric::histogram(
    "postino_e2e_inbox_readable_seconds",
    "From a message's acceptance (its 201) to its being readable in the citizen's inbox.",
    &[],
);
pub const PUSH_SENT: Metric = Metric::histogram(
    "postino_e2e_push_sent_seconds",
    "From a message's acceptance to a push notification about it handed to the provider.",
    &[],
);
pub const EMAIL_SENT: Metric = Metric::histogram(
    "postino_e2e_email_sent_seconds",
    "From a message's acceptance to its email handed to the relay.",
    &[],
);

pub const ALL: &[Metric] = &[
    SENDS,
    PROVIDER_DURATION,
    THROTTLE_WAIT,
    IN_FLIGHT,
    INBOX_READABLE,
    PUSH_SENT,
    EMAIL_SENT,
];

fn channel_label(channel: Channel) -> &'static str {
    match channel {
        Channel::Push => "push",
        Channel::Email => "email",
    }
}

/// Time from message `id`'s acceptance to `now`: its id is a ULID minted at acceptance.
fn accepted_until(id: Ulid, now: SystemTime) -> Duration {
    let accepted = UNIX_EPOCH + Duration::from_millis(id.timestamp_ms());
    now.duration_since(accepted).unwrap_or_default()
}

/// Messages became readable in their inboxes (all at once: one batch was written).
pub(crate) fn readable(ids: impl IntoIterator<Item = Ulid>) {
    let series = histogram!(INBOX_READABLE.name);
    let now = SystemTime::now();
    for id in ids {
        series.record(telemetry::seconds(accepted_until(id, now)));
    }
}

/// What became of one notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    Sent,
    Failed,
    Retried,
    Expired,
    TokenRemoved,
    AlreadySent,
    /// Not sent: its campaign was cancelled.
    Cancelled,
    /// Held over quiet hours, to go when they end.
    Held,
}

impl SendOutcome {
    fn label(self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Failed => "failed",
            Self::Retried => "retried",
            Self::Expired => "expired",
            Self::TokenRemoved => "token_removed",
            Self::AlreadySent => "already_sent",
            Self::Cancelled => "cancelled",
            Self::Held => "held",
        }
    }

    /// A notification ended: counted, and when it went out, its end-to-end time.
    pub(crate) fn emit(self, channel: Channel, provider: &'static str, id: Ulid) {
        let channel_name = channel_label(channel);
        counter!(SENDS.name, "channel" => channel_name, "provider" => provider, "outcome" => self.label())
            .increment(1);
        if self == Self::Sent {
            let series = match channel {
                Channel::Push => PUSH_SENT.name,
                Channel::Email => EMAIL_SENT.name,
            };
            histogram!(series).record(telemetry::seconds(accepted_until(id, SystemTime::now())));
        }
    }

    /// The outcome of one attempt, from the status it leads to and the runner's verdict.
    /// A job marked FAILED without an error is a push whose device the provider said is
    /// gone (its installation removed). A job refused for good counts as failed once the
    /// runner dead-letters it ([`crate::outcome::record_failed`]), as does one out of
    /// attempts: `None` here.
    pub(crate) fn of(
        status: Option<ChannelStatus>,
        verdict: Result<(), &bus::stage::StageError>,
    ) -> Option<Self> {
        use bus::stage::StageError;
        Some(match (status, verdict) {
            (Some(ChannelStatus::Sent), _) => Self::Sent,
            (Some(ChannelStatus::Expired), _) => Self::Expired,
            (Some(ChannelStatus::Failed), _) => Self::TokenRemoved,
            (_, Err(StageError::Permanent(_))) => return None,
            (_, Err(StageError::Retry { .. } | StageError::Unavailable(_)))
            | (Some(ChannelStatus::Throttled), Ok(())) => Self::Retried,
            (None, Ok(())) => Self::Sent,
        })
    }
}

/// One provider's call, measured: throttle wait until [`Call::started`], then in flight
/// until dropped.
#[derive(Debug)]
pub(crate) struct Call {
    channel: &'static str,
    provider: &'static str,
    began: Instant,
    sending: Option<Instant>,
}

impl Call {
    /// A notification is ready to go to `provider` (it may have to wait for the limits).
    pub(crate) fn new(channel: Channel, provider: &'static str) -> Self {
        Self {
            channel: channel_label(channel),
            provider,
            began: Instant::now(),
            sending: None,
        }
    }

    /// The limits let it go: the request starts.
    pub(crate) fn started(&mut self) {
        let now = Instant::now();
        histogram!(THROTTLE_WAIT.name, "channel" => self.channel, "provider" => self.provider)
            .record(telemetry::seconds(now - self.began));
        gauge!(IN_FLIGHT.name, "channel" => self.channel, "provider" => self.provider)
            .increment(1.0);
        self.sending = Some(now);
    }
}

impl Drop for Call {
    /// The provider answered (or the call was abandoned).
    fn drop(&mut self) {
        if let Some(sending) = self.sending {
            histogram!(PROVIDER_DURATION.name, "channel" => self.channel, "provider" => self.provider)
                .record(telemetry::seconds(sending.elapsed()));
            gauge!(IN_FLIGHT.name, "channel" => self.channel, "provider" => self.provider)
                .decrement(1.0);
        }
    }
}
