//! What a sender meets at its limits: the rate limit's headers on every answer, `429` with
//! `Retry-After` over it, a service's own limit, and a replica's share; and what the server
//! does with bodies that are not JSON (`415`), requests that never end (`408`), headers that
//! never end (closed), and one connection too many (`503`); and a service's
//! `authorized_cidrs`, with and without a trusted proxy in front.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;

use crate::helpers::*;

/// `RateLimit-Limit`, `-Remaining` and `-Reset` of an answer.
fn rate_headers(response: &Response) -> [u64; 3] {
    ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"].map(|name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {response:?}"))
    })
}

fn limited(requests: u32, period_seconds: u32) -> impl FnOnce(&mut postino::config::Config) {
    move |config| {
        config.ingest.rate_limit = model::service::RateLimit {
            requests,
            period_seconds,
        };
    }
}

#[tokio::test]
async fn a_service_over_its_rate_gets_429_with_when_to_retry_and_every_answer_says_what_is_left() {
    let app = spawn_app_with(limited(3, 3600)).await;
    let svc = app.service().await;
    let fc = fiscal_code();

    let first = app.send(&svc.key, &fc).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    // 3 an hour: one comes back every 20 minutes.
    assert_eq!(rate_headers(&first), [3, 2, 1200]);
    let profile = app
        .as_service(Method::GET, &format!("/profiles/{fc}"), &svc.key)
        .send()
        .await
        .expect("profile");
    assert_eq!(profile.status(), StatusCode::NOT_FOUND);
    assert_eq!(rate_headers(&profile), [3, 1, 2400], "an error answer too");
    // The other key spends the same allowance.
    let third = app.send(&svc.secondary, &fc).await;
    assert_eq!(third.status(), StatusCode::CREATED);
    assert_eq!(rate_headers(&third), [3, 0, 3600]);

    let over = app.send(&svc.key, &fc).await;
    assert_eq!(rate_headers(&over), [3, 0, 3600]);
    let retry_after: u64 = over
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=1200).contains(&retry_after), "{retry_after}");
    let body = problem(over, StatusCode::TOO_MANY_REQUESTS).await;
    assert_eq!(body["type"], "urn:postino:problem:too-many-requests");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("3 requests every 3600 s"),
        "{body}"
    );

    // Other services keep theirs; operators have no limit.
    let other = app.create_service(service_payload("TARI")).await;
    assert_eq!(
        app.send(&other.key, &fc).await.status(),
        StatusCode::CREATED
    );
    for _ in 0..5 {
        let read = app
            .manage(Method::GET, &format!("/{}", svc.id))
            .send()
            .await
            .expect("get");
        assert_eq!(read.status(), StatusCode::OK);
        assert!(read.headers().get("ratelimit-limit").is_none());
    }
}

#[tokio::test]
async fn a_services_own_rate_limit_wins_and_an_operators_change_applies_at_once() {
    let app = spawn_app_with(limited(3, 3600)).await;
    let mut payload = service_payload("Tassa automobilistica");
    payload["rate_limit"] = json!({"requests": 1, "period_seconds": 60});
    let svc = app.create_service(payload.clone()).await;
    let fc = fiscal_code();

    let sent = app.send(&svc.key, &fc).await;
    assert_eq!(rate_headers(&sent), [1, 0, 60]);
    let over = app.send(&svc.key, &fc).await;
    problem(over, StatusCode::TOO_MANY_REQUESTS).await;

    payload["rate_limit"] = json!({"requests": 10, "period_seconds": 60});
    let updated = app.update_service(&svc.id, &payload).await;
    assert_eq!(updated["rate_limit"]["requests"], 10);
    let sent = app.send(&svc.key, &fc).await;
    assert_eq!(sent.status(), StatusCode::CREATED);
    assert_eq!(rate_headers(&sent)[..2], [10, 9]);
}

#[tokio::test]
async fn each_of_several_replicas_allows_its_share() {
    let app = spawn_app_with(|config| {
        limited(5, 3600)(config);
        config.ingest.replicas = 2;
    })
    .await;
    let svc = app.service().await;
    let fc = fiscal_code();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(app.send(&svc.key, &fc).await.status());
    }
    // 5 / 2, rounded up.
    assert_eq!(
        statuses,
        [
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::CREATED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn a_rate_limit_out_of_bounds_is_refused_naming_the_field() {
    let app = spawn_app().await;
    for (limit, field) in [
        (
            json!({"requests": 0, "period_seconds": 5}),
            "rate_limit.requests",
        ),
        (
            json!({"requests": 5, "period_seconds": 0}),
            "rate_limit.period_seconds",
        ),
        (json!({"requests": 5}), "rate_limit"),
    ] {
        let mut payload = service_payload("Tassa automobilistica");
        payload["rate_limit"] = limit;
        let refused = app
            .manage(Method::POST, "")
            .json(&payload)
            .send()
            .await
            .expect("create");
        let body = problem(refused, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["field"], field, "{body}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_say_it_is_json_is_415_and_nothing_is_accepted() {
    let app = spawn_app().await;
    let svc = app.service().await;
    let fc = fiscal_code();
    let body = serde_json::to_vec(&message(None)).expect("json");
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app
            .as_service(Method::POST, &format!("/messages/{fc}"), &svc.key)
            .body(body.clone());
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let refused = request.send().await.expect("send");
        let problem = problem(refused, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
        assert_eq!(
            problem["type"],
            "urn:postino:problem:unsupported-media-type"
        );
    }
    // The citizen API alike.
    let refused = app
        .as_citizen(Method::PUT, "/profile", &fc)
        .body("{}")
        .send()
        .await
        .expect("put");
    problem(refused, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    // Then the same body as JSON is taken.
    let sent = app
        .as_service(Method::POST, &format!("/messages/{fc}"), &svc.key)
        .header("content-type", "application/json; charset=utf-8")
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(sent.status(), StatusCode::CREATED);
}

/// A raw connection to the app, for what an HTTP client library will not send.
async fn connect(app: &TestApp) -> tokio::net::TcpStream {
    let addr = app.base.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.expect("connect")
}

/// Everything the server writes on `stream` until it closes it.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_request_whose_body_never_ends_is_cut_with_408_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.http.request_timeout_secs = 1).await;
    let svc = app.service().await;
    let fc = fiscal_code();
    let mut slow = connect(&app).await;
    let head = format!(
        "POST /api/v1/messages/{fc} HTTP/1.1\r\nHost: postino\r\nOcp-Apim-Subscription-Key: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 400\r\n\r\n{{\"content\":",
        svc.key
    );
    slow.write_all(head.as_bytes()).await.expect("write");
    // Another sender meanwhile.
    assert_eq!(app.send(&svc.key, &fc).await.status(), StatusCode::CREATED);
    let answer = read_to_close(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("http.request_timeout_secs"), "{answer}");
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_headers_is_closed() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.http.header_timeout_secs = 1).await;
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: post")
        .await
        .expect("write");
    let served = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("health");
    assert_eq!(served.status(), StatusCode::OK);
    // Closed with nothing said: there was no request to answer.
    assert_eq!(read_to_close(&mut slow).await, "");
}

#[tokio::test]
async fn a_connection_beyond_the_limit_is_told_503_and_the_ones_served_go_on() {
    use tokio::io::AsyncWriteExt;
    let app = spawn_app_with(|config| config.http.max_connections = 2).await;
    let mut held = [connect(&app).await, connect(&app).await];
    // Each held connection is served: it answers a request and stays open.
    for stream in &mut held {
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: postino\r\n\r\n")
            .await
            .expect("write");
        let mut answer = [0; 12];
        tokio::io::AsyncReadExt::read_exact(stream, &mut answer)
            .await
            .expect("answer");
        assert_eq!(&answer, b"HTTP/1.1 200");
    }
    let mut third = connect(&app).await;
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: postino\r\n\r\n")
        .await
        .expect("write");
    let answer = read_to_close(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("application/problem+json"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("2 connections at once"), "{answer}");

    // One held connection closes; its room is given to the next one.
    let [mut first, _second] = held;
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: postino\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    // (After the rest of its first answer.)
    assert!(read_to_close(&mut first).await.contains("HTTP/1.1 200"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut next = connect(&app).await;
        next.write_all(b"GET /healthz HTTP/1.1\r\nHost: postino\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = read_to_close(&mut next).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        // The server counts a connection out just after closing it: ask until it has.
        assert!(
            tokio::time::Instant::now() < deadline,
            "the room of a closed connection was never given back: {answer}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_service_with_authorized_cidrs_is_refused_from_elsewhere_and_forwarded_for_counts_only_from_a_trusted_proxy(
) {
    let app = spawn_app_with(|config| {
        config.ingest.trusted_proxies = vec!["127.0.0.2".into()];
    })
    .await;
    let mut payload = service_payload("Tassa automobilistica");
    payload["authorized_cidrs"] = json!(["192.0.2.0/24"]);
    let svc = app.create_service(payload.clone()).await;
    let fc = fiscal_code();

    // The test talks from 127.0.0.1: outside, and not a trusted proxy, so its
    // X-Forwarded-For is not believed.
    let refused = app.send(&svc.key, &fc).await;
    let body = problem(refused, StatusCode::FORBIDDEN).await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or("")
            .contains("authorized_cidrs"),
        "{body}"
    );
    let forged = app
        .as_service(Method::POST, &format!("/messages/{fc}"), &svc.key)
        .header("x-forwarded-for", "192.0.2.9")
        .json(&message(None))
        .send()
        .await
        .expect("send");
    problem(forged, StatusCode::FORBIDDEN).await;

    // The operator adds the test's own network: it applies at once.
    payload["authorized_cidrs"] = json!(["192.0.2.0/24", "127.0.0.0/8"]);
    app.update_service(&svc.id, &payload).await;
    assert_eq!(app.send(&svc.key, &fc).await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_client_is_the_forwarded_address() {
    let app = spawn_app_with(|config| {
        config.ingest.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let mut payload = service_payload("Tassa automobilistica");
    payload["authorized_cidrs"] = json!(["192.0.2.0/24"]);
    let svc = app.create_service(payload).await;
    let fc = fiscal_code();
    let from = |forwarded_for: &'static str| {
        app.as_service(Method::POST, &format!("/messages/{fc}"), &svc.key)
            .header("x-forwarded-for", forwarded_for)
            .json(&message(None))
            .send()
    };
    assert_eq!(
        from("192.0.2.9").await.expect("send").status(),
        StatusCode::CREATED
    );
    // What the client wrote before its own address is not believed.
    assert_eq!(
        from("192.0.2.9, 198.51.100.7")
            .await
            .expect("send")
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        from("not an address").await.expect("send").status(),
        StatusCode::FORBIDDEN
    );
}
