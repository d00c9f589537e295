//! Checking what a Postino process exposes on `/metrics`: Prometheus's own linter on it
//! (`promtool check metrics`, from Debian's `prometheus` package); the samples of a series,
//! by name and labels, are read with [`telemetry::exposition`].

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

pub use telemetry::exposition::Sample;

/// The samples of `exposition`.
///
/// # Panics
/// When it is not the text format: Postino's own exposition always is.
pub fn samples(exposition: &str) -> Vec<Sample> {
    telemetry::exposition::parse(exposition).unwrap_or_else(|e| panic!("{e}"))
}

/// The sum of series `name`'s samples in `exposition` whose labels include all of `labels`.
///
/// # Panics
/// As [`samples`].
pub fn sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    telemetry::exposition::sum(&samples(exposition), name, labels)
}
