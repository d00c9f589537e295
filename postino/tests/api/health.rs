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
