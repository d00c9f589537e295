//! Settings of the push dispatcher.

use std::num::NonZeroU32;
use std::time::Duration;

use bus::stage::StageConfig;

/// Where a provider is and how hard it may be pushed.
#[derive(Debug, Clone)]
pub struct ProviderLimits {
    /// The provider's base URL (the stand-ins' in tests and load tests).
    pub base_url: String,
    /// Requests a minute (the provider's quota per project).
    pub per_minute: NonZeroU32,
    /// Requests in flight at once (streams on the shared HTTP/2 connection).
    pub max_in_flight: usize,
    /// How long one request may take before it counts as failed (and is retried).
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct PushConfig {
    /// How records are polled, batched and retried.
    pub stage: StageConfig,
}
