//! The senders' API under `/api/v1`, compatible with IO's (ARCHITECTURE.md §4): submit a message,
//! follow its status, look up a citizen's profile, and the manage API for services and
//! their keys.
//!
//! A `201` for a message means the message is durably in the log (invariant 1); everything
//! after that happens in the pipeline stages.

use std::sync::{Arc, Mutex};

use axum::routing::{get, patch, post, put};
use axum::Router;
use bus::Bus;
use store::Store;

mod accepted;
pub mod auth;
mod callers;
pub mod campaigns;
mod feed;
pub mod idempotency;
pub mod keys;
mod manage;
mod messages;
pub mod metrics;
mod profiles;
pub mod quota;
pub mod rate;

pub use keys::Keys;
use model::net::Cidr;
use model::service::RateLimit;

/// The `[ingest]` settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestSettings {
    /// Each service's request rate, unless the service sets its own.
    pub rate_limit: RateLimit,
    /// How many ingest processes share the senders' traffic; each allows its share of
    /// every rate limit (see [`rate`]).
    pub replicas: u32,
    /// The proxies (addresses or CIDRs) whose `X-Forwarded-For` is believed when checking a
    /// service's `authorized_cidrs`; from anyone else the connection's peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for IngestSettings {
    fn default() -> Self {
        Self {
            rate_limit: RateLimit::IO_DEFAULT,
            replicas: 1,
            trusted_proxies: Vec::new(),
        }
    }
}

impl IngestSettings {
    /// Why these settings cannot run, naming the key.
    pub fn check(&self) -> Result<(), String> {
        self.rate_limit
            .check("ingest.rate_limit")
            .map_err(|err| err.to_string())?;
        if self.replicas == 0 {
            return Err("ingest.replicas must be at least 1".into());
        }
        if let Some(bad) = self
            .trusted_proxies
            .iter()
            .find(|proxy| Cidr::parse(proxy).is_none())
        {
            return Err(format!(
                "ingest.trusted_proxies: {bad:?} is neither an IP address nor a CIDR such as 10.0.0.0/8"
            ));
        }
        Ok(())
    }

    fn trusted_proxies(&self) -> Vec<Cidr> {
        self.trusted_proxies
            .iter()
            .filter_map(|proxy| Cidr::parse(proxy))
            .collect()
    }
}

/// What the handlers share. Every request clones it (axum's `State`), so it is one reference
/// count, not one per field.
#[derive(Clone, Debug)]
pub struct IngestState(Arc<Shared>);

/// The fields of [`IngestState`].
pub struct Shared {
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn Bus>,
    pub keys: Keys,
    /// Key of the citizen hash that partitions the bus.
    pub partition_key: [u8; 32],
    /// Message ids are ULIDs, monotonic within this process so one sender's messages sort
    /// in the order they were accepted.
    ids: Arc<Mutex<ulid::Generator>>,
    /// Services by key hash, for [`CALLER_TTL`].
    callers: Arc<callers::CallerCache>,
    /// ACCEPTED rows queued behind the responses.
    accepted: accepted::AcceptedRows,
    /// Each service's request allowance in this process.
    rates: rate::RateLimits,
    /// Whose `X-Forwarded-For` is believed.
    trusted_proxies: Vec<Cidr>,
    /// Weekly quotas seen used up, each logged once.
    quotas_refusing: quota::Refusing,
}

/// How long ingest trusts what it read about a key: a key revoked or a service changed
/// through another ingest process works on here for at most this long (through this
/// process, the change applies at once).
pub const CALLER_TTL: std::time::Duration = std::time::Duration::from_secs(5);

impl std::ops::Deref for IngestState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestState")
            .field("store", &self.store)
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl IngestState {
    /// The state, and the task writing ACCEPTED rows: it ends once every clone of the
    /// state is dropped and the queued rows are written, so await it at shutdown.
    pub fn new(
        store: Arc<dyn Store>,
        bus: Arc<dyn Bus>,
        keys: Keys,
        partition_key: [u8; 32],
        settings: &IngestSettings,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (accepted, writer) = accepted::AcceptedRows::spawn(Arc::clone(&store));
        let state = Self(Arc::new(Shared {
            store,
            bus,
            keys,
            partition_key,
            ids: Arc::new(Mutex::new(ulid::Generator::new())),
            callers: Arc::new(callers::CallerCache::new(CALLER_TTL)),
            accepted,
            rates: rate::RateLimits::new(settings.rate_limit, settings.replicas),
            trusted_proxies: settings.trusted_proxies(),
            quotas_refusing: quota::Refusing::default(),
        }));
        (state, writer)
    }
}

impl Shared {
    fn next_id(&self) -> ulid::Ulid {
        let mut generator = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        // The generator only fails when 2^80 ids were made in one millisecond.
        generator.generate().unwrap_or_else(|_| ulid::Ulid::new())
    }
}

/// The routes of the senders' and manage APIs, under `/api/v1`. Written out whole rather
/// than nested: a nested router strips its prefix from every request's URI (a new URI per
/// request), which showed in profiles of the submit path.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route(
            "/api/v1/messages",
            post(messages::submit_with_fiscal_code_in_body),
        )
        .route(
            "/api/v1/messages/{fiscal_code}",
            post(messages::submit_for_user),
        )
        .route(
            "/api/v1/messages/{fiscal_code}/{id}",
            get(messages::get_message),
        )
        .route("/api/v1/profiles", post(profiles::get_profile_by_post))
        .route("/api/v1/profiles/{fiscal_code}", get(profiles::get_profile))
        .route("/api/v1/subscriptions-feed/{date}", get(feed::get_feed))
        .route(
            "/api/v1/manage/services",
            post(manage::create_service).get(manage::list_services),
        )
        .route(
            "/api/v1/manage/services/{service_id}/limits",
            patch(manage::update_limits),
        )
        .route(
            "/api/v1/manage/organizations",
            post(manage::create_organization),
        )
        .route(
            "/api/v1/manage/organizations/{organization_fiscal_code}/keys",
            get(manage::get_organization_keys),
        )
        .route(
            "/api/v1/manage/organizations/{organization_fiscal_code}/keys/{key_type}",
            put(manage::regenerate_organization_key),
        )
        .route(
            "/api/v1/manage/services/{service_id}",
            get(manage::get_service)
                .put(manage::update_service)
                .delete(manage::delete_service),
        )
        .route(
            "/api/v1/manage/services/{service_id}/keys",
            get(manage::get_keys),
        )
        .route(
            "/api/v1/manage/services/{service_id}/keys/{key_type}",
            put(manage::regenerate_key),
        )
        .with_state(state)
}

/// The bulk submit's routes (`/api/v1/campaigns…`): apart from [`router`]'s, because they
/// take bodies far larger than a message ([`campaigns::MAX_JSON_CALL_BYTES`]) and streams
/// of any length, so they have no whole-request timeout (a stream idle for
/// [`campaigns::STREAM_IDLE`] is cut).
pub fn bulk_router(state: IngestState) -> Router {
    Router::new()
        .route("/api/v1/campaigns", post(campaigns::create))
        .route("/api/v1/campaigns/{campaign_id}", get(campaigns::get))
        .route(
            "/api/v1/campaigns/{campaign_id}/items",
            post(campaigns::add_items).get(campaigns::list_items),
        )
        .route(
            "/api/v1/campaigns/{campaign_id}/cancel",
            post(campaigns::cancel),
        )
        .layer(axum::extract::DefaultBodyLimit::max(
            campaigns::MAX_JSON_CALL_BYTES,
        ))
        .with_state(state)
}

/// The OpenAPI description of these routes.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        messages::submit_with_fiscal_code_in_body,
        messages::submit_for_user,
        messages::get_message,
        profiles::get_profile,
        profiles::get_profile_by_post,
        feed::get_feed,
        campaigns::create,
        campaigns::add_items,
        campaigns::get,
        campaigns::cancel,
        campaigns::list_items,
        manage::create_service,
        manage::list_services,
        manage::get_service,
        manage::update_service,
        manage::delete_service,
        manage::get_keys,
        manage::regenerate_key,
        manage::update_limits,
        manage::create_organization,
        manage::get_organization_keys,
        manage::regenerate_organization_key,
    ),
    components(schemas(problem::Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "messages", description = "IO senders' API: messages"),
        (name = "profiles", description = "IO senders' API: profiles"),
        (name = "campaigns", description = "Postino's extension: bulk submit"),
        (name = "manage", description = "IO manage API: services and keys"),
    )
)]
#[derive(Debug)]
pub struct IngestApi;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("SubscriptionKey", "A service's primary or secondary key."),
            ("ManageSubscriptionKey", "A manage key: the platform's (every service), or an organisation's (its own services)."),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                    "Ocp-Apim-Subscription-Key",
                    what,
                ))),
            );
        }
    }
}
