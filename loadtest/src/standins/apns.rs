//! `fake-apns`: APNs' provider API (`POST /3/device/{token}`), checking the headers APNs
//! requires and the ES256 provider token (signature, key id, team, and an `iat` within the
//! hour), answering with APNs' documented reasons.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::{Fault, Faults};
use super::recorder::{self, Received, Recorder};

#[derive(Debug)]
pub struct FakeApns {
    public_key: super::PublicKey,
    key_id: String,
    team_id: String,
    topic: String,
    faults: Faults,
    recorder: Recorder,
    /// Provider tokens seen, and those made to count as expired.
    seen: Mutex<HashSet<String>>,
    expired: Mutex<HashSet<String>>,
}

impl AsRef<Recorder> for FakeApns {
    fn as_ref(&self) -> &Recorder {
        &self.recorder
    }
}

#[derive(Debug, Deserialize)]
struct ProviderClaims {
    iss: String,
    iat: u64,
}

impl FakeApns {
    pub fn new(
        public_key_pem: &[u8],
        key_id: String,
        team_id: String,
        topic: String,
        faults: Faults,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        Ok(Self {
            public_key: super::PublicKey(DecodingKey::from_ec_pem(public_key_pem)?),
            key_id,
            team_id,
            topic,
            recorder: Recorder::new(faults.keep()),
            faults,
            seen: Mutex::new(HashSet::new()),
            expired: Mutex::new(HashSet::new()),
        })
    }

    pub fn router(self: Arc<Self>) -> Router {
        Router::new()
            .route("/3/device/{token}", post(push))
            .route("/_standin/received", get(recorder::received::<FakeApns>))
            .route("/_standin/expire-credentials", post(expire))
            .with_state(self)
    }

    /// `None` when the provider token is acceptable, else APNs' reason.
    fn check_provider_token(&self, headers: &HeaderMap) -> Option<&'static str> {
        let Some(jwt) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("bearer ")
                    .or_else(|| v.strip_prefix("Bearer "))
            })
        else {
            return Some("MissingProviderToken");
        };
        let Ok(header) = jsonwebtoken::decode_header(jwt) else {
            return Some("InvalidProviderToken");
        };
        if header.alg != Algorithm::ES256 || header.kid.as_deref() != Some(self.key_id.as_str()) {
            return Some("InvalidProviderToken");
        }
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        let Ok(data) = jsonwebtoken::decode::<ProviderClaims>(jwt, &self.public_key.0, &validation)
        else {
            return Some("InvalidProviderToken");
        };
        if data.claims.iss != self.team_id {
            return Some("InvalidProviderToken");
        }
        let now = super::unix_millis() / 1000;
        if data.claims.iat + 3600 < now || lock(&self.expired).contains(jwt) {
            return Some("ExpiredProviderToken");
        }
        lock(&self.seen).insert(jwt.to_string());
        None
    }
}

fn lock(set: &Mutex<HashSet<String>>) -> std::sync::MutexGuard<'_, HashSet<String>> {
    set.lock().unwrap_or_else(|e| e.into_inner())
}

/// Makes every provider token used so far count as expired.
async fn expire(State(apns): State<Arc<FakeApns>>) -> StatusCode {
    let seen = lock(&apns.seen).clone();
    lock(&apns.expired).extend(seen);
    StatusCode::NO_CONTENT
}

fn reason(status: StatusCode, reason: &str) -> Response {
    let mut body = json!({ "reason": reason });
    if status == StatusCode::GONE {
        body["timestamp"] = json!(super::unix_millis());
    }
    (status, Json(body)).into_response()
}

async fn push(
    State(apns): State<Arc<FakeApns>>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    super::answer_slowly(
        &apns.faults,
        &apns.recorder,
        answer(&apns, &token, &headers, &body),
    )
    .await
}

async fn answer(apns: &FakeApns, token: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(r) = apns.check_provider_token(headers) {
        return reason(StatusCode::FORBIDDEN, r);
    }
    match header("apns-topic") {
        None => return reason(StatusCode::BAD_REQUEST, "MissingTopic"),
        Some(t) if t != apns.topic => return reason(StatusCode::BAD_REQUEST, "TopicDisallowed"),
        Some(_) => {}
    }
    if header("apns-push-type") != Some("alert") {
        return reason(StatusCode::BAD_REQUEST, "InvalidPushType");
    }
    if header("apns-expiration").is_some_and(|e| e.parse::<u64>().is_err()) {
        return reason(StatusCode::BAD_REQUEST, "BadExpirationDate");
    }
    if header("apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return reason(StatusCode::BAD_REQUEST, "BadCollapseId");
    }
    if !model::installation::is_apns_token(token) {
        return reason(StatusCode::BAD_REQUEST, "BadDeviceToken");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(body) else {
        return reason(StatusCode::BAD_REQUEST, "PayloadEmpty");
    };
    match apns.faults.for_token(token) {
        Some(Fault::Gone) => return reason(StatusCode::GONE, "Unregistered"),
        Some(Fault::BadToken) => return reason(StatusCode::BAD_REQUEST, "BadDeviceToken"),
        Some(Fault::Status(429)) => {
            let mut r = reason(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");
            r.headers_mut()
                .insert("retry-after", apns.faults.retry_after().into());
            return r;
        }
        Some(Fault::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let r = if code == 503 {
                "ServiceUnavailable"
            } else {
                "InternalServerError"
            };
            return reason(status, r);
        }
        None => {}
    }
    let alert = &payload["aps"]["alert"];
    apns.recorder.accept(Received {
        message_id: payload["message_id"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        token: token.to_string(),
        title: alert["title"].as_str().unwrap_or_default().to_string(),
        body: alert["body"].as_str().unwrap_or_default().to_string(),
        at_ms: super::unix_millis(),
    });
    let mut ok = StatusCode::OK.into_response();
    if let Ok(id) = ulid::Ulid::new().to_string().parse() {
        ok.headers_mut().insert("apns-id", id);
    }
    ok
}
