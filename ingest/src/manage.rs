//! The manage API: create, read, update and delete services, read and regenerate their
//! keys (IO `cmsCreateService`, `cmsGetService`, `cmsUpdateService`, `cmsDeleteService`,
//! `cmsGetServiceKeys`, `cmsRegenerateServiceKey`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use model::service::{KeySlot, Service, ServicePayload};
use model::ValidationError;
use problem::body::JsonBody;
use problem::{doc, Problem};
use serde::Serialize;
use store::KeyOwner;
use utoipa::ToSchema;

use crate::auth::ManageCaller;
use crate::{IngestState, Keys};

/// IO `CmsServiceLifecycle`: the service with its id, status and last update.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceLifecycle {
    pub id: String,
    pub status: LifecycleStatus,
    pub last_update: String,
    #[serde(flatten)]
    pub service: ServicePayload,
}

/// Postino services are usable as soon as they are created, so always `approved`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LifecycleStatus {
    pub value: String,
}

/// IO `CmsSubscriptionKeys`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionKeys {
    pub primary_key: String,
    pub secondary_key: String,
}

fn lifecycle(service: Service) -> ServiceLifecycle {
    ServiceLifecycle {
        id: service.id,
        status: LifecycleStatus {
            value: "approved".into(),
        },
        last_update: service.last_update.to_string(),
        service: service.payload,
    }
}

async fn find(state: &IngestState, id: &str) -> Result<Service, Problem> {
    state
        .store
        .get_service(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no service with id {id}")))
}

/// Makes sure both current keys of `service` authenticate (idempotent).
async fn register_keys(
    state: &IngestState,
    service: &Service,
) -> Result<SubscriptionKeys, Problem> {
    let mut keys = Vec::with_capacity(2);
    for slot in [KeySlot::Primary, KeySlot::Secondary] {
        let key = state
            .keys
            .derive(&service.id, slot, service.key_generation(slot));
        let owner = KeyOwner::Service {
            service_id: service.id.clone(),
            slot,
        };
        state.store.put_key(&Keys::hash(&key), &owner).await?;
        keys.push(key);
    }
    let secondary_key = keys.pop().unwrap_or_default();
    let primary_key = keys.pop().unwrap_or_default();
    Ok(SubscriptionKeys {
        primary_key,
        secondary_key,
    })
}

#[utoipa::path(
    post, path = "/api/v1/manage/services", tag = "manage",
    operation_id = "cmsCreateService",
    request_body = ServicePayload,
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 201, description = "Service created", body = ServiceLifecycle),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
    )
)]
pub(crate) async fn create_service(
    State(state): State<IngestState>,
    _: ManageCaller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ServiceLifecycle>), Problem> {
    let payload = ServicePayload::parse(&body)?;
    let service = Service {
        id: ulid::Ulid::new().to_string(),
        payload,
        last_update: model::timestamp::Timestamp::now(),
        primary_key_generation: 0,
        secondary_key_generation: 0,
    };
    state.store.put_service(&service).await?;
    state.callers.clear();
    register_keys(&state, &service).await?;
    tracing::info!(service_id = %service.id, "service created");
    Ok((StatusCode::CREATED, Json(lifecycle(service))))
}

#[utoipa::path(
    get, path = "/api/v1/manage/services/{service_id}", tag = "manage",
    operation_id = "cmsGetService",
    params(("service_id" = String, Path, description = "The service id")),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The service", body = ServiceLifecycle),
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn get_service(
    State(state): State<IngestState>,
    _: ManageCaller,
    Path(id): Path<String>,
) -> Result<Json<ServiceLifecycle>, Problem> {
    Ok(Json(lifecycle(find(&state, &id).await?)))
}

#[utoipa::path(
    put, path = "/api/v1/manage/services/{service_id}", tag = "manage",
    operation_id = "cmsUpdateService",
    params(("service_id" = String, Path, description = "The service id")),
    request_body = ServicePayload,
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "Service updated", body = ServiceLifecycle),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn update_service(
    State(state): State<IngestState>,
    _: ManageCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServiceLifecycle>, Problem> {
    let payload = ServicePayload::parse(&body)?;
    let mut service = find(&state, &id).await?;
    service.payload = payload;
    service.last_update = model::timestamp::Timestamp::now();
    state.store.put_service(&service).await?;
    state.callers.clear();
    Ok(Json(lifecycle(service)))
}

#[utoipa::path(
    delete, path = "/api/v1/manage/services/{service_id}", tag = "manage",
    operation_id = "cmsDeleteService",
    params(("service_id" = String, Path, description = "The service id")),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 204, description = "Service deleted; its keys no longer work"),
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn delete_service(
    State(state): State<IngestState>,
    _: ManageCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let service = find(&state, &id).await?;
    for slot in [KeySlot::Primary, KeySlot::Secondary] {
        let key = state
            .keys
            .derive(&service.id, slot, service.key_generation(slot));
        state.store.delete_key(&Keys::hash(&key)).await?;
    }
    state.store.delete_service(&id).await?;
    state.callers.clear();
    tracing::info!(service_id = %id, "service deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    get, path = "/api/v1/manage/services/{service_id}/keys", tag = "manage",
    operation_id = "cmsGetServiceKeys",
    params(("service_id" = String, Path, description = "The service id")),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The service's keys", body = SubscriptionKeys),
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn get_keys(
    State(state): State<IngestState>,
    _: ManageCaller,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionKeys>, Problem> {
    let service = find(&state, &id).await?;
    Ok(Json(register_keys(&state, &service).await?))
}

#[utoipa::path(
    put, path = "/api/v1/manage/services/{service_id}/keys/{key_type}", tag = "manage",
    operation_id = "cmsRegenerateServiceKey",
    params(
        ("service_id" = String, Path, description = "The service id"),
        ("key_type" = String, Path, description = "`primary` or `secondary`"),
    ),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The key was replaced; the old one no longer works", body = SubscriptionKeys),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn regenerate_key(
    State(state): State<IngestState>,
    _: ManageCaller,
    Path((id, key_type)): Path<(String, String)>,
) -> Result<Json<SubscriptionKeys>, Problem> {
    let slot = match key_type.as_str() {
        "primary" => KeySlot::Primary,
        "secondary" => KeySlot::Secondary,
        _ => return Err(ValidationError::new("key_type", "must be primary or secondary").into()),
    };
    let mut service = find(&state, &id).await?;
    let old = state
        .keys
        .derive(&service.id, slot, service.key_generation(slot));
    match slot {
        KeySlot::Primary => service.primary_key_generation += 1,
        KeySlot::Secondary => service.secondary_key_generation += 1,
    }
    service.last_update = model::timestamp::Timestamp::now();
    state.store.put_service(&service).await?;
    state.callers.clear();
    let keys = register_keys(&state, &service).await?;
    state.store.delete_key(&Keys::hash(&old)).await?;
    state.callers.clear();
    tracing::info!(service_id = %id, ?slot, "service key regenerated");
    Ok(Json(keys))
}
