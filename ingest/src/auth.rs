//! Who is calling: the `Ocp-Apim-Subscription-Key` header, hashed and looked up. A key is
//! never compared with another: its hash is the store's lookup key, so nothing about a
//! stored key leaks through how long a comparison took.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use model::net::{client_address, Peer};
use model::service::Service;
use problem::Problem;
use std::sync::Arc;

use crate::callers::Caller;
use store::KeyOwner;

use crate::rate::RateHeaders;
use crate::{IngestState, Keys};

pub const KEY_HEADER: &str = "Ocp-Apim-Subscription-Key";

/// A request made with one of a service's keys, within its rate limit: the service, the
/// rate-limit headers its answer carries (return them beside it), and which key it was.
#[derive(Debug)]
pub struct ServiceCaller(
    pub std::sync::Arc<Service>,
    pub RateHeaders,
    pub model::service::KeySlot,
);

/// A request to the manage API: with the platform's manage key (every service, and what
/// only the platform decides), or with an organisation's (its own services only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManageCaller {
    Platform,
    Organization { fiscal_code: String },
}

impl ManageCaller {
    /// Refuses an organisation's key for what only the platform's operators do.
    pub fn require_platform(&self, what: &str) -> Result<(), Problem> {
        match self {
            Self::Platform => Ok(()),
            Self::Organization { .. } => Err(Problem::forbidden(format!(
                "only the platform's manage key may {what}; an organisation's key may not"
            ))),
        }
    }

    /// Refuses an organisation's key for another organisation's service or organisation.
    pub fn require_organization(&self, fiscal_code: &str) -> Result<(), Problem> {
        match self {
            Self::Organization { fiscal_code: own } if own != fiscal_code => {
                Err(Problem::forbidden(format!(
                    "this organisation's key may manage only the services of organisation {own}"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Whether this caller sees `service` (in listings).
    pub fn sees(&self, service: &Service) -> bool {
        self.require_organization(&service.payload.organization.fiscal_code)
            .is_ok()
    }
}

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
        let Caller { service, slot } = caller(&key_hash(parts)?, state).await?;
        check_address(parts, &service, state)?;
        let rate = state.rates.admit(&service)?;
        // Over the quota, the answer still tells the rate allowance.
        if let Err(mut problem) = crate::quota::take(state, &service, slot, 1).await {
            rate.add_to(&mut problem);
            return Err(problem);
        }
        Ok(ServiceCaller(service, rate, slot))
    }
}

/// Refuses a request from outside the service's `authorized_cidrs`, if it has any.
fn check_address(parts: &Parts, service: &Service, state: &IngestState) -> Result<(), Problem> {
    if service.payload.authorized_cidrs.is_empty() {
        return Ok(());
    }
    let Some(Peer(peer)) = parts.extensions.get::<Peer>() else {
        return Err(Problem::forbidden(
            "this service's keys may be used only from its authorized_cidrs, and this request's address is unknown",
        ));
    };
    let forwarded_for = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    let client = client_address(peer.ip(), forwarded_for, &state.trusted_proxies);
    if service.payload.admits(client) {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "this service's keys may be used only from its authorized_cidrs; this request came from outside them",
        ))
    }
}

/// The service whose key hashes to `hash`: remembered, else from the store.
async fn caller(hash: &str, state: &IngestState) -> Result<Caller, Problem> {
    if let Some(caller) = state.callers.get(hash) {
        return Ok(caller);
    }
    match service_of(hash, state).await {
        Ok((service, slot)) => {
            let caller = Caller {
                service: Arc::new(service),
                slot,
            };
            state.callers.put(hash.to_string(), caller.clone());
            Ok(caller)
        }
        Err(Lookup::Store(err)) if err.is_retryable() => {
            state.callers.get_stale(hash).ok_or_else(|| err.into())
        }
        Err(Lookup::Store(err)) => Err(err.into()),
        Err(Lookup::Refused(problem)) => Err(problem),
    }
}

/// Why a key's service could not be found.
enum Lookup {
    Store(store::StoreError),
    Refused(Problem),
}

/// The service a key belongs to, and which of its keys it is, from the store.
async fn service_of(
    hash: &str,
    state: &IngestState,
) -> Result<(Service, model::service::KeySlot), Lookup> {
    let owner = state.store.get_key(hash).await.map_err(Lookup::Store)?;
    match owner {
        Some(KeyOwner::Service { service_id, slot }) => state
            .store
            .get_service(&service_id)
            .await
            .map_err(Lookup::Store)?
            .map(|service| (service, slot))
            .ok_or_else(|| {
                Lookup::Refused(Problem::unauthorized("the key's service no longer exists"))
            }),
        Some(KeyOwner::Manage | KeyOwner::Organization { .. }) => Err(Lookup::Refused(
            Problem::forbidden("a manage key is for /manage endpoints; use a service key"),
        )),
        None => Err(Lookup::Refused(Problem::unauthorized(format!(
            "the {KEY_HEADER} is not a valid key"
        )))),
    }
}

impl FromRequestParts<IngestState> for ManageCaller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &IngestState) -> Result<Self, Problem> {
        match owner(&key_hash(parts)?, state).await? {
            KeyOwner::Manage => Ok(ManageCaller::Platform),
            KeyOwner::Organization { fiscal_code, .. } => {
                Ok(ManageCaller::Organization { fiscal_code })
            }
            KeyOwner::Service { .. } => Err(Problem::forbidden(
                "a service key cannot use the manage API; use a manage key",
            )),
        }
    }
}
