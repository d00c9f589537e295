//! Key pairs and certificates, made with the `openssl` command as an operator would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What kind of key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// P-256: ES256 tokens, APNs keys.
    Ec,
    /// RSA 2048: RS256 tokens, FCM service accounts.
    Rsa,
}

/// A key pair's files: the private key (PKCS#8 PEM) and the public key (PEM).
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
}

impl KeyPair {
    /// The private key's PEM text.
    pub fn private_key(&self) -> String {
        std::fs::read_to_string(&self.private_pem).expect("read the private key")
    }

    /// The public key's PEM text.
    pub fn public_key(&self) -> String {
        std::fs::read_to_string(&self.public_pem).expect("read the public key")
    }
}

fn openssl(args: &[&std::ffi::OsStr]) {
    let status = Command::new("openssl")
        .args(args)
        .stderr(Stdio::null())
        .status()
        .expect("run openssl");
    assert!(status.success(), "openssl {args:?}");
}

/// Makes a key pair in `dir` (`<name>.key.pem`, `<name>.pub.pem`).
///
/// # Panics
/// When openssl cannot run: a test cannot go on without its keys.
pub fn key_pair(dir: &Path, name: &str, kind: KeyKind) -> KeyPair {
    let pair = KeyPair {
        private_pem: dir.join(format!("{name}.key.pem")),
        public_pem: dir.join(format!("{name}.pub.pem")),
    };
    let algorithm: &[&str] = match kind {
        KeyKind::Ec => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        KeyKind::Rsa => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
    };
    let mut args: Vec<&std::ffi::OsStr> = vec!["genpkey".as_ref()];
    args.extend(algorithm.iter().map(std::ffi::OsStr::new));
    args.extend(["-out".as_ref(), pair.private_pem.as_os_str()]);
    openssl(&args);
    openssl(&[
        "pkey".as_ref(),
        "-in".as_ref(),
        pair.private_pem.as_os_str(),
        "-pubout".as_ref(),
        "-out".as_ref(),
        pair.public_pem.as_os_str(),
    ]);
    pair
}

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
