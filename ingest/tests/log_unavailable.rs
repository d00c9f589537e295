//! Invariant 8 at the edge: when the log cannot take a message, the sender gets `503` with
//! `Retry-After` and a problem body — never a `201` for something that is not durable. And
//! with an `Idempotency-Key`, the retry after a `503` (landed or not) gets the same message.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use bus::{Bus, BusError, Record, Subscription};
use ingest::{IngestState, Keys};
use model::pipeline::{decode, AcceptedMessage};
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

/// A log that fails its next publishes as it is told: `Down` refuses them, `LandsThenFails`
/// takes them but answers as if it had not (Kafka's timeout after the write), `Up` takes them.
#[derive(Debug, Default)]
struct FlakyLog {
    mode: AtomicU8,
    landed: Mutex<Vec<Record>>,
}

const UP: u8 = 0;
const DOWN: u8 = 1;
const LANDS_THEN_FAILS: u8 = 2;

impl FlakyLog {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// The message ids of the records that landed, in order.
    fn landed_ids(&self) -> Vec<String> {
        self.landed
            .lock()
            .expect("landed")
            .iter()
            .map(|r| {
                decode::<AcceptedMessage>(&r.payload)
                    .expect("an accepted message")
                    .id
                    .to_string()
            })
            .collect()
    }
}

#[async_trait]
impl Bus for FlakyLog {
    async fn publish(&self, _: &str, records: Vec<Record>) -> Result<(), BusError> {
        let mode = self.mode.load(Ordering::SeqCst);
        if mode != DOWN {
            self.landed.lock().expect("landed").extend(records);
        }
        match mode {
            UP => Ok(()),
            _ => Err(BusError::Unavailable("broker unreachable".into())),
        }
    }
    async fn subscribe(&self, _: &str, _: &str) -> Result<Box<dyn Subscription>, BusError> {
        Err(BusError::Unavailable("not in this test".into()))
    }
}

/// Ingest on `log`, with one service; its router and the service's key.
async fn ingest_on(log: Arc<dyn Bus>, dir: &std::path::Path) -> (axum::Router, String) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir).expect("store"));
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
        store,
        log,
        keys,
        [4; 32],
        &ingest::IngestSettings::default(),
    );
    (ingest::router(state), key)
}

const BODY: &str = r#"{"content":{"subject":"Bollo auto in scadenza","markdown":"mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm"}}"#;

async fn submit(
    app: &axum::Router,
    key: &str,
    idempotency_key: Option<&str>,
) -> axum::response::Response {
    let mut request = Request::post("/api/v1/messages/RSSMRA85T10A562S")
        .header("Ocp-Apim-Subscription-Key", key)
        .header("content-type", "application/json");
    if let Some(idempotency_key) = idempotency_key {
        request = request.header("Idempotency-Key", idempotency_key);
    }
    let request = request.body(Body::from(BODY)).expect("request");
    app.clone().oneshot(request).await.expect("answer")
}

/// The `id` of a `201`, and whether it says it is a replay.
async fn created(response: axum::response::Response) -> (String, bool) {
    assert_eq!(response.status(), StatusCode::CREATED);
    let replayed = response.headers().get("idempotent-replayed").is_some();
    let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .expect("body");
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
    (body["id"].as_str().expect("id").to_string(), replayed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_its_idempotency_key_after_a_503_gets_one_message_landed_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(FlakyLog::default());
    let (app, key) = ingest_on(Arc::clone(&log) as Arc<dyn Bus>, dir.path()).await;

    // The log is down: 503, nothing landed. The retry, once it is up, publishes the message.
    log.set(DOWN);
    let refused = submit(&app, &key, Some("retry-after-down")).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    log.set(UP);
    let (id, replayed) = created(submit(&app, &key, Some("retry-after-down")).await).await;
    assert!(replayed, "it answers a request made before");
    assert_eq!(log.landed_ids(), std::slice::from_ref(&id));
    // Once accepted, a retry only repeats the answer.
    assert_eq!(
        created(submit(&app, &key, Some("retry-after-down")).await).await,
        (id.clone(), true)
    );
    assert_eq!(log.landed_ids(), std::slice::from_ref(&id));

    // The write landed but the sender was told 503: the retry publishes the same message
    // again, which the pipeline takes once (it keeps one copy of a message id).
    log.set(LANDS_THEN_FAILS);
    let refused = submit(&app, &key, Some("landed-anyway")).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    log.set(UP);
    let (landed, _) = created(submit(&app, &key, Some("landed-anyway")).await).await;
    assert_eq!(log.landed_ids(), [id.clone(), landed.clone(), landed]);

    // Without a key, every submit is a message of its own.
    let (one, replayed) = created(submit(&app, &key, None).await).await;
    let (two, _) = created(submit(&app, &key, None).await).await;
    assert!(!replayed);
    assert_ne!(one, two);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_log_cannot_take_is_refused_with_503_and_retry_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app, key) = ingest_on(Arc::new(DownLog), dir.path()).await;
    let response = submit(&app, &key, None).await;

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
