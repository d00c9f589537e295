//! A real SMTP server for tests: `scripts/smtp-sink.py` (aiosmtpd) on a free port, keeping
//! what it receives as `.eml` files (see that script for the failures it answers on demand).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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
        let script = crate::repo_file("scripts/smtp-sink.py");
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

    /// The mails received so far, as raw bytes.
    pub fn received(&self) -> Vec<Vec<u8>> {
        crate::mail::emails_in(&self.dir)
    }
}
