//! Whether a citizen can be written to (IO `getProfile`, `getProfileByPOST`).

use axum::extract::{Path, State};
use axum::Json;
use model::channels::{decide, Verdict};
use model::profile::PreferencesMode;
use model::service::ServiceMode;
use model::FiscalCode;
use problem::body::JsonBody;
use problem::{doc, Problem};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::ServiceCaller;
use crate::rate::RateHeaders;
use crate::IngestState;

/// IO `LimitedProfile`.
#[derive(Debug, Serialize, ToSchema)]
pub struct LimitedProfile {
    /// Whether the calling service may write to this citizen.
    pub sender_allowed: bool,
    pub preferred_languages: Vec<String>,
}

/// IO `FiscalCodePayload`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FiscalCodePayload {
    pub fiscal_code: String,
}

#[utoipa::path(
    get, path = "/api/v1/profiles/{fiscal_code}", tag = "profiles",
    operation_id = "getProfile",
    params(("fiscal_code" = String, Path, description = "The citizen's fiscal code")),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "Found", body = LimitedProfile),
        doc::BadRequest,
        doc::Unauthorized,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn get_profile(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path(fiscal_code): Path<String>,
) -> (RateHeaders, Result<Json<LimitedProfile>, Problem>) {
    let answer = match FiscalCode::parse("fiscal_code", &fiscal_code) {
        Ok(fc) => limited_profile(&state, &service, &fc).await,
        Err(err) => Err(err.into()),
    };
    (rate, answer)
}

#[utoipa::path(
    post, path = "/api/v1/profiles", tag = "profiles",
    operation_id = "getProfileByPOST",
    request_body = FiscalCodePayload,
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "Found", body = LimitedProfile),
        doc::BadRequest,
        doc::Unauthorized,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn get_profile_by_post(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    JsonBody(body): JsonBody,
) -> (RateHeaders, Result<Json<LimitedProfile>, Problem>) {
    let answer = async {
        let payload: FiscalCodePayload = model::validation::from_json(&body)?;
        let fc = FiscalCode::parse("fiscal_code", &payload.fiscal_code)?;
        limited_profile(&state, &service, &fc).await
    };
    (rate, answer.await)
}

async fn limited_profile(
    state: &IngestState,
    service: &model::service::Service,
    fc: &FiscalCode,
) -> Result<Json<LimitedProfile>, Problem> {
    let not_found =
        || Problem::not_found("no profile for this fiscal code, or its inbox is disabled");
    // In test mode a key learns nothing about citizens it may not write to, and IO's test
    // fiscal code stands for a citizen who accepts its messages.
    if service.limits.mode == ServiceMode::Test {
        if fc.is_io_test_code() {
            return Ok(Json(LimitedProfile {
                sender_allowed: true,
                preferred_languages: vec!["it_IT".into()],
            }));
        }
        if !service.may_address(fc) {
            return Err(not_found());
        }
    }
    let profile = state
        .store
        .get_profile(fc)
        .await?
        .filter(|p| p.is_inbox_enabled)
        .ok_or_else(not_found)?;
    let preference = if profile.service_preferences_settings.mode == PreferencesMode::Legacy {
        None
    } else {
        state.store.get_preference(fc, &service.id).await?
    };
    let verdict = decide(
        Some(&profile),
        preference.as_ref(),
        &service.id,
        service.payload.require_secure_channel,
    );
    Ok(Json(LimitedProfile {
        sender_allowed: matches!(verdict, Verdict::Deliver(_)),
        preferred_languages: profile.preferred_languages,
    }))
}
