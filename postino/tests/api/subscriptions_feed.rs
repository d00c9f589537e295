//! IO's subscriptions feed: who subscribed to or unsubscribed from a service on a UTC day,
//! as SHA-256 hashes of their fiscal codes, from what citizens do in the app.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn hash(fc: &str) -> String {
    model::FiscalCode::parse("fc", fc)
        .expect("valid")
        .feed_hash()
}

fn today() -> String {
    model::timestamp::Timestamp::now().utc_day()
}

async fn feed(app: &TestApp, key: &str, date: &str) -> reqwest::Response {
    app.as_service(Method::GET, &format!("/subscriptions-feed/{date}"), key)
        .send()
        .await
        .expect("feed")
}

async fn set_inbox_for(app: &TestApp, fc: &str, service_id: &str, enabled: bool) {
    let r = app
        .as_citizen(
            Method::PUT,
            &format!("/services/{service_id}/preferences"),
            fc,
        )
        .json(
            &json!({"is_inbox_enabled": enabled, "is_email_enabled": enabled,
                      "is_webhook_enabled": enabled, "settings_version": 0}),
        )
        .send()
        .await
        .expect("preference");
    assert_eq!(r.status(), StatusCode::OK);
}

fn sorted(mut hashes: Vec<String>) -> Value {
    hashes.sort();
    json!(hashes)
}

#[tokio::test]
async fn the_feed_shows_todays_subscriptions_and_unsubscriptions_per_service() {
    let app = spawn_app().await;
    let (ours, theirs) = (app.service().await, app.service().await);
    let (joined, left_us, left_all) = (fiscal_code(), fiscal_code(), fiscal_code());
    for fc in [&joined, &left_us] {
        app.put_profile(fc, json!({})).await;
    }
    let profile = app.put_profile(&left_all, json!({})).await;
    // One leaves our service only, one disables the whole inbox.
    set_inbox_for(&app, &left_us, &ours.id, false).await;
    let version = profile["version"].as_i64().expect("version");
    app.put_profile(
        &left_all,
        json!({"is_inbox_enabled": false, "version": version}),
    )
    .await;
    // Setting what was already so is no change.
    set_inbox_for(&app, &joined, &ours.id, true).await;

    let day = today();
    let answer = json_of(feed(&app, &ours.key, &day).await).await;
    assert_eq!(answer["dateUTC"], day);
    let subscribed = answer["subscriptions"].clone();
    let mine: Vec<&Value> = subscribed
        .as_array()
        .expect("list")
        .iter()
        .filter(|h| {
            let h = h.as_str().unwrap_or("").to_string();
            [hash(&joined), hash(&left_us), hash(&left_all)].contains(&h)
        })
        .collect();
    assert_eq!(json!(mine), json!([hash(&joined)]));
    let unsubscribed: Vec<String> = answer["unsubscriptions"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        sorted(unsubscribed),
        sorted(vec![hash(&left_us), hash(&left_all)])
    );

    // The other service lost only the citizen who disabled the inbox.
    let other = json_of(feed(&app, &theirs.key, &day).await).await;
    assert!(other["subscriptions"]
        .as_array()
        .expect("list")
        .contains(&json!(hash(&left_us))));
    assert_eq!(other["unsubscriptions"], json!([hash(&left_all)]));
}

#[tokio::test]
async fn a_test_mode_service_sees_only_its_authorized_recipients_in_the_feed() {
    let app = spawn_app().await;
    let (allowed, stranger) = (fiscal_code(), fiscal_code());
    let mut payload = service_payload("In prova");
    payload["authorized_recipients"] = json!([allowed]);
    let service = app.create_test_mode_service(payload).await;
    app.put_profile(&allowed, json!({})).await;
    app.put_profile(&stranger, json!({})).await;
    let answer = json_of(feed(&app, &service.key, &today()).await).await;
    assert_eq!(answer["subscriptions"], json!([hash(&allowed)]));
    assert_eq!(answer["unsubscriptions"], json!([]));
}

#[tokio::test]
async fn the_feed_refuses_malformed_future_and_forgotten_days() {
    let app = spawn_app().await;
    let service = app.service().await;
    for date in ["2026-13-01", "yesterday", "2026-1-1"] {
        let refused = problem(
            feed(&app, &service.key, date).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(refused["field"], "date", "{date}");
    }
    for date in ["2999-01-01", "2000-01-01"] {
        problem(feed(&app, &service.key, date).await, StatusCode::NOT_FOUND).await;
    }
    let r = app
        .client
        .get(app.url(&format!("/api/v1/subscriptions-feed/{}", today())))
        .send()
        .await
        .expect("feed");
    problem(r, StatusCode::UNAUTHORIZED).await;
}
