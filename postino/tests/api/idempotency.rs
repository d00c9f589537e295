//! `Idempotency-Key` on both submits, as a sender meets it: a retry gets the first answer,
//! the key reused for another request is `422`, keys are per service, and a restart keeps
//! them. (The retry after a `503`, landed or not: `ingest/tests/log_unavailable.rs`.)

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn submit_with_key(app: &TestApp, key: &str, idempotency_key: &str, fc: &str) -> Response {
    app.as_service(Method::POST, "/messages", key)
        .header("Idempotency-Key", idempotency_key)
        .json(&message(Some(fc)))
        .send()
        .await
        .expect("send")
}

/// The id of a `201`, and whether it says it repeats an earlier answer.
async fn created(response: Response) -> (String, bool) {
    assert_eq!(response.status(), StatusCode::CREATED);
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (
        json_of(response).await["id"]
            .as_str()
            .expect("id")
            .to_string(),
        replayed,
    )
}

#[tokio::test]
async fn a_retried_submit_gets_the_first_answer_and_the_citizen_one_message() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let fc = fiscal_code();
    app.put_profile(&fc, json!({})).await;

    let (id, replayed) = created(submit_with_key(&app, &svc.key, "avviso-42", &fc).await).await;
    assert!(!replayed);
    let again = submit_with_key(&app, &svc.key, "avviso-42", &fc).await;
    let location = again.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(created(again).await, (id.clone(), true));
    assert_eq!(location, format!("/api/v1/messages/{fc}/{id}"));

    // The same request in the path's form is another request.
    let other_form = app
        .as_service(Method::POST, &format!("/messages/{fc}"), &svc.key)
        .header("Idempotency-Key", "avviso-42")
        .json(&message(None))
        .send()
        .await
        .expect("send");
    let body = problem(other_form, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(body["type"], "urn:postino:problem:idempotency-key-reused");

    // A new key is a new message; the citizen's inbox has the two, once each.
    let (second, _) = created(submit_with_key(&app, &svc.key, "avviso-43", &fc).await).await;
    assert_ne!(second, id);
    for id in [&id, &second] {
        assert_eq!(
            app.final_status(&svc.key, &fc, id).await["status"],
            "PROCESSED"
        );
    }
    let inbox = app.inbox(&fc).await;
    let mut ids: Vec<&str> = inbox["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    let mut expected = [id.as_str(), second.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
}

#[tokio::test]
async fn keys_are_per_service_and_a_malformed_one_is_refused() {
    let app = spawn_app().await;
    let (one, two) = (
        app.service().await,
        app.create_service(service_payload("TARI")).await,
    );
    let fc = fiscal_code();
    let (first, _) = created(submit_with_key(&app, &one.key, "k-1", &fc).await).await;
    let (other, replayed) = created(submit_with_key(&app, &two.key, "k-1", &fc).await).await;
    assert_ne!(first, other);
    assert!(!replayed);
    // The service's other key is the same sender.
    assert_eq!(
        created(submit_with_key(&app, &one.secondary, "k-1", &fc).await).await,
        (first, true)
    );

    let refused = submit_with_key(&app, &one.key, "has a space", &fc).await;
    let body = problem(refused, StatusCode::BAD_REQUEST).await;
    assert_eq!(body["field"], "Idempotency-Key");
    // A request that is not a valid message claims no key.
    let invalid = app
        .as_service(Method::POST, "/messages", &one.key)
        .header("Idempotency-Key", "k-2")
        .json(&json!({"fiscal_code": fc, "content": {"subject": "short", "markdown": "x"}}))
        .send()
        .await
        .expect("send");
    problem(invalid, StatusCode::BAD_REQUEST).await;
    let (_, replayed) = created(submit_with_key(&app, &one.key, "k-2", &fc).await).await;
    assert!(!replayed);
}

#[tokio::test]
async fn a_key_outlives_a_restart() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let fc = fiscal_code();
    let (id, _) = created(submit_with_key(&app, &svc.key, "before-restart", &fc).await).await;
    let app = app.restart().await;
    assert_eq!(
        created(submit_with_key(&app, &svc.key, "before-restart", &fc).await).await,
        (id, true)
    );
}
