//! Who is calling: the `Ocp-Apim-Subscription-Key` header, hashed and looked up.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use model::service::Service;
use problem::Problem;
use store::KeyOwner;

use crate::{IngestState, Keys};

pub const KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// A request made with one of a service's keys.
#[derive(Debug)]
pub struct ServiceCaller(pub std::sync::Arc<Service>);

/// A request made with the manage key.
#[derive(Debug)]
pub struct ManageCaller;

/// The hash of the request's key.
fn key_hash(parts: &Parts) -> Result<String, Problem> {
    let key = parts
        .headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Problem::unauthorized(format!("the {KEY_HEADER} header is missing")))?;
    Ok(Keys::hash(key))
}

async fn owner(key_hash: &str, state: &IngestState) -> Result<KeyOwner, Problem> {
    state
        .store
        .get_key(key_hash)
        .await?
        .ok_or_else(|| Problem::unauthorized(format!("the {KEY_HEADER} is not a valid key")))
}

impl FromRequestParts<IngestState> for ServiceCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &IngestState) -> Result<Self, Problem> {
        let hash = key_hash(parts)?;
        if let Some(service) = state.callers.get(&hash) {
            return Ok(ServiceCaller(service));
        }
        match service_of(&hash, state).await {
            Ok(service) => {
                let service = std::sync::Arc::new(service);
                state.callers.put(hash, std::sync::Arc::clone(&service));
                Ok(ServiceCaller(service))
            }
            Err(Lookup::Store(err)) if err.is_retryable() => match state.callers.get_stale(&hash) {
                Some(service) => Ok(ServiceCaller(service)),
                None => Err(err.into()),
            },
            Err(Lookup::Store(err)) => Err(err.into()),
            Err(Lookup::Refused(problem)) => Err(problem),
        }
    }
}

/// Why a key's service could not be found.
enum Lookup {
    Store(store::StoreError),
    Refused(Problem),
}

/// The service a key belongs to, from the store.
async fn service_of(hash: &str, state: &IngestState) -> Result<model::service::Service, Lookup> {
    let owner = state.store.get_key(hash).await.map_err(Lookup::Store)?;
    match owner {
        Some(KeyOwner::Service { service_id, .. }) => state
            .store
            .get_service(&service_id)
            .await
            .map_err(Lookup::Store)?
            .ok_or_else(|| {
                Lookup::Refused(Problem::unauthorized("the key's service no longer exists"))
            }),
        Some(KeyOwner::Manage) => Err(Lookup::Refused(Problem::forbidden(
            "the manage key is for /manage endpoints; use a service key",
        ))),
        None => Err(Lookup::Refused(Problem::unauthorized(format!(
            "the {KEY_HEADER} is not a valid key"
        )))),
    }
}

impl FromRequestParts<IngestState> for ManageCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &IngestState) -> Result<Self, Problem> {
        match owner(&key_hash(parts)?, state).await? {
            KeyOwner::Manage => Ok(ManageCaller),
            KeyOwner::Service { .. } => Err(Problem::forbidden(
                "a service key cannot use the manage API; use the manage key",
            )),
        }
    }
}
