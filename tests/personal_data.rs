//! No personal data in the logs, and one request followed across roles by its id. Every role
//! runs in this process, logging JSON at `debug` for Postino's own crates (`info` for the
//! libraries, the level a deployment runs them at), while messages go through every channel
//! and failure path; then no line holds a fiscal code, an email address, a device token, a
//! subject or a markdown body of the run, nor an API key, and the request id the sender gave
//! is on the lines of the ingest and of the dispatchers.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadtest::population::{device_token, fiscal_code};
use loadtest::scenarios::Scenario;
use model::installation::Platform;
use serde_json::Value;
use testkit::exposition::sum;

mod every_path;
mod push_standins;

use every_path::{count, Citizen, PATIENCE};

/// Where the log lines go: a buffer the test reads.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

const REQUEST_ID: &str = "sender-batch-2026-11-29:42";
const OWN_CRATES: &[&str] = &[
    "postino",
    "ingest",
    "citizen",
    "router",
    "dispatchers",
    "bus",
    "store",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_log_line_holds_personal_data_and_a_request_is_followed_to_the_dispatchers() {
    let captured = Captured::default();
    let filter = OWN_CRATES
        .iter()
        .fold("info".to_string(), |f, c| format!("{f},{c}=debug"));
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(move || writer.clone())
        .init();

    let run = every_path::Run::start().await;
    let citizens = run.send_through_every_path(Some(REQUEST_ID)).await;

    // Until every notification has its final outcome.
    let push_done = count(Citizen::Reachable)
        + count(Citizen::OnIphone)
        + count(Citizen::Flaky)
        + count(Citizen::DeviceGone)
        + count(Citizen::ProviderDown);
    let email_done = count(Citizen::Reachable) + count(Citizen::MailboxRefuses);
    let metrics = format!(
        "http://{}/metrics",
        run.app.metrics_addr.expect("metrics are served")
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = reqwest::get(&metrics)
            .await
            .expect("scrape")
            .text()
            .await
            .expect("text");
        let done = |channel| {
            ["sent", "failed", "token_removed"]
                .iter()
                .map(|outcome| {
                    sum(
                        &text,
                        "postino_dispatch_sends_total",
                        &[("channel", channel), ("outcome", outcome)],
                    )
                })
                .sum::<f64>()
        };
        if done("push") == push_done as f64 && done("email") == email_done as f64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pipeline did not finish"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    run.app.shutdown().await.expect("shutdown");

    let lines = captured.lines();
    assert!(lines.len() > 50, "only {} log lines", lines.len());
    let mut personal: Vec<String> = Vec::new();
    for &(i, _) in &citizens {
        personal.push(fiscal_code(i));
        personal.push(device_token(i, Platform::Fcm));
        personal.push(device_token(i, Platform::Apns));
        let body: Value =
            serde_json::from_slice(&Scenario::MassNotice.body(i)).expect("message JSON");
        for field in ["subject", "markdown"] {
            let text = body["content"][field].as_str().expect(field).to_string();
            personal.push(text);
        }
    }
    // The scripted tokens and every address of the run.
    personal.extend(["unregistered-", "flaky-1-", "status-503-", "@example.org"].map(String::from));
    // Nor a key: the service's, the operators'.
    personal.extend([run.service.key.clone(), every_path::MANAGE_KEY.to_string()]);
    for line in &lines {
        for secret in &personal {
            assert!(
                !line.contains(secret.as_str()),
                "a log line holds personal data ({secret}): {line}"
            );
        }
    }

    // One request, followed: its id on the ingest's lines and on the dispatchers'.
    let with_id: Vec<Value> = lines
        .iter()
        .filter(|l| l.contains(REQUEST_ID))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let targets: Vec<&str> = with_id
        .iter()
        .filter_map(|l| l["target"].as_str())
        .collect();
    for role in ["ingest", "dispatchers::push", "dispatchers::outcome"] {
        assert!(
            targets.iter().any(|t| t.starts_with(role)),
            "no line of {role} carries the request id; those that do: {targets:?}"
        );
    }
}
