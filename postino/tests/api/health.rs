//! Liveness and readiness, as Kubernetes probes them.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn a_running_postino_is_alive_and_ready() {
    let app = spawn_app().await;
    for path in ["/healthz", "/health"] {
        let alive = app.client.get(app.url(path)).send().await.expect("get");
        assert_eq!(alive.status(), StatusCode::OK, "{path}");
    }
    let ready = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("get");
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.text().await.expect("body"), "ready");
}

#[tokio::test]
async fn every_answer_carries_a_request_id_the_callers_when_it_is_a_sensible_one() {
    let app = spawn_app().await;
    let asked = |id: Option<&'static str>| {
        let mut request = app.client.get(app.url("/api/v1/profiles/AAAAAA00A00A000A"));
        if let Some(id) = id {
            request = request.header("X-Request-Id", id);
        }
        async move {
            let answer = request.send().await.expect("get");
            assert_eq!(answer.status(), StatusCode::UNAUTHORIZED, "no key: refused");
            answer
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .expect("an x-request-id on the answer")
        }
    };
    assert_eq!(asked(Some("batch-7:item-3")).await, "batch-7:item-3");
    for unusable in [None, Some("two words"), Some("")] {
        let made = asked(unusable).await;
        assert_eq!(made.len(), 26, "a fresh ULID for {unusable:?}: {made}");
        assert_ne!(Some(made.as_str()), unusable);
    }
    let first = asked(None).await;
    assert_ne!(first, asked(None).await, "each request its own");
}
