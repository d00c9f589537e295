//! The dispatchers: one folder per channel, each with the same files (`stage.rs` for the
//! stage that consumes its topic, `tests.rs`; `config.rs` where the channel has settings of
//! its own; a provider-facing dispatcher adds `service.rs` for its limits). The inbox dispatcher comes first; push and
//! email consume `deliveries.push` and `deliveries.email`, which the inbox dispatcher feeds
//! only after the inbox write (invariant 3).

pub mod email;
pub mod inbox;
pub mod metrics;
mod outcome;
pub mod push;
