//! The inbox: newest first, cursor-paged, with read status.

use axum::extract::{Path, Query, State};
use axum::Json;
use model::message::NewMessageContent;
use model::ValidationError;
use problem::body::JsonBody;
use problem::{doc, Problem};
use serde::{Deserialize, Serialize};
use ulid::Ulid;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Citizen;
use crate::CitizenState;

pub const DEFAULT_PAGE: usize = 25;
pub const MAX_PAGE: usize = 100;

#[derive(Debug, Deserialize, IntoParams)]
pub struct Paging {
    /// The `next` of the previous page.
    cursor: Option<String>,
    /// 1–100, default 25.
    page_size: Option<String>,
}

/// One message as listed.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxEntry {
    pub id: String,
    pub created_at: String,
    pub sender_service_id: String,
    pub service_name: String,
    pub organization_name: String,
    pub subject: String,
    pub has_payment: bool,
    pub is_read: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InboxPage {
    pub items: Vec<InboxEntry>,
    /// Pass as `?cursor=` for the next page; null on the last page.
    pub next: Option<String>,
}

/// One message with its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct InboxMessage {
    #[serde(flatten)]
    pub entry: InboxEntry,
    pub time_to_live: u32,
    pub content: NewMessageContent,
}

/// IO `MessageStatusChange`: `reading` sets `is_read`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MessageStatusChange {
    /// `reading`.
    pub change_type: String,
    pub is_read: Option<bool>,
}

/// IO `MessageStatusAttributes`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageStatusAttributes {
    pub is_read: bool,
    pub is_archived: bool,
}

fn entry(item: store::InboxItem) -> InboxEntry {
    InboxEntry {
        id: item.id.to_string(),
        created_at: item.created_at.to_string(),
        sender_service_id: item.sender_service_id,
        service_name: item.service_name,
        organization_name: item.organization_name,
        subject: item.subject,
        has_payment: item.has_payment,
        is_read: item.is_read,
    }
}

fn parse_id(field: &str, value: &str) -> Result<Ulid, ValidationError> {
    Ulid::from_string(value)
        .map_err(|_| ValidationError::new(field, "must be a message id (a ULID)"))
}

#[utoipa::path(
    get, path = "/citizen/v1/messages", tag = "citizen",
    params(Paging),
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "A page of the inbox, newest first", body = InboxPage),
        doc::BadRequest,
        doc::Unauthorized,
    )
)]
pub(crate) async fn list_messages(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Query(paging): Query<Paging>,
) -> Result<Json<InboxPage>, Problem> {
    let before = paging
        .cursor
        .as_deref()
        .map(|c| parse_id("cursor", c))
        .transpose()?;
    let size = match paging.page_size.as_deref() {
        None => DEFAULT_PAGE,
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_PAGE).contains(n))
            .ok_or_else(|| {
                ValidationError::new(
                    "page_size",
                    format!("must be a whole number from 1 to {MAX_PAGE}"),
                )
            })?,
    };
    // One more than asked tells whether another page exists.
    let mut items = state.store.list_inbox(&fc, before, size + 1).await?;
    let next = if items.len() > size {
        items.truncate(size);
        items.last().map(|i| i.id.to_string())
    } else {
        None
    };
    Ok(Json(InboxPage {
        items: items.into_iter().map(entry).collect(),
        next,
    }))
}

#[utoipa::path(
    get, path = "/citizen/v1/messages/{id}", tag = "citizen",
    params(("id" = String, Path, description = "The message id")),
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The message with its content", body = InboxMessage),
        doc::BadRequest,
        doc::Unauthorized,
        doc::NotFound,
    )
)]
pub(crate) async fn get_message(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Path(id): Path<String>,
) -> Result<Json<InboxMessage>, Problem> {
    let id = parse_id("id", &id)?;
    let not_found = || Problem::not_found("no such message in your inbox");
    let item = state
        .store
        .get_inbox_item(&fc, &id)
        .await?
        .ok_or_else(not_found)?;
    let record = state.store.get_message(&id).await?.ok_or_else(not_found)?;
    Ok(Json(InboxMessage {
        entry: entry(item),
        time_to_live: record.message.time_to_live,
        content: record.message.content,
    }))
}

#[utoipa::path(
    put, path = "/citizen/v1/messages/{id}/message-status", tag = "citizen",
    operation_id = "upsertMessageStatusAttributes",
    params(("id" = String, Path, description = "The message id")),
    request_body = MessageStatusChange,
    security(("CitizenToken" = [])),
    responses(
        (status = 200, description = "The message's status attributes", body = MessageStatusAttributes),
        doc::BadRequest,
        doc::Unauthorized,
        doc::NotFound,
    )
)]
pub(crate) async fn change_status(
    State(state): State<CitizenState>,
    Citizen(fc): Citizen,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<MessageStatusAttributes>, Problem> {
    let id = parse_id("id", &id)?;
    let change: MessageStatusChange = model::validation::from_json(&body)?;
    let is_read = match (change.change_type.as_str(), change.is_read) {
        ("reading", Some(is_read)) => is_read,
        ("reading", None) => {
            return Err(
                ValidationError::new("is_read", "is required for change_type reading").into(),
            )
        }
        _ => {
            return Err(ValidationError::new(
                "change_type",
                "must be `reading` (archiving is not supported by Postino)",
            )
            .into())
        }
    };
    if !state.store.set_read(&fc, &id, is_read).await? {
        return Err(Problem::not_found("no such message in your inbox"));
    }
    Ok(Json(MessageStatusAttributes {
        is_read,
        is_archived: false,
    }))
}
