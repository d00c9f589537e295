//! The inbox dispatcher: writes each routed message into its citizen's inbox and marks it
//! PROCESSED, in batches, idempotently (invariant 2).

mod stage;
#[cfg(test)]
mod tests;

pub use stage::{InboxStage, GROUP};
