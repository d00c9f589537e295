//! The email dispatcher (ARCHITECTURE.md §6): consumes `deliveries.email`, written by the inbox
//! dispatcher only after the inbox write, renders each message as a multipart text + HTML
//! email in the citizen's language ([`render`]), and hands it to a [`mailer::Mailer`]: an
//! SMTP relay through lettre's pooled async transport, or, with no relay configured, hourly
//! mailbox files in an outbox directory. [`stage`] maps outcomes to statuses and retries.

mod config;
pub mod mailer;
pub mod render;
mod stage;
#[cfg(test)]
mod tests;

pub use config::{EmailSettings, SmtpRelay, SmtpSettings, SmtpTls};
pub use stage::{EmailStage, GROUP};
