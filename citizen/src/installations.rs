//! The citizen's devices (IO `createOrUpdateInstallation`, plus listing, removing one and
//! "log out of all devices"). Answers never echo a device token back.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use model::installation::{Installation, InstallationId, NewInstallation, Platform};
use problem::body::JsonBody;
use problem::{doc, Problem};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Citizen;
use crate::CitizenState;

/// A device as the API shows it: everything but the token.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstallationView {
    id: String,
    platform: Platform,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_version: Option<String>,
    updated_at: String,
}

impl From<Installation> for InstallationView {
    fn from(i: Installation) -> Self {
        Self {
            id: i.id.to_string(),
            platform: i.platform,
            app_version: i.app_version,
            updated_at: i.updated_at.to_string(),
        }
    }
}

/// How many devices a logout removed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Removed {
    removed: usize,
}

fn installation_id(raw: &str) -> Result<InstallationId, Problem> {
    Ok(InstallationId::parse("installation_id", raw)?)
}

#[utoipa::path(
    put, path = "/citizen/v1/installations/{installation_id}", tag = "citizen",
    operation_id = "createOrUpdateInstallation",
    params(("installation_id" = String, Path, description = "The app's id for this installation")),
    request_body = NewInstallation,
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The device as stored (its token is never shown)", body = InstallationView),
        doc::BadRequest,
        doc::Unauthorized,
    )
)]
pub(crate) async fn put_installation(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Path(raw_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<InstallationView>, Problem> {
    let id = installation_id(&raw_id)?;
    let installation =
        NewInstallation::parse(&body)?.into_installation(id, model::timestamp::Timestamp::now());
    state.store.put_installation(&fc, &installation).await?;
    crate::changes::announce(&state.bus, &fc).await?;
    Ok(Json(installation.into()))
}

#[utoipa::path(
    get, path = "/citizen/v1/installations", tag = "citizen",
    operation_id = "listInstallations",
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The citizen's devices", body = [InstallationView]),
        doc::Unauthorized,
    )
)]
pub(crate) async fn list_installations(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
) -> Result<Json<Vec<InstallationView>>, Problem> {
    let all = state.store.list_installations(&fc).await?;
    Ok(Json(all.into_iter().map(Into::into).collect()))
}

#[utoipa::path(
    delete, path = "/citizen/v1/installations/{installation_id}", tag = "citizen",
    operation_id = "deleteInstallation",
    params(("installation_id" = String, Path, description = "The app's id for this installation")),
    security(("CitizenToken" = [])),
    responses(
        (status = 204, description = "Removed: no more pushes to this device"),
        doc::BadRequest,
        doc::Unauthorized,
        doc::NotFound,
    )
)]
pub(crate) async fn delete_installation(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Path(raw_id): Path<String>,
) -> Result<StatusCode, Problem> {
    let id = installation_id(&raw_id)?;
    if state.store.delete_installation(&fc, &id).await? {
        crate::changes::announce(&state.bus, &fc).await?;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!("no installation with id {id}")))
    }
}

#[utoipa::path(
    delete, path = "/citizen/v1/installations", tag = "citizen",
    operation_id = "deleteAllInstallations",
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "Logged out of all devices", body = Removed),
        doc::Unauthorized,
    )
)]
pub(crate) async fn delete_all_installations(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
) -> Result<Json<Removed>, Problem> {
    let removed = state.store.delete_installations(&fc).await?;
    if removed > 0 {
        crate::changes::announce(&state.bus, &fc).await?;
    }
    Ok(Json(Removed { removed }))
}
