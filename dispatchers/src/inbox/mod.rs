//! The inbox dispatcher: writes each routed message into its citizen's inbox and marks it
//! PROCESSED, in batches, idempotently (invariant 2).

mod config;
mod sink;
#[cfg(test)]
mod tests;

pub use config::InboxConfig;
pub use sink::{InboxStage, GROUP};
