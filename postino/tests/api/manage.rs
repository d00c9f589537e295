//! Operators managing services and their keys (IO's manage API), and the manage key itself.

use postino::app::App;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn services_are_created_read_updated_and_deleted() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let got = json_of(
        app.manage(Method::GET, &format!("/{}", svc.id))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(got["name"], "Tassa automobilistica");
    assert_eq!(got["organization"]["fiscal_code"], "00493410583");
    assert_eq!(got["metadata"]["scope"], "NATIONAL");

    let mut changed = service_payload("Tassa automobilistica 2027");
    changed["require_secure_channel"] = json!(true);
    let updated = app.update_service(&svc.id, &changed).await;
    assert_eq!(updated["require_secure_channel"], true);

    let r = app
        .manage(Method::DELETE, &format!("/{}", svc.id))
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    problem(
        app.manage(Method::GET, &format!("/{}", svc.id))
            .send()
            .await
            .expect("get"),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.send(&svc.key, &fiscal_code()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
}

#[tokio::test]
async fn a_regenerated_key_replaces_the_old_one() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let r = app
        .manage(Method::PUT, &format!("/{}/keys/primary", svc.id))
        .send()
        .await
        .expect("regenerate");
    assert_eq!(r.status(), StatusCode::OK);
    let keys = json_of(r).await;
    let new_key = keys["primary_key"].as_str().expect("key");
    assert_ne!(new_key, svc.key);
    assert_eq!(
        keys["secondary_key"],
        svc.secondary.as_str(),
        "the other key is untouched"
    );
    problem(
        app.send(&svc.key, &fiscal_code()).await,
        StatusCode::UNAUTHORIZED,
    )
    .await;
    assert_eq!(
        app.send(new_key, &fiscal_code()).await.status(),
        StatusCode::CREATED
    );
    let r = app
        .manage(Method::PUT, &format!("/{}/keys/tertiary", svc.id))
        .send()
        .await
        .expect("regenerate");
    assert_eq!(
        problem(r, StatusCode::BAD_REQUEST).await["field"],
        "key_type"
    );
}

#[tokio::test]
async fn the_manage_api_needs_the_manage_key_and_valid_payloads() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let r = app
        .client
        .post(app.url("/api/v1/manage/services"))
        .json(&service_payload("x"))
        .send()
        .await
        .expect("post");
    problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .as_service(Method::POST, "/manage/services", &svc.key)
        .json(&service_payload("x"))
        .send()
        .await
        .expect("post");
    problem(r, StatusCode::FORBIDDEN).await;
    let mut bad = service_payload("x");
    bad["organization"]["fiscal_code"] = json!("12");
    let r = app
        .manage(Method::POST, "")
        .json(&bad)
        .send()
        .await
        .expect("post");
    assert_eq!(
        problem(r, StatusCode::BAD_REQUEST).await["field"],
        "organization.fiscal_code"
    );
    let mut bad = service_payload("x");
    bad.as_object_mut().expect("object").remove("metadata");
    let r = app
        .manage(Method::POST, "")
        .json(&bad)
        .send()
        .await
        .expect("post");
    assert!(problem(r, StatusCode::BAD_REQUEST).await["detail"]
        .as_str()
        .expect("detail")
        .contains("metadata"));
    problem(
        app.manage(Method::GET, "/nope/keys")
            .send()
            .await
            .expect("keys"),
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn changing_the_configured_manage_key_revokes_the_old_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = App::start(&config(dir.path(), "first-manage-key-0001"))
        .await
        .expect("start");
    first.shutdown().await.expect("stop");
    let second = App::start(&config(dir.path(), "second-manage-key-0002"))
        .await
        .expect("restart");
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/manage/services", second.addr);
    for (key, status) in [
        ("first-manage-key-0001", StatusCode::UNAUTHORIZED),
        ("second-manage-key-0002", StatusCode::CREATED),
    ] {
        let r = client
            .post(&url)
            .header("Ocp-Apim-Subscription-Key", key)
            .json(&service_payload("x"))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), status, "{key}");
    }
    second.shutdown().await.expect("stop");
}

#[tokio::test]
async fn without_a_configured_manage_key_one_is_generated_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), "unused-manage-key-000");
    cfg.manage_key = None;
    let first = App::start(&cfg).await.expect("start");
    let key = first
        .generated_manage_key
        .clone()
        .expect("generated on first start");
    first.shutdown().await.expect("stop");
    let second = App::start(&cfg).await.expect("restart");
    assert_eq!(second.generated_manage_key, None, "shown only once");
    let r = reqwest::Client::new()
        .post(format!("http://{}/api/v1/manage/services", second.addr))
        .header("Ocp-Apim-Subscription-Key", key)
        .json(&service_payload("x"))
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.status(),
        StatusCode::CREATED,
        "the generated key keeps working"
    );
    second.shutdown().await.expect("stop");
}
