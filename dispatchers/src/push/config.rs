//! The push dispatcher's settings (`[push]`, `[push.fcm]`, `[push.apns]`) and the
//! providers they make.

use model::schedule::DailyWindow;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::apns::{ApnsCredentials, ApnsProvider, ApnsSetupError};
use super::fcm::{FcmProvider, FcmSetupError, ServiceAccount};
use super::service::{ProviderLane, PushPlatforms, PushService};
use super::ClientSettings;

/// How Postino reaches the push providers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushSettings {
    /// Requests in flight at once, per provider.
    pub max_in_flight: usize,
    /// How long one push request may take before it is retried, in ms.
    pub timeout_ms: u64,
    /// CA certificates (PEM) trusted besides the system's: for an egress proxy that
    /// re-signs TLS on its way to FCM and APNs.
    pub ca_file: Option<PathBuf>,
    pub fcm: FcmSettings,
    pub apns: ApnsSettings,
    /// When no push goes but an urgent message's (`HH:MM-HH:MM` local time, or `off`): a
    /// push due then waits for their end, spread over the hour after it.
    pub quiet_hours: String,
    /// The IANA time zone of `quiet_hours`.
    pub quiet_hours_time_zone: String,
    /// `ca_file`'s certificates, read once by [`PushSettings::read_files`].
    #[serde(skip)]
    ca_roots: Vec<reqwest::Certificate>,
}

/// Firebase Cloud Messaging.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FcmSettings {
    /// The Google service-account key file (JSON). Without it, FCM devices get no push.
    pub service_account: Option<PathBuf>,
    /// FCM's base URL (a stand-in's in tests).
    pub base_url: String,
    /// Sends a minute: the project's quota.
    pub per_minute: u32,
}

/// Apple Push Notification service: a token-based (`.p8`) key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApnsSettings {
    /// The `.p8` signing key; with it, `key_id`, `team_id` and `topic` are required.
    pub key_file: Option<PathBuf>,
    pub key_id: Option<String>,
    pub team_id: Option<String>,
    /// The app's bundle id.
    pub topic: Option<String>,
    /// `https://api.sandbox.push.apple.com` for development builds of the app.
    pub base_url: String,
    /// Sends a minute.
    pub per_minute: u32,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            max_in_flight: 100,
            timeout_ms: 10_000,
            ca_file: None,
            fcm: FcmSettings::default(),
            apns: ApnsSettings::default(),
            quiet_hours: "21:00-08:00".into(),
            quiet_hours_time_zone: "Europe/Rome".into(),
            ca_roots: Vec::new(),
        }
    }
}

impl Default for FcmSettings {
    fn default() -> Self {
        Self {
            service_account: None,
            base_url: "https://fcm.googleapis.com".into(),
            per_minute: 600_000,
        }
    }
}

impl Default for ApnsSettings {
    fn default() -> Self {
        Self {
            key_file: None,
            key_id: None,
            team_id: None,
            topic: None,
            base_url: "https://api.push.apple.com".into(),
            per_minute: 600_000,
        }
    }
}

/// A provider that cannot be set up from its settings.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    #[error(transparent)]
    Fcm(#[from] FcmSetupError),
    #[error(transparent)]
    Apns(#[from] ApnsSetupError),
}

impl PushSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.fcm.per_minute < 1 || self.apns.per_minute < 1 || self.max_in_flight < 1 {
            return Err(
                "push.fcm.per_minute, push.apns.per_minute and push.max_in_flight must be at least 1"
                    .into(),
            );
        }
        let apns = &self.apns;
        if apns.key_file.is_some()
            && (apns.key_id.is_none() || apns.team_id.is_none() || apns.topic.is_none())
        {
            return Err("push.apns.key_file needs push.apns.key_id, push.apns.team_id and push.apns.topic (the app's bundle id)".into());
        }
        self.quiet_hours()?;
        Ok(())
    }

    /// The quiet hours, or none when `off`.
    pub fn quiet_hours(&self) -> Result<Option<DailyWindow>, String> {
        if self.quiet_hours.trim() == "off" {
            return Ok(None);
        }
        DailyWindow::parse("push.quiet_hours", &self.quiet_hours, &self.quiet_hours_time_zone)
            .map(Some)
            .map_err(|err| {
                format!(
                    "push.quiet_hours {:?} in push.quiet_hours_time_zone {:?}: {} (e.g. 21:00-08:00 in Europe/Rome, or off)",
                    self.quiet_hours, self.quiet_hours_time_zone, err.rule
                )
            })
    }

    /// Reads `ca_file` once, at start, so that a bad file stops Postino there.
    pub fn read_files(&mut self) -> Result<(), String> {
        self.ca_roots = match &self.ca_file {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("push.ca_file: cannot read {}: {e}", path.display()))?;
                super::http::parse_ca_bundle(&pem)
                    .map_err(|e| format!("push.ca_file: {}: {e}", path.display()))?
            }
        };
        Ok(())
    }

    /// How the providers' client connects.
    pub fn client(&self) -> ClientSettings {
        ClientSettings::new(Duration::from_millis(self.timeout_ms))
            .trusting(self.ca_roots.iter().cloned())
    }

    /// The platforms with a provider configured. The inbox role reads this too, to make
    /// push jobs only for devices some provider can reach: give it the same provider keys
    /// as the push role.
    pub fn platforms(&self) -> PushPlatforms {
        PushPlatforms {
            fcm: self.fcm.service_account.is_some(),
            apns: self.apns.key_file.is_some(),
        }
    }

    /// The providers these settings name, each with its rate and in-flight limits.
    pub fn service(&self) -> Result<PushService, PushSetupError> {
        let http = self.client();
        let per_minute = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let mut service = PushService::default();
        if let Some(path) = &self.fcm.service_account {
            let account = ServiceAccount::from_file(path)?;
            let provider = FcmProvider::new(account, &self.fcm.base_url, &http)?;
            service.fcm = Some(ProviderLane::new(
                Arc::new(provider),
                per_minute(self.fcm.per_minute),
                self.max_in_flight,
            ));
        } else {
            tracing::warn!("no push.fcm.service_account: FCM devices get no push");
        }
        let apns = &self.apns;
        if let (Some(path), Some(key_id), Some(team_id), Some(topic)) =
            (&apns.key_file, &apns.key_id, &apns.team_id, &apns.topic)
        {
            let credentials = ApnsCredentials::from_key_file(
                path,
                key_id.clone(),
                team_id.clone(),
                topic.clone(),
            )?;
            let provider = ApnsProvider::new(credentials, &apns.base_url, &http)?;
            service.apns = Some(ProviderLane::new(
                Arc::new(provider),
                per_minute(apns.per_minute),
                self.max_in_flight,
            ));
        } else {
            tracing::warn!("no push.apns.key_file: APNs devices get no push");
        }
        Ok(service)
    }
}
