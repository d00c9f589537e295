//! What SREs see, checked against a real Prometheus (Debian's `prometheus` package, which the
//! test command installs). Postino runs a pipeline through every channel and failure path:
//! FCM and APNs stand-ins that fail as the device tokens say, a real SMTP server that refuses
//! some addresses, citizens without a profile or who blocked the service, requests refused
//! for their body or their key. Then `promtool check metrics` passes on the exposition, and a
//! Prometheus server scraping the process answers, through its HTTP API, every series Postino
//! declares, with the values this run must have produced.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loadtest::population::fiscal_code;
use serde_json::Value;
use telemetry::Kind;
use testkit::exposition::tool;

mod every_path;
mod push_standins;

use every_path::{count, Citizen, MAX_ATTEMPTS, PATIENCE};

/// A Prometheus server scraping `targets` every second, stopped when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Prometheus {
    async fn start(targets: &[SocketAddr]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: postino\n    static_configs:\n      - targets: [{}]\n",
                targets.join(", ")
            ),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start prometheus");
        let url = format!("http://127.0.0.1:{port}");
        let prometheus = Self {
            child,
            url,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let ready = client
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                break prometheus;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prometheus never got ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The instant vector `query` gives now.
    async fn query(&self, query: &str) -> Vec<Value> {
        let answer: Value = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .expect("query prometheus")
            .json()
            .await
            .expect("prometheus answers JSON");
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The value of a query that gives one number (`sum(…)`), if it gives one now.
    async fn value(&self, query: &str) -> Option<f64> {
        let result = self.query(query).await;
        let sample = result.first()?;
        sample["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` gives `expected`, as scrapes bring the pipeline's progress in.
    async fn until_equal(&self, query: &str, expected: f64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let value = self.value(query).await;
            if value == Some(expected) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{query} is {value:?}, not {expected}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The names of every series it holds from Postino.
    async fn names(&self) -> BTreeSet<String> {
        self.query(r#"count by (__name__) ({job="postino"})"#)
            .await
            .iter()
            .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_string))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_every_declared_series_with_the_values_of_the_run() {
    let run = every_path::Run::start().await;
    let metrics = run.app.metrics_addr.expect("metrics are served");
    let prometheus = Prometheus::start(&[metrics]).await;
    let citizens = run.send_through_every_path(None).await;

    let sent = citizens.len() as f64;
    let rejected = (count(Citizen::NoProfile) + count(Citizen::Blocked)) as f64;
    let pushed =
        (count(Citizen::Reachable) + count(Citizen::OnIphone) + count(Citizen::Flaky)) as f64;
    let emailed = count(Citizen::Reachable) as f64;
    let down = count(Citizen::ProviderDown);
    let refusing = count(Citizen::MailboxRefuses) as f64;
    let checks: Vec<(String, f64)> = vec![
        ("sum(postino_ingest_messages_accepted_total)".into(), sent),
        (r#"sum(postino_ingest_refusals_total{reason="validation"})"#.into(), 1.0),
        (r#"sum(postino_ingest_refusals_total{reason="auth"})"#.into(), 1.0),
        (r#"sum(postino_http_requests_total{api="ingest",operation="POST /api/v1/messages/{fiscal_code}",status_class="2xx"})"#.into(), sent),
        (r#"sum(postino_router_rejections_total{reason="user_not_found"})"#.into(), count(Citizen::NoProfile) as f64),
        (r#"sum(postino_router_rejections_total{reason="service_not_allowed"})"#.into(), count(Citizen::Blocked) as f64),
        ("sum(postino_e2e_inbox_readable_seconds_count)".into(), sent - rejected),
        (r#"sum(postino_dispatch_sends_total{channel="push",outcome="sent"})"#.into(), pushed),
        (r#"sum(postino_dispatch_sends_total{channel="push",provider="apns",outcome="sent"})"#.into(), count(Citizen::OnIphone) as f64),
        (r#"sum(postino_dispatch_sends_total{channel="push",outcome="token_removed"})"#.into(), count(Citizen::DeviceGone) as f64),
        (r#"sum(postino_dispatch_sends_total{channel="push",outcome="retried"})"#.into(), (count(Citizen::Flaky) + down * MAX_ATTEMPTS) as f64),
        (r#"sum(postino_dispatch_sends_total{channel="push",outcome="failed"})"#.into(), down as f64),
        (r#"sum(postino_dispatch_sends_total{channel="email",provider="smtp",outcome="sent"})"#.into(), emailed),
        (r#"sum(postino_dispatch_sends_total{channel="email",outcome="failed"})"#.into(), refusing),
        ("sum(postino_e2e_push_sent_seconds_count)".into(), pushed),
        ("sum(postino_e2e_email_sent_seconds_count)".into(), emailed),
        // The failures planted are the dead letters: no more, no fewer.
        (r#"sum(postino_log_records_dead_lettered_total{topic="deliveries.push"})"#.into(), down as f64),
        (r#"sum(postino_log_records_dead_lettered_total{topic="deliveries.email"})"#.into(), refusing),
        (r#"sum(postino_log_records_dead_lettered_total{topic=~"messages|deliveries.inbox"})"#.into(), 0.0),
        (r#"sum(postino_log_records_published_total{topic="messages"})"#.into(), sent),
        // Every stage caught up: nothing left uncommitted.
        (r#"sum(postino_log_consumer_lag_records{topic=~"messages|deliveries.inbox|deliveries.push|deliveries.email"})"#.into(), 0.0),
        (r#"sum(postino_store_errors_total)"#.into(), 0.0),
        (r#"count(postino_build_info{version!=""})"#.into(), 1.0),
    ];
    for (query, expected) in &checks {
        prometheus.until_equal(query, *expected).await;
    }
    let in_flight = prometheus
        .value("sum(postino_dispatch_in_flight_requests)")
        .await;
    assert_eq!(in_flight, Some(0.0), "every provider request was answered");

    // Every declared series is there.
    let names = prometheus.names().await;
    let missing: Vec<&str> = postino::telemetry::catalogue()
        .iter()
        .filter(|m| {
            let exported = match m.kind {
                Kind::Histogram => format!("{}_count", m.name),
                _ => m.name.to_string(),
            };
            !names.contains(&exported)
        })
        .map(|m| m.name)
        .collect();
    assert!(
        missing.is_empty(),
        "declared but never seen by Prometheus: {missing:?}"
    );

    // The exposition itself passes Prometheus's own linter.
    let exposition = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("text");
    testkit::exposition::check_metrics(&exposition);
    // No personal data in any label: no fiscal code, address or token of this run.
    for (i, _) in &citizens {
        assert!(
            !exposition.contains(&fiscal_code(*i)),
            "a fiscal code in the metrics"
        );
    }
    assert!(!exposition.contains("example.org") && !exposition.contains("unregistered-"));

    run.app.shutdown().await.expect("shutdown");
}
