//! Settings of the email dispatcher: what an operator sets (`[email]`, `[smtp]`) and the
//! relay connection made from them.

use std::path::PathBuf;
use std::time::Duration;

use model::secret::Secret;
use serde::{Deserialize, Serialize};

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which the relay must offer (port 587).
    #[serde(rename = "starttls")]
    StartTls,
    /// TLS from the first byte (port 465).
    #[serde(rename = "tls")]
    Implicit,
    /// No TLS: only for a relay on the same host or a test server.
    #[serde(rename = "none")]
    None,
}

impl SmtpTls {
    /// The submission port that goes with it.
    pub fn default_port(self) -> u16 {
        match self {
            Self::StartTls => 587,
            Self::Implicit => 465,
            Self::None => 25,
        }
    }
}

/// Where the SMTP relay is and how to log in.
#[derive(Clone)]
pub struct SmtpRelay {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// `AUTH` user and password, when the relay wants them.
    pub credentials: Option<(String, String)>,
    /// A CA certificate (PEM) to trust besides the system's, for a relay whose certificate
    /// a private CA signed.
    pub ca_pem: Option<Vec<u8>>,
    /// Connections kept open to the relay, and so emails in flight.
    pub pool_size: u32,
    /// How long one SMTP exchange may take before it is retried.
    pub timeout: Duration,
}

impl std::fmt::Debug for SmtpRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpRelay")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("private_ca", &self.ca_pem.is_some())
            .field("pool_size", &self.pool_size)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The `[email]` settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailSettings {
    /// The address emails come from; the sender's name is the service's and organisation's.
    pub from: lettre::Address,
    /// Emails in flight at once (and SMTP connections kept open).
    pub max_in_flight: usize,
    /// Where emails go when no SMTP relay is configured (default `<data_dir>/outbox`).
    pub outbox: Option<PathBuf>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        Self {
            from: lettre::Address::new("notifiche", "postino.localhost").expect("a valid address"),
            max_in_flight: 16,
            outbox: None,
        }
    }
}

impl EmailSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.max_in_flight < 1 {
            return Err("email.max_in_flight must be at least 1".into());
        }
        Ok(())
    }
}

/// The `[smtp]` settings: the relay emails go to. Without `host`, emails go to the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpSettings {
    /// The relay's host name or address.
    pub host: Option<String>,
    /// The relay's port (default: 587 with `starttls`, 465 with `tls`, 25 with `none`).
    pub port: Option<u16>,
    /// `starttls` (required, not opportunistic), `tls` (implicit TLS) or `none`.
    pub tls: SmtpTls,
    /// `AUTH` user, with `password`.
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A CA certificate (PEM) trusted for the relay besides the system's.
    pub ca_file: Option<PathBuf>,
    /// How long one SMTP exchange may take before the email is retried, in ms.
    pub timeout_ms: u64,
    /// `ca_file`'s contents, read once by [`SmtpSettings::read_files`].
    #[serde(skip)]
    ca_pem: Option<Vec<u8>>,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: SmtpTls::StartTls,
            username: None,
            password: None,
            ca_file: None,
            timeout_ms: 30_000,
            ca_pem: None,
        }
    }
}

impl SmtpSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        if self.username.is_some() != self.password.is_some() {
            return Err("smtp.username and smtp.password go together".into());
        }
        if let Some(host) = &self.host {
            if host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(format!(
                    "smtp.host: {host:?} must be a host name or address, without scheme or port"
                ));
            }
        }
        Ok(())
    }

    /// Reads `ca_file` once, at start, so that a missing file stops Postino there.
    pub fn read_files(&mut self) -> Result<(), String> {
        self.ca_pem = match (&self.host, &self.ca_file) {
            (Some(_), Some(path)) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("smtp.ca_file: cannot read {}: {e}", path.display()))?,
            ),
            _ => None,
        };
        Ok(())
    }

    /// The relay, when one is configured, with `pool_size` connections.
    pub fn relay(&self, pool_size: usize) -> Option<SmtpRelay> {
        let host = self.host.clone()?;
        let credentials = match (&self.username, &self.password) {
            (Some(user), Some(password)) => Some((user.clone(), password.expose().to_string())),
            _ => None,
        };
        Some(SmtpRelay {
            port: self.port.unwrap_or(self.tls.default_port()),
            host,
            tls: self.tls,
            credentials,
            ca_pem: self.ca_pem.clone(),
            pool_size: u32::try_from(pool_size).unwrap_or(u32::MAX),
            timeout: Duration::from_millis(self.timeout_ms),
        })
    }
}
