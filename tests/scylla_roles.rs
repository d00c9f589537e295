//! Roles apart on the production engines: ingest (with the citizen API), router, inbox,
//! push and email as five `postino` processes over Kafka (a broker of the test's own:
//! Postino's topics and groups have fixed names) and the CQL store (Apache Cassandra), with
//! no shared file: each process has a data directory of its own.
//!
//! Every message that got a `201` must reach its citizen's inbox exactly once and in order
//! when a stage process is `kill -9`'d mid-stream, and when the CQL server is frozen for
//! 20 s under load; and with two router processes, each caching profiles, a citizen's
//! preference change is honoured for their next message. A message a stage had dead-lettered would never reach the inbox, so
//! the inbox check is also the check that nothing was.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bus::test_kafka::{own, OwnServer};
use common::*;
use store::scylla::{ScyllaAddress, ScyllaStore};
use testkit::exposition::{samples, sum};

/// The roles, one process each.
const ROLES: [&str; 5] = ["ingest,citizen", "router", "inbox", "push", "email"];

/// The five processes, by role.
struct Roles {
    config: String,
    dir: PathBuf,
    running: HashMap<&'static str, Server>,
}

impl Roles {
    fn start(dir: &Path, config: String) -> Self {
        let mut roles = Self {
            config,
            dir: dir.to_path_buf(),
            running: HashMap::new(),
        };
        for role in ROLES {
            roles.restart(role);
        }
        roles
    }

    /// Starts `role` (again), in its own data directory.
    fn restart(&mut self, role: &'static str) {
        self.running.remove(role);
        let data = self.dir.join(role.replace(',', "-"));
        let server = start(&data, &["--config", &self.config, "--roles", role]);
        self.running.insert(role, server);
    }

    fn get(&self, role: &str) -> &Server {
        &self.running[role]
    }

    fn stop_all(mut self) {
        for role in ROLES {
            let status = self.running.remove(role).expect("running").terminate();
            assert!(
                status.success(),
                "{role} did not exit cleanly on SIGTERM: {status}"
            );
        }
    }
}

async fn survive_a_kill_9_of(victim: &'static str) {
    let broker = own();
    let store = store::test_cql::address();
    store::test_cql::store().await; // the keyspace, migrated
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.bootstrap, &store, "");
    let mut roles = Roles::start(dir.path(), config);
    let base = roles.get("ingest,citizen").base.clone();
    let client = reqwest::Client::new();
    let key = create_service(&client, &base).await;
    let citizens = fiscal_codes(40);
    create_profiles(&client, &base, &citizens).await;

    // A first wave proves every stage consumes, so the kill lands while the victim works.
    let warm_up = Stream {
        senders: 8,
        stop_after: 80,
        kill_at: None,
    };
    let mut accepted = send_stream(&client, &base, &key, &citizens, warm_up).await;
    assert_inboxes_hold_exactly(&client, &base, &accepted).await;

    let stream = Stream {
        senders: 8,
        stop_after: 1000,
        kill_at: Some((500, roles.get(victim).child.clone())),
    };
    let second = send_stream(&client, &base, &key, &citizens, stream).await;
    let total: usize = second.values().map(Vec::len).sum();
    assert!(
        total >= 1000,
        "ingest kept accepting while the {victim} was down, got {total}"
    );
    for (fc, ids) in second {
        accepted.entry(fc).or_default().extend(ids);
    }
    roles.restart(victim);
    assert_inboxes_hold_exactly(&client, &base, &accepted).await;
    roles.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_on_kafka_and_cql_survive_a_router_kill_9() {
    survive_a_kill_9_of("router").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_on_kafka_and_cql_survive_an_inbox_dispatcher_kill_9() {
    survive_a_kill_9_of("inbox").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seconds_without_the_cql_server_lose_nothing_and_ingest_keeps_accepting() {
    let broker = own();
    let cassandra = OwnServer::start("cassandra");
    let store =
        ScyllaAddress::parse(&format!("scylla://{}/postino", cassandra.address)).expect("address");
    ScyllaStore::migrate(&store, &store::test_cql::settings())
        .await
        .expect("migrate");
    let dir = tempfile::tempdir().expect("tempdir");
    // Statements give up sooner than the default 5 s, so the stages see the outage as it is.
    let config = write_config(
        dir.path(),
        &broker.bootstrap,
        &store,
        "[scylla]\nreplication = \"simple:1\"\nrequest_timeout_ms = 2000",
    );
    let roles = Roles::start(dir.path(), config);
    let base = roles.get("ingest,citizen").base.clone();
    let client = reqwest::Client::new();
    let key = create_service(&client, &base).await;
    let citizens = fiscal_codes(20);
    create_profiles(&client, &base, &citizens).await;
    let warm_up = Stream {
        senders: 4,
        stop_after: 40,
        kill_at: None,
    };
    let mut accepted = send_stream(&client, &base, &key, &citizens, warm_up).await;
    assert_inboxes_hold_exactly(&client, &base, &accepted).await;

    cassandra.pause();
    let readyz = format!("{base}/readyz");
    let not_ready = client.get(&readyz).send().await.expect("readyz");
    assert_eq!(not_ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let problem: serde_json::Value = not_ready.json().await.expect("problem+json");
    assert_eq!(problem["detail"], "not ready: the store does not answer");
    let outage = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut during = 0;
    let mut round = 0;
    while tokio::time::Instant::now() < outage {
        for fc in &citizens {
            let answer = client
                .post(format!("{base}/api/v1/messages/{fc}"))
                .header("Ocp-Apim-Subscription-Key", &key)
                .json(&serde_json::json!({"content": {
                    "subject": format!("Avviso durante il guasto {round}"),
                    "markdown": "m".repeat(80)}}))
                .send()
                .await
                .expect("answer");
            assert_eq!(
                answer.status(),
                reqwest::StatusCode::CREATED,
                "ingest must keep accepting while the store is away: the log is Kafka"
            );
            let body: serde_json::Value = answer.json().await.expect("json");
            let id = body["id"].as_str().expect("id").to_string();
            accepted.entry(fc.clone()).or_default().push(id);
            during += 1;
        }
        round += 1;
    }
    cassandra.resume();
    assert!(during >= citizens.len(), "sent {during} during the outage");
    assert_inboxes_hold_exactly(&client, &base, &accepted).await;
    let ready = client.get(&readyz).send().await.expect("readyz");
    assert_eq!(ready.status(), reqwest::StatusCode::OK, "ready again");

    // What each process showed Prometheus of it.
    let sent: usize = accepted.values().map(Vec::len).sum();
    let mut store_errors = 0.0;
    for role in ROLES {
        let text = roles.get(role).metrics().await;
        assert_eq!(
            sum(&text, "postino_build_info", &[("roles", role)]),
            1.0,
            "{role}"
        );
        store_errors += sum(
            &text,
            "postino_store_errors_total",
            &[("backend", "scylla"), ("kind", "unavailable")],
        );
    }
    let ingest = roles.get("ingest,citizen").metrics().await;
    assert_eq!(
        sum(&ingest, "postino_ingest_messages_accepted_total", &[]),
        sent as f64
    );
    assert!(store_errors > 0.0, "the outage shows as store errors");
    let inbox = roles.get("inbox").metrics().await;
    let router = roles.get("router").metrics().await;
    // Which stage meets the outage first depends on timing: the inbox dispatcher writing a
    // routed message, or the router once its cached profiles are no longer fresh. Either
    // holds its batch rather than dead-letter it.
    let held = sum(
        &inbox,
        "postino_stage_holds_total",
        &[("topic", "deliveries.inbox")],
    ) + sum(
        &router,
        "postino_stage_holds_total",
        &[("topic", "messages")],
    );
    assert!(
        held > 0.0,
        "the router or the inbox dispatcher held its batch while the store was away"
    );
    let readable = sum(&inbox, "postino_e2e_inbox_readable_seconds_count", &[]);
    assert!(readable >= sent as f64, "{readable} of {sent} readable");
    let lag = samples(&router)
        .into_iter()
        .filter(|s| {
            s.name == "postino_log_consumer_lag_records" && s.label("group") == Some("router")
        })
        .count();
    assert_eq!(
        lag, 3,
        "the lag of each of the router's 3 partitions of messages"
    );
    roles.stop_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preference_change_is_honoured_by_the_next_message_on_either_of_two_routers() {
    let broker = own();
    let store = store::test_cql::address();
    store::test_cql::store().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.bootstrap, &store, "");
    let role = |name: &str, roles: &str| {
        start(
            &dir.path().join(name),
            &["--config", &config, "--roles", roles],
        )
    };
    let ingest = role("ingest", "ingest,citizen");
    let _routers = [role("router-1", "router"), role("router-2", "router")];
    let _inbox = role("inbox", "inbox");
    let client = reqwest::Client::new();
    let (service, key) = create_service_with_id(&client, &ingest.base).await;
    // Enough citizens that both routers (3 partitions between them) route some.
    let citizens = fiscal_codes(12);
    create_profiles(&client, &ingest.base, &citizens).await;

    // The first message of each is routed, and its citizen cached by whichever router had it.
    for fc in &citizens {
        let id = send_one(&client, &ingest.base, &key, fc).await;
        let status = final_status(&client, &ingest.base, &key, fc, &id).await;
        assert_eq!(status["status"], "PROCESSED", "{status}");
    }
    for fc in &citizens {
        let blocked = client
            .put(format!(
                "{}/citizen/v1/services/{service}/preferences",
                ingest.base
            ))
            .bearer_auth(token(fc))
            .json(
                &serde_json::json!({"is_inbox_enabled": false, "is_email_enabled": true,
                "is_webhook_enabled": true, "settings_version": 0}),
            )
            .send()
            .await
            .expect("block the service");
        assert_eq!(blocked.status(), reqwest::StatusCode::OK);
    }
    for fc in &citizens {
        let id = send_one(&client, &ingest.base, &key, fc).await;
        let status = final_status(&client, &ingest.base, &key, fc, &id).await;
        assert_eq!(
            (
                status["status"].as_str(),
                status["rejection_reason"].as_str()
            ),
            (Some("REJECTED"), Some("SERVICE_NOT_ALLOWED")),
            "the cached profile must not outlive the change"
        );
    }
}
