//! What Postino's tests share, so that each is written once: the repository's files found
//! at run time ([`repo_file`]), a real SMTP server ([`smtp`]), key pairs and certificates
//! ([`keys`]), the citizen's inbox page by page ([`inbox`]), readers of what a mailbox or an outbox holds ([`mail`]), and running a stage
//! and reading back what it did ([`stages`]), and reading a `/metrics` exposition ([`exposition`]).
//!
//! It depends on the domain, log and store crates, never on a crate whose own unit tests use
//! it (that crate would be built twice, and its types would not match).

pub mod exposition;
pub mod inbox;
pub mod keys;
pub mod mail;
pub mod smtp;
pub mod stages;

use std::path::PathBuf;

/// A file of the repository, by its path from the root (`scripts/smtp-sink.py`).
///
/// Found from the crate under test at run time (`cargo test` sets `CARGO_MANIFEST_DIR`),
/// not from where this crate was compiled: builds are shared between clones through
/// `CARGO_TARGET_DIR`, and a compiled-in path could name another, even a deleted, clone.
pub fn repo_file(path: &str) -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("..").join(path)
}
