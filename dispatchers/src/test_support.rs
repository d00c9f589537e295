//! What tests across the workspace share: the repository's files found at run time, a
//! real SMTP server (`scripts/smtp-sink.py`, aiosmtpd) on a free port, keeping what it
//! receives as `.eml` files (see that script for the failures it answers on demand), and
//! what the push and email stage tests both do: run a stage, read back a channel's
//! outcome, name the messages that were dead-lettered or received, and make the
//! certificate a TLS stand-in presents.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bus::stage::{self, Stage, StageConfig};
use bus::{Bus, BusError, Delivered};
use model::status::{Channel, ChannelStatus};
use serde::de::DeserializeOwned;
use store::Store;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use ulid::Ulid;

use crate::email::{SmtpRelay, SmtpTls};

/// A self-signed certificate for `localhost` and 127.0.0.1 (its PEM file, and its key's),
/// made with openssl: what a TLS stand-in presents and its client is told to trust.
pub fn self_signed_certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success());
    (cert, key)
}

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

/// The SMTP server, stopped when dropped; what it received lands in `dir`.
#[derive(Debug)]
pub struct SmtpSink {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SmtpSink {
    /// Starts the server, keeping mails in `dir`.
    ///
    /// # Panics
    /// When python3 with aiosmtpd cannot run the script: a test cannot go on without it.
    pub fn start(dir: &Path) -> Self {
        Self::start_with(dir, &[])
    }

    /// Starts the server with more of its options (`--listen`, `--tls-cert`, `--auth`…).
    ///
    /// # Panics
    /// As [`SmtpSink::start`].
    pub fn start_with(dir: &Path, options: &[&str]) -> Self {
        let script = repo_file("scripts/smtp-sink.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(dir)
            .args(options)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start scripts/smtp-sink.py (python3 with aiosmtpd)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the sink says where it listens");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line from the sink: {line:?}"));
        Self {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Settings that reach this server.
    pub fn settings(&self) -> SmtpRelay {
        SmtpRelay {
            host: "127.0.0.1".into(),
            port: self.port,
            tls: SmtpTls::None,
            credentials: None,
            ca_pem: None,
            pool_size: 4,
            timeout: Duration::from_secs(10),
        }
    }

    /// The mails received so far, as raw bytes.
    pub fn received(&self) -> Vec<Vec<u8>> {
        emails_in(&self.dir)
    }
}

/// The files in `dir` ending `.<extension>`, in the order of their names.
fn files_ending(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    paths.sort();
    paths
}

/// The `.eml` files in `dir`, in the order of their names.
pub fn emails_in(dir: &Path) -> Vec<Vec<u8>> {
    files_ending(dir, "eml")
        .iter()
        .map(|p| std::fs::read(p).expect("read"))
        .collect()
}

/// The emails in the outbox's mailbox files (`*.mbox` in `dir`, mboxrd), oldest file
/// first, each as the bytes of one email (line ends `\n`).
pub fn outbox_emails(dir: &Path) -> Vec<Vec<u8>> {
    let mut emails: Vec<Vec<u8>> = Vec::new();
    for path in files_ending(dir, "mbox") {
        let text = std::fs::read(&path).expect("read");
        let text = text.strip_suffix(b"\n").unwrap_or(&text);
        for line in text.split(|&b| b == b'\n') {
            if line.starts_with(b"From ") {
                emails.push(Vec::new());
                continue;
            }
            let email = emails
                .last_mut()
                .expect("a mailbox starts with a From line");
            let quoted = line.iter().take_while(|&&b| b == b'>').count();
            let line = if quoted > 0 && line[quoted..].starts_with(b"From ") {
                &line[1..]
            } else {
                line
            };
            email.extend_from_slice(line);
            email.push(b'\n');
        }
    }
    for email in &mut emails {
        // The blank line that ends each entry is the mailbox's, not the email's.
        if email.ends_with(b"\n\n") {
            email.pop();
        }
    }
    emails
}

/// Runs `stage` on `topic` until `true` is sent on the returned sender.
pub fn spawn_stage<S: Stage + 'static>(
    bus: &Arc<dyn Bus>,
    topic: &'static str,
    group: &'static str,
    stage: S,
    cfg: StageConfig,
) -> (watch::Sender<bool>, JoinHandle<Result<(), BusError>>) {
    let (stop, stopped) = watch::channel(false);
    let runner = tokio::spawn(stage::run(
        Arc::clone(bus),
        topic,
        group,
        Arc::new(stage),
        cfg,
        stopped,
    ));
    (stop, runner)
}

/// What `channel`'s dispatcher recorded for message `id` (IO's status: none while the
/// channel has no outcome or was not used).
///
/// # Panics
/// When the store fails or does not hold the message.
pub async fn channel_status(
    store: &Arc<dyn Store>,
    id: Ulid,
    channel: Channel,
) -> Option<ChannelStatus> {
    let notification = store
        .get_message(&id)
        .await
        .expect("get")
        .expect("there")
        .notification;
    match channel {
        Channel::Email => notification.email,
        Channel::Push => notification.webhook,
    }
    .and_then(model::status::ChannelOutcome::status)
}

/// The messages of the jobs (of type `J`) in `dead`, sorted.
///
/// # Panics
/// When a dead-lettered record is not such a job.
pub fn dead_lettered<J: DeserializeOwned>(
    dead: &[Delivered],
    message_id: impl Fn(&J) -> Ulid,
) -> Vec<Ulid> {
    let mut ids: Vec<Ulid> = dead
        .iter()
        .map(|d| message_id(&model::pipeline::decode::<J>(&d.record.payload).expect("job")))
        .collect();
    ids.sort();
    ids
}

/// Message ids as text, sorted: what a stand-in or a mailbox should have received.
pub fn sorted_ids(ids: impl IntoIterator<Item = impl ToString>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    ids.sort();
    ids
}
