//! The parts of Postino's APIs the load tool speaks: the manage API to create services, the
//! citizen API to seed profiles and read inboxes, the senders' API to submit messages.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::stats::Outcome;

/// A service the tool created, with the key it sends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderService {
    pub id: String,
    pub key: String,
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    jwt_key: jsonwebtoken::EncodingKey,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{what}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: u16,
        body: String,
    },
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a transport failure is called in the error counts.
pub fn transport_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".into()
    } else if err.is_connect() {
        "connect".into()
    } else {
        "transport".into()
    }
}

/// How a request that expects a success status ended.
fn outcome(sent: Result<reqwest::Response, reqwest::Error>) -> Outcome {
    match sent {
        Ok(r) if r.status().is_success() => Outcome::Ok,
        Ok(r) => Outcome::Status(r.status().as_u16()),
        Err(err) => Outcome::Transport(transport_kind(&err)),
    }
}

impl Api {
    /// A client for `base` (`http://host:port`) with up to `connections` kept-alive
    /// connections; `jwt_secret` signs citizen tokens (Postino's HS256 development secret).
    pub fn new(base: &str, connections: usize, jwt_secret: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| ApiError::Transport {
                what: "cannot build the HTTP client".into(),
                source,
            })?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            jwt_key: jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
        })
    }

    /// A citizen token for `fiscal_code`, valid for an hour.
    pub fn citizen_token(&self, fiscal_code: &str) -> String {
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &json!({"sub": fiscal_code, "exp": exp}),
            &self.jwt_key,
        )
        .unwrap_or_default()
    }

    async fn checked(
        what: &str,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<reqwest::Response, ApiError> {
        let response = sent.map_err(|source| ApiError::Transport {
            what: what.to_string(),
            source,
        })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Err(ApiError::Status {
            what: what.to_string(),
            status,
            body,
        })
    }

    /// Creates a service and returns it with its primary key.
    pub async fn create_service(
        &self,
        manage_key: &str,
        name: &str,
    ) -> Result<SenderService, ApiError> {
        let what = "creating a service (is --manage-key right?)";
        let created = Self::checked(
            what,
            self.http
                .post(format!("{}/api/v1/manage/services", self.base))
                .header("Ocp-Apim-Subscription-Key", manage_key)
                .json(&json!({
                    "name": name,
                    "description": "Created by loadtest",
                    "organization": {"name": "Loadtest", "fiscal_code": "00493410583"},
                    "metadata": {"scope": "NATIONAL"},
                    "max_allowed_payment_amount": 1_000_000,
                }))
                .send()
                .await,
        )
        .await?;
        #[derive(Deserialize)]
        struct Created {
            id: String,
        }
        #[derive(Deserialize)]
        struct Keys {
            primary_key: String,
        }
        let parse = |source| ApiError::Transport {
            what: what.to_string(),
            source,
        };
        let id = created.json::<Created>().await.map_err(parse)?.id;
        let keys = Self::checked(
            what,
            self.http
                .get(format!("{}/api/v1/manage/services/{id}/keys", self.base))
                .header("Ocp-Apim-Subscription-Key", manage_key)
                .send()
                .await,
        )
        .await?
        .json::<Keys>()
        .await
        .map_err(parse)?;
        Ok(SenderService {
            id,
            key: keys.primary_key,
        })
    }

    /// `PUT` of a citizen resource with the citizen's token.
    pub async fn put_as_citizen(
        &self,
        fiscal_code: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> Outcome {
        outcome(
            self.http
                .put(format!("{}/citizen/v1{path}", self.base))
                .bearer_auth(self.citizen_token(fiscal_code))
                .json(body)
                .send()
                .await,
        )
    }

    /// Submits a message; on `201` returns its id.
    pub async fn submit(
        &self,
        service: &SenderService,
        fiscal_code: &str,
        body: &serde_json::Value,
    ) -> (Outcome, Option<String>) {
        let sent = self
            .http
            .post(format!("{}/api/v1/messages/{fiscal_code}", self.base))
            .header("Ocp-Apim-Subscription-Key", &service.key)
            .json(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 201 => {
                #[derive(Deserialize)]
                struct Id {
                    id: String,
                }
                match r.json::<Id>().await {
                    Ok(id) => (Outcome::Ok, Some(id.id)),
                    Err(_) => (Outcome::Transport("unreadable 201 body".into()), None),
                }
            }
            Ok(r) => (Outcome::Status(r.status().as_u16()), None),
            Err(err) => (Outcome::Transport(transport_kind(&err)), None),
        }
    }

    /// Whether the citizen can read the message in the inbox now.
    pub async fn readable(&self, token: &str, message_id: &str) -> bool {
        self.http
            .get(format!("{}/citizen/v1/messages/{message_id}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// `GET /health`: the no-op endpoint the baseline measures.
    pub async fn health(&self) -> Outcome {
        match self.http.get(format!("{}/health", self.base)).send().await {
            Ok(r) if r.status().is_success() => {
                // Read the body so the connection is reused.
                let _ = r.bytes().await;
                Outcome::Ok
            }
            other => outcome(other),
        }
    }
}
