//! Two ingest processes sharing one CQL store (Apache Cassandra) and one Kafka, as two
//! replicas behind a balancer: a test-mode key's weekly quota is exact across both, a key
//! regenerated through one stops working on the other within the stated bound, and a
//! submit retried with its `Idempotency-Key` on the other gets the first answer.

mod common;

use std::time::Duration;

use bus::test_kafka::own;
use common::*;
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// How long another ingest process may honour a key regenerated elsewhere: the time its
/// cache of keys trusts what it read (`ingest::CALLER_TTL`).
const ROTATION_BOUND: Duration = ingest::CALLER_TTL;

struct Replicas {
    a: Server,
    b: Server,
    client: reqwest::Client,
}

impl Replicas {
    fn manage(&self, base: &str, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{base}/api/v1/manage{path}"))
            .header("Ocp-Apim-Subscription-Key", MANAGE_KEY)
    }

    /// A service created through `a`, with `limits`; its id and keys.
    async fn service(&self, payload: Value, limits: Value) -> (String, String, String) {
        create_service_with(&self.client, &self.a.base, &payload, &limits).await
    }

    async fn get_profile(&self, base: &str, key: &str, fc: &str) -> StatusCode {
        self.client
            .get(format!("{base}/api/v1/profiles/{fc}"))
            .header("Ocp-Apim-Subscription-Key", key)
            .send()
            .await
            .expect("get profile")
            .status()
    }
}

fn payload(recipients: &[&str]) -> Value {
    json!({"name": "Replicas", "description": "d",
           "organization": {"name": "o", "fiscal_code": "00493410583"},
           "metadata": {"scope": "LOCAL"}, "authorized_recipients": recipients})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_processes_share_the_weekly_quota_key_rotation_and_idempotency() {
    let broker = own();
    let store = store::test_cql::address();
    store::test_cql::store().await; // the keyspace, migrated
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &broker.bootstrap, &store, "");
    let start_one = |name: &str| {
        start(
            &dir.path().join(name),
            &["--config", &config, "--roles", "ingest"],
        )
    };
    let replicas = Replicas {
        a: start_one("a"),
        b: start_one("b"),
        client: reqwest::Client::new(),
    };
    let fc = fiscal_codes(1).remove(0);

    // The weekly quota: 1100 requests with one test-mode key, spread over both, 16 at a
    // time; exactly 1000 are served.
    let (_, sandbox_key, _) = replicas
        .service(
            payload(&[&fc]),
            json!({"rate_limit": {"requests": 1_000_000, "period_seconds": 1}}),
        )
        .await;
    let statuses: Vec<StatusCode> = futures::stream::iter(0..1100)
        .map(|i| {
            let base = if i % 2 == 0 {
                &replicas.a.base
            } else {
                &replicas.b.base
            };
            replicas.get_profile(base, &sandbox_key, &fc)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let served = statuses
        .iter()
        .filter(|s| **s != StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(served, 1000, "{statuses:?}");
    for base in [&replicas.a.base, &replicas.b.base] {
        assert_eq!(
            replicas.get_profile(base, &sandbox_key, &fc).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }

    // Key rotation: both replicas know the key; it is regenerated through `a`.
    let (id, old_key, secondary) = replicas
        .service(payload(&[]), json!({"mode": "production"}))
        .await;
    for base in [&replicas.a.base, &replicas.b.base] {
        assert_eq!(
            replicas.get_profile(base, &old_key, &fc).await,
            StatusCode::NOT_FOUND
        );
    }
    let rotated: Value = replicas
        .manage(
            &replicas.a.base,
            reqwest::Method::PUT,
            &format!("/services/{id}/keys/primary"),
        )
        .send()
        .await
        .expect("regenerate")
        .json()
        .await
        .expect("json");
    let new_key = rotated["primary_key"].as_str().expect("key").to_string();
    assert_eq!(
        replicas.get_profile(&replicas.a.base, &old_key, &fc).await,
        StatusCode::UNAUTHORIZED,
        "at once on the replica that regenerated it"
    );
    let rotated_at = tokio::time::Instant::now();
    let refused_on_b = loop {
        let status = replicas.get_profile(&replicas.b.base, &old_key, &fc).await;
        if status == StatusCode::UNAUTHORIZED {
            break rotated_at.elapsed();
        }
        assert!(
            rotated_at.elapsed() < ROTATION_BOUND * 4,
            "the other replica still honours the old key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the other replica refused the old key after {refused_on_b:?}");
    for base in [&replicas.a.base, &replicas.b.base] {
        for key in [&new_key, &secondary] {
            assert_eq!(
                replicas.get_profile(base, key, &fc).await,
                StatusCode::NOT_FOUND,
                "the new key and the untouched one work on both"
            );
        }
    }

    // Idempotency: a submit through `a`, retried through `b`.
    let submit = |base: &str, body: Value| {
        replicas
            .client
            .post(format!("{base}/api/v1/messages/{fc}"))
            .header("Ocp-Apim-Subscription-Key", &new_key)
            .header("Idempotency-Key", "avviso-2026-0001")
            .json(&body)
            .send()
    };
    let message =
        json!({"content": {"subject": "Avviso di pagamento", "markdown": "x".repeat(80)}});
    let first = submit(&replicas.a.base, message.clone())
        .await
        .expect("submit");
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_id = first.json::<Value>().await.expect("json")["id"].clone();
    let again = submit(&replicas.b.base, message.clone())
        .await
        .expect("retry");
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(again.json::<Value>().await.expect("json")["id"], first_id);
    let mut changed = message;
    changed["content"]["subject"] = json!("Un altro avviso");
    let reused = submit(&replicas.b.base, changed).await.expect("reuse");
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);

    for server in [replicas.a, replicas.b] {
        assert!(
            server.terminate().success(),
            "an ingest process did not stop cleanly"
        );
    }
}
