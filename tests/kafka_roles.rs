//! Roles apart over Kafka: ingest (with the citizen API), router and inbox run as three
//! `postino` processes on one host, with Kafka (a real broker of the test's own, see
//! `bus::test_kafka`: Postino's topics and groups have fixed names) between them and the
//! SQLite store shared by path. The router is `kill -9`'d mid-stream and restarted; every
//! message that got a `201` still reaches its inbox exactly once, in order.

mod common;

use std::path::Path;

use bus::test_kafka::own;
use common::*;
use testkit::exposition::sum;

/// Writes a configuration for Postino on `bootstrap` with `settings` added, and returns
/// its path. A consumer that dies is dropped from its group after 6 s (the broker's least
/// session timeout) instead of Postino's 10 s, so a replacement gets its partitions sooner.
fn write_config(dir: &Path, bootstrap: &str, settings: &str) -> String {
    let path = dir.join("postino.toml");
    let text = format!(
        "bus = \"kafka://{bootstrap}\"\n{settings}\n[kafka]\npartitions = 3\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n"
    );
    std::fs::write(&path, text).expect("config");
    path.to_string_lossy().to_string()
}

async fn post_message(
    client: &reqwest::Client,
    base: &str,
    key: &str,
    fc: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/v1/messages/{fc}"))
        .header("Ocp-Apim-Subscription-Key", key)
        .json(&serde_json::json!({"content": {"subject": "Avviso durante il guasto", "markdown": "m".repeat(80)}}))
        .send()
        .await
        .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_over_kafka_survive_a_router_kill_9() {
    let broker = own();
    let dir = tempfile::tempdir().expect("tempdir");
    // No static membership: the killed router led its consumer group, and the restarted
    // one must be given its partitions once the group drops the dead leader.
    let config = write_config(dir.path(), &broker.bootstrap, "");
    let data = dir.path().join("data");
    let role = |roles: &str| start(&data, &["--config", &config, "--roles", roles]);

    let ingest = role("ingest,citizen");
    let router = role("router");
    let inbox_dispatcher = role("inbox");
    let client = reqwest::Client::new();
    let key = create_service(&client, &ingest.base).await;
    let citizens = fiscal_codes(40);
    create_profiles(&client, &ingest.base, &citizens).await;

    // A first wave proves the router is consuming (its group joined, partitions assigned),
    // so the kill in the second wave lands while it is processing.
    let warm_up = Stream {
        senders: 8,
        stop_after: 80,
        kill_at: None,
    };
    let mut accepted = send_stream(&client, &ingest.base, &key, &citizens, warm_up).await;
    assert_inboxes_hold_exactly(&client, &ingest.base, &accepted).await;

    let stream = Stream {
        senders: 8,
        stop_after: 1200,
        kill_at: Some((600, router.child.clone())),
    };
    let second = send_stream(&client, &ingest.base, &key, &citizens, stream).await;
    let total: usize = second.values().map(Vec::len).sum();
    assert!(
        total >= 1200,
        "ingest kept accepting while the router was down, got {total}"
    );
    for (fc, ids) in second {
        accepted.entry(fc).or_default().extend(ids);
    }

    drop(router); // reaps the killed process
    let router = role("router");
    assert_inboxes_hold_exactly(&client, &ingest.base, &accepted).await;

    for process in [ingest, router, inbox_dispatcher] {
        let status = process.terminate();
        assert!(
            status.success(),
            "a role did not exit cleanly on SIGTERM: {status}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_answers_503_while_the_broker_is_unreachable_and_loses_nothing_it_accepted() {
    let broker = own();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &broker.bootstrap,
        "kafka_publish_timeout_ms = 1500",
    );
    let server = start(&dir.path().join("data"), &["--config", &config]);
    let client = reqwest::Client::new();
    let key = create_service(&client, &server.base).await;
    let citizens = fiscal_codes(10);
    create_profiles(&client, &server.base, &citizens).await;
    let warm_up = Stream {
        senders: 2,
        stop_after: 20,
        kill_at: None,
    };
    let mut accepted = send_stream(&client, &server.base, &key, &citizens, warm_up).await;

    broker.pause();
    let not_ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(not_ready.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    let problem: serde_json::Value = not_ready.json().await.expect("problem+json");
    assert_eq!(problem["detail"], "not ready: the log does not answer");
    let refused = post_message(&client, &server.base, &key, &citizens[0]).await;
    assert_eq!(
        refused.status(),
        reqwest::StatusCode::SERVICE_UNAVAILABLE,
        "not 201 while nothing can be made durable"
    );
    assert!(refused.headers().contains_key("retry-after"));
    // Prometheus still reaches the process, and sees why it refuses.
    let during = server.metrics().await;
    let failed = sum(
        &during,
        "postino_log_publish_errors_total",
        &[("topic", "messages")],
    );
    assert!(failed >= 1.0, "the failed publish is counted");
    let unavailable = sum(
        &during,
        "postino_ingest_refusals_total",
        &[("reason", "unavailable")],
    );
    assert!(unavailable >= 1.0, "the 503 is counted as a refusal");
    broker.resume();

    // It recovers by itself: a sender retrying after Retry-After is accepted again.
    let mut recovered = None;
    for _ in 0..50 {
        let r = post_message(&client, &server.base, &key, &citizens[1]).await;
        if r.status() == reqwest::StatusCode::CREATED {
            let body: serde_json::Value = r.json().await.expect("json");
            recovered = body["id"].as_str().map(str::to_string);
            break;
        }
        assert_eq!(r.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let recovered = recovered.expect("ingest did not recover after the broker came back");
    accepted
        .entry(citizens[1].clone())
        .or_default()
        .push(recovered);

    let after = Stream {
        senders: 2,
        stop_after: 20,
        kill_at: None,
    };
    let recovered = send_stream(&client, &server.base, &key, &citizens, after).await;
    assert!(
        recovered.values().map(Vec::len).sum::<usize>() >= 20,
        "ingest did not recover after the broker came back"
    );
    for (fc, ids) in recovered {
        accepted.entry(fc).or_default().extend(ids);
    }
    assert_inboxes_hold_exactly(&client, &server.base, &accepted).await;
}

#[test]
fn kafka_init_creates_every_topic_once_and_reports_it() {
    let broker = own();
    let init_with = |env: &[(&str, &str)]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_postino"))
            .args([
                "kafka",
                "init",
                "--bus",
                &format!("kafka://{}", broker.bootstrap),
            ])
            .env_remove("POSTINO_CONFIG")
            .envs(env.iter().copied())
            .output()
            .expect("run postino kafka init")
    };
    let init = || init_with(&[]);
    let first = init();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let report = String::from_utf8_lossy(&first.stdout).to_string();
    for topic in [
        "messages",
        "messages.dlq",
        "messages.retry",
        "deliveries.inbox",
        "deliveries.inbox.retry",
        "deliveries.inbox.dlq",
        "deliveries.push",
        "deliveries.email.dlq",
        "profile-changes",
    ] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(&format!("created {topic} "))),
            "{topic} not created:\n{report}"
        );
    }
    let second = init();
    assert!(second.status.success());
    let report = String::from_utf8_lossy(&second.stdout).to_string();
    assert_eq!(
        report.lines().filter(|l| l.starts_with("exists  ")).count(),
        postino::kafka_init::specs(&postino::config::Config::default()).len(),
        "{report}"
    );
    assert!(
        !report.contains("created"),
        "a second run changes nothing:\n{report}"
    );

    // Configuration that drifted from the topics is reported, topic by topic.
    let drifted = init_with(&[
        ("POSTINO_KAFKA_RETENTION_MS", "3600000"),
        ("POSTINO_KAFKA_PARTITIONS", "3"),
    ]);
    assert!(drifted.status.success());
    let report = String::from_utf8_lossy(&drifted.stdout).to_string();
    let messages = report
        .lines()
        .find(|l| l.starts_with("differs messages:"))
        .unwrap_or_else(|| panic!("no drift reported for messages:\n{report}"));
    assert!(
        messages.contains("retention.ms is 604800000, configured 3600000"),
        "{messages}"
    );
    assert!(
        messages.contains("has 12 partitions, configured 3"),
        "{messages}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("differs messages.dlq: has 12 partitions")),
        "the dead-letter topic keeps its own retention, but not its partitions:\n{report}"
    );

    let embedded = std::process::Command::new(env!("CARGO_BIN_EXE_postino"))
        .args(["kafka", "init", "--bus", "embedded"])
        .env_remove("POSTINO_CONFIG")
        .output()
        .expect("run");
    assert!(!embedded.status.success());
    assert!(String::from_utf8_lossy(&embedded.stderr).contains("kafka://"));
}
