//! Senders asking whether they may write to a citizen (IO `getProfile`).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn sender_allowed_follows_the_citizens_choices() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let fc = fiscal_code();

    let r = app
        .as_service(Method::GET, &format!("/profiles/{fc}"), &svc.key)
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::NOT_FOUND).await;

    app.put_profile(&fc, json!({"preferred_languages": ["it_IT", "en_GB"]}))
        .await;
    let body = json_of(
        app.as_service(Method::GET, &format!("/profiles/{fc}"), &svc.key)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        body,
        json!({"sender_allowed": true, "preferred_languages": ["it_IT", "en_GB"]})
    );

    app.as_citizen(Method::PUT, &format!("/services/{}/preferences", svc.id), &fc)
        .json(&json!({"is_inbox_enabled": false, "is_email_enabled": false, "is_webhook_enabled": false, "settings_version": 0}))
        .send()
        .await
        .expect("block");
    let by_post = app
        .as_service(Method::POST, "/profiles", &svc.key)
        .json(&json!({"fiscal_code": fc}))
        .send()
        .await
        .expect("post");
    assert_eq!(json_of(by_post).await["sender_allowed"], false);

    app.put_profile(&fc, json!({"is_inbox_enabled": false, "version": 0}))
        .await;
    let r = app
        .as_service(Method::GET, &format!("/profiles/{fc}"), &svc.key)
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::NOT_FOUND).await;
}

#[tokio::test]
async fn malformed_profile_lookups_are_refused() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let r = app
        .as_service(Method::GET, "/profiles/NOTAFISCALCODE", &svc.key)
        .send()
        .await
        .expect("get");
    assert_eq!(
        problem(r, StatusCode::BAD_REQUEST).await["field"],
        "fiscal_code"
    );
    let r = app
        .as_service(Method::POST, "/profiles", &svc.key)
        .json(&json!({"fc": "x"}))
        .send()
        .await
        .expect("post");
    problem(r, StatusCode::BAD_REQUEST).await;
    let r = app
        .as_service(Method::POST, "/profiles", &svc.key)
        .header("content-type", "application/json")
        .body("[")
        .send()
        .await
        .expect("post");
    problem(r, StatusCode::BAD_REQUEST).await;
}
