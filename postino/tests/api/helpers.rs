//! `spawn_app()` and the calls the tests share.

use std::time::Duration;

use postino::app::App;
use postino::config::Config;
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};

pub const JWT_SECRET: &str = "test secret for citizen tokens, 32+ bytes";
pub const MANAGE_KEY: &str = "test-manage-key-0123456789";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Held so the app lives exactly as long as the test.
    app: App,
    /// What it was started with, to start it again.
    config: Config,
    pub dir: tempfile::TempDir,
}

pub fn config(dir: &std::path::Path, manage_key: &str) -> Config {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        metrics_listen: postino::config::MetricsListen::On("127.0.0.1:0".parse().expect("addr")),
        data_dir: dir.to_path_buf(),
        manage_key: Some(manage_key.into()),
        ..Config::default()
    };
    config.jwt.secret = Some(JWT_SECRET.into());
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `spawn_app()` with settings of its own on top of the tests' configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), MANAGE_KEY);
    adjust(&mut cfg);
    let app = App::start(&cfg).await.expect("start");
    TestApp {
        base: format!("http://{}", app.addr),
        client: reqwest::Client::new(),
        app,
        config: cfg,
        dir,
    }
}

/// A valid fiscal code no other test uses.
pub fn fiscal_code() -> String {
    store::conformance::fresh_fiscal_code().as_str().to_string()
}

pub fn service_payload(name: &str) -> Value {
    json!({
        "name": name,
        "description": "Avvisi di scadenza del bollo auto",
        "organization": {"name": "ACI", "fiscal_code": "00493410583", "department_name": "Tributi"},
        "metadata": {"scope": "NATIONAL", "privacy_url": "https://example.org/privacy"},
        "max_allowed_payment_amount": 100000
    })
}

pub fn message(fc: Option<&str>) -> Value {
    let mut m = json!({
        "content": {
            "subject": "Bollo auto in scadenza",
            "markdown": "Il bollo della tua auto scade il 31 gennaio. Puoi pagarlo in app con pagoPA, senza costi aggiuntivi."
        }
    });
    if let Some(fc) = fc {
        m["fiscal_code"] = json!(fc);
    }
    m
}

pub async fn json_of(response: Response) -> Value {
    response.json().await.expect("JSON body")
}

/// Asserts a problem+json answer with `status` and returns its body.
pub async fn problem(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let ct = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    assert_eq!(ct, "application/problem+json");
    let body = json_of(response).await;
    assert_eq!(body["status"], status.as_u16());
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

pub struct Service {
    pub id: String,
    pub key: String,
    pub secondary: String,
}

impl TestApp {
    /// Stops the app as SIGTERM would and starts it again on the same data directory.
    pub async fn restart(self) -> TestApp {
        let Self {
            app, config, dir, ..
        } = self;
        app.shutdown().await.expect("shut down");
        let app = App::start(&config).await.expect("start again");
        TestApp {
            base: format!("http://{}", app.addr),
            client: reqwest::Client::new(),
            app,
            config,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Where the app serves `/metrics`.
    pub fn metrics_url(&self) -> String {
        let addr = self
            .app
            .metrics_addr
            .expect("the tests' app serves metrics");
        format!("http://{addr}/metrics")
    }

    pub fn manage(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(&format!("/api/v1/manage/services{path}")))
            .header("Ocp-Apim-Subscription-Key", MANAGE_KEY)
    }

    /// Creates a service from `payload` and moves it to production, as most tests send to
    /// anyone; [`Self::create_test_mode_service`] leaves it in test mode.
    pub async fn create_service(&self, payload: Value) -> Service {
        let service = self.create_test_mode_service(payload).await;
        self.set_limits(&service.id, &json!({"mode": "production"}))
            .await;
        service
    }

    /// Changes service `id`'s mode and limits with the platform's key; asserts `200`.
    pub async fn set_limits(&self, id: &str, change: &Value) -> Value {
        let updated = self
            .manage(reqwest::Method::PATCH, &format!("/{id}/limits"))
            .json(change)
            .send()
            .await
            .expect("limits");
        assert_eq!(updated.status(), StatusCode::OK);
        json_of(updated).await
    }

    /// Creates a service from `payload`, left in test mode as every new service starts.
    pub async fn create_test_mode_service(&self, payload: Value) -> Service {
        let created = self
            .manage(reqwest::Method::POST, "")
            .json(&payload)
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), StatusCode::CREATED);
        let id = json_of(created).await["id"]
            .as_str()
            .expect("id")
            .to_string();
        let keys = json_of(
            self.manage(reqwest::Method::GET, &format!("/{id}/keys"))
                .send()
                .await
                .expect("keys"),
        )
        .await;
        Service {
            id,
            key: keys["primary_key"].as_str().expect("primary").into(),
            secondary: keys["secondary_key"].as_str().expect("secondary").into(),
        }
    }

    /// Replaces service `id` with `payload` as an operator; asserts `200` and returns it.
    pub async fn update_service(&self, id: &str, payload: &Value) -> Value {
        let updated = self
            .manage(reqwest::Method::PUT, &format!("/{id}"))
            .json(payload)
            .send()
            .await
            .expect("update");
        assert_eq!(updated.status(), StatusCode::OK);
        json_of(updated).await
    }

    pub async fn service(&self) -> Service {
        self.create_service(service_payload("Tassa automobilistica"))
            .await
    }

    pub fn as_service(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(&format!("/api/v1{path}")))
            .header("Ocp-Apim-Subscription-Key", key)
    }

    pub async fn send(&self, key: &str, fc: &str) -> Response {
        self.as_service(reqwest::Method::POST, &format!("/messages/{fc}"), key)
            .json(&message(None))
            .send()
            .await
            .expect("send")
    }

    /// Sends a message and returns its id.
    pub async fn send_ok(&self, key: &str, fc: &str) -> String {
        let r = self.send(key, fc).await;
        assert_eq!(r.status(), StatusCode::CREATED);
        json_of(r).await["id"].as_str().expect("id").to_string()
    }

    /// A development token for the citizen `fc`.
    pub fn token(&self, fc: &str) -> String {
        let fc = model::FiscalCode::parse("fc", fc).expect("valid");
        citizen::auth::mint_hs256(JWT_SECRET, &fc, 600).expect("token")
    }

    pub fn as_citizen(
        &self,
        method: reqwest::Method,
        path: &str,
        fc: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, self.url(&format!("/citizen/v1{path}")))
            .bearer_auth(self.token(fc))
    }

    /// The first page of citizen `fc`'s inbox, as the citizen API gives it.
    pub async fn inbox(&self, fc: &str) -> Value {
        let page = self
            .as_citizen(reqwest::Method::GET, "/messages", fc)
            .send()
            .await
            .expect("inbox");
        assert_eq!(page.status(), StatusCode::OK);
        json_of(page).await
    }

    pub async fn put_profile(&self, fc: &str, body: Value) -> Value {
        let r = self
            .as_citizen(reqwest::Method::PUT, "/profile", fc)
            .json(&body)
            .send()
            .await
            .expect("put profile");
        assert_eq!(r.status(), StatusCode::OK);
        json_of(r).await
    }

    pub async fn message_status(&self, key: &str, fc: &str, id: &str) -> Value {
        let r = self
            .as_service(reqwest::Method::GET, &format!("/messages/{fc}/{id}"), key)
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK);
        json_of(r).await
    }

    /// Follows a message until the pipeline has decided it (or 30 s pass).
    pub async fn final_status(&self, key: &str, fc: &str, id: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let body = self.message_status(key, fc, id).await;
            if body["status"] != "ACCEPTED" || tokio::time::Instant::now() > deadline {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
