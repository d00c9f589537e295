//! Sending with the providers' limits: per provider, a rate limit that holds the project's
//! quota and a bound on requests in flight (streams on the shared HTTP/2 connection). Both
//! make a sender wait; neither drops a notification.

use std::num::NonZeroU32;
use std::sync::Arc;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use model::installation::Platform;
use model::push::PushJob;
use tokio::sync::Semaphore;

use model::status::Channel;

use super::provider::{PushError, PushProvider};
use crate::metrics::Call;

/// One provider with its limits.
#[derive(Debug)]
pub struct ProviderLane {
    provider: Arc<dyn PushProvider>,
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
}

impl ProviderLane {
    /// `per_minute` is the provider's quota (FCM: 600,000 a minute per project); bursts are
    /// held to one second's share of it. `max_in_flight` bounds concurrent requests.
    pub fn new(
        provider: Arc<dyn PushProvider>,
        per_minute: NonZeroU32,
        max_in_flight: usize,
    ) -> Self {
        let per_second = NonZeroU32::new(per_minute.get() / 60).unwrap_or(NonZeroU32::MIN);
        Self {
            provider,
            limiter: RateLimiter::direct(Quota::per_second(per_second)),
            in_flight: Semaphore::new(max_in_flight.max(1)),
        }
    }

    async fn send(&self, job: &PushJob) -> Result<(), PushError> {
        let mut call = Call::new(Channel::Push, job.platform.as_str());
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.in_flight.acquire().await;
        self.limiter.until_ready().await;
        call.started();
        self.provider.send(job).await
    }
}

/// The platforms a deployment has a push provider for. The inbox dispatcher makes jobs only
/// for devices on these: a job for any other could only be dead-lettered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushPlatforms {
    pub fcm: bool,
    pub apns: bool,
}

impl PushPlatforms {
    pub const ALL: Self = Self {
        fcm: true,
        apns: true,
    };

    pub fn serves(self, platform: Platform) -> bool {
        match platform {
            Platform::Fcm => self.fcm,
            Platform::Apns => self.apns,
        }
    }

    pub fn any(self) -> bool {
        self.fcm || self.apns
    }
}

/// The providers Postino is configured with, by platform.
#[derive(Debug, Default)]
pub struct PushService {
    pub fcm: Option<ProviderLane>,
    pub apns: Option<ProviderLane>,
}

impl PushService {
    pub async fn send(&self, job: &PushJob) -> Result<(), PushError> {
        let lane = match job.platform {
            Platform::Fcm => self.fcm.as_ref(),
            Platform::Apns => self.apns.as_ref(),
        };
        match lane {
            Some(lane) => lane.send(job).await,
            None => Err(PushError::Rejected(format!(
                "no {} provider is configured",
                job.platform.as_str()
            ))),
        }
    }
}
