//! The citizen's own profile (IO `getProfile` / `createProfile` / `updateProfile` of the app
//! API, folded into one `PUT` that creates or updates with the optimistic `version`).

use axum::extract::State;
use axum::Json;
use model::profile::{Profile, ProfileUpdate};
use problem::body::JsonBody;
use problem::{doc, Problem};

use crate::auth::Citizen;
use crate::CitizenState;

#[utoipa::path(
    get, path = "/citizen/v1/profile", tag = "citizen",
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The profile (IO ExtendedProfile)", body = Profile),
        doc::Unauthorized,
        doc::NotFound,
    )
)]
pub(crate) async fn get_profile(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
) -> Result<Json<Profile>, Problem> {
    state
        .store
        .get_profile(&fc)
        .await?
        .map(Json)
        .ok_or_else(|| Problem::not_found("no profile yet; create it with PUT /citizen/v1/profile"))
}

#[utoipa::path(
    put, path = "/citizen/v1/profile", tag = "citizen",
    request_body(content = ProfileUpdate, description = "Fields to set; absent fields keep their value. `version` must be the stored version (absent or 0 to create)."),
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The profile as stored, with its new version", body = Profile),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Conflict,
    )
)]
pub(crate) async fn put_profile(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    JsonBody(body): JsonBody,
) -> Result<Json<Profile>, Problem> {
    let update = ProfileUpdate::parse(&body)?;
    let current = state.store.get_profile(&fc).await?;
    let next = update
        .apply(current.as_ref())
        .map_err(|conflict| Problem::conflict(conflict.to_string()))?;
    let was_subscribed = current.as_ref().is_some_and(|p| p.is_inbox_enabled);
    if next.is_inbox_enabled != was_subscribed {
        crate::changes::record_subscription(
            &state.store,
            &fc,
            store::FEED_SCOPE_INBOX,
            next.is_inbox_enabled,
        )
        .await?;
    }
    state.store.put_profile(&fc, &next).await?;
    crate::changes::announce(&state.bus, &fc).await?;
    Ok(Json(next))
}
