//! What a mailbox directory holds: the SMTP sink's `.eml` files, or the outbox's mailbox
//! files.

use std::path::{Path, PathBuf};

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
