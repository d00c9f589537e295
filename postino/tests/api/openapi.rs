//! The OpenAPI document: served, checked in, and the same.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn the_served_document_is_the_checked_in_one_with_ios_operation_ids() {
    let app = spawn_app().await;
    let served: serde_json::Value = json_of(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .expect("get"),
    )
    .await;
    let checked_in = std::fs::read_to_string(testkit::repo_file("openapi.json"))
        .expect("openapi.json is checked in at the repository root");
    let checked_in: serde_json::Value = serde_json::from_str(&checked_in).expect("valid JSON");
    assert!(
        served == checked_in,
        "openapi.json is out of date: run `cargo run -p postino -- openapi > openapi.json`"
    );
    let text = served.to_string();
    for id in [
        "submitMessageforUser",
        "submitMessageforUserWithFiscalCodeInBody",
        "getMessage",
        "getProfile",
        "getProfileByPOST",
        "getSubscriptionsFeedForDate",
        "cmsCreateService",
        "cmsGetServices",
        "cmsGetService",
        "cmsUpdateService",
        "cmsDeleteService",
        "cmsGetServiceKeys",
        "cmsRegenerateServiceKey",
    ] {
        assert!(
            text.contains(&format!("\"operationId\":\"{id}\"")),
            "{id} missing"
        );
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_get_problem_answers() {
    let app = spawn_app().await;
    problem(
        app.client.get(app.url("/nope")).send().await.expect("get"),
        StatusCode::NOT_FOUND,
    )
    .await;
    problem(
        app.client
            .delete(app.url("/api/v1/messages"))
            .send()
            .await
            .expect("delete"),
        StatusCode::METHOD_NOT_ALLOWED,
    )
    .await;
}

#[tokio::test]
async fn framework_rejections_are_problems_too() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let huge = vec![b'x'; postino::app::MAX_BODY_BYTES + 1];
    let r = app
        .as_service(reqwest::Method::POST, "/messages", &svc.key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .expect("post");
    problem(r, StatusCode::PAYLOAD_TOO_LARGE).await;
    let r = app
        .as_service(reqwest::Method::GET, "/profiles/%FF%FE", &svc.key)
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::BAD_REQUEST).await;
}
