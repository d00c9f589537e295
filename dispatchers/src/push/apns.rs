//! Apple Push Notification service over HTTP/2 with token-based authentication: an ES256
//! JWT signed with the team's `.p8` key, reused for many requests and renewed within the
//! hour Apple accepts it for.

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

/// Apple refuses a provider token older than an hour and throttles renewing more often than
/// every twenty minutes; renewing at fifty keeps clear of both.
pub const TOKEN_RENEWAL: Duration = Duration::from_secs(50 * 60);

/// Who Postino is to APNs.
#[derive(Clone)]
pub struct ApnsCredentials {
    /// The `.p8` signing key (PKCS#8 PEM).
    pub key_pem: String,
    pub key_id: String,
    pub team_id: String,
    /// The app's bundle id (`apns-topic`).
    pub topic: String,
}

impl std::fmt::Debug for ApnsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsCredentials")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApnsSetupError {
    #[error("cannot read the APNs key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the APNs key {path} is not a PKCS#8 P-256 private key (.p8): {reason}")]
    Key { path: String, reason: String },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

impl ApnsCredentials {
    pub fn from_key_file(
        path: &Path,
        key_id: String,
        team_id: String,
        topic: String,
    ) -> Result<Self, ApnsSetupError> {
        let key_pem = std::fs::read_to_string(path).map_err(|source| ApnsSetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        EncodingKey::from_ec_pem(key_pem.as_bytes()).map_err(|e| ApnsSetupError::Key {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            key_pem,
            key_id,
            team_id,
            topic,
        })
    }
}

#[derive(Debug, Serialize)]
struct ProviderClaims<'a> {
    iss: &'a str,
    iat: u64,
}

#[derive(Debug, Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    reason: String,
}

pub struct ApnsProvider {
    endpoint: Endpoint,
    credentials: ApnsCredentials,
    key: EncodingKey,
    renewal: Duration,
}

impl std::fmt::Debug for ApnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsProvider")
            .field("credentials", &self.credentials)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl ApnsProvider {
    pub fn new(
        credentials: ApnsCredentials,
        base_url: &str,
        http: &super::ClientSettings,
    ) -> Result<Self, ApnsSetupError> {
        let key = EncodingKey::from_ec_pem(credentials.key_pem.as_bytes()).map_err(|e| {
            ApnsSetupError::Key {
                path: "configured key".into(),
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            endpoint: Endpoint::new(base_url, http)?,
            credentials,
            key,
            renewal: TOKEN_RENEWAL,
        })
    }
}

/// APNs' documented statuses and reasons mapped to what Postino does.
fn classify(status: StatusCode, headers: &reqwest::header::HeaderMap, reason: &str) -> PushError {
    match (status.as_u16(), reason) {
        (410, _) | (400, "BadDeviceToken" | "DeviceTokenNotForTopic") => {
            PushError::TokenGone(format!("{status} {reason}"))
        }
        _ => transient(status, headers, reason)
            .unwrap_or_else(|| PushError::Rejected(format!("{status} {reason}"))),
    }
}

#[async_trait]
impl Credentialed for ApnsProvider {
    fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Signs a new provider token, used until `renewal` has passed.
    async fn issue(&self) -> Result<Issued, PushError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.credentials.key_id.clone());
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = ProviderClaims {
            iss: &self.credentials.team_id,
            iat,
        };
        let value = jsonwebtoken::encode(&header, &claims, &self.key).map_err(|e| {
            PushError::Rejected(format!("cannot sign the APNs provider token: {e}"))
        })?;
        Ok(Issued {
            value,
            renew_at: Instant::now() + self.renewal,
        })
    }

    async fn send_once(&self, job: &PushJob, token: &str) -> Result<(), Attempt> {
        let url = format!("{}/3/device/{}", self.endpoint.base_url, job.token.expose());
        let body = json!({
            "aps": {
                "alert": { "title": job.title, "body": job.body },
                "sound": "default",
            },
            "message_id": job.message_id.to_string(),
        });
        let response = self
            .endpoint
            .client
            .post(url)
            .bearer_auth(token)
            .header("apns-topic", &self.credentials.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .header("apns-expiration", job.expires_at.max(0).to_string())
            .header("apns-collapse-id", job.message_id.to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| Attempt::Failed(PushError::transport(e)))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let reason = response
            .json::<ErrorBody>()
            .await
            .unwrap_or_default()
            .reason;
        if status == StatusCode::FORBIDDEN && reason == "ExpiredProviderToken" {
            return Err(Attempt::CredentialRefused);
        }
        Err(Attempt::Failed(classify(status, &headers, &reason)))
    }
}

#[async_trait]
impl PushProvider for ApnsProvider {
    async fn send(&self, job: &PushJob) -> Result<(), PushError> {
        credential::send(self, job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_what_postino_does() {
        let h = reqwest::header::HeaderMap::new();
        let s = |c| StatusCode::from_u16(c).unwrap();
        assert!(matches!(
            classify(s(410), &h, "Unregistered"),
            PushError::TokenGone(_)
        ));
        assert!(matches!(
            classify(s(400), &h, "BadDeviceToken"),
            PushError::TokenGone(_)
        ));
        assert!(matches!(
            classify(s(400), &h, "BadTopic"),
            PushError::Rejected(_)
        ));
        assert!(matches!(
            classify(s(429), &h, "TooManyRequests"),
            PushError::Retry { .. }
        ));
        assert!(matches!(
            classify(s(503), &h, "ServiceUnavailable"),
            PushError::Retry { .. }
        ));
        assert!(matches!(
            classify(s(403), &h, "InvalidProviderToken"),
            PushError::Rejected(_)
        ));
    }

    #[test]
    fn a_key_that_is_not_a_p8_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key.p8");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let err = ApnsCredentials::from_key_file(&path, "K".into(), "T".into(), "it.pagopa".into())
            .unwrap_err();
        assert!(matches!(err, ApnsSetupError::Key { .. }), "{err}");
    }
}
