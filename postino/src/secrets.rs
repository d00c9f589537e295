//! Secrets the deployment needs and can make for itself on the embedded default: the
//! deployment secret (service keys, partition hash) and the development JWT secret. They
//! live in files under the data directory, readable only by their owner; in production they
//! come from configuration (a Kubernetes Secret) instead.

use std::io::Write;
use std::path::Path;

use rand::RngCore;

/// Parses 64 hex characters into 32 bytes. Any other character, a multi-byte one included,
/// is refused (never sliced through).
pub fn parse_secret(text: &str) -> Result<[u8; 32], String> {
    let text = text.trim();
    if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("must be hex characters (0-9, a-f)".into());
    }
    if text.len() != 64 {
        return Err(format!("must be 64 hex characters, got {}", text.len()));
    }
    let digit = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        *byte = digit(pair[0]) << 4 | digit(pair[1]);
    }
    Ok(out)
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the file at `path`, or creates it with `make()` if absent. The value is written
/// to a private temporary file first and then linked into place, which fails if `path`
/// exists: two processes starting together agree on one complete value.
pub fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> std::io::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(existing.trim().to_string());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", random_hex(8)));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let value = make();
    {
        let mut file = options.open(&tmp)?;
        file.write_all(value.as_bytes())?;
        file.sync_all()?;
    }
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(value),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(path)?.trim().to_string())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_and_persist() {
        assert!(parse_secret(&"ab".repeat(32)).is_ok());
        assert!(parse_secret("abc").is_err());
        assert!(parse_secret(&"zz".repeat(32)).is_err());
        assert_eq!(
            parse_secret(&format!("{}0a", "00".repeat(31))).map(|s| s[31]),
            Ok(10)
        );
        // 64 bytes, but not 64 hex characters: refused, not sliced mid-character.
        let accented = format!("{}é{}", "a".repeat(31), "b".repeat(31));
        assert_eq!(accented.len(), 64);
        assert!(parse_secret(&accented).is_err());
        assert!(parse_secret(&"€".repeat(21)).is_err());
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s");
        let first = read_or_create(&path, || random_hex(32)).expect("create");
        let again = read_or_create(&path, || "other".into()).expect("read");
        assert_eq!(first, again);
        assert!(parse_secret(&first).is_ok());
    }
}
