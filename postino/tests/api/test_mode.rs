//! Test mode (IO's sandbox): a new service writes only to its authorized recipients and to
//! IO's test fiscal code, learns nothing about anyone else, and each key has 1000 requests
//! per ISO week, counted in the store; the platform's operators move it to production.

use mail_parser::MessageParser;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use testkit::mail::outbox_emails;

use crate::helpers::*;

const IO_TEST_FISCAL_CODE: &str = "AAAAAA00A00A000A";

/// A payload authorizing `recipients`, with a contact email.
fn sandbox_payload(recipients: &[&str]) -> Value {
    let mut payload = service_payload("Servizio in prova");
    payload["authorized_recipients"] = json!(recipients);
    payload["metadata"]["email"] = json!("sviluppo@comune.example.it");
    payload
}

async fn get_profile(app: &TestApp, key: &str, fc: &str) -> reqwest::Response {
    app.as_service(Method::GET, &format!("/profiles/{fc}"), key)
        .send()
        .await
        .expect("get profile")
}

#[tokio::test]
async fn a_new_service_writes_only_to_its_authorized_recipients_until_it_goes_to_production() {
    let app = spawn_app().await;
    let (allowed, other) = (fiscal_code(), fiscal_code());
    app.put_profile(&other, json!({})).await;
    let service = app
        .create_test_mode_service(sandbox_payload(&[&allowed]))
        .await;
    let read = json_of(
        app.manage(Method::GET, &format!("/{}", service.id))
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(read["mode"], "test");

    assert_eq!(
        app.send(&service.key, &allowed).await.status(),
        StatusCode::CREATED
    );
    let refused = problem(app.send(&service.key, &other).await, StatusCode::FORBIDDEN).await;
    assert!(
        refused["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("test-mode")),
        "{refused}"
    );
    let detail = refused["detail"].as_str().unwrap_or("");
    assert!(detail.contains("authorized_recipients"), "{detail}");
    // The fiscal code in the body is held to the same rule.
    let in_body = app
        .as_service(Method::POST, "/messages", &service.key)
        .json(&message(Some(&other)))
        .send()
        .await
        .expect("send");
    problem(in_body, StatusCode::FORBIDDEN).await;
    assert_eq!(app.inbox(&other).await["items"], json!([]));

    // Only the platform moves it to production; then it writes to anyone.
    let promoted = app
        .set_limits(&service.id, &json!({"mode": "production"}))
        .await;
    assert_eq!(promoted["mode"], "production");
    let id = app.send_ok(&service.key, &other).await;
    assert_eq!(
        app.final_status(&service.key, &other, &id).await["status"],
        "PROCESSED"
    );
}

#[tokio::test]
async fn get_profile_in_test_mode_tells_nothing_about_citizens_it_may_not_write_to() {
    let app = spawn_app().await;
    let (allowed, registered, unknown) = (fiscal_code(), fiscal_code(), fiscal_code());
    app.put_profile(&allowed, json!({})).await;
    app.put_profile(&registered, json!({})).await;
    let service = app
        .create_test_mode_service(sandbox_payload(&[&allowed]))
        .await;

    let found = json_of(get_profile(&app, &service.key, &allowed).await).await;
    assert_eq!(found["sender_allowed"], true);
    // A registered citizen looks exactly like someone with no profile.
    let hidden = problem(
        get_profile(&app, &service.key, &registered).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let absent = problem(
        get_profile(&app, &service.key, &unknown).await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(hidden, absent);
    let by_post = app
        .as_service(Method::POST, "/profiles", &service.key)
        .json(&json!({"fiscal_code": registered}))
        .send()
        .await
        .expect("post");
    assert_eq!(problem(by_post, StatusCode::NOT_FOUND).await, absent);
    // IO's test fiscal code stands for a citizen who accepts the service's messages.
    let test_citizen = json_of(get_profile(&app, &service.key, IO_TEST_FISCAL_CODE).await).await;
    assert_eq!(test_citizen["sender_allowed"], true);

    app.set_limits(&service.id, &json!({"mode": "production"}))
        .await;
    let seen = json_of(get_profile(&app, &service.key, &registered).await).await;
    assert_eq!(seen["sender_allowed"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_test_fiscal_code_is_delivered_to_the_services_contact_email() {
    let app = spawn_app().await;
    let service = app.create_test_mode_service(sandbox_payload(&[])).await;
    let id = app.send_ok(&service.key, IO_TEST_FISCAL_CODE).await;
    let status = app
        .final_status(&service.key, IO_TEST_FISCAL_CODE, &id)
        .await;
    assert_eq!(status["status"], "PROCESSED", "{status}");

    let outbox = app.dir.path().join("outbox");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mails = loop {
        let mails = outbox_emails(&outbox);
        if !mails.is_empty() || tokio::time::Instant::now() > deadline {
            break mails;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(
        mails.len(),
        1,
        "one email, to the service's contact address"
    );
    let mail = MessageParser::default().parse(&mails[0]).expect("an email");
    let to = mail
        .to()
        .and_then(|to| to.first())
        .and_then(|a| a.address())
        .unwrap_or("")
        .to_string();
    assert_eq!(to, "sviluppo@comune.example.it");

    // Without a contact email there is nowhere to deliver it.
    let mut payload = sandbox_payload(&[]);
    payload["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("email");
    let silent = app.create_test_mode_service(payload).await;
    let refused = problem(
        app.send(&silent.key, IO_TEST_FISCAL_CODE).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("metadata.email")),
        "{refused}"
    );
}

/// Seconds from now to next Monday 00:00 UTC.
fn seconds_to_monday() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    let days = 7 - i64::from(now.weekday().number_days_from_monday());
    let monday = (now.date() + time::Duration::days(days))
        .midnight()
        .assume_utc();
    (monday - now).whole_seconds()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_mode_key_has_1000_requests_a_week_kept_across_a_restart() {
    let app = spawn_app().await;
    let allowed = fiscal_code();
    let service = app
        .create_test_mode_service(sandbox_payload(&[&allowed]))
        .await;
    // The rate limit is not what this test is about; the mode stays.
    let lifted = app
        .set_limits(
            &service.id,
            &json!({"rate_limit": {"requests": 100000, "period_seconds": 1}}),
        )
        .await;
    assert_eq!(lifted["mode"], "test");

    let mut answers = std::collections::BTreeMap::new();
    for _ in 0..1000 {
        let status = get_profile(&app, &service.key, &allowed).await.status();
        *answers.entry(status.as_u16()).or_insert(0) += 1;
    }
    assert_eq!(
        answers,
        [(404, 1000)].into(),
        "every request of the week's 1000 is served"
    );

    let app = app.restart().await;
    let before = seconds_to_monday();
    let over = get_profile(&app, &service.key, &allowed).await;
    let after = seconds_to_monday();
    let retry_after: i64 = over
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!(
        (after..=before + 1).contains(&retry_after),
        "Retry-After {retry_after} is not the time to next Monday 00:00 UTC ({after}..{before})"
    );
    assert!(over.headers().contains_key("ratelimit-limit"));
    let body = problem(over, StatusCode::TOO_MANY_REQUESTS).await;
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("weekly-quota-exceeded")),
        "{body}"
    );
    // Sending is refused as well, and the other key has its own 1000.
    problem(
        app.send(&service.key, &allowed).await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    assert_eq!(
        app.send(&service.secondary, &allowed).await.status(),
        StatusCode::CREATED
    );
    let metrics = app
        .client
        .get(app.metrics_url())
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("postino_ingest_refusals_total{reason=\"quota\"}")),
        "refusals over the quota are counted as such"
    );
}

#[tokio::test]
async fn a_production_service_has_a_weekly_quota_only_when_one_is_set_for_both_keys() {
    let app = spawn_app().await;
    let service = app.service().await;
    let fc = fiscal_code();
    let limited = app
        .set_limits(&service.id, &json!({"weekly_quota": 3}))
        .await;
    assert_eq!(limited["weekly_quota"], 3);
    assert_eq!(limited["mode"], "production");
    for key in [&service.key, &service.secondary, &service.key] {
        assert_eq!(app.send(key, &fc).await.status(), StatusCode::CREATED);
    }
    for key in [&service.key, &service.secondary] {
        problem(app.send(key, &fc).await, StatusCode::TOO_MANY_REQUESTS).await;
    }
    // Removing it lifts it at once.
    let lifted = app
        .set_limits(&service.id, &json!({"weekly_quota": null}))
        .await;
    assert!(lifted.get("weekly_quota").is_none(), "{lifted}");
    assert_eq!(
        app.send(&service.key, &fc).await.status(),
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn limits_changes_are_checked_and_only_the_platform_makes_them() {
    let app = spawn_app().await;
    let service = app.service().await;
    for (body, field) in [
        (json!({"mode": "sandbox"}), "mode"),
        (json!({"weekly_quota": 0}), "weekly_quota"),
        (
            json!({"rate_limit": {"requests": 1, "period_seconds": 0}}),
            "rate_limit.period_seconds",
        ),
        (json!({"quota": 5}), "quota"),
    ] {
        let r = app
            .manage(Method::PATCH, &format!("/{}/limits", service.id))
            .json(&body)
            .send()
            .await
            .expect("patch");
        let refused = problem(r, StatusCode::BAD_REQUEST).await;
        assert_eq!(refused["field"], field, "{body}");
    }
    let r = app
        .manage(Method::PATCH, "/no-such-service/limits")
        .json(&json!({"mode": "production"}))
        .send()
        .await
        .expect("patch");
    problem(r, StatusCode::NOT_FOUND).await;
    // A service key is no manage key.
    let r = app
        .client
        .patch(app.url(&format!("/api/v1/manage/services/{}/limits", service.id)))
        .header("Ocp-Apim-Subscription-Key", &service.key)
        .json(&json!({"mode": "test"}))
        .send()
        .await
        .expect("patch");
    problem(r, StatusCode::FORBIDDEN).await;
}

/// `urgent` (pushed even in quiet hours) is the platform's to allow: refused until it is,
/// for a single submit and in a campaign alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_service_allowed_urgent_messages_may_send_them() {
    let app = spawn_app().await;
    let service = app.service().await;
    let fc = fiscal_code();
    app.put_profile(&fc, json!({})).await;
    let mut urgent = message(None);
    urgent["urgent"] = json!(true);
    let send = |body: Value| {
        let (app, key, fc) = (&app, service.key.clone(), fc.clone());
        async move {
            app.as_service(Method::POST, &format!("/messages/{fc}"), &key)
                .json(&body)
                .send()
                .await
                .expect("submit")
        }
    };
    let refused = send(urgent.clone()).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let problem = json_of(refused).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("allow_urgent"),
        "{problem}"
    );
    let mut item = urgent.clone();
    item["fiscal_code"] = json!(fc);
    let campaign = json_of(
        app.as_service(Method::POST, "/campaigns", &service.key)
            .json(&json!({"name": "Allerta meteo", "items": [item]}))
            .send()
            .await
            .expect("open"),
    )
    .await;
    assert_eq!(campaign["accepted"], 0, "{campaign}");
    assert_eq!(
        campaign["refused"][0]["problem"]["status"], 403,
        "{campaign}"
    );

    let limits = app
        .set_limits(&service.id, &json!({"allow_urgent": true}))
        .await;
    assert_eq!(limits["allow_urgent"], true, "{limits}");
    assert_eq!(send(urgent).await.status(), StatusCode::CREATED);
    // A message that does not say so is not urgent, and needs no allowance.
    assert_eq!(send(message(None)).await.status(), StatusCode::CREATED);
}
