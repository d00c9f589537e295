//! The citizen's side: token, profile, preferences, inbox and read status.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() {
    let app = spawn_app().await;
    let r = app
        .client
        .get(app.url("/citizen/v1/profile"))
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .client
        .get(app.url("/citizen/v1/profile"))
        .bearer_auth("garbage")
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::UNAUTHORIZED).await;
    let fc = model::FiscalCode::parse("fc", &fiscal_code()).expect("fc");
    let forged =
        citizen::auth::mint_hs256("a different secret, also 32+ bytes", &fc, 60).expect("mint");
    let r = app
        .client
        .get(app.url("/citizen/v1/profile"))
        .bearer_auth(forged)
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::UNAUTHORIZED).await;
    let r = app
        .client
        .get(app.url("/citizen/v1/profile"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::UNAUTHORIZED).await;
}

#[tokio::test]
async fn the_profile_is_created_then_updated_with_its_version() {
    let app = spawn_app().await;
    let fc = fiscal_code();
    problem(
        app.as_citizen(Method::GET, "/profile", &fc)
            .send()
            .await
            .expect("get"),
        StatusCode::NOT_FOUND,
    )
    .await;

    let created = app
        .put_profile(
            &fc,
            json!({"email": "mario@example.org", "is_email_validated": true}),
        )
        .await;
    assert_eq!(created["version"], 0);
    assert_eq!(created["is_inbox_enabled"], true);
    assert_eq!(created["service_preferences_settings"]["mode"], "AUTO");

    let stale = app
        .as_citizen(Method::PUT, "/profile", &fc)
        .json(&json!({"is_webhook_enabled": false}))
        .send()
        .await
        .expect("put");
    problem(stale, StatusCode::CONFLICT).await;

    let updated = app
        .put_profile(&fc, json!({"is_webhook_enabled": false, "push_notifications_content_type": "FULL", "version": 0}))
        .await;
    assert_eq!(updated["version"], 1);
    assert_eq!(updated["email"], "mario@example.org");
    assert_eq!(updated["push_notifications_content_type"], "FULL");
    let got = json_of(
        app.as_citizen(Method::GET, "/profile", &fc)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(got, updated);

    let legacy = app
        .as_citizen(Method::PUT, "/profile", &fc)
        .json(&json!({"service_preferences_settings": {"mode": "LEGACY"}, "version": 1}))
        .send()
        .await
        .expect("put");
    problem(legacy, StatusCode::CONFLICT).await;
    // Blocking a service the LEGACY way on an AUTO profile would be ignored: refused.
    let ignored = app
        .as_citizen(Method::PUT, "/profile", &fc)
        .json(&json!({"blocked_inbox_or_channels": {"some-service": ["INBOX"]}, "version": 1}))
        .send()
        .await
        .expect("put");
    let refused = problem(ignored, StatusCode::CONFLICT).await;
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("AUTO mode")),
        "{refused}"
    );
    let bad = app
        .as_citizen(Method::PUT, "/profile", &fc)
        .json(&json!({"email": "nope", "version": 1}))
        .send()
        .await
        .expect("put");
    assert_eq!(
        problem(bad, StatusCode::BAD_REQUEST).await["field"],
        "email"
    );
}

#[tokio::test]
async fn service_preferences_follow_the_mode_and_settings_version() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let fc = fiscal_code();
    let path = format!("/services/{}/preferences", svc.id);
    problem(
        app.as_citizen(Method::GET, &path, &fc)
            .send()
            .await
            .expect("get"),
        StatusCode::NOT_FOUND,
    )
    .await;
    app.put_profile(&fc, json!({})).await;

    let default = json_of(
        app.as_citizen(Method::GET, &path, &fc)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(default["is_inbox_enabled"], true, "AUTO allows by default");

    let manual = app
        .put_profile(
            &fc,
            json!({"service_preferences_settings": {"mode": "MANUAL"}, "version": 0}),
        )
        .await;
    assert_eq!(manual["service_preferences_settings"]["version"], 1);
    let default = json_of(
        app.as_citizen(Method::GET, &path, &fc)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        default["is_inbox_enabled"], false,
        "MANUAL blocks by default"
    );

    let pref = json!({"is_inbox_enabled": true, "is_email_enabled": false, "is_webhook_enabled": true, "settings_version": 0});
    let stale = app
        .as_citizen(Method::PUT, &path, &fc)
        .json(&pref)
        .send()
        .await
        .expect("put");
    problem(stale, StatusCode::CONFLICT).await;
    let mut current = pref.clone();
    current["settings_version"] = json!(1);
    let r = app
        .as_citizen(Method::PUT, &path, &fc)
        .json(&current)
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let got = json_of(
        app.as_citizen(Method::GET, &path, &fc)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(
        (
            got["is_inbox_enabled"].as_bool(),
            got["is_email_enabled"].as_bool()
        ),
        (Some(true), Some(false))
    );

    let r = app
        .as_citizen(Method::PUT, "/services/no-such-service/preferences", &fc)
        .json(&current)
        .send()
        .await
        .expect("put");
    problem(r, StatusCode::NOT_FOUND).await;
    let r = app
        .as_citizen(Method::PUT, &path, &fc)
        .json(&json!({"is_inbox_enabled": true}))
        .send()
        .await
        .expect("put");
    problem(r, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn the_inbox_pages_newest_first_with_a_cursor() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let fc = fiscal_code();
    app.put_profile(&fc, json!({})).await;
    let mut sent = Vec::new();
    for _ in 0..23 {
        sent.push(app.send_ok(&svc.key, &fc).await);
    }
    let last = sent.last().expect("sent").clone();
    app.final_status(&svc.key, &fc, &last).await;

    let pages = testkit::inbox::inbox_pages(&app.client, &app.base, &app.token(&fc), 10).await;
    let seen: Vec<String> = pages.iter().flatten().cloned().collect();
    sent.reverse();
    assert_eq!(seen, sent, "every message once, newest first");
    assert_eq!(pages.len(), 3);

    let r = app
        .as_citizen(Method::GET, "/messages?cursor=garbage", &fc)
        .send()
        .await
        .expect("list");
    assert_eq!(problem(r, StatusCode::BAD_REQUEST).await["field"], "cursor");
    let r = app
        .as_citizen(Method::GET, "/messages?page_size=0", &fc)
        .send()
        .await
        .expect("list");
    assert_eq!(
        problem(r, StatusCode::BAD_REQUEST).await["field"],
        "page_size"
    );
}

#[tokio::test]
async fn a_citizen_reads_and_marks_only_their_own_messages() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let (fc, other) = (fiscal_code(), fiscal_code());
    app.put_profile(&fc, json!({})).await;
    app.put_profile(&other, json!({})).await;
    let id = app.send_ok(&svc.key, &fc).await;
    app.final_status(&svc.key, &fc, &id).await;

    let msg = json_of(
        app.as_citizen(Method::GET, &format!("/messages/{id}"), &fc)
            .send()
            .await
            .expect("get"),
    )
    .await;
    assert_eq!(msg["content"]["subject"], "Bollo auto in scadenza");
    assert!(msg["content"]["markdown"]
        .as_str()
        .expect("markdown")
        .starts_with("Il bollo"));
    assert_eq!(msg["is_read"], false);

    let r = app
        .as_citizen(Method::GET, &format!("/messages/{id}"), &other)
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::NOT_FOUND).await;
    let read = json!({"change_type": "reading", "is_read": true});
    let r = app
        .as_citizen(
            Method::PUT,
            &format!("/messages/{id}/message-status"),
            &other,
        )
        .json(&read)
        .send()
        .await
        .expect("put");
    problem(r, StatusCode::NOT_FOUND).await;

    let r = app
        .as_citizen(Method::PUT, &format!("/messages/{id}/message-status"), &fc)
        .json(&read)
        .send()
        .await
        .expect("put");
    assert_eq!(
        json_of(r).await,
        json!({"is_read": true, "is_archived": false})
    );
    let inbox = json_of(
        app.as_citizen(Method::GET, "/messages", &fc)
            .send()
            .await
            .expect("list"),
    )
    .await;
    assert_eq!(inbox["items"][0]["is_read"], true);

    let bad = json!({"change_type": "archiving", "is_archived": true});
    let r = app
        .as_citizen(Method::PUT, &format!("/messages/{id}/message-status"), &fc)
        .json(&bad)
        .send()
        .await
        .expect("put");
    assert_eq!(
        problem(r, StatusCode::BAD_REQUEST).await["field"],
        "change_type"
    );
    let r = app
        .as_citizen(Method::GET, "/messages/not-an-id", &fc)
        .send()
        .await
        .expect("get");
    assert_eq!(problem(r, StatusCode::BAD_REQUEST).await["field"], "id");
}

#[tokio::test]
async fn production_tokens_are_verified_with_the_configured_public_key() {
    let keys = tempfile::tempdir().expect("tempdir");
    let pair = testkit::keys::key_pair(keys.path(), "idp", testkit::keys::KeyKind::Ec);
    let (private, public) = (pair.private_pem, pair.public_pem);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), MANAGE_KEY);
    cfg.jwt.secret = None;
    cfg.jwt.public_key_file = Some(public);
    cfg.jwt.algorithm = Some(citizen::JwtAlgorithm::ES256);
    cfg.jwt.audience = Some("postino".into());
    cfg.read_files().expect("the public key is readable");
    let app = postino::app::App::start(&cfg).await.expect("start");

    let fc = fiscal_code();
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 60;
    let signing = jsonwebtoken::EncodingKey::from_ec_pem(&std::fs::read(&private).expect("key"))
        .expect("ec key");
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256),
        &json!({"sub": fc, "exp": exp, "aud": "postino"}),
        &signing,
    )
    .expect("sign");
    let client = reqwest::Client::new();
    let url = format!("http://{}/citizen/v1/profile", app.addr);
    let r = client
        .put(&url)
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let hs = citizen::auth::mint_hs256(
        JWT_SECRET,
        &model::FiscalCode::parse("fc", &fc).expect("fc"),
        60,
    )
    .expect("mint");
    problem(
        client.get(&url).bearer_auth(hs).send().await.expect("get"),
        StatusCode::UNAUTHORIZED,
    )
    .await;
    app.shutdown().await.expect("stop");
}

#[tokio::test]
async fn devices_are_registered_listed_replaced_and_removed_without_showing_tokens() {
    let app = spawn_app().await;
    let (fc, other) = (fiscal_code(), fiscal_code());
    let apns_token = "a3f1c2d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    let put = |who: &str, id: &str, body: serde_json::Value| {
        app.as_citizen(Method::PUT, &format!("/installations/{id}"), who)
            .json(&body)
            .send()
    };
    let r = put(
        &fc,
        "phone",
        json!({"platform": "fcm", "push_channel": "fcm-token-1", "app_version": "2.61.0"}),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    let shown = r.text().await.expect("body");
    assert!(!shown.contains("fcm-token-1"), "{shown}");
    // IO's own spelling of the body is accepted too.
    let r = put(
        &fc,
        "ipad",
        json!({"platform": "apns", "pushChannel": apns_token}),
    )
    .await
    .expect("put");
    assert_eq!(r.status(), StatusCode::OK);
    put(
        &other,
        "phone",
        json!({"platform": "fcm", "push_channel": "other"}),
    )
    .await
    .expect("put");
    // Registering again under the same id replaces, never adds.
    put(
        &fc,
        "phone",
        json!({"platform": "fcm", "push_channel": "fcm-token-2"}),
    )
    .await
    .expect("put");

    let list = |who: &str| {
        let req = app.as_citizen(Method::GET, "/installations", who);
        async move {
            let r = req.send().await.expect("list");
            assert_eq!(r.status(), StatusCode::OK);
            r.json::<serde_json::Value>().await.expect("json")
        }
    };
    let mine = list(&fc).await;
    let ids: Vec<_> = mine
        .as_array()
        .expect("array")
        .iter()
        .map(|i| i["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("ipad"), json!("phone")]);
    assert_eq!(mine[0]["platform"], "apns");
    assert!(!mine.to_string().contains("fcm-token"));

    let r = app
        .as_citizen(Method::DELETE, "/installations/ipad", &fc)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = app
        .as_citizen(Method::DELETE, "/installations/ipad", &fc)
        .send()
        .await
        .expect("delete");
    problem(r, StatusCode::NOT_FOUND).await;

    // "Log out of all devices" removes only this citizen's.
    let r = app
        .as_citizen(Method::DELETE, "/installations", &fc)
        .send()
        .await
        .expect("logout");
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["removed"],
        1
    );
    assert_eq!(list(&fc).await, json!([]));
    assert_eq!(list(&other).await.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn malformed_devices_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let fc = fiscal_code();
    for (id, body, field) in [
        (
            "phone",
            json!({"platform": "wns", "push_channel": "t"}),
            "platform",
        ),
        (
            "phone",
            json!({"platform": "apns", "push_channel": "not-hex"}),
            "push_channel",
        ),
        (
            "phone",
            json!({"platform": "fcm", "push_channel": ""}),
            "push_channel",
        ),
        (
            "bad%20id",
            json!({"platform": "fcm", "push_channel": "t"}),
            "installation_id",
        ),
    ] {
        let r = app
            .as_citizen(Method::PUT, &format!("/installations/{id}"), &fc)
            .json(&body)
            .send()
            .await
            .expect("put");
        let p = problem(r, StatusCode::BAD_REQUEST).await;
        assert!(p["detail"].as_str().unwrap_or("").starts_with(field), "{p}");
    }
    let r = app
        .as_citizen(Method::PUT, "/installations/phone", &fc)
        .header("content-type", "application/json")
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .expect("put");
    problem(r, StatusCode::BAD_REQUEST).await;
}
