//! Postino's domain: the values that cross its edges (HTTP bodies, bus records, store rows),
//! each parsed into a type that cannot hold an invalid value.
//!
//! Parsing is where the rules of IO's specification live (ARCHITECTURE.md §4); everything past the
//! edge works with the parsed types and never re-validates.

pub mod campaign;
pub mod channels;
pub mod email;
pub mod fiscal_code;
pub mod html;
pub mod installation;
pub mod language;
pub mod message;
pub mod net;
pub mod pipeline;
pub mod profile;
pub mod progress;
pub mod push;
pub mod request_id;
#[cfg(any(test, feature = "testsuite"))]
pub mod samples;
pub mod schedule;
pub mod secret;
pub mod service;
pub mod status;
pub mod timestamp;
pub mod validation;

pub use fiscal_code::FiscalCode;
pub use validation::ValidationError;
