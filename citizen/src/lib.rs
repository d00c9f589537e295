//! The citizen API under `/citizen/v1`, used by the app: the profile (IO `ExtendedProfile`),
//! per-service preferences (IO `ServicePreference`), the devices that receive pushes, and the
//! inbox with read status.
//!
//! Every request carries a bearer JWT whose `sub` is the citizen's fiscal code; a citizen
//! can only ever reach their own data (another citizen's message is a `404`).

use std::sync::Arc;

use axum::routing::{get, put};
use axum::Router;
use store::Store;

pub mod auth;
mod changes;
mod inbox;
mod installations;
mod preferences;
mod profile;

pub use auth::{JwtAlgorithm, JwtKey, JwtSettings, JwtVerifier};

#[derive(Debug, Clone)]
pub struct CitizenState {
    pub store: Arc<dyn Store>,
    pub jwt: Arc<JwtVerifier>,
    /// Where changes are announced (`profile-changes`).
    pub bus: Arc<dyn bus::Bus>,
}

/// The routes, under `/citizen/v1` (written out whole, not nested: see `ingest::router`).
pub fn router(state: CitizenState) -> Router {
    Router::new()
        .route(
            "/citizen/v1/profile",
            get(profile::get_profile).put(profile::put_profile),
        )
        .route(
            "/citizen/v1/services/{service_id}/preferences",
            get(preferences::get_preference).put(preferences::put_preference),
        )
        .route(
            "/citizen/v1/installations",
            get(installations::list_installations).delete(installations::delete_all_installations),
        )
        .route(
            "/citizen/v1/installations/{installation_id}",
            put(installations::put_installation).delete(installations::delete_installation),
        )
        .route("/citizen/v1/messages", get(inbox::list_messages))
        .route("/citizen/v1/messages/{id}", get(inbox::get_message))
        .route(
            "/citizen/v1/messages/{id}/message-status",
            put(inbox::change_status),
        )
        .with_state(state)
}

#[derive(Debug, utoipa::OpenApi)]
#[openapi(
    paths(
        profile::get_profile,
        profile::put_profile,
        preferences::get_preference,
        preferences::put_preference,
        installations::put_installation,
        installations::list_installations,
        installations::delete_installation,
        installations::delete_all_installations,
        inbox::list_messages,
        inbox::get_message,
        inbox::change_status,
    ),
    components(schemas(problem::Problem)),
    modifiers(&BearerScheme),
    tags((name = "citizen", description = "The app-facing API"))
)]
pub struct CitizenApi;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme(
                "CitizenToken",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .description(Some("A JWT whose `sub` is the citizen's fiscal code"))
                        .build(),
                ),
            );
    }
}
