//! The manage API: create, list, read, update and delete services, read and regenerate
//! their keys (IO `cmsCreateService`, `cmsGetServices`, `cmsGetService`,
//! `cmsUpdateService`, `cmsDeleteService`, `cmsGetServiceKeys`, `cmsRegenerateServiceKey`),
//! and Postino's extensions: a service's mode and limits, and organisations with manage
//! keys of their own.
//!
//! Two kinds of manage key ([`ManageCaller`]): the platform's (the bootstrap key) may do
//! everything; an organisation's sees and touches only the services of its organisation and
//! may not change any service's mode or limits.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::Json;
use model::service::{
    KeySlot, LimitsChange, OrganizationAccount, OrganizationPayload, Service, ServiceLimits,
    ServicePayload,
};
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
    /// Postino's extension: `mode` (`test` or `production`), `rate_limit`, `weekly_quota`.
    #[serde(flatten)]
    pub limits: ServiceLimits,
}

/// IO `CmsServicePagination`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServicePage {
    pub value: Vec<ServiceLifecycle>,
    pub pagination: Pagination,
}

/// IO `CmsPaginationResultSet`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Pagination {
    pub offset: usize,
    pub limit: usize,
    /// How many services the caller may see in all.
    pub count: usize,
}

/// An organisation and its two manage keys (Postino's extension).
#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationKeys {
    pub fiscal_code: String,
    pub name: String,
    pub primary_key: String,
    pub secondary_key: String,
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
        limits: service.limits,
    }
}

/// The service `id`, if `caller` may manage it.
async fn find(state: &IngestState, caller: &ManageCaller, id: &str) -> Result<Service, Problem> {
    let service = state
        .store
        .get_service(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no service with id {id}")))?;
    caller.require_organization(&service.payload.organization.fiscal_code)?;
    Ok(service)
}

/// Whose keys: a service's or an organisation's. Each derives its keys from its own name,
/// so no key of one can be the key of another.
enum KeyHolder<'a> {
    Service(&'a Service),
    Organization(&'a OrganizationAccount),
}

impl KeyHolder<'_> {
    fn derive(&self, keys: &Keys, slot: KeySlot) -> String {
        match self {
            Self::Service(service) => keys.derive(&service.id, slot, service.key_generation(slot)),
            Self::Organization(account) => keys.derive(
                &format!("organization/{}", account.fiscal_code),
                slot,
                account.key_generation(slot),
            ),
        }
    }

    fn owner(&self, slot: KeySlot) -> KeyOwner {
        match self {
            Self::Service(service) => KeyOwner::Service {
                service_id: service.id.clone(),
                slot,
            },
            Self::Organization(account) => KeyOwner::Organization {
                fiscal_code: account.fiscal_code.clone(),
                slot,
            },
        }
    }
}

/// Makes sure both current keys of `holder` authenticate (idempotent).
async fn register_keys(
    state: &IngestState,
    holder: &KeyHolder<'_>,
) -> Result<SubscriptionKeys, Problem> {
    let mut keys = Vec::with_capacity(2);
    for slot in [KeySlot::Primary, KeySlot::Secondary] {
        let key = holder.derive(&state.keys, slot);
        state
            .store
            .put_key(&Keys::hash(&key), &holder.owner(slot))
            .await?;
        keys.push(key);
    }
    let secondary_key = keys.pop().unwrap_or_default();
    let primary_key = keys.pop().unwrap_or_default();
    Ok(SubscriptionKeys {
        primary_key,
        secondary_key,
    })
}

/// The limits a service payload asks for, from `current`: unchanged unless the platform's
/// key asks (an organisation's key may send them back as read, not change them).
fn limits_in_payload(
    caller: &ManageCaller,
    body: &[u8],
    current: ServiceLimits,
) -> Result<ServiceLimits, Problem> {
    let limits = LimitsChange::within_service_payload(body)?.apply(current);
    if limits != current {
        caller.require_platform(
            "change a service's mode, rate_limit or weekly_quota (PATCH /api/v1/manage/services/{service_id}/limits)",
        )?;
    }
    Ok(limits)
}

fn key_slot(key_type: &str) -> Result<KeySlot, Problem> {
    match key_type {
        "primary" => Ok(KeySlot::Primary),
        "secondary" => Ok(KeySlot::Secondary),
        _ => Err(ValidationError::new("key_type", "must be primary or secondary").into()),
    }
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
    caller: ManageCaller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<ServiceLifecycle>), Problem> {
    let payload = ServicePayload::parse(&body)?;
    caller.require_organization(&payload.organization.fiscal_code)?;
    let limits = limits_in_payload(&caller, &body, ServiceLimits::NEW)?;
    let service = Service {
        id: ulid::Ulid::new().to_string(),
        payload,
        limits,
        last_update: model::timestamp::Timestamp::now(),
        primary_key_generation: 0,
        secondary_key_generation: 0,
    };
    state.store.put_service(&service).await?;
    state.callers.clear();
    register_keys(&state, &KeyHolder::Service(&service)).await?;
    tracing::info!(service_id = %service.id, "service created, in test mode");
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
    caller: ManageCaller,
    Path(id): Path<String>,
) -> Result<Json<ServiceLifecycle>, Problem> {
    Ok(Json(lifecycle(find(&state, &caller, &id).await?)))
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
    caller: ManageCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServiceLifecycle>, Problem> {
    let payload = ServicePayload::parse(&body)?;
    let mut service = find(&state, &caller, &id).await?;
    // An organisation cannot hand its service to another.
    caller.require_organization(&payload.organization.fiscal_code)?;
    service.limits = limits_in_payload(&caller, &body, service.limits)?;
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
    caller: ManageCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let service = find(&state, &caller, &id).await?;
    for slot in [KeySlot::Primary, KeySlot::Secondary] {
        let key = KeyHolder::Service(&service).derive(&state.keys, slot);
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
    caller: ManageCaller,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionKeys>, Problem> {
    let service = find(&state, &caller, &id).await?;
    Ok(Json(
        register_keys(&state, &KeyHolder::Service(&service)).await?,
    ))
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
    caller: ManageCaller,
    Path((id, key_type)): Path<(String, String)>,
) -> Result<Json<SubscriptionKeys>, Problem> {
    let slot = key_slot(&key_type)?;
    let mut service = find(&state, &caller, &id).await?;
    let old = KeyHolder::Service(&service).derive(&state.keys, slot);
    match slot {
        KeySlot::Primary => service.primary_key_generation += 1,
        KeySlot::Secondary => service.secondary_key_generation += 1,
    }
    service.last_update = model::timestamp::Timestamp::now();
    state.store.put_service(&service).await?;
    state.callers.clear();
    let keys = register_keys(&state, &KeyHolder::Service(&service)).await?;
    state.store.delete_key(&Keys::hash(&old)).await?;
    state.callers.clear();
    tracing::info!(service_id = %id, ?slot, "service key regenerated");
    Ok(Json(keys))
}

/// How many services a page holds unless asked (IO's default), and at most.
const PAGE_DEFAULT: usize = 20;
const PAGE_MAX: usize = 100;

/// `limit` and `offset` from a query string, checked as IO's `cmsGetServices` does.
fn paging(query: Option<&str>) -> Result<(usize, usize), Problem> {
    let (mut limit, mut offset) = (PAGE_DEFAULT, 0);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let number = |field: &str| {
            value.parse::<usize>().map_err(|_| {
                ValidationError::new(field, format!("must be a whole number, got {value:?}"))
            })
        };
        match name {
            "limit" => {
                limit = number("limit")?;
                if !(1..=PAGE_MAX).contains(&limit) {
                    return Err(
                        ValidationError::new("limit", format!("must be 1 to {PAGE_MAX}")).into(),
                    );
                }
            }
            "offset" => offset = number("offset")?,
            // Other parameters are not ours to refuse (a proxy may add its own).
            _ => {}
        }
    }
    Ok((limit, offset))
}

#[utoipa::path(
    get, path = "/api/v1/manage/services", tag = "manage",
    operation_id = "cmsGetServices",
    params(
        ("limit" = Option<usize>, Query, description = "How many services to answer, 1 to 100 (default 20)"),
        ("offset" = Option<usize>, Query, description = "How many to skip first (default 0)"),
    ),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The services the caller may see, by id", body = ServicePage),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
    )
)]
pub(crate) async fn list_services(
    State(state): State<IngestState>,
    caller: ManageCaller,
    RawQuery(query): RawQuery,
) -> Result<Json<ServicePage>, Problem> {
    let (limit, offset) = paging(query.as_deref())?;
    let visible: Vec<Service> = state
        .store
        .list_services()
        .await?
        .into_iter()
        .filter(|service| caller.sees(service))
        .collect();
    let count = visible.len();
    let value = visible
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(lifecycle)
        .collect();
    Ok(Json(ServicePage {
        value,
        pagination: Pagination {
            offset,
            limit,
            count,
        },
    }))
}

#[utoipa::path(
    patch, path = "/api/v1/manage/services/{service_id}/limits", tag = "manage",
    operation_id = "updateServiceLimits",
    description = "Postino's extension, for the platform's manage key only: move a service between `test` and `production`, set or remove (`null`) its own `rate_limit` and `weekly_quota`. A field left out stays as it is (JSON merge patch).",
    params(("service_id" = String, Path, description = "The service id")),
    request_body = LimitsChange,
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The service with its new limits", body = ServiceLifecycle),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn update_limits(
    State(state): State<IngestState>,
    caller: ManageCaller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ServiceLifecycle>, Problem> {
    caller.require_platform("change a service's mode or limits")?;
    let change = LimitsChange::parse(&body)?;
    let mut service = find(&state, &caller, &id).await?;
    let before = service.limits.mode;
    service.limits = change.apply(service.limits);
    service.last_update = model::timestamp::Timestamp::now();
    state.store.put_service(&service).await?;
    state.callers.clear();
    if before != service.limits.mode {
        tracing::info!(service_id = %id, mode = ?service.limits.mode, "service mode changed");
    }
    Ok(Json(lifecycle(service)))
}

/// The organisation `fiscal_code`, if `caller` may manage it.
async fn find_organization(
    state: &IngestState,
    caller: &ManageCaller,
    fiscal_code: &str,
) -> Result<OrganizationAccount, Problem> {
    caller.require_organization(fiscal_code)?;
    state
        .store
        .get_organization(fiscal_code)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no organisation {fiscal_code}")))
}

fn organization_keys(account: &OrganizationAccount, keys: SubscriptionKeys) -> OrganizationKeys {
    OrganizationKeys {
        fiscal_code: account.fiscal_code.clone(),
        name: account.name.clone(),
        primary_key: keys.primary_key,
        secondary_key: keys.secondary_key,
    }
}

#[utoipa::path(
    post, path = "/api/v1/manage/organizations", tag = "manage",
    operation_id = "createOrganization",
    description = "Postino's extension, for the platform's manage key only: register an organisation and give it two manage keys of its own, which see and touch only services whose `organization.fiscal_code` is its own.",
    request_body = OrganizationPayload,
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 201, description = "Registered, with its keys", body = OrganizationKeys),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::Conflict,
    )
)]
pub(crate) async fn create_organization(
    State(state): State<IngestState>,
    caller: ManageCaller,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<OrganizationKeys>), Problem> {
    caller.require_platform("register organisations")?;
    let payload = OrganizationPayload::parse(&body)?;
    if state
        .store
        .get_organization(&payload.fiscal_code)
        .await?
        .is_some()
    {
        return Err(Problem::conflict(format!(
            "organisation {} is registered already; its keys are at /api/v1/manage/organizations/{}/keys",
            payload.fiscal_code, payload.fiscal_code
        )));
    }
    let account = OrganizationAccount {
        fiscal_code: payload.fiscal_code,
        name: payload.name,
        last_update: model::timestamp::Timestamp::now(),
        primary_key_generation: 0,
        secondary_key_generation: 0,
    };
    state.store.put_organization(&account).await?;
    let keys = register_keys(&state, &KeyHolder::Organization(&account)).await?;
    tracing::info!(organization = %account.fiscal_code, "organisation registered");
    Ok((StatusCode::CREATED, Json(organization_keys(&account, keys))))
}

#[utoipa::path(
    get, path = "/api/v1/manage/organizations/{organization_fiscal_code}/keys", tag = "manage",
    operation_id = "getOrganizationKeys",
    description = "Postino's extension: an organisation's manage keys, for the platform's key or the organisation's own.",
    params(("organization_fiscal_code" = String, Path, description = "The organisation's fiscal code")),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The organisation's keys", body = OrganizationKeys),
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn get_organization_keys(
    State(state): State<IngestState>,
    caller: ManageCaller,
    Path(fiscal_code): Path<String>,
) -> Result<Json<OrganizationKeys>, Problem> {
    let account = find_organization(&state, &caller, &fiscal_code).await?;
    let keys = register_keys(&state, &KeyHolder::Organization(&account)).await?;
    Ok(Json(organization_keys(&account, keys)))
}

#[utoipa::path(
    put, path = "/api/v1/manage/organizations/{organization_fiscal_code}/keys/{key_type}", tag = "manage",
    operation_id = "regenerateOrganizationKey",
    description = "Postino's extension: replace one of an organisation's manage keys; the old one stops working at once, everywhere (manage keys are not cached).",
    params(
        ("organization_fiscal_code" = String, Path, description = "The organisation's fiscal code"),
        ("key_type" = String, Path, description = "`primary` or `secondary`"),
    ),
    security(("ManageSubscriptionKey" = [])),
    responses(
        (status = 200, description = "The key was replaced", body = OrganizationKeys),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
    )
)]
pub(crate) async fn regenerate_organization_key(
    State(state): State<IngestState>,
    caller: ManageCaller,
    Path((fiscal_code, key_type)): Path<(String, String)>,
) -> Result<Json<OrganizationKeys>, Problem> {
    let slot = key_slot(&key_type)?;
    let mut account = find_organization(&state, &caller, &fiscal_code).await?;
    let old = KeyHolder::Organization(&account).derive(&state.keys, slot);
    match slot {
        KeySlot::Primary => account.primary_key_generation += 1,
        KeySlot::Secondary => account.secondary_key_generation += 1,
    }
    account.last_update = model::timestamp::Timestamp::now();
    state.store.put_organization(&account).await?;
    let keys = register_keys(&state, &KeyHolder::Organization(&account)).await?;
    state.store.delete_key(&Keys::hash(&old)).await?;
    tracing::info!(organization = %fiscal_code, ?slot, "organisation key regenerated");
    Ok(Json(organization_keys(&account, keys)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_defaults_to_ios_and_refuses_what_is_out_of_bounds() {
        assert_eq!(paging(None).ok(), Some((20, 0)));
        assert_eq!(paging(Some("limit=5&offset=10")).ok(), Some((5, 10)));
        assert_eq!(paging(Some("offset=3&x=y")).ok(), Some((20, 3)));
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=ten", "limit"),
            ("offset=-1", "offset"),
            ("limit=", "limit"),
        ] {
            let problem = paging(Some(query)).expect_err(query);
            assert_eq!(problem.field.as_deref(), Some(field), "{query}");
        }
    }
}
