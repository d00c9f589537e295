//! One run through every channel and failure path, shared by the tests that look at what
//! Postino shows of it (its metrics, its logs): FCM and APNs stand-ins that fail as the device
//! tokens say, a real SMTP server that refuses some addresses, citizens without a profile or
//! who blocked the service, and requests refused for their body or their key.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::time::Duration;

use loadtest::api::{Api, SenderService};
use loadtest::population::{device_token, fiscal_code};
use loadtest::scenarios::Scenario;
use loadtest::stats::Outcome;
use model::installation::Platform;
use postino::app::App;
use postino::config::{Config, MetricsListen};
use serde_json::{json, Value};

use crate::push_standins::{self, Standins};

pub const JWT_SECRET: &str = "every-path test secret for citizen tokens";
pub const MANAGE_KEY: &str = "every-path-test-manage-key-0123";
/// Attempts a notification gets before it is dead-lettered.
pub const MAX_ATTEMPTS: u64 = 2;
/// Long enough that a correct pipeline never hits it; only a bug waits this long.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Who gets a message in this run, and what each kind of citizen must lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Citizen {
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

pub const POPULATION: &[(Citizen, u64)] = &[
    (Citizen::Reachable, 3),
    (Citizen::OnIphone, 1),
    (Citizen::DeviceGone, 2),
    (Citizen::Flaky, 1),
    (Citizen::ProviderDown, 2),
    (Citizen::MailboxRefuses, 2),
    (Citizen::NoProfile, 2),
    (Citizen::Blocked, 1),
];

pub fn count(kind: Citizen) -> u64 {
    POPULATION
        .iter()
        .filter(|(k, _)| *k == kind)
        .map(|(_, n)| n)
        .sum()
}

/// Creates citizen `i` as `kind` wants, through the citizen API.
pub async fn seed(api: &Api, i: u64, kind: Citizen, service_id: &str) {
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

/// Postino (every role in this process, on its embedded log and store) with its providers.
pub struct Run {
    pub app: App,
    pub api: Api,
    pub service: SenderService,
    pub base: String,
    _push: Standins,
    _sink: testkit::smtp::SmtpSink,
    _dirs: [tempfile::TempDir; 2],
}

impl Run {
    pub async fn start() -> Self {
        let push = push_standins::standins().await;
        let mailbox = tempfile::tempdir().expect("tempdir");
        let sink = testkit::smtp::SmtpSink::start(mailbox.path());
        let data = tempfile::tempdir().expect("tempdir");
        let any = "127.0.0.1:0".parse().expect("addr");
        let mut config = Config {
            listen: any,
            metrics_listen: MetricsListen::On(any),
            data_dir: data.path().to_path_buf(),
            manage_key: Some(MANAGE_KEY.into()),
            ..Config::default()
        };
        config.jwt.secret = Some(JWT_SECRET.into());
        push.configure(&mut config);
        config.smtp.host = Some("127.0.0.1".into());
        config.smtp.port = Some(sink.port);
        config.smtp.tls = dispatchers::email::SmtpTls::None;
        // The profile cache on, as on ScyllaDB, so its series are seen too.
        config.router.cache_max_mb = Some(16);
        config.stage.retry.max_attempts = MAX_ATTEMPTS as u32;
        config.stage.retry.initial_ms = 200;
        config.stage.retry.max_ms = 400;
        let app = App::start(&config).await.expect("start postino");
        let base = format!("http://{}", app.addr);
        let api = Api::new(&base, 4, JWT_SECRET).expect("client");
        let service = api
            .create_service(MANAGE_KEY, "Every path")
            .await
            .expect("service");
        Self {
            app,
            api,
            service,
            base,
            _push: push,
            _sink: sink,
            _dirs: [mailbox, data],
        }
    }

    /// Seeds the population, sends each citizen one message (with `request_id` as the
    /// `X-Request-Id` of every submit, when given), and two requests that are refused.
    /// Returns the citizens, by index and kind.
    pub async fn send_through_every_path(&self, request_id: Option<&str>) -> Vec<(u64, Citizen)> {
        let mut citizens = Vec::new();
        let mut i = 0;
        for &(kind, n) in POPULATION {
            for _ in 0..n {
                seed(&self.api, i, kind, &self.service.id).await;
                citizens.push((i, kind));
                i += 1;
            }
        }
        let http = reqwest::Client::new();
        for &(i, _) in &citizens {
            let fc = fiscal_code(i);
            let mut submit = http
                .post(format!("{}/api/v1/messages/{fc}", self.base))
                .header("Ocp-Apim-Subscription-Key", &self.service.key)
                .header("content-type", "application/json")
                .body(Scenario::MassNotice.body(i));
            if let Some(id) = request_id {
                submit = submit.header("X-Request-Id", id);
            }
            let answer = submit.send().await.expect("submit");
            assert_eq!(answer.status(), 201);
            let echoed = answer
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok());
            assert!(
                echoed.is_some_and(|e| request_id.is_none_or(|id| id == e)),
                "{echoed:?}"
            );
        }
        // Refused: a body that is no message, and a key that is no key.
        let refused = http
            .post(format!("{}/api/v1/messages", self.base))
            .header("Ocp-Apim-Subscription-Key", &self.service.key)
            .json(&json!({"fiscal_code": "not a fiscal code"}))
            .send()
            .await
            .expect("send");
        assert_eq!(refused.status(), 400);
        let refused = http
            .post(format!("{}/api/v1/messages", self.base))
            .header("Ocp-Apim-Subscription-Key", "no-such-key-0123456789")
            .json(&json!({}))
            .send()
            .await
            .expect("send");
        assert_eq!(refused.status(), 401);
        citizens
    }
}
