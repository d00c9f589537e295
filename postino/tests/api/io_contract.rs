//! Every answer of the senders' API (`/api/v1`: submit, getMessage, getProfile) checked
//! against the response schemas of IO's own spec, read from
//! `../shared/reference/io/io-functions-services_openapi_index.yaml` (or `$IO_SPEC_DIR`),
//! the way a sender's client generated from that spec reads them: IO's `x-extensible-enum`
//! lists are enforced as enums, and `format: uri` is checked. A break of IO's contract fails
//! here, not at a sender.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{fiscal_code, message, spawn_app_with, TestApp};

const SPEC_FILE: &str = "io-functions-services_openapi_index.yaml";

/// IO's services spec, ready to check answers.
struct IoSpec {
    paths: Value,
    definitions: Value,
}

/// Where IO's spec is: `$IO_SPEC_DIR`, else `shared/reference/io` beside the repository.
fn spec_dir() -> PathBuf {
    std::env::var_os("IO_SPEC_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference/io"),
        PathBuf::from,
    )
}

/// IO's schemas as the clients IO's generator makes read them: `x-extensible-enum` is a
/// closed enum, and `allOf` marked `x-one-of` is a union.
fn as_json_schema(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(values) = map.remove("x-extensible-enum") {
                map.insert("enum".into(), values);
            }
            if map.remove("x-one-of") == Some(Value::Bool(true)) {
                if let Some(alternatives) = map.remove("allOf") {
                    map.insert("anyOf".into(), alternatives);
                }
            }
            map.values_mut().for_each(as_json_schema);
        }
        Value::Array(items) => items.iter_mut().for_each(as_json_schema),
        _ => {}
    }
}

impl IoSpec {
    fn load() -> Self {
        let path = spec_dir().join(SPEC_FILE);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "IO's spec is not at {} ({e}): put shared/reference/io beside the repository, or set IO_SPEC_DIR",
                path.display()
            )
        });
        let mut doc: Value = serde_norway::from_str(&text).expect("IO's spec is YAML");
        as_json_schema(&mut doc);
        // IO's spec contradicts itself here: a `FiscalCodeHash` is 64 hex characters by its
        // pattern, its description and its own example, but 16 by its length bounds. The
        // hash is what IO serves, so the bounds go.
        if let Some(hash) = doc["definitions"]["FiscalCodeHash"].as_object_mut() {
            hash.remove("minLength");
            hash.remove("maxLength");
        }
        Self {
            paths: doc["paths"].take(),
            definitions: doc["definitions"].take(),
        }
    }

    /// Checks an answer of `method path` (IO's path template, under `/api/v1`): a status IO
    /// declares with a schema must match it; one IO declares without a schema may carry any
    /// body; one IO does not declare (Postino's 503) must still be IO's `ProblemJson`.
    fn check(&self, method: &str, path: &str, status: StatusCode, body: &Value) {
        let responses = &self.paths[path][method]["responses"];
        assert!(
            responses.is_object(),
            "IO's spec has no operation {method} {path}"
        );
        let declared = &responses[status.as_str()];
        let schema = if declared.is_object() {
            match declared.get("schema") {
                Some(schema) => schema.clone(),
                None => return,
            }
        } else {
            json!({"$ref": "#/definitions/ProblemJson"})
        };
        let mut root = schema;
        root["definitions"] = self.definitions.clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft4)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("IO's schema for {method} {path} {status}: {e}"));
        let errors: Vec<String> = validator
            .iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{method} {path} answered {status} outside IO's contract:\n{}\n{body:#}",
            errors.join("\n")
        );
    }
}

/// Sends `request` and returns the status and JSON body (null when empty).
async fn answer(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response: Response = request.send().await.expect("request");
    let status = response.status();
    let bytes = response.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON body")
    };
    (status, body)
}

/// Follows a message until `done` says its answer is the one to check.
async fn message_when(
    app: &TestApp,
    key: &str,
    fc: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = app.message_status(key, fc, id).await;
        if done(&body) || tokio::time::Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_senders_api_fits_ios_own_schemas() {
    let io = IoSpec::load();
    // An SMTP relay that is down: the email channel stays THROTTLED while it is retried.
    let down = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let relay_port = down.local_addr().expect("addr").port();
    drop(down);
    let app = spawn_app_with(|cfg| {
        cfg.smtp.host = Some("127.0.0.1".into());
        cfg.smtp.port = Some(relay_port);
        cfg.smtp.tls = dispatchers::email::SmtpTls::None;
        cfg.smtp.timeout_ms = 500;
    })
    .await;
    let service = app.service().await;
    let key = service.key.as_str();

    let plain = fiscal_code();
    app.put_profile(&plain, json!({"preferred_languages": ["it_IT"]}))
        .await;
    let emailed = fiscal_code();
    app.put_profile(
        &emailed,
        json!({"email": "anna.verdi@example.org", "is_email_validated": true}),
    )
    .await;
    let nobody = fiscal_code();

    // submitMessageforUser and submitMessageforUserWithFiscalCodeInBody.
    let post = |path: &str, body: Value| app.as_service(Method::POST, path, key).json(&body);
    let (status, created) = answer(post(&format!("/messages/{plain}"), message(None))).await;
    assert_eq!(status, StatusCode::CREATED);
    io.check("post", "/messages/{fiscal_code}", status, &created);
    let (status, in_body) = answer(post("/messages", message(Some(&emailed)))).await;
    assert_eq!(status, StatusCode::CREATED);
    io.check("post", "/messages", status, &in_body);
    let (status, rejected) = answer(post(&format!("/messages/{nobody}"), message(None))).await;
    assert_eq!(status, StatusCode::CREATED);
    let invalid = json!({"content": {"subject": "short", "markdown": "x"}});
    let (status, body) = answer(post(&format!("/messages/{plain}"), invalid)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    io.check("post", "/messages/{fiscal_code}", status, &body);
    let (status, body) = answer(post("/messages", message(None))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    io.check("post", "/messages", status, &body);

    // getMessage: PROCESSED with a channel skipped (no address, no push provider); with
    // email being retried (THROTTLED); REJECTED.
    let id = |v: &Value| v["id"].as_str().expect("id").to_string();
    let skipped = message_when(&app, key, &plain, &id(&created), |b| {
        b["status"] != "ACCEPTED"
    })
    .await;
    assert_eq!(skipped["status"], "PROCESSED");
    assert!(
        skipped["skipped_channels"]["email"].is_string(),
        "{skipped}"
    );
    io.check(
        "get",
        "/messages/{fiscal_code}/{id}",
        StatusCode::OK,
        &skipped,
    );
    let throttled = message_when(&app, key, &emailed, &id(&in_body), |b| {
        b["notification"]["email"] == "THROTTLED"
    })
    .await;
    assert_eq!(
        throttled["notification"]["email"], "THROTTLED",
        "{throttled}"
    );
    io.check(
        "get",
        "/messages/{fiscal_code}/{id}",
        StatusCode::OK,
        &throttled,
    );
    let refused = message_when(&app, key, &nobody, &id(&rejected), |b| {
        b["status"] != "ACCEPTED"
    })
    .await;
    assert_eq!(refused["status"], "REJECTED");
    io.check(
        "get",
        "/messages/{fiscal_code}/{id}",
        StatusCode::OK,
        &refused,
    );
    for (fc, message_id, expected) in [
        (
            plain.as_str(),
            "01BX9NSMKVXXS5PSP2FATZMYYY",
            StatusCode::NOT_FOUND,
        ),
        (plain.as_str(), "not-a-ulid", StatusCode::BAD_REQUEST),
    ] {
        let get = app.as_service(Method::GET, &format!("/messages/{fc}/{message_id}"), key);
        let (status, body) = answer(get).await;
        assert_eq!(status, expected);
        io.check("get", "/messages/{fiscal_code}/{id}", status, &body);
    }
    let other = app
        .create_service(crate::helpers::service_payload("Altro"))
        .await;
    let (status, body) = answer(app.as_service(
        Method::GET,
        &format!("/messages/{plain}/{}", id(&created)),
        &other.key,
    ))
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    io.check("get", "/messages/{fiscal_code}/{id}", status, &body);

    // getProfile and getProfileByPOST.
    for fc in [&plain, &nobody] {
        let (status, body) =
            answer(app.as_service(Method::GET, &format!("/profiles/{fc}"), key)).await;
        io.check("get", "/profiles/{fiscal_code}", status, &body);
        let (status, body) = answer(
            app.as_service(Method::POST, "/profiles", key)
                .json(&json!({"fiscal_code": fc})),
        )
        .await;
        io.check("post", "/profiles", status, &body);
    }
    // getSubscriptionsFeedForDate: the citizens above subscribed today.
    let today = model::timestamp::Timestamp::now().utc_day();
    let (status, feed) =
        answer(app.as_service(Method::GET, &format!("/subscriptions-feed/{today}"), key)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(feed["subscriptions"].as_array().map(Vec::len), Some(2));
    io.check("get", "/subscriptions-feed/{date}", status, &feed);

    // The manage API: cmsGetServices and cmsGetService.
    let (status, page) = answer(app.manage(Method::GET, "?limit=1")).await;
    assert_eq!(status, StatusCode::OK);
    io.check("get", "/manage/services", status, &page);
    let (status, one) = answer(app.manage(Method::GET, &format!("/{}", service.id))).await;
    assert_eq!(status, StatusCode::OK);
    io.check("get", "/manage/services/{serviceId}", status, &one);

    // No key, a wrong key: IO declares 401 without a body schema; ours is still a problem.
    let (status, body) = answer(
        app.client
            .get(app.url(&format!("/api/v1/profiles/{plain}")))
            .header("Ocp-Apim-Subscription-Key", "not-a-key"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    io.check("get", "/profiles/{fiscal_code}", status, &body);
}

/// The check itself catches the breaks it is for: a status IO does not know, a problem
/// `type` that is not an absolute URI.
#[test]
fn the_check_refuses_what_ios_clients_refuse() {
    let io = IoSpec::load();
    let caught = |body: Value| {
        std::panic::catch_unwind(|| {
            io.check("get", "/messages/{fiscal_code}/{id}", StatusCode::OK, &body)
        })
        .is_err()
    };
    let answer = json!({
        "message": {
            "id": "01BX9NSMKVXXS5PSP2FATZMYYY",
            "fiscal_code": "RSSMRA85T10A562S",
            "created_at": "2026-11-29T10:00:00.000Z",
            "sender_service_id": "svc",
            "feature_level_type": "STANDARD",
            "content": {"subject": "Bollo auto in scadenza", "markdown": "x".repeat(80)}
        },
        "notification": {"email": "SENT"},
        "status": "PROCESSED"
    });
    assert!(!caught(answer.clone()), "IO's own shape passes");
    let mut skipped = answer.clone();
    skipped["notification"]["webhook"] = json!("SKIPPED");
    assert!(
        caught(skipped),
        "SKIPPED is not one of IO's channel statuses"
    );
    let problem = |kind: &str| {
        std::panic::catch_unwind(|| {
            io.check(
                "get",
                "/messages/{fiscal_code}/{id}",
                StatusCode::NOT_FOUND,
                &json!({"type": kind, "title": "Not Found", "status": 404, "detail": "no"}),
            )
        })
        .is_err()
    };
    assert!(problem("/problems/not-found"), "a relative type");
    assert!(!problem("urn:postino:problem:not-found"));
}
