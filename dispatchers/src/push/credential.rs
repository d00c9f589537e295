//! The bearer credential both providers reuse for many requests (FCM's OAuth2 access token,
//! APNs' provider token): cached until it is due for renewal, issued by one caller while
//! the others wait, and renewed once when the provider refuses it.

use std::time::Instant;

use async_trait::async_trait;
use model::push::PushJob;
use tokio::sync::Mutex;

use super::provider::PushError;

/// Where a provider is reached: its HTTP/2 client, its base URL, and the credential cached
/// for it.
pub struct Endpoint {
    pub client: reqwest::Client,
    /// Without a trailing `/`.
    pub base_url: String,
    credential: Mutex<Option<Issued>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    pub fn new(base_url: &str, http: &super::ClientSettings) -> Result<Self, reqwest::Error> {
        let base_url = base_url.trim_end_matches('/').to_string();
        Ok(Self {
            client: http.client(&base_url)?,
            base_url,
            credential: Mutex::new(None),
        })
    }
}

/// A credential and when to replace it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub value: String,
    pub renew_at: Instant,
}

/// One request's failure: the provider refused the credential (renew it and try once
/// more), or anything else, final for this attempt.
#[derive(Debug)]
pub enum Attempt {
    CredentialRefused,
    Failed(PushError),
}

/// A provider that authenticates with a cached credential.
#[async_trait]
pub trait Credentialed: Send + Sync {
    /// Where the provider is reached and its credential cached.
    fn endpoint(&self) -> &Endpoint;
    /// Issues a new credential (exchanges a grant, signs a token).
    async fn issue(&self) -> Result<Issued, PushError>;
    /// Sends one request with `credential`.
    async fn send_once(&self, job: &PushJob, credential: &str) -> Result<(), Attempt>;
}

/// The cached credential, or a new one when it is due. Holding the lock while issuing
/// means a burst never issues more than one.
async fn current<P: Credentialed + ?Sized>(provider: &P) -> Result<String, PushError> {
    let mut cached = provider.endpoint().credential.lock().await;
    if let Some(issued) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
        return Ok(issued.value.clone());
    }
    let fresh = provider.issue().await?;
    let value = fresh.value.clone();
    *cached = Some(fresh);
    Ok(value)
}

/// Sends `job`; when the provider refuses the credential, drops it (unless another caller
/// already replaced it), issues a new one and sends once more.
pub async fn send<P: Credentialed + ?Sized>(provider: &P, job: &PushJob) -> Result<(), PushError> {
    let credential = current(provider).await?;
    match provider.send_once(job, &credential).await {
        Ok(()) => return Ok(()),
        Err(Attempt::Failed(err)) => return Err(err),
        Err(Attempt::CredentialRefused) => {}
    }
    {
        let mut cached = provider.endpoint().credential.lock().await;
        if cached.as_ref().is_some_and(|c| c.value == credential) {
            *cached = None;
        }
    }
    let credential = current(provider).await?;
    match provider.send_once(job, &credential).await {
        Ok(()) => Ok(()),
        Err(Attempt::Failed(err)) => Err(err),
        Err(Attempt::CredentialRefused) => Err(PushError::Retry {
            reason: "the provider refused a freshly issued credential".into(),
            after: None,
        }),
    }
}
