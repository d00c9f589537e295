//! Bulk submit: a campaign opened with its first items, items added as JSON or as an NDJSON
//! stream, refusals by index, retries made harmless by `Idempotency-Key`, and every
//! campaign message on the bulk lane.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

fn item(fc: &str) -> Value {
    message(Some(fc))
}

/// Waits until `fc`'s inbox holds `n` messages (or 30 s pass); what it holds then.
async fn inbox_of(app: &TestApp, fc: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let items = app.inbox(fc).await["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if items.len() >= n || tokio::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `GET /campaigns/{id}`, as its service reads it.
async fn campaign(app: &TestApp, key: &str, id: &str) -> Value {
    json_of(
        app.as_service(Method::GET, &format!("/campaigns/{id}"), key)
            .send()
            .await
            .expect("get"),
    )
    .await
}

async fn open(app: &TestApp, key: &str, body: &Value) -> reqwest::Response {
    app.as_service(Method::POST, "/campaigns", key)
        .json(body)
        .send()
        .await
        .expect("open")
}

async fn add_json(app: &TestApp, key: &str, id: &str, items: &Value) -> reqwest::Response {
    app.as_service(Method::POST, &format!("/campaigns/{id}/items"), key)
        .json(items)
        .send()
        .await
        .expect("add")
}

async fn add_ndjson(app: &TestApp, key: &str, id: &str, lines: String) -> reqwest::Response {
    app.as_service(Method::POST, &format!("/campaigns/{id}/items"), key)
        .header("Content-Type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .expect("add")
}

/// How many records the app's embedded log holds on `topic` (read from its files).
fn records_on(app: &TestApp, topic: &str) -> i64 {
    bus::embedded::status::read(app.dir.path())
        .expect("the embedded log's status")
        .into_iter()
        .find(|t| t.topic == topic)
        .map_or(0, |t| t.last - t.first + 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_opens_with_its_items_refuses_the_bad_ones_by_index_and_delivers_the_rest() {
    let app = spawn_app().await;
    let service = app.service().await;
    let (first, second) = (fiscal_code(), fiscal_code());
    for fc in [&first, &second] {
        app.put_profile(fc, json!({})).await;
    }
    let mut broken = item(&first);
    broken["content"]["subject"] = json!("short");
    let opened = open(
        &app,
        &service.key,
        &json!({"name": "Bollo auto 2027", "items": [item(&first), broken, item(&second), {"content": {}}]}),
    )
    .await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let answer = json_of(opened).await;
    assert_eq!(answer["accepted"], 2);
    let refused = answer["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 2, "{answer}");
    assert_eq!(refused[0]["index"], 1);
    assert_eq!(refused[0]["problem"]["status"], 400);
    assert_eq!(refused[0]["problem"]["field"], "content.subject");
    assert_eq!(refused[1]["index"], 3);
    // Each accepted item's id, to follow it as any message.
    let items = answer["items"].as_array().expect("items");
    assert_eq!(
        items.iter().map(|i| i["index"].clone()).collect::<Vec<_>>(),
        [json!(0), json!(2)]
    );
    let followed = app
        .final_status(&service.key, &second, items[1]["id"].as_str().expect("id"))
        .await;
    assert_eq!(followed["status"], "PROCESSED");
    for fc in [&first, &second] {
        let inbox = inbox_of(&app, fc, 1).await;
        assert_eq!(inbox.len(), 1, "{fc}");
        assert_eq!(inbox[0]["subject"], "Bollo auto in scadenza");
    }
    // Every campaign message went the bulk lane, none the one-off lane, and the bulk lane
    // has a router group of its own.
    assert_eq!(records_on(&app, "bulk.messages"), 2);
    assert_eq!(records_on(&app, "messages"), 0);
    let status = bus::embedded::status::read(app.dir.path()).expect("status");
    let bulk = status
        .iter()
        .find(|t| t.topic == "bulk.messages")
        .expect("topic");
    assert!(
        bulk.groups.iter().any(|(group, _)| group == "bulk.router"),
        "{:?}",
        bulk.groups
    );

    let id = answer["id"].as_str().expect("id");
    let read = campaign(&app, &service.key, id).await;
    assert_eq!(read["name"], "Bollo auto 2027");
    assert_eq!(read["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_stream_in_as_ndjson_of_any_length_a_thousand_lines_at_a_time() {
    let app = spawn_app().await;
    let service = app.service().await;
    let opened = json_of(open(&app, &service.key, &json!({"name": "TARI 2027"})).await).await;
    let id = opened["id"].as_str().expect("id").to_string();
    assert_eq!(opened["accepted"], 0);

    let known = fiscal_code();
    app.put_profile(&known, json!({})).await;
    // 2,500 lines: three chunks, with a blank line and a broken one in the middle.
    let mut lines = vec![item(&known).to_string()];
    lines.extend((1..2500).map(|_| item(&fiscal_code()).to_string()));
    lines[1200] = String::new();
    lines[1800] = "{not json".into();
    let answer = json_of(add_ndjson(&app, &service.key, &id, lines.join("\n")).await).await;
    assert_eq!(answer["accepted"], 2498, "{}", answer["refused"]);
    assert_eq!(answer["refused"][0]["index"], 1800);
    assert_eq!(answer["refused"].as_array().map(Vec::len), Some(1));
    assert!(
        answer.get("items").is_none(),
        "a stream's ids are not listed"
    );
    assert_eq!(inbox_of(&app, &known, 1).await.len(), 1);
    assert_eq!(records_on(&app, "bulk.messages"), 2498);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_call_retried_with_its_idempotency_key_sends_nothing_twice() {
    let app = spawn_app().await;
    let service = app.service().await;
    let citizens = [fiscal_code(), fiscal_code()];
    for fc in &citizens {
        app.put_profile(fc, json!({})).await;
    }
    let opened = json_of(open(&app, &service.key, &json!({"name": "Avvisi"})).await).await;
    let id = opened["id"].as_str().expect("id");
    let items = json!([item(&citizens[0]), item(&citizens[1])]);
    let call = || {
        app.as_service(
            Method::POST,
            &format!("/campaigns/{id}/items"),
            &service.key,
        )
        .header("Idempotency-Key", "tari-2027-lotto-1")
        .json(&items)
        .send()
    };
    let first = call().await.expect("first");
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first = json_of(first).await;
    let again = call().await.expect("again");
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    assert_eq!(json_of(again).await, first);
    for fc in &citizens {
        assert_eq!(inbox_of(&app, fc, 1).await.len(), 1);
    }
    assert_eq!(
        records_on(&app, "bulk.messages"),
        2,
        "nothing published twice"
    );
    let reused = app
        .as_service(
            Method::POST,
            &format!("/campaigns/{id}/items"),
            &service.key,
        )
        .header("Idempotency-Key", "tari-2027-lotto-1")
        .json(&json!([item(&citizens[0])]))
        .send()
        .await
        .expect("reuse");
    problem(reused, StatusCode::UNPROCESSABLE_ENTITY).await;
    // A stream cannot be compared, so it takes no key.
    let streamed = app
        .as_service(
            Method::POST,
            &format!("/campaigns/{id}/items"),
            &service.key,
        )
        .header("Idempotency-Key", "tari-2027-lotto-2")
        .header("Content-Type", "application/x-ndjson")
        .body(item(&citizens[0]).to_string())
        .send()
        .await
        .expect("stream");
    let refused = problem(streamed, StatusCode::BAD_REQUEST).await;
    assert_eq!(refused["field"], "Idempotency-Key");
}

#[tokio::test]
async fn bulk_calls_are_checked_and_a_campaign_is_its_services_own() {
    let app = spawn_app().await;
    let service = app.service().await;
    let other = app.service().await;
    let opened = json_of(open(&app, &service.key, &json!({"name": "Mine"})).await).await;
    let id = opened["id"].as_str().expect("id");

    for (body, field) in [
        (json!({"items": []}), ""),
        (json!({"name": ""}), "name"),
        (json!({"name": "x", "items": {"a": 1}}), "items"),
    ] {
        let refused = problem(
            open(&app, &service.key, &body).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        if !field.is_empty() {
            assert_eq!(refused["field"], field, "{body}");
        }
    }
    let too_many = Value::Array(vec![json!({}); 10_001]);
    let refused = problem(
        add_json(&app, &service.key, id, &too_many).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(refused["field"], "items");
    let wrong_type = app
        .as_service(
            Method::POST,
            &format!("/campaigns/{id}/items"),
            &service.key,
        )
        .header("Content-Type", "text/plain")
        .body("{}")
        .send()
        .await
        .expect("add");
    problem(wrong_type, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    problem(
        add_json(&app, &other.key, id, &json!([])).await,
        StatusCode::FORBIDDEN,
    )
    .await;
    let r = app
        .as_service(Method::GET, &format!("/campaigns/{id}"), &other.key)
        .send()
        .await
        .expect("get");
    problem(r, StatusCode::FORBIDDEN).await;
    problem(
        add_json(&app, &service.key, "01BX5ZZKBKACTAV9WEVGEMMVRZ", &json!([])).await,
        StatusCode::NOT_FOUND,
    )
    .await;
}

#[tokio::test]
async fn a_test_mode_campaign_keeps_to_its_recipients_and_its_quota_counts_items() {
    let app = spawn_app().await;
    let allowed = fiscal_code();
    let mut payload = service_payload("In prova");
    payload["authorized_recipients"] = json!([allowed]);
    let service = app.create_test_mode_service(payload).await;
    let answer = json_of(
        open(
            &app,
            &service.key,
            &json!({"name": "Prova", "items": [item(&allowed), item(&fiscal_code())]}),
        )
        .await,
    )
    .await;
    assert_eq!(answer["accepted"], 1);
    assert_eq!(answer["refused"][0]["index"], 1);
    assert_eq!(answer["refused"][0]["problem"]["status"], 403);
    // The week's 1000 go to items too: after 998 more (and the calls themselves), the
    // rest of a call is refused with 429.
    let id = answer["id"].as_str().expect("id");
    let many = Value::Array(vec![item(&allowed); 1000]);
    let answer = json_of(add_json(&app, &service.key, id, &many).await).await;
    assert_eq!(answer["accepted"], 0, "1000 items would pass the quota");
    let refused = answer["refused"].as_array().expect("refused");
    assert_eq!(refused.len(), 1000);
    assert_eq!(refused[0]["problem"]["status"], 429);
    let fitting = Value::Array(vec![item(&allowed); 995]);
    let answer = json_of(add_json(&app, &service.key, id, &fitting).await).await;
    assert_eq!(answer["accepted"], 995);
}

/// `GET /campaigns/{id}` until its counts show no item pending, no notification pending
/// (or 30 s pass); the campaign then.
async fn settled(app: &TestApp, key: &str, id: &str, accepted: i64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let read = campaign(app, key, id).await;
        let counts = &read["counts"];
        let done = counts["accepted"] == accepted
            && counts["pending"] == 0
            && counts["push"]["pending"] == 0
            && counts["email"]["pending"] == 0;
        if done || tokio::time::Instant::now() > deadline {
            return read;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn items_page(app: &TestApp, key: &str, id: &str, query: &str) -> reqwest::Response {
    app.as_service(Method::GET, &format!("/campaigns/{id}/items?{query}"), key)
        .send()
        .await
        .expect("items")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaigns_counts_follow_its_items_through_the_pipeline_and_list_them_by_status() {
    let app = spawn_app().await;
    let service = app.service().await;
    let (with_email, plain, nobody) = (fiscal_code(), fiscal_code(), fiscal_code());
    app.put_profile(
        &with_email,
        json!({"email": "anna@example.org", "is_email_validated": true}),
    )
    .await;
    app.put_profile(&plain, json!({})).await;
    let opened = open(
        &app,
        &service.key,
        &json!({"name": "Bollo", "items": [item(&with_email), item(&plain), item(&nobody)]}),
    )
    .await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let answer = json_of(opened).await;
    let id = answer["id"].as_str().expect("id");
    let ids: Vec<String> = answer["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["id"].as_str().expect("id").to_string())
        .collect();

    let read = settled(&app, &service.key, id, 3).await;
    let counts = &read["counts"];
    assert_eq!(counts["accepted"], 3, "{read}");
    assert_eq!(counts["processed"], 2, "{read}");
    assert_eq!(counts["rejected"]["user_not_found"], 1, "{read}");
    assert_eq!(counts["email"]["sent"], 1, "{read}");
    assert_eq!(counts["email"]["skipped"], 1, "{read}");
    assert_eq!(counts["push"]["skipped"], 2, "{read}");
    assert!(read.get("cancelled_at").is_none(), "{read}");

    // Each item's own state, by status; the rejected one is the citizen with no profile.
    let rejected = json_of(items_page(&app, &service.key, id, "status=rejected").await).await;
    let listed = rejected["items"].as_array().expect("items");
    assert_eq!(listed.len(), 1, "{rejected}");
    assert_eq!(listed[0]["id"], ids[2].as_str());
    assert_eq!(listed[0]["status"], "REJECTED:USER_NOT_FOUND");
    assert!(rejected.get("next").is_none(), "{rejected}");
    let processed = json_of(items_page(&app, &service.key, id, "status=processed").await).await;
    let emailed = processed["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == ids[0].as_str())
        .cloned()
        .expect("the item with an email");
    assert_eq!(emailed["email"], "SENT", "{processed}");
    // All of them, one page at a time, by following `next`.
    let mut seen = Vec::new();
    let mut query = "limit=1".to_string();
    loop {
        let page = json_of(items_page(&app, &service.key, id, &query).await).await;
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|i| i["id"].as_str().expect("id").to_string()),
        );
        match page["next"].as_str() {
            Some(next) => query = format!("limit=1&cursor={next}"),
            None => break,
        }
    }
    seen.sort();
    let mut all = ids.clone();
    all.sort();
    assert_eq!(seen, all);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=64.01JE0000000000000000000000", "cursor"),
        ("status=lost", "query"),
        ("colour=red", "query"),
    ] {
        let refused = items_page(&app, &service.key, id, query).await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{query}");
        let problem = json_of(refused).await;
        assert_eq!(problem["field"], field, "{query}: {problem}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_campaign_says_so_and_takes_no_more_items() {
    let app = spawn_app().await;
    let service = app.service().await;
    let fc = fiscal_code();
    app.put_profile(&fc, json!({})).await;
    let answer = json_of(open(&app, &service.key, &json!({"name": "Bollo"})).await).await;
    let id = answer["id"].as_str().expect("id");
    let cancel = |key: String| {
        let app = &app;
        async move {
            app.as_service(Method::POST, &format!("/campaigns/{id}/cancel"), &key)
                .send()
                .await
                .expect("cancel")
        }
    };
    let other = app.service().await;
    assert_eq!(
        cancel(other.key.clone()).await.status(),
        StatusCode::FORBIDDEN
    );
    let cancelled = cancel(service.key.clone()).await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled = json_of(cancelled).await;
    let when = cancelled["cancelled_at"]
        .as_str()
        .expect("cancelled_at")
        .to_string();
    // Again: nothing changes.
    let again = json_of(cancel(service.key.clone()).await).await;
    assert_eq!(again["cancelled_at"], when.as_str());
    let refused = add_json(&app, &service.key, id, &json!([item(&fc)])).await;
    assert_eq!(refused.status(), StatusCode::CONFLICT);
    let problem = json_of(refused).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("cancelled"),
        "{problem}"
    );
    // Nothing of the refused call was taken.
    let read = campaign(&app, &service.key, id).await;
    assert_eq!(read["counts"]["accepted"], 0, "{read}");
    assert_eq!(records_on(&app, "bulk.messages"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_campaigns_items_wait_for_their_time() {
    let app = spawn_app().await;
    let service = app.service().await;
    let fc = fiscal_code();
    app.put_profile(&fc, json!({})).await;

    // Not before three seconds from now: the message reaches the inbox no earlier.
    let not_before = time::OffsetDateTime::now_utc() + time::Duration::seconds(3);
    let not_before_text = not_before
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    let opened = open(
        &app,
        &service.key,
        &json!({"name": "Bollo", "schedule": {"not_before": not_before_text}, "items": [item(&fc)]}),
    )
    .await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let id = json_of(opened).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let read = campaign(&app, &service.key, &id).await;
    assert!(read["schedule"]["not_before"].is_string(), "{read}");
    let inbox = inbox_of(&app, &fc, 1).await;
    let arrived = time::OffsetDateTime::now_utc();
    assert_eq!(inbox.len(), 1);
    assert!(
        arrived >= not_before,
        "delivered at {arrived}, before {not_before}"
    );

    // Spread over a week: every item waits on `scheduled`, none is on its way yet, and
    // the campaign counts them pending.
    let (a, b) = (fiscal_code(), fiscal_code());
    let opened = open(
        &app,
        &service.key,
        &json!({"name": "Bollo", "schedule": {"spread_hours": 168,
            "window": {"start": "08:00", "end": "20:00", "time_zone": "Europe/Rome"}},
            "items": [item(&a), item(&b)]}),
    )
    .await;
    assert_eq!(opened.status(), StatusCode::ACCEPTED);
    let id = json_of(opened).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        records_on(&app, "scheduled"),
        3,
        "the first campaign's item, and these"
    );
    assert_eq!(
        records_on(&app, "bulk.messages"),
        1,
        "the first campaign's item, released"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let counts = loop {
        let read = campaign(&app, &service.key, &id).await;
        if read["counts"]["accepted"] == 2 || tokio::time::Instant::now() > deadline {
            break read["counts"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (counts["accepted"].clone(), counts["pending"].clone()),
        (json!(2), json!(2))
    );

    for (schedule, field) in [
        (json!({"spread_hours": 0}), "schedule.spread_hours"),
        (
            json!({"window": {"start": "08:00", "end": "20:00", "time_zone": "Europe/Atlantis"}}),
            "schedule.window",
        ),
        (
            json!({"window": {"start": "8", "end": "20:00", "time_zone": "Europe/Rome"}}),
            "schedule.window",
        ),
        (json!({"not_before": "tomorrow"}), "schedule.not_before"),
        (json!({"at_night": true}), "schedule.at_night"),
    ] {
        let refused = open(
            &app,
            &service.key,
            &json!({"name": "x", "schedule": schedule}),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{schedule}");
        let problem = json_of(refused).await;
        assert_eq!(problem["field"], field, "{problem}");
    }
}
