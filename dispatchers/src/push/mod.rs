//! The push dispatcher (ARCHITECTURE.md §6): consumes `deliveries.push`, written by the inbox
//! dispatcher only after the inbox write, and sends each job to its device through FCM or
//! APNs. Each provider sits behind [`provider::PushProvider`]; [`service`] adds its rate
//! limit and in-flight bound; [`stage`] maps outcomes to statuses, removals and retries.

pub mod apns;
mod config;
mod credential;
mod fanout;
pub mod fcm;
mod http;
pub mod provider;
pub mod service;
mod stage;
#[cfg(test)]
mod tests;

pub use config::{ApnsSettings, FcmSettings, PushSettings, PushSetupError};
pub use fanout::{PushFanOut, PushTargets};
pub use http::{CaError, ClientSettings};
pub use service::PushPlatforms;
pub use stage::{PushStage, GROUP};
