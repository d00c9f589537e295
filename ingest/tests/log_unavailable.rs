//! Invariant 8 at the edge: when the log cannot take a message, the sender gets `503` with
//! `Retry-After` and a problem body — never a `201` for something that is not durable.

use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bus::{Bus, BusError, Record, Subscription};
use ingest::{IngestState, Keys};
use model::service::KeySlot;
use store::sqlite::SqliteStore;
use store::{KeyOwner, Store};
use tower::ServiceExt;

/// A log whose broker is down.
#[derive(Debug)]
struct DownLog;

#[async_trait]
impl Bus for DownLog {
    async fn publish(&self, _: &str, _: Vec<Record>) -> Result<(), BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
    async fn subscribe(&self, _: &str, _: &str) -> Result<Box<dyn Subscription>, BusError> {
        Err(BusError::Unavailable("broker unreachable".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_log_cannot_take_is_refused_with_503_and_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).expect("store"));
    let keys = Keys::new(&[3; 32]);
    let service = store::conformance::sample_service();
    store.put_service(&service).await.expect("service");
    let key = keys.derive(&service.id, KeySlot::Primary, 0);
    let owner = KeyOwner::Service {
        service_id: service.id.clone(),
        slot: KeySlot::Primary,
    };
    store.put_key(&Keys::hash(&key), &owner).await.expect("key");

    let (state, _accepted_rows) = IngestState::new(
        Arc::clone(&store),
        Arc::new(DownLog),
        keys,
        [4; 32],
        &ingest::IngestSettings::default(),
    );
    let app = ingest::router(state);
    let body = r#"{"content":{"subject":"Bollo auto in scadenza","markdown":"mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"}}"#;
    let request = Request::post("/api/v1/messages/RSSMRA85T10A562S")
        .header("Ocp-Apim-Subscription-Key", key)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("request");
    let response = app.oneshot(request).await.expect("answer");

    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .expect("body");
    let problem: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    assert!(problem["detail"]
        .as_str()
        .expect("detail")
        .contains("not accepted"));
}
