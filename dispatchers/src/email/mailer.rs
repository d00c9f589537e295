//! Where an email goes: the seam between the email stage and the outside world. An SMTP
//! relay through lettre's pooled async transport, or an outbox directory of hourly `.mbox`
//! files (the embedded default, so a person can open what would have been sent).

use std::path::PathBuf;

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::PoolConfig;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use ulid::Ulid;

use super::config::{SmtpRelay, SmtpTls};

/// How handing over an email failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// This email is worth another attempt later: the relay deferred it (`4xx`).
    #[error("{0}")]
    Retry(String),
    /// No email can go out now: the relay cannot be reached, times out, fails TLS or
    /// refuses our login, or the outbox cannot be written. Every email waits, in place and
    /// without using up its attempts, until that is mended: nothing is lost meanwhile.
    #[error("{0}")]
    Unavailable(String),
    /// Never going to work for this email: a `5xx` answer about it.
    #[error("{0}")]
    Rejected(String),
}

#[async_trait]
pub trait Mailer: Send + Sync + std::fmt::Debug {
    /// Hands `email` (about message `id`) over for delivery.
    async fn send(&self, id: Ulid, email: &Message) -> Result<(), MailError>;

    /// Its `provider` label in metrics.
    fn name(&self) -> &'static str;
}

/// An SMTP relay.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    relay: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("relay", &self.relay)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot set up the SMTP relay {relay}: {reason}")]
pub struct SmtpSetupError {
    relay: String,
    reason: String,
}

impl SmtpMailer {
    pub fn new(settings: &SmtpRelay) -> Result<Self, SmtpSetupError> {
        let relay = format!("{}:{}", settings.host, settings.port);
        let setup = |reason: String| SmtpSetupError {
            relay: relay.clone(),
            reason,
        };
        let tls = |host: &str| {
            let mut builder = TlsParameters::builder(host.to_string());
            if let Some(pem) = &settings.ca_pem {
                let ca = Certificate::from_pem(pem)
                    .map_err(|e| setup(format!("the CA certificate is not usable: {e}")))?;
                builder = builder.add_root_certificate(ca);
            }
            builder.build().map_err(|e| setup(e.to_string()))
        };
        let tls = match settings.tls {
            SmtpTls::StartTls => Tls::Required(tls(&settings.host)?),
            SmtpTls::Implicit => Tls::Wrapper(tls(&settings.host)?),
            SmtpTls::None => Tls::None,
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(tls)
            .timeout(Some(settings.timeout))
            .pool_config(PoolConfig::new().max_size(settings.pool_size.max(1)));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Self {
            transport: builder.build(),
            relay,
        })
    }
}

/// `5xx` answers about the session rather than the email: authentication required (530,
/// also "STARTTLS first"), mechanism too weak (534), credentials refused (535), encryption
/// required for the mechanism (538). Configuration to mend, not emails to give up on.
const SESSION_REFUSALS: [&str; 4] = ["530", "534", "535", "538"];

/// What an SMTP failure is. The reason names the status code and kind only: the relay's
/// own text often quotes the recipient's address.
fn classify(err: &lettre::transport::smtp::Error) -> MailError {
    let code = err.status().map(|c| c.to_string());
    let shown = code
        .as_deref()
        .map_or_else(String::new, |c| format!(" {c}"));
    if err.is_permanent()
        && code
            .as_deref()
            .is_some_and(|c| SESSION_REFUSALS.contains(&c))
    {
        MailError::Unavailable(format!(
            "the relay refused the session (SMTP{shown}): check smtp_username, smtp_password and smtp_tls"
        ))
    } else if err.is_permanent() {
        MailError::Rejected(format!(
            "the relay refused the email for good (SMTP{shown})"
        ))
    } else if err.is_transient() {
        MailError::Retry(format!("the relay deferred the email (SMTP{shown})"))
    } else if err.is_timeout() {
        MailError::Unavailable("the relay did not answer in time".into())
    } else if err.is_tls() {
        MailError::Unavailable("TLS with the relay failed".into())
    } else {
        MailError::Unavailable("the relay cannot be reached".into())
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    fn name(&self) -> &'static str {
        "smtp"
    }

    async fn send(&self, _id: Ulid, email: &Message) -> Result<(), MailError> {
        self.transport
            .send_raw(email.envelope(), &email.formatted())
            .await
            .map(|_| ())
            .map_err(|e| classify(&e))
    }
}

/// The embedded default's outbox: every email appended to a mailbox file of the hour it
/// was written in, `<outbox>/<YYYY-MM-DD>T<HH>.mbox` (UTC, mboxrd), which any mail reader
/// opens (`mutt -f`, Thunderbird, Python's `mailbox`). One append per email into a handful
/// of files, where a file per email made a million-message campaign create hundreds of
/// thousands of files in one directory. Each email is written whole in one call, so a
/// reader never sees half of one.
#[derive(Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
    /// The hour's file, kept open between emails.
    current: std::sync::Mutex<Option<(String, std::fs::File)>>,
}

impl OutboxMailer {
    pub fn new(dir: PathBuf) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            current: std::sync::Mutex::new(None),
        })
    }

    /// Appends `entry` to the file named `name`, opening it when the hour turned or when
    /// the file open is no longer the one at that path (moved or deleted, as a person
    /// reading the outbox may do): an email written to a deleted file would be lost.
    fn append(&self, name: String, entry: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let mut current = self
            .current
            .lock()
            .map_err(|_| std::io::Error::other("the outbox lock was poisoned"))?;
        let path = self.dir.join(&name);
        let stale = match current.as_ref() {
            Some((open, file)) => *open != name || !same_file(file, &path),
            None => true,
        };
        if stale {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            *current = Some((name, file));
        }
        let Some((_, file)) = current.as_mut() else {
            return Err(std::io::Error::other("no outbox file open"));
        };
        let written = file.write_all(entry);
        if written.is_err() {
            // Opened afresh next time: the directory may have been mended meanwhile.
            *current = None;
        }
        written
    }
}

/// Whether `file` is the file now at `path`.
fn same_file(file: &std::fs::File, path: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// One mboxrd entry: the `From ` separator line, the email with line ends made `\n` and
/// every line that reads `From ` (after any `>`s) quoted with one more `>`, and a blank
/// line.
pub fn mbox_entry(email: &[u8], at: time::OffsetDateTime) -> Vec<u8> {
    let stamp = at
        .format(time::macros::format_description!(
            "[weekday repr:short] [month repr:short] [day padding:space] [hour]:[minute]:[second] [year]"
        ))
        .unwrap_or_default();
    let mut entry = Vec::with_capacity(email.len() + 64);
    entry.extend_from_slice(format!("From postino@localhost {stamp}\n").as_bytes());
    let email = email.strip_suffix(b"\n").unwrap_or(email);
    for line in email.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let unquoted = line.iter().position(|&b| b != b'>').map(|i| &line[i..]);
        if unquoted.is_some_and(|rest| rest.starts_with(b"From ")) {
            entry.push(b'>');
        }
        entry.extend_from_slice(line);
        entry.push(b'\n');
    }
    // A blank line ends the entry.
    entry.push(b'\n');
    entry
}

/// The outbox file an email written at `at` goes to.
pub fn outbox_file_name(at: time::OffsetDateTime) -> String {
    at.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour].mbox"
    ))
    .unwrap_or_else(|_| "outbox.mbox".into())
}

#[async_trait]
impl Mailer for OutboxMailer {
    fn name(&self) -> &'static str {
        "outbox"
    }

    async fn send(&self, _id: Ulid, email: &Message) -> Result<(), MailError> {
        let now = time::OffsetDateTime::now_utc();
        let entry = mbox_entry(&email.formatted(), now);
        // A few kilobytes appended to the page cache: cheaper done here than handed to a
        // blocking thread, as a log line is.
        self.append(outbox_file_name(now), &entry).map_err(|e| {
            MailError::Unavailable(format!("cannot write to the outbox: {}", e.kind()))
        })
    }
}
