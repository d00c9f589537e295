//! `fake-fcm`: FCM HTTP v1 (`POST /v1/projects/{project}/messages:send`) and the OAuth2
//! token endpoint (`POST /token`, JWT-bearer grant signed with the service account's RSA
//! key, checked against its public key).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::{Fault, Faults};
use super::recorder::{self, Received, Recorder};

/// The OAuth2 scope FCM requires.
const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

#[derive(Debug)]
pub struct FakeFcm {
    public_key: super::PublicKey,
    token_ttl: Duration,
    faults: Faults,
    recorder: Recorder,
    /// Access tokens issued and when each stops being accepted.
    tokens: Mutex<HashMap<String, Instant>>,
    grants: AtomicU64,
}

impl AsRef<Recorder> for FakeFcm {
    fn as_ref(&self) -> &Recorder {
        &self.recorder
    }
}

impl FakeFcm {
    /// `public_key_pem`: the service account's public key; tokens live `token_ttl`.
    pub fn new(
        public_key_pem: &[u8],
        token_ttl: Duration,
        faults: Faults,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            public_key: super::PublicKey(DecodingKey::from_rsa_pem(public_key_pem)?),
            token_ttl,
            recorder: Recorder::new(faults.keep()),
            faults,
            tokens: Mutex::new(HashMap::new()),
            grants: AtomicU64::new(0),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/messages:send", post(send))
            .route("/_standin/received", get(recorder::received::<FakeFcm>))
            .route("/_standin/grants", get(grants))
            .route("/_standin/expire-credentials", post(expire))
            .with_state(self)
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Deserialize)]
struct Grant {
    grant_type: String,
    assertion: String,
}

#[derive(Debug, Deserialize)]
struct GrantClaims {
    iss: String,
    scope: String,
    aud: String,
}

fn oauth_error(description: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": "invalid_grant", "error_description": description})),
    )
        .into_response()
}

async fn token(State(fcm): State<Arc<FakeFcm>>, Form(grant): Form<Grant>) -> Response {
    if grant.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return oauth_error(format!("unsupported grant_type {}", grant.grant_type));
    }
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_aud = false;
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let claims =
        match jsonwebtoken::decode::<GrantClaims>(&grant.assertion, &fcm.public_key.0, &validation)
        {
            Ok(data) => data.claims,
            Err(e) => return oauth_error(format!("invalid JWT signature or claims: {e}")),
        };
    if !claims.aud.ends_with("/token")
        || claims.iss.is_empty()
        || !claims.scope.split(' ').any(|s| s == SCOPE)
    {
        return oauth_error(
            "aud must be the token URI, iss the client email, scope firebase.messaging".into(),
        );
    }
    let n = fcm.grants.fetch_add(1, Ordering::Relaxed) + 1;
    let value = format!("ya29.fake-{n}-{}", super::unix_millis());
    fcm.tokens()
        .insert(value.clone(), Instant::now() + fcm.token_ttl);
    Json(json!({
        "access_token": value,
        "expires_in": fcm.token_ttl.as_secs(),
        "token_type": "Bearer",
    }))
    .into_response()
}

async fn grants(State(fcm): State<Arc<FakeFcm>>) -> Json<Value> {
    Json(json!({ "grants": fcm.grants.load(Ordering::Relaxed) }))
}

/// Makes every access token issued so far invalid, as a revoked or expired one would be.
async fn expire(State(fcm): State<Arc<FakeFcm>>) -> StatusCode {
    fcm.tokens().clear();
    StatusCode::NO_CONTENT
}

fn fcm_error(status: StatusCode, rpc_status: &str, code: Option<&str>, message: &str) -> Response {
    let details: Vec<Value> = code
        .map(|c| json!({"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}))
        .into_iter()
        .collect();
    (
        status,
        Json(json!({"error": {"code": status.as_u16(), "message": message, "status": rpc_status, "details": details}})),
    )
        .into_response()
}

async fn send(
    State(fcm): State<Arc<FakeFcm>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    super::answer_slowly(
        &fcm.faults,
        &fcm.recorder,
        answer(&fcm, &project, &headers, &body),
    )
    .await
}

async fn answer(fcm: &FakeFcm, project: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = bearer.is_some_and(|t| {
        fcm.tokens()
            .get(t)
            .is_some_and(|until| Instant::now() < *until)
    });
    if !valid {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials.",
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "Invalid JSON payload received.",
        );
    };
    let message = &request["message"];
    let Some(device) = message["token"].as_str() else {
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            Some("INVALID_ARGUMENT"),
            "message.token is required",
        );
    };
    match fcm.faults.for_token(device) {
        Some(Fault::Gone) => {
            return fcm_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                Some("UNREGISTERED"),
                "Requested entity was not found.",
            )
        }
        Some(Fault::BadToken) => {
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                "The registration token is not a valid FCM registration token",
            )
        }
        Some(Fault::Status(429)) => {
            let mut r = fcm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                Some("QUOTA_EXCEEDED"),
                "Quota exceeded for quota metric 'Send requests'.",
            );
            r.headers_mut()
                .insert("retry-after", fcm.faults.retry_after().into());
            return r;
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let (rpc, fcm_code) = if code == 503 {
                ("UNAVAILABLE", "UNAVAILABLE")
            } else {
                ("INTERNAL", "INTERNAL")
            };
            return fcm_error(
                status,
                rpc,
                Some(fcm_code),
                "The server encountered an error.",
            );
        }
        None => {}
    }
    let message_id = message["data"]["message_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    fcm.recorder.accept(Received {
        message_id: message_id.clone(),
        token: device.to_string(),
        title: message["notification"]["title"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body: message["notification"]["body"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        at_ms: super::unix_millis(),
    });
    Json(json!({ "name": format!("projects/{project}/messages/{message_id}") })).into_response()
}
