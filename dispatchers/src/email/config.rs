//! Settings of the email dispatcher.

use std::time::Duration;

/// How the connection to the relay is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain connection upgraded with `STARTTLS`, which the relay must offer (port 587).
    StartTls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host or a test server.
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
pub struct SmtpSettings {
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

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
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
