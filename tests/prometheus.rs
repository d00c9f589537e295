//! What SREs see, checked against a real Prometheus (Debian's `prometheus` package, which the
//! test command installs). Postino runs a pipeline through every channel and failure path:
//! FCM and APNs stand-ins that fail as the device tokens say, a real SMTP server that refuses
//! some addresses, citizens without a profile or who blocked the service, requests refused
//! for their body or their key. Then `promtool check metrics` passes on the exposition, and a
//! Prometheus server scraping the process answers, through its HTTP API, every series Postino
//! declares, with the values this run must have produced.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use loadtest::api::Api;
use loadtest::population::{device_token, fiscal_code};
use loadtest::scenarios::Scenario;
use loadtest::stats::Outcome;
use model::installation::Platform;
use postino::app::App;
use postino::config::{Config, MetricsListen};
use serde_json::{json, Value};
use telemetry::Kind;
use testkit::exposition::tool;

mod push_standins;

const JWT_SECRET: &str = "prometheus test secret for citizen tokens";
const MANAGE_KEY: &str = "prometheus-test-manage-key-0123";
/// Attempts a notification gets before it is dead-lettered.
const MAX_ATTEMPTS: u64 = 2;
/// Long enough that a correct pipeline never hits it; only a bug waits this long.
const PATIENCE: Duration = Duration::from_secs(90);

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

/// Who gets a message in this run, and what each kind of citizen must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Citizen {
    /// A validated email and an FCM device: one push and one email sent.
    Reachable,
    /// An APNs device: one push sent.
    OnIphone,
    /// An FCM device the provider says is gone: its token removed.
    DeviceGone,
    /// An FCM device whose first push fails (503), then goes.
    Flaky,
    /// An FCM device that always fails (503): retried, then dead-lettered.
    ProviderDown,
    /// A validated address the SMTP server refuses (550): dead-lettered at once.
    MailboxRefuses,
    /// No profile: the message is rejected (user_not_found).
    NoProfile,
    /// Blocked the service: the message is rejected (service_not_allowed).
    Blocked,
}

const POPULATION: &[(Citizen, u64)] = &[
    (Citizen::Reachable, 3),
    (Citizen::OnIphone, 1),
    (Citizen::DeviceGone, 2),
    (Citizen::Flaky, 1),
    (Citizen::ProviderDown, 2),
    (Citizen::MailboxRefuses, 2),
    (Citizen::NoProfile, 2),
    (Citizen::Blocked, 1),
];

fn count(kind: Citizen) -> u64 {
    POPULATION
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, n)| n)
        .sum()
}

/// Creates citizen `i` as `kind` wants, through the citizen API.
async fn seed(api: &Api, i: u64, kind: Citizen, service_id: &str) {
    let fc = fiscal_code(i);
    let put = |path: String, body: Value| {
        let fc = fc.clone();
        async move {
            let outcome = api.put_as_citizen(&fc, &path, &body).await;
            assert_eq!(outcome, Outcome::Ok, "{path}");
        }
    };
    if kind == Citizen::NoProfile {
        return;
    }
    let mut profile =
        json!({"is_inbox_enabled": true, "is_webhook_enabled": true, "is_email_enabled": true});
    let mailbox = match kind {
        Citizen::Reachable => Some(format!("citizen-{i}@example.org")),
        Citizen::MailboxRefuses => Some(format!("reject-{i}@example.org")),
        _ => None,
    };
    if let Some(address) = mailbox {
        profile["email"] = json!(address);
        profile["is_email_validated"] = json!(true);
    }
    put("/profile".into(), profile).await;
    let device = match kind {
        Citizen::Reachable => Some(("fcm", device_token(i, Platform::Fcm))),
        Citizen::OnIphone => Some(("apns", device_token(i, Platform::Apns))),
        Citizen::DeviceGone => Some(("fcm", format!("unregistered-{i}"))),
        Citizen::Flaky => Some(("fcm", format!("flaky-1-{i}"))),
        Citizen::ProviderDown => Some(("fcm", format!("status-503-{i}"))),
        _ => None,
    };
    if let Some((platform, token)) = device {
        let body = json!({"platform": platform, "push_channel": token});
        put(format!("/installations/device-{i}"), body).await;
    }
    if kind == Citizen::Blocked {
        let body = json!({"is_inbox_enabled": false, "is_email_enabled": false, "is_webhook_enabled": false, "settings_version": 0});
        put(format!("/services/{service_id}/preferences"), body).await;
    }
}

async fn postino(data: &Path, push: &push_standins::Standins, smtp_port: u16) -> App {
    let any = "127.0.0.1:0".parse().expect("addr");
    let mut config = Config {
        listen: any,
        metrics_listen: MetricsListen::On(any),
        data_dir: data.to_path_buf(),
        manage_key: Some(MANAGE_KEY.into()),
        ..Config::default()
    };
    config.jwt.secret = Some(JWT_SECRET.into());
    push.configure(&mut config);
    config.smtp.host = Some("127.0.0.1".into());
    config.smtp.port = Some(smtp_port);
    config.smtp.tls = dispatchers::email::SmtpTls::None;
    // The profile cache on, as on ScyllaDB, so its series are seen too.
    config.router.cache_max_mb = Some(16);
    config.stage.retry.max_attempts = MAX_ATTEMPTS as u32;
    config.stage.retry.initial_ms = 200;
    config.stage.retry.max_ms = 400;
    App::start(&config).await.expect("start postino")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_sees_every_declared_series_with_the_values_of_the_run() {
    let push = push_standins::standins().await;
    let mailbox = tempfile::tempdir().expect("tempdir");
    let sink = testkit::smtp::SmtpSink::start(mailbox.path());
    let data = tempfile::tempdir().expect("tempdir");
    let app = postino(data.path(), &push, sink.port).await;
    let metrics = app.metrics_addr.expect("metrics are served");
    let prometheus = Prometheus::start(&[metrics]).await;

    let base = format!("http://{}", app.addr);
    let api = Api::new(&base, 4, JWT_SECRET).expect("client");
    let service = api
        .create_service(MANAGE_KEY, "Prometheus test")
        .await
        .expect("service");
    let mut citizens = Vec::new();
    let mut i = 0;
    for &(kind, n) in POPULATION {
        for _ in 0..n {
            seed(&api, i, kind, &service.id).await;
            citizens.push((i, kind));
            i += 1;
        }
    }
    for &(i, _) in &citizens {
        let fc = fiscal_code(i);
        let body = Scenario::MassNotice.body(i);
        let (outcome, _) = api.submit(&service, &fc, body).await;
        assert_eq!(outcome, Outcome::Ok);
    }
    // Refused: a body that is no message, and a key that is no key.
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{base}/api/v1/messages"))
        .header("Ocp-Apim-Subscription-Key", &service.key)
        .json(&json!({"fiscal_code": "not a fiscal code"}))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 400);
    let refused = http
        .post(format!("{base}/api/v1/messages"))
        .header("Ocp-Apim-Subscription-Key", "no-such-key-0123456789")
        .json(&json!({}))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 401);

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

    app.shutdown().await.expect("shutdown");
}
