//! Per-service preferences (IO `getServicePreferences` / `upsertServicePreferences`).

use axum::extract::{Path, State};
use axum::Json;
use model::profile::{Profile, ServicePreference};
use model::FiscalCode;
use problem::body::JsonBody;
use problem::{doc, Problem};

use crate::auth::Citizen;
use crate::CitizenState;

/// The profile, provided the service exists (IO answers `404` for either missing).
async fn profile_for_service(
    state: &CitizenState,
    fc: &FiscalCode,
    service_id: &str,
) -> Result<Profile, Problem> {
    if state.store.get_service(service_id).await?.is_none() {
        return Err(Problem::not_found(format!(
            "no service with id {service_id}"
        )));
    }
    state
        .store
        .get_profile(fc)
        .await?
        .ok_or_else(|| Problem::not_found("no profile yet; create it with PUT /citizen/v1/profile"))
}

#[utoipa::path(
    get, path = "/citizen/v1/services/{service_id}/preferences", tag = "citizen",
    operation_id = "getServicePreferences",
    params(("service_id" = String, Path, description = "The service id")),
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The preference in force (the mode's default when none is stored)", body = ServicePreference),
        doc::Unauthorized,
        doc::NotFound,
        doc::Conflict,
    )
)]
pub(crate) async fn get_preference(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Path(service_id): Path<String>,
) -> Result<Json<ServicePreference>, Problem> {
    let profile = profile_for_service(&state, &fc, &service_id).await?;
    let stored = state.store.get_preference(&fc, &service_id).await?;
    ServicePreference::effective(&profile, stored.as_ref())
        .map(Json)
        .map_err(|c| Problem::conflict(c.to_string()))
}

#[utoipa::path(
    put, path = "/citizen/v1/services/{service_id}/preferences", tag = "citizen",
    operation_id = "upsertServicePreferences",
    params(("service_id" = String, Path, description = "The service id")),
    request_body = ServicePreference,
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The preference as stored", body = ServicePreference),
        doc::BadRequest,
        doc::Unauthorized,
        doc::NotFound,
        doc::Conflict,
    )
)]
pub(crate) async fn put_preference(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Path(service_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServicePreference>, Problem> {
    let preference = ServicePreference::parse(&body)?;
    let profile = profile_for_service(&state, &fc, &service_id).await?;
    preference
        .check_against(&profile)
        .map_err(|c| Problem::conflict(c.to_string()))?;
    let stored = state.store.get_preference(&fc, &service_id).await?;
    // What the citizen had: the stored preference, or the profile's default for the service.
    let was_subscribed = ServicePreference::effective(&profile, stored.as_ref())
        .map_or(profile.is_inbox_enabled, |p| p.is_inbox_enabled);
    if preference.is_inbox_enabled != was_subscribed {
        crate::changes::record_subscription(
            &state.store,
            &fc,
            &service_id,
            preference.is_inbox_enabled,
        )
        .await?;
    }
    state
        .store
        .put_preference(&fc, &service_id, &preference)
        .await?;
    crate::changes::announce(&state.bus, &fc).await?;
    Ok(Json(preference))
}
