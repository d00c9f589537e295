//! Settings of the inbox dispatcher.

use bus::stage::StageConfig;

#[derive(Debug, Clone, Default)]
pub struct InboxConfig {
    /// How records are polled, batched and retried.
    pub stage: StageConfig,
}
