//! Organisations with manage keys of their own: the platform's key registers them, and an
//! organisation's key sees and touches only its own services, never their limits.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::*;

const ACI: &str = "00493410583";
const COMUNE: &str = "02438750586";

impl TestApp {
    /// Registers an organisation with the platform's key; its primary and secondary keys.
    async fn organization(&self, fiscal_code: &str) -> (String, String) {
        let r = self
            .client
            .post(self.url("/api/v1/manage/organizations"))
            .header("Ocp-Apim-Subscription-Key", MANAGE_KEY)
            .json(&json!({"fiscal_code": fiscal_code, "name": "Ente"}))
            .send()
            .await
            .expect("register");
        assert_eq!(r.status(), StatusCode::CREATED);
        let body = json_of(r).await;
        assert_eq!(body["fiscal_code"], fiscal_code);
        (
            body["primary_key"].as_str().expect("primary").into(),
            body["secondary_key"].as_str().expect("secondary").into(),
        )
    }

    fn manage_as(&self, key: &str, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(&format!("/api/v1/manage{path}")))
            .header("Ocp-Apim-Subscription-Key", key)
    }
}

fn payload_of(organization: &str) -> Value {
    let mut payload = service_payload("Servizio");
    payload["organization"]["fiscal_code"] = json!(organization);
    payload
}

#[tokio::test]
async fn an_organisations_key_manages_only_its_own_services() {
    let app = spawn_app().await;
    let (aci_key, _) = app.organization(ACI).await;
    let theirs = app.service().await; // the platform's, for ACI too
    let other = app.create_service(payload_of(COMUNE)).await;

    // It creates services for itself only, and they start in test mode.
    let created = app
        .manage_as(&aci_key, Method::POST, "/services")
        .json(&payload_of(ACI))
        .send()
        .await
        .expect("create");
    assert_eq!(created.status(), StatusCode::CREATED);
    let own = json_of(created).await;
    assert_eq!(own["mode"], "test");
    let own_id = own["id"].as_str().expect("id");
    let r = app
        .manage_as(&aci_key, Method::POST, "/services")
        .json(&payload_of(COMUNE))
        .send()
        .await
        .expect("create");
    problem(r, StatusCode::FORBIDDEN).await;

    // It reads, updates and gets the keys of its organisation's services only.
    for id in [own_id, theirs.id.as_str()] {
        let r = app
            .manage_as(&aci_key, Method::GET, &format!("/services/{id}/keys"))
            .send()
            .await
            .expect("keys");
        assert_eq!(r.status(), StatusCode::OK);
    }
    for (method, path) in [
        (Method::GET, format!("/services/{}", other.id)),
        (Method::GET, format!("/services/{}/keys", other.id)),
        (Method::PUT, format!("/services/{}/keys/primary", other.id)),
        (Method::DELETE, format!("/services/{}", other.id)),
    ] {
        let r = app
            .manage_as(&aci_key, method.clone(), &path)
            .send()
            .await
            .expect("call");
        problem(r, StatusCode::FORBIDDEN).await;
    }
    let r = app
        .manage_as(&aci_key, Method::PUT, &format!("/services/{}", other.id))
        .json(&payload_of(COMUNE))
        .send()
        .await
        .expect("update");
    problem(r, StatusCode::FORBIDDEN).await;
    // Nor can it hand its own service to another organisation.
    let r = app
        .manage_as(&aci_key, Method::PUT, &format!("/services/{own_id}"))
        .json(&payload_of(COMUNE))
        .send()
        .await
        .expect("update");
    problem(r, StatusCode::FORBIDDEN).await;
    assert_eq!(
        app.send(&other.key, &fiscal_code()).await.status(),
        StatusCode::CREATED,
        "the other organisation's service is untouched"
    );

    // Its listing holds its own services only.
    let listed = json_of(
        app.manage_as(&aci_key, Method::GET, "/services")
            .send()
            .await
            .expect("list"),
    )
    .await;
    let mut ids: Vec<&str> = listed["value"]
        .as_array()
        .expect("value")
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    ids.sort_unstable();
    let mut expected = vec![own_id, theirs.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);
    assert_eq!(listed["pagination"]["count"], 2);
}

#[tokio::test]
async fn an_organisation_cannot_lift_its_own_limits_or_register_organisations() {
    let app = spawn_app().await;
    let (aci_key, _) = app.organization(ACI).await;
    let service = app.create_test_mode_service(payload_of(ACI)).await;
    let r = app
        .manage_as(
            &aci_key,
            Method::PATCH,
            &format!("/services/{}/limits", service.id),
        )
        .json(&json!({"mode": "production"}))
        .send()
        .await
        .expect("patch");
    problem(r, StatusCode::FORBIDDEN).await;
    // Through the payload neither; sending back what it read is fine.
    let mut read = json_of(
        app.manage_as(&aci_key, Method::GET, &format!("/services/{}", service.id))
            .send()
            .await
            .expect("get"),
    )
    .await;
    read["description"] = json!("Nuova descrizione");
    let r = app
        .manage_as(&aci_key, Method::PUT, &format!("/services/{}", service.id))
        .json(&read)
        .send()
        .await
        .expect("update");
    assert_eq!(r.status(), StatusCode::OK);
    for (field, value) in [
        ("mode", json!("production")),
        ("weekly_quota", json!(1_000_000)),
        (
            "rate_limit",
            json!({"requests": 1_000_000, "period_seconds": 1}),
        ),
    ] {
        let mut lifted = read.clone();
        lifted[field] = value;
        let r = app
            .manage_as(&aci_key, Method::PUT, &format!("/services/{}", service.id))
            .json(&lifted)
            .send()
            .await
            .expect("update");
        let refused = problem(r, StatusCode::FORBIDDEN).await;
        assert!(
            refused["detail"]
                .as_str()
                .is_some_and(|d| d.contains("/limits")),
            "{refused}"
        );
    }
    let r = app
        .manage_as(&aci_key, Method::POST, "/organizations")
        .json(&json!({"fiscal_code": COMUNE, "name": "Comune"}))
        .send()
        .await
        .expect("register");
    problem(r, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn an_organisations_keys_rotate_one_at_a_time_and_registering_is_checked() {
    let app = spawn_app().await;
    let (primary, secondary) = app.organization(ACI).await;
    let r = app
        .manage_as(
            &primary,
            Method::PUT,
            &format!("/organizations/{ACI}/keys/primary"),
        )
        .send()
        .await
        .expect("regenerate");
    assert_eq!(r.status(), StatusCode::OK);
    let rotated = json_of(r).await;
    let new_primary = rotated["primary_key"].as_str().expect("key");
    assert_ne!(new_primary, primary);
    assert_eq!(rotated["secondary_key"], secondary.as_str());
    let r = app
        .manage_as(&primary, Method::GET, "/services")
        .send()
        .await
        .expect("list");
    problem(r, StatusCode::UNAUTHORIZED).await;
    for key in [new_primary, secondary.as_str()] {
        let r = app
            .manage_as(key, Method::GET, "/services")
            .send()
            .await
            .expect("list");
        assert_eq!(r.status(), StatusCode::OK);
    }
    // Another organisation's keys are not its to see.
    app.organization(COMUNE).await;
    let r = app
        .manage_as(
            new_primary,
            Method::GET,
            &format!("/organizations/{COMUNE}/keys"),
        )
        .send()
        .await
        .expect("keys");
    problem(r, StatusCode::FORBIDDEN).await;

    for (body, status) in [
        (
            json!({"fiscal_code": ACI, "name": "Again"}),
            StatusCode::CONFLICT,
        ),
        (
            json!({"fiscal_code": "123", "name": "Short"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fiscal_code": "01234567890", "name": ""}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"fiscal_code": "01234567890"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let r = app
            .manage_as(MANAGE_KEY, Method::POST, "/organizations")
            .json(&body)
            .send()
            .await
            .expect("register");
        problem(r, status).await;
    }
}

#[tokio::test]
async fn services_are_listed_a_page_at_a_time_in_ios_shape() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.service().await.id);
    }
    ids.sort();
    let page = |query: &'static str| {
        let request = app.manage_as(MANAGE_KEY, Method::GET, &format!("/services{query}"));
        async move { request.send().await.expect("list") }
    };
    let first = json_of(page("?limit=2").await).await;
    assert_eq!(
        first["pagination"],
        json!({"offset": 0, "limit": 2, "count": 5})
    );
    let second = json_of(page("?limit=2&offset=2").await).await;
    let third = json_of(page("?limit=2&offset=4").await).await;
    let listed: Vec<String> = [first, second, third]
        .iter()
        .flat_map(|p| p["value"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["id"].as_str().map(str::to_string))
        .collect();
    assert_eq!(listed, ids, "every service once, by id");
    let all = json_of(page("").await).await;
    assert_eq!(all["pagination"]["limit"], 20);
    assert_eq!(all["value"].as_array().map(Vec::len), Some(5));
    assert_eq!(all["value"][0]["status"]["value"], "approved");
    for query in ["?limit=0", "?limit=101", "?offset=x"] {
        problem(page(query).await, StatusCode::BAD_REQUEST).await;
    }
}
