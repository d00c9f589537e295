//! The parts of Postino's APIs the load tool speaks: the manage API to create services, the
//! citizen API to seed profiles and read inboxes, the senders' API to submit messages.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::http1::{Http1Pool, Reply};
use crate::stats::Outcome;

/// The header a service key travels in.
const KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";
/// Postino's extension: a retried submit with the same key gets the first answer.
const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

/// How long one request may take before it counts as a `timeout` error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A service the tool created, with the key it sends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SenderService {
    pub id: String,
    pub key: String,
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    /// `base` parsed once; the hot requests swap their path into a copy of it.
    base_url: reqwest::Url,
    /// `base_url`'s path without its trailing `/`, which request paths go under.
    base_path: String,
    pub http: reqwest::Client,
    /// The lean path the load's own requests (submits, the baseline) take over plain http.
    load: Option<Arc<Http1Pool>>,
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
    #[error("{url:?} is not a URL Postino can be reached at: {reason}")]
    BadUrl { url: String, reason: String },
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
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|source| ApiError::Transport {
                what: "cannot build the HTTP client".into(),
                source,
            })?;
        let base = base.trim_end_matches('/').to_string();
        let base_url = reqwest::Url::parse(&base)
            .map_err(|e| e.to_string())
            .and_then(|url| match url.scheme() {
                "http" | "https" if url.has_host() => Ok(url),
                _ => Err("it needs http:// or https:// and a host".to_string()),
            })
            .map_err(|reason| ApiError::BadUrl {
                url: base.clone(),
                reason,
            })?;
        let base_path = base_url.path().trim_end_matches('/').to_string();
        let load = lean_pool(&base_url, connections).map(Arc::new);
        Ok(Self {
            base,
            base_url,
            base_path,
            http,
            load,
            jwt_key: jsonwebtoken::EncodingKey::from_secret(jwt_secret.as_bytes()),
        })
    }

    /// `path` under the base address. Cheaper than formatting the whole address, which
    /// makes reqwest parse the host again (IDNA included) on every request.
    fn url(&self, path: &str) -> reqwest::Url {
        let mut url = self.base_url.clone();
        url.set_path(&format!("{}{path}", self.base_path));
        url
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
                .header(KEY_HEADER, manage_key)
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
        // A rehearsal sends to anyone and measures the pipeline, not the senders' limits:
        // as the platform's operators would for a national campaign, move the service to
        // production and lift its rate limit.
        Self::checked(
            "moving a service to production (is --manage-key the platform's?)",
            self.http
                .patch(format!("{}/api/v1/manage/services/{id}/limits", self.base))
                .header(KEY_HEADER, manage_key)
                .json(&json!({
                    "mode": "production",
                    "rate_limit": {"requests": 1_000_000, "period_seconds": 1},
                }))
                .send()
                .await,
        )
        .await?;
        let keys = Self::checked(
            what,
            self.http
                .get(format!("{}/api/v1/manage/services/{id}/keys", self.base))
                .header(KEY_HEADER, manage_key)
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

    /// Submits a message, with `idempotency_key` as its `Idempotency-Key` if given; on
    /// `201` returns its id.
    pub async fn submit(
        &self,
        service: &SenderService,
        fiscal_code: &str,
        body: Vec<u8>,
        idempotency_key: Option<&str>,
    ) -> (Outcome, Option<String>) {
        let path = format!("/api/v1/messages/{fiscal_code}");
        let replied = self
            .load_request(
                hyper::Method::POST,
                &path,
                Some(&service.key),
                idempotency_key,
                body,
            )
            .await;
        match replied {
            Ok(reply) if reply.status.as_u16() == 201 => {
                #[derive(Deserialize)]
                struct Id<'a> {
                    id: &'a str,
                }
                match serde_json::from_slice::<Id>(&reply.body) {
                    Ok(id) => (Outcome::Ok, Some(id.id.to_string())),
                    Err(_) => (Outcome::Transport("unreadable 201 body".into()), None),
                }
            }
            Ok(reply) => (Outcome::Status(reply.status.as_u16()), None),
            Err(kind) => (Outcome::Transport(kind), None),
        }
    }

    /// Opens a campaign for `service` (`POST /api/v1/campaigns`): its id.
    pub async fn open_campaign(
        &self,
        service: &SenderService,
        name: &str,
    ) -> Result<String, ApiError> {
        let what = "opening a campaign";
        let opened = Self::checked(
            what,
            self.http
                .post(self.url("/api/v1/campaigns"))
                .header(KEY_HEADER, &service.key)
                .json(&json!({"name": name}))
                .send()
                .await,
        )
        .await?;
        #[derive(Deserialize)]
        struct Opened {
            id: String,
        }
        Ok(opened
            .json::<Opened>()
            .await
            .map_err(|source| ApiError::Transport {
                what: what.to_string(),
                source,
            })?
            .id)
    }

    /// Sends `items` (a JSON array of messages with their fiscal codes) to campaign
    /// `campaign`: the outcome (`Ok` when every item was accepted) and the accepted items'
    /// message ids, by index.
    pub async fn submit_bulk(
        &self,
        service: &SenderService,
        campaign: &str,
        items: Vec<u8>,
    ) -> (Outcome, Vec<(usize, String)>) {
        let path = format!("/api/v1/campaigns/{campaign}/items");
        let replied = self
            .load_request(hyper::Method::POST, &path, Some(&service.key), None, items)
            .await;
        match replied {
            Ok(reply) if reply.status.as_u16() == 202 => {
                #[derive(Deserialize)]
                struct Call {
                    refused: Vec<serde_json::Value>,
                    #[serde(default)]
                    items: Vec<Accepted>,
                }
                #[derive(Deserialize)]
                struct Accepted {
                    index: usize,
                    id: String,
                }
                match serde_json::from_slice::<Call>(&reply.body) {
                    Ok(call) => {
                        let ids = call.items.into_iter().map(|a| (a.index, a.id)).collect();
                        // Some items refused: counted apart from the calls wholly accepted.
                        let outcome = if call.refused.is_empty() {
                            Outcome::Ok
                        } else {
                            Outcome::Status(202)
                        };
                        (outcome, ids)
                    }
                    Err(_) => (Outcome::Transport("unreadable 202 body".into()), Vec::new()),
                }
            }
            Ok(reply) => (Outcome::Status(reply.status.as_u16()), Vec::new()),
            Err(kind) => (Outcome::Transport(kind), Vec::new()),
        }
    }

    /// Whether the citizen can read the message in the inbox now.
    pub async fn readable(&self, token: &str, message_id: &str) -> bool {
        self.http
            .get(self.url(&format!("/citizen/v1/messages/{message_id}")))
            .bearer_auth(token)
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// One of the load's own requests: by the lean path over plain http, else by reqwest.
    /// `key` is the service key to send, `idempotency_key` its `Idempotency-Key`, a
    /// non-empty `body` goes as JSON. A transport failure comes back as its name in the
    /// error counts.
    async fn load_request(
        &self,
        method: hyper::Method,
        path: &str,
        key: Option<&str>,
        idempotency_key: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let Some(pool) = &self.load else {
            let mut request = self.http.request(method, self.url(path));
            if let Some(key) = key {
                request = request.header(KEY_HEADER, key);
            }
            if let Some(idempotency_key) = idempotency_key {
                request = request.header(IDEMPOTENCY_KEY_HEADER, idempotency_key);
            }
            if !body.is_empty() {
                request = request.header(CONTENT_TYPE, "application/json").body(body);
            }
            return whole(request.send().await).await;
        };
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base_path));
        if let Some(key) = key {
            request = request.header(KEY_HEADER, key);
        }
        if let Some(idempotency_key) = idempotency_key {
            request = request.header(IDEMPOTENCY_KEY_HEADER, idempotency_key);
        }
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "unsendable request".to_string())?;
        pool.send(request).await.map_err(|e| e.kind().to_string())
    }

    /// `GET /health`: the no-op endpoint the baseline measures, over the same path as the
    /// submits so the two rates compare.
    pub async fn health(&self) -> Outcome {
        let replied = self
            .load_request(hyper::Method::GET, "/health", None, None, Vec::new())
            .await;
        match replied {
            Ok(reply) if reply.status.is_success() => Outcome::Ok,
            Ok(reply) => Outcome::Status(reply.status.as_u16()),
            Err(kind) => Outcome::Transport(kind),
        }
    }
}

/// The lean client for a plain-http `base`; `https` stays on reqwest.
fn lean_pool(base: &reqwest::Url, connections: usize) -> Option<Http1Pool> {
    if base.scheme() != "http" {
        return None;
    }
    let host = base.host_str()?;
    let port = base.port_or_known_default()?;
    let authority = match base.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    let host_header = HeaderValue::from_str(&authority).ok()?;
    Some(Http1Pool::new(
        format!("{host}:{port}"),
        host_header,
        connections,
        REQUEST_TIMEOUT,
    ))
}

/// A reqwest answer read whole, in the lean path's terms.
async fn whole(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Reply, String> {
    let response = sent.map_err(|err| transport_kind(&err))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|err| transport_kind(&err))?;
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_go_under_the_base_address_and_its_prefix() {
        let api = Api::new("http://127.0.0.1:8080/", 1, "secret").expect("api");
        assert_eq!(
            api.url("/api/v1/messages/X").as_str(),
            "http://127.0.0.1:8080/api/v1/messages/X"
        );
        let behind_a_proxy = Api::new("https://gw.example.org/postino", 1, "s").expect("api");
        assert_eq!(
            behind_a_proxy.url("/health").as_str(),
            "https://gw.example.org/postino/health"
        );
    }

    #[test]
    fn plain_http_takes_the_lean_client_and_https_keeps_reqwest() {
        assert!(Api::new("http://127.0.0.1:8080", 1, "s")
            .expect("api")
            .load
            .is_some());
        assert!(Api::new("https://gw.example.org", 1, "s")
            .expect("api")
            .load
            .is_none());
        let url = |u: &str| reqwest::Url::parse(u).expect("url");
        let pool = lean_pool(&url("http://postino.internal/"), 1).expect("pool");
        assert_eq!(pool.address(), "postino.internal:80");
        assert_eq!(pool.host(), "postino.internal", "no port it was not given");
        let pool = lean_pool(&url("http://127.0.0.1:8080/x"), 1).expect("pool");
        assert_eq!(
            (pool.address(), pool.host()),
            ("127.0.0.1:8080", "127.0.0.1:8080")
        );
    }

    #[test]
    fn an_address_that_is_not_http_is_refused_with_the_address() {
        for bad in ["127.0.0.1:8080", "ftp://host", "not a url"] {
            let err = Api::new(bad, 1, "secret").expect_err(bad);
            assert!(
                matches!(&err, ApiError::BadUrl { url, .. } if url == bad),
                "{err}"
            );
        }
    }
}
