//! Submitting a message and following it (IO `submitMessageforUser…`, `getMessage`).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bus::Lineage;
use model::message::{NewMessage, NewMessageBody, NewMessageContent, Payee};
use model::pipeline::{encode, topics, AcceptedMessage, SenderMetadata};
use model::request_id::RequestId;
use model::status::{IoNotificationStatus, MessageStatus, RejectionReason, SkippedChannels};
use model::timestamp::Timestamp;
use model::{FiscalCode, ValidationError};
use problem::body::JsonBody;
use problem::{doc, Problem};
use serde::Serialize;
use store::MessageRecord;
use ulid::Ulid;
use utoipa::ToSchema;

use crate::auth::ServiceCaller;
use crate::idempotency::{self, IdempotencyKey};
use crate::rate::RateHeaders;
use crate::IngestState;

/// IO `CreatedMessage`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedMessage {
    /// The message id, a ULID.
    pub id: String,
}

/// IO `ExternalMessageResponseWithContent`, plus two fields of Postino's own:
/// `rejection_reason` when REJECTED, and `skipped_channels`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalMessageResponse {
    pub message: ExternalCreatedMessage,
    /// IO's: the status of each channel used (`THROTTLED` while it is being retried); a
    /// channel not used is absent.
    pub notification: IoNotificationStatus,
    pub status: MessageStatus,
    /// Postino's extension: why a REJECTED message was not delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<RejectionReason>,
    /// Postino's extension, not in IO's contract: the channels not used for this message
    /// and why (the citizen's or the service's choice, no device, no validated address, no
    /// push provider). Absent when every channel was used or is still pending.
    #[serde(skip_serializing_if = "SkippedChannels::is_empty")]
    pub skipped_channels: SkippedChannels,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExternalCreatedMessage {
    pub id: String,
    pub fiscal_code: String,
    pub time_to_live: u32,
    pub created_at: String,
    pub content: NewMessageContent,
    pub sender_service_id: String,
    pub feature_level_type: String,
}

#[utoipa::path(
    post, path = "/api/v1/messages", tag = "messages",
    operation_id = "submitMessageforUserWithFiscalCodeInBody",
    params(("Idempotency-Key" = Option<String>, Header, description = "Postino's extension: a submit retried with the same key and request gets the first answer (same id, `Idempotent-Replayed: true`) for at least 24 h; the same key with another request is 422. 1 to 255 visible ASCII characters.")),
    request_body = NewMessageBody,
    security(("SubscriptionKey" = [])),
    responses(
        (status = 201, description = "Accepted: durably in the log.", body = CreatedMessage,
            headers(
                ("Location" = String, description = "Where to follow the message"),
                ("Idempotent-Replayed" = String, description = "Postino's extension: `true` when this repeats the answer to an earlier request with the same Idempotency-Key"),
            )),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::IdempotencyKeyReused,
        doc::TooManyRequests,
        doc::Unavailable,
    )
)]
pub(crate) async fn submit_with_fiscal_code_in_body(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    request_id: Option<Extension<RequestId>>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> (RateHeaders, Result<Response, Problem>) {
    let request_id = request_id.map(|Extension(id)| id);
    let answer = submit(state, service, None, request_id, key.as_deref(), &body).await;
    (rate, answer)
}

#[utoipa::path(
    post, path = "/api/v1/messages/{fiscal_code}", tag = "messages",
    operation_id = "submitMessageforUser",
    params(
        ("fiscal_code" = String, Path, description = "The recipient's fiscal code"),
        ("Idempotency-Key" = Option<String>, Header, description = "Postino's extension: a submit retried with the same key and request gets the first answer (same id, `Idempotent-Replayed: true`) for at least 24 h; the same key with another request is 422. 1 to 255 visible ASCII characters."),
    ),
    request_body = NewMessageBody,
    security(("SubscriptionKey" = [])),
    responses(
        (status = 201, description = "Accepted: durably in the log.", body = CreatedMessage,
            headers(
                ("Location" = String, description = "Where to follow the message"),
                ("Idempotent-Replayed" = String, description = "Postino's extension: `true` when this repeats the answer to an earlier request with the same Idempotency-Key"),
            )),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::IdempotencyKeyReused,
        doc::TooManyRequests,
        doc::Unavailable,
    )
)]
pub(crate) async fn submit_for_user(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path(fiscal_code): Path<String>,
    request_id: Option<Extension<RequestId>>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> (RateHeaders, Result<Response, Problem>) {
    let request_id = request_id.map(|Extension(id)| id);
    let path = Some(fiscal_code.as_str());
    let answer = submit(state, service, path, request_id, key.as_deref(), &body).await;
    (rate, answer)
}

async fn submit(
    state: IngestState,
    service: std::sync::Arc<model::service::Service>,
    path_fiscal_code: Option<&str>,
    request_id: Option<RequestId>,
    idempotency_key: Option<&str>,
    body: &[u8],
) -> Result<Response, Problem> {
    let parsed = NewMessage::parse(
        body,
        path_fiscal_code,
        service.payload.max_allowed_payment_amount,
    )?;
    check_urgent(&service, &parsed)?;
    let sandbox_email = test_mode_recipient(&service, &parsed.fiscal_code)?;
    // A request that is not valid claims no key: only a message does.
    let claimed = idempotency::claim(&state, &service.id, idempotency_key, || {
        idempotency::request_hash(path_fiscal_code, body)
    })
    .await?;
    if claimed.repeat == Some(true) {
        return Ok(created(&claimed.id, &parsed.fiscal_code, true));
    }
    // A repeat whose message may not have reached the log publishes it again, same id.
    let (id, created_at, replayed) = (claimed.id, claimed.created_at, claimed.repeat.is_some());
    let message = accepted_message(&service, parsed, id, created_at, sandbox_email, None);
    let record = log_record(&state, &message, request_id.as_ref());
    if let Err(err) = state.bus.publish(topics::MESSAGES, vec![record]).await {
        return Err(not_in_log(&err));
    }

    idempotency::settle(&state, &service.id, idempotency_key).await;
    let answer = created(&message.id, &message.fiscal_code, replayed);
    tracing::debug!(message_id = %message.id, service_id = %service.id, "message accepted");
    state
        .accepted
        .add(MessageRecord::new(message, MessageStatus::Accepted))
        .await;
    crate::metrics::accepted();
    Ok(answer)
}

/// The message `parsed` becomes once accepted from `service` with `id`: IO's rules for
/// what a sender leaves out applied, the service as it is now kept beside it.
pub(crate) fn accepted_message(
    service: &model::service::Service,
    parsed: NewMessage,
    id: Ulid,
    created_at: Timestamp,
    sandbox_email: Option<model::email::EmailAddress>,
    campaign_id: Option<String>,
) -> AcceptedMessage {
    let org = &service.payload.organization;
    let mut content = parsed.content;
    if let Some(payment) = content.payment_data.as_mut() {
        // IO's rule: a notice without a payee is payable to the sending organization.
        payment.payee.get_or_insert_with(|| Payee {
            fiscal_code: org.fiscal_code.clone(),
        });
    }
    AcceptedMessage {
        id,
        fiscal_code: parsed.fiscal_code,
        sender_service_id: service.id.clone(),
        created_at,
        time_to_live: parsed.time_to_live,
        content,
        default_email: parsed.default_email,
        feature_level_type: parsed.feature_level_type,
        sandbox_email,
        campaign_id,
        urgent: parsed.urgent,
        sender: SenderMetadata {
            service_name: service.payload.name.clone(),
            organization_name: org.name.clone(),
            organization_fiscal_code: org.fiscal_code.clone(),
            department_name: org.department_name.clone(),
            require_secure_channel: service.payload.require_secure_channel,
        },
    }
}

/// `message` as a record of the log, keyed by its citizen (so one citizen's messages stay
/// in order) and carrying the request's id.
pub(crate) fn log_record(
    state: &IngestState,
    message: &AcceptedMessage,
    request_id: Option<&RequestId>,
) -> bus::Record {
    let key = message.fiscal_code.keyed_hash(&state.partition_key);
    let lineage = Lineage {
        key: key.into_bytes(),
        request_id: request_id.map(|id| id.as_str().to_owned()),
    };
    lineage.into_record(encode(message))
}

/// The answer when the log did not take what was submitted.
pub(crate) fn not_in_log(err: &bus::BusError) -> Problem {
    tracing::error!(error = %err, "cannot append to the log");
    if err.is_retryable() {
        Problem::unavailable(
            "the message log did not confirm the message, so it is not accepted; retry later",
            1,
        )
    } else {
        Problem::internal("the message log refused the message, so it is not accepted")
    }
}

/// Refuses an `urgent` message from a service the platform did not allow urgent ones.
pub(crate) fn check_urgent(
    service: &model::service::Service,
    message: &NewMessage,
) -> Result<(), Problem> {
    if message.urgent && !service.limits.allow_urgent {
        return Err(Problem::forbidden(
            "this service may not send urgent messages (pushed even in quiet hours); the \
             platform's operators allow them (allow_urgent)",
        ));
    }
    Ok(())
}

/// The problem kind of a submit that test mode does not allow.
pub const TEST_MODE: &str = "test-mode";

/// Refuses a recipient a service in test mode may not write to; for IO's test fiscal code,
/// the address its message goes to instead (the service's contact email).
pub(crate) fn test_mode_recipient(
    service: &model::service::Service,
    fc: &FiscalCode,
) -> Result<Option<model::email::EmailAddress>, Problem> {
    if !service.may_address(fc) {
        return Err(Problem::new(
            StatusCode::FORBIDDEN,
            TEST_MODE,
            format!(
                "this service is in test mode: it may send only to its authorized_recipients \
                 and to IO's test fiscal code {}, until the platform's operators move it to \
                 production",
                model::fiscal_code::IO_TEST_FISCAL_CODE
            ),
        ));
    }
    if service.limits.mode != model::service::ServiceMode::Test || !fc.is_io_test_code() {
        return Ok(None);
    }
    let contact = service.payload.metadata.email.as_deref().unwrap_or("");
    model::email::EmailAddress::parse("metadata.email", contact)
        .map(Some)
        .map_err(|_| {
            Problem::new(
                StatusCode::FORBIDDEN,
                TEST_MODE,
                "in test mode, messages to IO's test fiscal code go to the service's contact \
                 email (metadata.email), and this service has no valid one",
            )
        })
}

/// `201` for message `id` to `fc`: its id, and where to follow it; `replayed` when it
/// repeats the answer to an earlier request with the same `Idempotency-Key`.
fn created(id: &Ulid, fc: &FiscalCode, replayed: bool) -> Response {
    let id = id.to_string();
    let location = format!("/api/v1/messages/{}/{id}", fc.as_str());
    let mut response = (
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(CreatedMessage { id }),
    )
        .into_response();
    if replayed {
        response
            .headers_mut()
            .insert(idempotency::REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

#[utoipa::path(
    get, path = "/api/v1/messages/{fiscal_code}/{id}", tag = "messages",
    operation_id = "getMessage",
    params(
        ("fiscal_code" = String, Path, description = "The recipient's fiscal code"),
        ("id" = String, Path, description = "The message id"),
    ),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "The message and its status", body = ExternalMessageResponse),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn get_message(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path((fiscal_code, id)): Path<(String, String)>,
) -> (RateHeaders, Result<Json<ExternalMessageResponse>, Problem>) {
    (rate, message_for(&state, &service, &fiscal_code, &id).await)
}

/// The message `id` to `fiscal_code`, as IO shows it to the service that sent it.
async fn message_for(
    state: &IngestState,
    service: &model::service::Service,
    fiscal_code: &str,
    id: &str,
) -> Result<Json<ExternalMessageResponse>, Problem> {
    let fc = FiscalCode::parse("fiscal_code", fiscal_code)?;
    let id = Ulid::from_string(id)
        .map_err(|_| ValidationError::new("id", "must be a message id (a ULID)"))?;
    // Memory first: a row leaves memory only once it is written, so looking in this order
    // never misses a message in between. The store's row wins when there is one: the
    // pipeline may already have recorded a later status.
    let queued = state.accepted.get(&id);
    let record = state.store.get_message(&id).await?.or(queued);
    let record = record
        .filter(|r| r.message.fiscal_code == fc)
        .ok_or_else(|| Problem::not_found("no message with this id for this fiscal code"))?;
    if record.message.sender_service_id != service.id {
        return Err(Problem::forbidden(
            "only the service that sent a message may read it",
        ));
    }
    let m = record.message;
    Ok(Json(ExternalMessageResponse {
        message: ExternalCreatedMessage {
            id: m.id.to_string(),
            fiscal_code: m.fiscal_code.as_str().to_string(),
            time_to_live: m.time_to_live,
            created_at: m.created_at.to_string(),
            content: m.content,
            sender_service_id: m.sender_service_id,
            feature_level_type: m.feature_level_type,
        },
        notification: record.notification.io(),
        status: record.status,
        rejection_reason: record.rejection_reason,
        skipped_channels: record.notification.skipped(),
    }))
}
