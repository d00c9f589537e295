//! Reading what a Postino process exposes on `/metrics`: Prometheus's own linter on it
//! (`promtool check metrics`, from Debian's `prometheus` package), and the samples of a
//! series, by name and labels.

use std::io::Write;
use std::process::{Command, Stdio};

/// The path of a tool the test command installs.
///
/// # Panics
/// When it is not on `PATH`: the test cannot go on without it.
pub fn tool(name: &str) -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} is not installed: install Debian's prometheus package (scripts/test.sh does)"
        )
    })
}

/// `promtool check metrics` on `exposition`.
///
/// # Panics
/// When promtool finds a problem, with what it said.
pub fn check_metrics(exposition: &str) {
    let mut promtool = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    {
        let mut stdin = promtool.stdin.take().expect("stdin");
        stdin
            .write_all(exposition.as_bytes())
            .expect("feed promtool");
    }
    let checked = promtool.wait_with_output().expect("promtool ends");
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// One sample: its series name, labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of the text exposition format (comments skipped; a line that does not parse
/// is a test failure).
pub fn samples(exposition: &str) -> Vec<Sample> {
    exposition
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| parse_line(line).unwrap_or_else(|| panic!("unreadable sample: {line}")))
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    let Some((name, rest)) = series.split_once('{') else {
        return Some(Sample {
            name: series.to_string(),
            labels: Vec::new(),
            value,
        });
    };
    let body = rest.strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut chars = body.chars().peekable();
    while chars.peek().is_some() {
        let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next()?),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((label.trim_start_matches(',').to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The sum of series `name`'s samples whose labels include every one of `labels`.
pub fn sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(exposition)
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| labels.iter().all(|(k, v)| s.label(k) == Some(v)))
        .map(|s| s.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_with_quoted_commas_and_escapes() {
        let text = "# HELP x y\npostino_build_info{version=\"0.1.0\",roles=\"ingest,citizen\"} 1\nup 0\nq{a=\"say \\\"hi\\\"\"} 2.5\n";
        let all = samples(text);
        assert_eq!(all.len(), 3);
        assert_eq!(all[0].label("roles"), Some("ingest,citizen"));
        assert_eq!(all[2].label("a"), Some("say \"hi\""));
        assert_eq!(
            sum(text, "postino_build_info", &[("roles", "ingest,citizen")]),
            1.0
        );
        assert_eq!(sum(text, "up", &[]), 0.0);
    }
}
