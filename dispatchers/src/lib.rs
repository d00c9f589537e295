//! The dispatchers: one folder per channel, each with the same files (`config.rs` for its
//! settings, `sink.rs` for the stage that consumes its topic, `tests.rs`). The inbox
//! dispatcher is the first; push and email follow it, consuming `deliveries.push` and
//! `deliveries.email`, which the inbox dispatcher feeds only after the inbox write
//! (invariant 3).

pub mod inbox;
