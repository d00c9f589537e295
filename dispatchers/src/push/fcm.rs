//! Firebase Cloud Messaging, HTTP v1 API: an OAuth2 access token obtained with the service
//! account's key (a signed JWT exchanged at its `token_uri`), cached and renewed before it
//! expires, and one `messages:send` request per notification.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use model::push::PushJob;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::credential::{self, Attempt, Credentialed, Endpoint, Issued};
use super::provider::{transient, PushError, PushProvider};

/// The OAuth2 scope that lets a token send FCM messages.
pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// What Postino needs from a Google service-account key file.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    #[serde(default)]
    pub private_key_id: Option<String>,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// Why the FCM provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum FcmSetupError {
    #[error("cannot read the service-account file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the service-account file {path} is not a service-account key: {reason}")]
    Parse { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl ServiceAccount {
    pub fn from_file(path: &Path) -> Result<Self, FcmSetupError> {
        let text = std::fs::read(path).map_err(|source| FcmSetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let account: Self =
            model::validation::from_json(&text).map_err(|e| FcmSetupError::Parse {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
        EncodingKey::from_rsa_pem(account.private_key.as_bytes()).map_err(|e| {
            FcmSetupError::Parse {
                path: path.display().to_string(),
                reason: format!("private_key: {e}"),
            }
        })?;
        Ok(account)
    }
}

#[derive(Debug, Serialize)]
struct GrantClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// How long before its expiry a token is renewed: Google's tokens live an hour, and
/// renewing five minutes early keeps requests in flight from meeting an expired one.
pub const RENEWAL_MARGIN: Duration = Duration::from_secs(300);

/// When to renew a token that expires in `expires_in`: `margin` before when one is set,
/// else [`RENEWAL_MARGIN`] before, or at half its life when it is too short for that.
fn renew_after(expires_in: Duration, margin: Option<Duration>) -> Duration {
    let margin = margin.unwrap_or_else(|| RENEWAL_MARGIN.min(expires_in / 2));
    expires_in.saturating_sub(margin)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// FCM's error body (`google.rpc.Status` with `FcmError` details).
#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorStatus,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorStatus {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

impl ErrorStatus {
    /// The `FcmError` code when there is one, else the RPC status.
    fn code(&self) -> &str {
        self.details
            .iter()
            .find_map(|d| d.get("errorCode").and_then(|c| c.as_str()))
            .unwrap_or(&self.status)
    }
}

pub struct FcmProvider {
    endpoint: Endpoint,
    account: ServiceAccount,
    key: EncodingKey,
    send_url: String,
    renewal_margin: Option<Duration>,
}

impl std::fmt::Debug for FcmProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmProvider")
            .field("account", &self.account)
            .field("send_url", &self.send_url)
            .finish_non_exhaustive()
    }
}

impl FcmProvider {
    pub fn new(
        account: ServiceAccount,
        base_url: &str,
        http: &super::ClientSettings,
    ) -> Result<Self, FcmSetupError> {
        let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes()).map_err(|e| {
            FcmSetupError::Parse {
                path: "service account".into(),
                reason: format!("private_key: {e}"),
            }
        })?;
        let endpoint = Endpoint::new(base_url, http)?;
        Ok(Self {
            send_url: format!(
                "{}/v1/projects/{}/messages:send",
                endpoint.base_url, account.project_id
            ),
            endpoint,
            account,
            key,
            renewal_margin: None,
        })
    }

    /// Renews tokens `margin` before they expire instead of [`RENEWAL_MARGIN`].
    pub fn with_renewal_margin(mut self, margin: Duration) -> Self {
        self.renewal_margin = Some(margin);
        self
    }

    fn body(job: &PushJob) -> serde_json::Value {
        let ttl = (job.expires_at - i64::try_from(unix_now()).unwrap_or(i64::MAX)).max(0);
        json!({
            "message": {
                "token": job.token.expose(),
                "notification": { "title": job.title, "body": job.body },
                "data": { "message_id": job.message_id.to_string() },
                "android": {
                    "ttl": format!("{ttl}s"),
                    "collapse_key": job.message_id.to_string(),
                    "priority": "HIGH",
                },
            }
        })
    }
}

/// FCM's documented error codes mapped to what Postino does.
fn classify(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    code: &str,
    message: &str,
) -> PushError {
    let about_the_token = message.to_ascii_lowercase().contains("token");
    match code {
        "UNREGISTERED" | "SENDER_ID_MISMATCH" => PushError::TokenGone(code.to_string()),
        "INVALID_ARGUMENT" if about_the_token => PushError::TokenGone(code.to_string()),
        _ => transient(status, headers, code)
            .unwrap_or_else(|| PushError::Rejected(format!("{status} {code}: {message}"))),
    }
}

#[async_trait]
impl Credentialed for FcmProvider {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Exchanges a signed grant for an access token at the service account's `token_uri`.
    async fn issue(&self) -> Result<Issued, PushError> {
        let iat = unix_now();
        let claims = GrantClaims {
            iss: &self.account.client_email,
            scope: SCOPE,
            aud: &self.account.token_uri,
            iat,
            exp: iat + 3600,
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.account.private_key_id.clone();
        let assertion = jsonwebtoken::encode(&header, &claims, &self.key)
            .map_err(|e| PushError::Rejected(format!("cannot sign the OAuth2 grant: {e}")))?;
        let asked = Instant::now();
        let response = self
            .endpoint
            .client
            .post(&self.account.token_uri)
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion.as_str()),
            ])
            .send()
            .await
            .map_err(PushError::transport)?;
        let status = response.status();
        if let Some(retry) = transient(status, response.headers(), "from the OAuth2 token endpoint")
        {
            return Err(retry);
        }
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(PushError::Rejected(format!(
                "the OAuth2 token endpoint refused the service account ({status}): {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let token: TokenResponse = response.json().await.map_err(|e| PushError::Retry {
            reason: format!("unreadable OAuth2 token response: {e}"),
            after: None,
        })?;
        tracing::debug!(expires_in = token.expires_in, "FCM access token renewed");
        Ok(Issued {
            value: token.access_token,
            renew_at: asked
                + renew_after(Duration::from_secs(token.expires_in), self.renewal_margin),
        })
    }

    async fn send_once(&self, job: &PushJob, token: &str) -> Result<(), Attempt> {
        let response = self
            .endpoint
            .client
            .post(&self.send_url)
            .bearer_auth(token)
            .json(&Self::body(job))
            .send()
            .await
            .map_err(|e| Attempt::Failed(PushError::transport(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let error = response.json::<ErrorBody>().await.unwrap_or_default().error;
        let code = error.code().to_string();
        if status == StatusCode::UNAUTHORIZED && code != "THIRD_PARTY_AUTH_ERROR" {
            return Err(Attempt::CredentialRefused);
        }
        Err(Attempt::Failed(classify(
            status,
            &headers,
            &code,
            &error.message,
        )))
    }
}

#[async_trait]
impl PushProvider for FcmProvider {
    async fn send(&self, job: &PushJob) -> Result<(), PushError> {
        credential::send(self, job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_renewed_before_they_expire() {
        let s = Duration::from_secs;
        assert_eq!(renew_after(s(3600), None), s(3300));
        assert_eq!(renew_after(s(60), None), s(30));
        assert_eq!(renew_after(s(3600), Some(s(3600))), s(0));
        assert_eq!(renew_after(Duration::ZERO, None), Duration::ZERO);
    }

    #[test]
    fn error_codes_map_to_what_postino_does() {
        let h = reqwest::header::HeaderMap::new();
        let gone = |s, c, m| matches!(classify(s, &h, c, m), PushError::TokenGone(_));
        assert!(gone(
            StatusCode::NOT_FOUND,
            "UNREGISTERED",
            "Requested entity was not found."
        ));
        assert!(gone(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token"
        ));
        assert!(matches!(
            classify(
                StatusCode::BAD_REQUEST,
                &h,
                "INVALID_ARGUMENT",
                "Invalid value at 'message.android.ttl'"
            ),
            PushError::Rejected(_)
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &h, "QUOTA_EXCEEDED", ""),
            PushError::Retry { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &h, "THIRD_PARTY_AUTH_ERROR", ""),
            PushError::Rejected(_)
        ));
    }

    #[test]
    fn a_service_account_file_that_is_not_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sa.json");
        std::fs::write(
            &path,
            r#"{"project_id":"p","client_email":"e","token_uri":"u"}"#,
        )
        .expect("write");
        let err = ServiceAccount::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("private_key"), "{err}");
        std::fs::write(
            &path,
            r#"{"project_id":"p","client_email":"e","token_uri":"u","private_key":"nope"}"#,
        )
        .expect("write");
        let err = ServiceAccount::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("private_key"), "{err}");
        let err = ServiceAccount::from_file(&dir.path().join("missing.json")).unwrap_err();
        assert!(matches!(err, FcmSetupError::Read { .. }));
    }
}
