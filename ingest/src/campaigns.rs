//! Bulk submit (Postino's extension): a campaign opened with `POST /api/v1/campaigns`, its
//! messages sent up to 10,000 per JSON call or as an NDJSON stream of any length, each item
//! an IO `NewMessage` with its fiscal code in the body.
//!
//! A call is answered `202` once every item it accepted is durably in the log (invariant 1
//! per item), on the bulk lane ([`model::pipeline::Lane::Bulk`]); items that are not valid
//! are refused one by one, by index, and the others go on. Item `i` of a call gets an id
//! derived from the call's ([`model::campaign::item_id`]), so a JSON call retried with its
//! `Idempotency-Key` gives every item the id it had, and the pipeline takes each once.
//!
//! Limits: a call is one request for the rate limit; for weekly quotas each accepted item
//! counts one more, taken before the items are published (all of a chunk or none).

use axum::body::Body;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use campaigns::progress::Progress;
use campaigns::schedule;
use futures::StreamExt;
use model::campaign::{self, Campaign, CampaignPayload};
use model::message::NewMessage;
use model::pipeline::topics;
use model::progress::{CampaignCounts, ItemProgress, ItemStatus, StatusFilter};
use model::request_id::RequestId;
use model::schedule::CampaignSchedule;
use model::service::{KeySlot, Service};
use model::timestamp::Timestamp;
use model::ValidationError;
use problem::body::JsonBody;
use problem::{doc, Problem};
use serde::Serialize;
use store::{CampaignItem, ItemCursor, MessageRecord};
use ulid::Ulid;
use utoipa::ToSchema;

use crate::auth::ServiceCaller;
use crate::idempotency::{self, IdempotencyKey};
use crate::messages::{
    accepted_message, check_urgent, log_record, not_in_log, test_mode_recipient,
};
use crate::rate::RateHeaders;
use crate::IngestState;

/// The largest JSON call taken: 10,000 items of a few KiB each. Longer campaigns are sent
/// as NDJSON, which is read a line at a time.
pub const MAX_JSON_CALL_BYTES: usize = 64 * 1024 * 1024;
/// The longest NDJSON line: a message is far smaller.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// An item due within this many milliseconds goes at once rather than through the
/// scheduler.
const DEFER_AFTER_MS: i64 = 1000;
/// Items published to the log together (one log write each).
const CHUNK: usize = 1000;
/// How long an NDJSON stream may send nothing before it is cut with `408`: it has no
/// whole-request timeout, being of any length.
pub const STREAM_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a bulk call did.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignCall {
    /// The campaign's id.
    pub id: String,
    /// Items accepted by this call: durably in the log.
    pub accepted: usize,
    /// Items refused, by their index in the call (0-based), each with why.
    pub refused: Vec<ItemRefused>,
    /// JSON calls only: each accepted item's message id, by index, to follow it with
    /// `getMessage`. (A stream's could be millions: absent.)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<ItemAccepted>>,
}

/// One item a JSON call accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemAccepted {
    pub index: usize,
    /// Its message id.
    pub id: String,
}

/// One item a call refused.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemRefused {
    pub index: usize,
    pub problem: Problem,
}

/// A stored campaign, as its service sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CampaignView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    /// When its sender cancelled it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    /// When its items go, as opened (absent: at once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<CampaignSchedule>,
    /// Its items by where they stand, as the pipeline reported them so far (a change
    /// shows within a second or two of happening).
    pub counts: CampaignCounts,
}

impl CampaignView {
    async fn of(state: &IngestState, campaign: Campaign) -> Result<Self, Problem> {
        let counts = state.store.campaign_counts(&campaign.id).await?;
        Ok(Self {
            id: campaign.id,
            name: campaign.name,
            created_at: campaign.created_at.to_string(),
            cancelled_at: campaign.cancelled_at.map(|t| t.to_string()),
            schedule: campaign.schedule,
            counts,
        })
    }
}

/// One call's work: its items are `call`'s, for `campaign_id` of `service`.
struct Call<'a> {
    state: &'a IngestState,
    service: &'a Service,
    slot: KeySlot,
    campaign_id: &'a str,
    /// When the campaign's items go (none: at once).
    schedule: Option<&'a CampaignSchedule>,
    call: Ulid,
    request_id: Option<&'a RequestId>,
    /// False when the call repeats one whose items all reached the log: they are checked
    /// again, to answer the same, but not published again.
    publish: bool,
}

impl Call<'_> {
    /// Takes a chunk of items (index, bytes): refuses the invalid ones, publishes the
    /// others. Fails as a whole only when the log or the store does.
    async fn chunk(
        &self,
        items: Vec<(usize, Result<&[u8], Problem>)>,
        answer: &mut CampaignCall,
    ) -> Result<(), Problem> {
        let max_amount = self.service.payload.max_allowed_payment_amount;
        // Names the chunk among the call's (a retried call's chunk has the same).
        let first_index = items.first().map_or(0, |(index, _)| *index);
        let mut messages = Vec::with_capacity(items.len());
        for (index, item) in items {
            let parsed = item.and_then(|bytes| {
                let parsed = NewMessage::parse(bytes, None, max_amount)?;
                check_urgent(self.service, &parsed)?;
                let sandbox_email = test_mode_recipient(self.service, &parsed.fiscal_code)?;
                Ok((parsed, sandbox_email))
            });
            match parsed {
                Ok((parsed, sandbox_email)) => messages.push(accepted_message(
                    self.service,
                    parsed,
                    campaign::item_id(self.call, index),
                    Timestamp::now(),
                    sandbox_email,
                    Some(self.campaign_id.to_string()),
                )),
                Err(problem) => answer.refused.push(ItemRefused { index, problem }),
            }
        }
        if messages.is_empty() {
            return Ok(());
        }
        if self.publish {
            let amount = u32::try_from(messages.len()).unwrap_or(u32::MAX);
            if let Err(problem) =
                crate::quota::take(self.state, self.service, self.slot, amount).await
            {
                answer.refused.extend(messages.iter().map(|m| ItemRefused {
                    index: index_of(self.call, &m.id),
                    problem: problem.clone(),
                }));
                return Ok(());
            }
            // An item due later waits on `scheduled` (in the log all the same) for its time.
            let now = Timestamp::now();
            let (mut at_once, mut later, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
            for message in &messages {
                let record = log_record(self.state, message, self.request_id);
                match self.schedule.map(|s| s.due_at(now, message.id)) {
                    Some(due) if due.unix_millis() > now.unix_millis() + DEFER_AFTER_MS => {
                        let id = message.id.to_string();
                        later.push(schedule::defer(record, topics::BULK_MESSAGES, &id, due));
                        waiting.push(message.id);
                    }
                    _ => at_once.push(record),
                }
            }
            for (topic, records) in [(topics::BULK_MESSAGES, at_once), (topics::SCHEDULED, later)] {
                if !records.is_empty() {
                    self.state
                        .bus
                        .publish(topic, records)
                        .await
                        .map_err(|err| not_in_log(&err))?;
                }
            }
            // The chunk is in the log: its items count as accepted. A scheduled item is
            // also reported on its own, so that the listing shows it pending while it waits
            // (the others are reported by the router in a moment).
            let chunk = format!("{}/{}", self.call, first_index);
            let count = u32::try_from(messages.len()).unwrap_or(u32::MAX);
            self.state
                .store
                .put_campaign_chunk(self.campaign_id, &chunk, count)
                .await?;
            let mut progress = Progress::default();
            for id in &waiting {
                let accepted = ItemProgress::status(ItemStatus::Accepted);
                progress.note(Some(self.campaign_id), *id, accepted);
            }
            if let Err(err) = progress.publish(&*self.state.bus).await {
                tracing::warn!(campaign_id = self.campaign_id, error = %err, "cannot report scheduled campaign items to the tally");
            }
            for message in &messages {
                crate::metrics::accepted();
                self.state
                    .accepted
                    .add(MessageRecord::new(
                        message.clone(),
                        model::status::MessageStatus::Accepted,
                    ))
                    .await;
            }
        }
        answer.accepted += messages.len();
        if let Some(items) = answer.items.as_mut() {
            items.extend(messages.iter().map(|m| ItemAccepted {
                index: index_of(self.call, &m.id),
                id: m.id.to_string(),
            }));
        }
        Ok(())
    }
}

/// The index an item id was derived with (see [`campaign::item_id`]).
fn index_of(call: Ulid, id: &Ulid) -> usize {
    usize::try_from(id.random().wrapping_sub(call.random())).unwrap_or(usize::MAX)
}

fn answered(answer: CampaignCall, replayed: bool) -> axum::response::Response {
    let mut response = (StatusCode::ACCEPTED, Json(answer)).into_response();
    if replayed {
        response.headers_mut().insert(
            idempotency::REPLAYED,
            axum::http::HeaderValue::from_static("true"),
        );
    }
    response
}

/// Runs a JSON call's items, a chunk at a time, and settles its key once all are in the log.
async fn json_call(
    work: &Call<'_>,
    items: &[Box<serde_json::value::RawValue>],
    key: Option<&str>,
    claimed: idempotency::Claimed,
) -> Result<CampaignCall, Problem> {
    let mut answer = CampaignCall {
        id: work.campaign_id.to_string(),
        accepted: 0,
        refused: Vec::new(),
        items: Some(Vec::with_capacity(items.len())),
    };
    for chunk in json_items(items) {
        work.chunk(chunk, &mut answer).await?;
    }
    if claimed.repeat != Some(true) {
        idempotency::settle(work.state, &work.service.id, key).await;
    }
    Ok(answer)
}

/// The JSON items of a call, each checked on its own.
fn json_items(
    items: &[Box<serde_json::value::RawValue>],
) -> impl Iterator<Item = Vec<(usize, Result<&[u8], Problem>)>> {
    items.chunks(CHUNK).enumerate().map(|(n, chunk)| {
        chunk
            .iter()
            .enumerate()
            .map(|(i, raw)| (n * CHUNK + i, Ok(raw.get().as_bytes())))
            .collect()
    })
}

#[utoipa::path(
    post, path = "/api/v1/campaigns", tag = "campaigns",
    operation_id = "createCampaign",
    description = "Postino's extension: opens a campaign, optionally with its first items (at most 10,000, each an IO NewMessage with its fiscal code). `202` once every accepted item is durably in the log; refused items are listed by index. With an `Idempotency-Key`, a retried call answers the same and sends nothing twice.",
    params(("Idempotency-Key" = Option<String>, Header, description = "A retried call with the same key and body gets the first answer, with the same campaign and message ids, for at least 24 h.")),
    request_body = CampaignPayload,
    security(("SubscriptionKey" = [])),
    responses(
        (status = 202, description = "Opened; the items accepted are in the log", body = CampaignCall),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::IdempotencyKeyReused,
        doc::TooManyRequests,
        doc::Unavailable,
    )
)]
pub(crate) async fn create(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, slot): ServiceCaller,
    request_id: Option<Extension<RequestId>>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(body): JsonBody,
) -> (RateHeaders, Result<axum::response::Response, Problem>) {
    let request_id = request_id.map(|Extension(id)| id);
    let answer = async {
        let payload = CampaignPayload::parse(&body)?;
        let items = match &payload.items {
            Some(raw) => campaign::parse_items(raw.get().as_bytes())?,
            None => Vec::new(),
        };
        let claimed = idempotency::claim(&state, &service.id, key.as_deref(), || {
            idempotency::request_hash(None, &body)
        })
        .await?;
        let call = claimed.id;
        let campaign = Campaign {
            id: call.to_string(),
            service_id: service.id.clone(),
            name: payload.name.trim().to_string(),
            created_at: Timestamp::from(time::OffsetDateTime::from(call.datetime())),
            cancelled_at: None,
            schedule: payload.schedule.clone().filter(|s| !s.is_immediate()),
        };
        state.store.put_campaign(&campaign).await?;
        let work = Call {
            state: &state,
            service: &service,
            slot,
            campaign_id: &campaign.id,
            schedule: campaign.schedule.as_ref(),
            call,
            request_id: request_id.as_ref(),
            publish: claimed.repeat != Some(true),
        };
        let answer = json_call(&work, &items, key.as_deref(), claimed).await?;
        tracing::info!(service_id = %service.id, campaign_id = %campaign.id, accepted = answer.accepted, "campaign opened");
        Ok(answered(answer, claimed.repeat.is_some()))
    };
    (rate, answer.await)
}

/// The campaign `id`, if `service` opened it.
async fn own_campaign(
    state: &IngestState,
    service: &Service,
    id: &str,
) -> Result<Campaign, Problem> {
    let campaign = state
        .store
        .get_campaign(id)
        .await?
        .ok_or_else(|| Problem::not_found(format!("no campaign with id {id}")))?;
    if campaign.service_id != service.id {
        return Err(Problem::forbidden(
            "only the service that opened a campaign may add to it or read it",
        ));
    }
    Ok(campaign)
}

/// Whether a request's body is NDJSON (`application/x-ndjson` or `application/jsonl`).
fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|essence| essence == "application/x-ndjson" || essence == "application/jsonl")
}

#[utoipa::path(
    post, path = "/api/v1/campaigns/{campaign_id}/items", tag = "campaigns",
    operation_id = "addCampaignItems",
    description = "Postino's extension: adds items to a campaign: a JSON array of at most 10,000 IO NewMessages with their fiscal codes (`Content-Type: application/json`, with an optional `Idempotency-Key`), or an NDJSON stream of any length, one message per line (`application/x-ndjson`; read and published a thousand lines at a time, so a stream cut short leaves the lines before the cut accepted). `202` once every accepted item is durably in the log; refused items are listed by index (for NDJSON, the 0-based line number).",
    params(
        ("campaign_id" = String, Path, description = "The campaign id"),
        ("Idempotency-Key" = Option<String>, Header, description = "JSON calls only: a retried call with the same key and body gets the first answer and sends nothing twice."),
    ),
    request_body(content = Vec<model::message::NewMessageBody>, description = "The items, as JSON or NDJSON"),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 202, description = "The items accepted are in the log", body = CampaignCall),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
        doc::Conflict,
        doc::IdempotencyKeyReused,
        doc::TooManyRequests,
        doc::Unavailable,
    )
)]
pub(crate) async fn add_items(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, slot): ServiceCaller,
    Path(id): Path<String>,
    request_id: Option<Extension<RequestId>>,
    IdempotencyKey(key): IdempotencyKey,
    request: Request,
) -> (RateHeaders, Result<axum::response::Response, Problem>) {
    let request_id = request_id.map(|Extension(id)| id);
    let answer = async {
        let campaign = own_campaign(&state, &service, &id).await?;
        if let Some(when) = campaign.cancelled_at {
            return Err(Problem::conflict(format!(
                "campaign {id} was cancelled at {when}: it takes no more items"
            )));
        }
        if is_ndjson(request.headers()) {
            if key.is_some() {
                return Err(ValidationError::new(
                    "Idempotency-Key",
                    "is taken on JSON calls (up to 10,000 items each), whose body can be compared; send a stream you may need to retry as such calls",
                )
                .into());
            }
            let work = Call {
                state: &state,
                service: &service,
                slot,
                campaign_id: &campaign.id,
                schedule: campaign.schedule.as_ref(),
                call: state.next_id(),
                request_id: request_id.as_ref(),
                publish: true,
            };
            let mut answer = CampaignCall {
                id: campaign.id.clone(),
                accepted: 0,
                refused: Vec::new(),
                items: None,
            };
            stream_items(&work, request.into_body(), &mut answer).await?;
            tracing::info!(service_id = %service.id, campaign_id = %campaign.id, accepted = answer.accepted, "campaign items added");
            return Ok(answered(answer, false));
        }
        let body = json_body(request).await?;
        let items = campaign::parse_items(&body)?;
        let path = format!("campaign/{}", campaign.id);
        let claimed = idempotency::claim(&state, &service.id, key.as_deref(), || {
            idempotency::request_hash(Some(&path), &body)
        })
        .await?;
        let work = Call {
            state: &state,
            service: &service,
            slot,
            campaign_id: &campaign.id,
            schedule: campaign.schedule.as_ref(),
            call: claimed.id,
            request_id: request_id.as_ref(),
            publish: claimed.repeat != Some(true),
        };
        let answer = json_call(&work, &items, key.as_deref(), claimed).await?;
        tracing::info!(service_id = %service.id, campaign_id = %campaign.id, accepted = answer.accepted, "campaign items added");
        Ok(answered(answer, claimed.repeat.is_some()))
    };
    (rate, answer.await)
}

/// A JSON call's body, whole, refused `415` unless declared JSON and `413` past
/// [`MAX_JSON_CALL_BYTES`].
async fn json_body(request: Request) -> Result<axum::body::Bytes, Problem> {
    let JsonBody(body) = JsonBody::from_request(request, &()).await.map_err(|refused| {
        let status = refused.status();
        let kind = match status {
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
            StatusCode::PAYLOAD_TOO_LARGE => "payload-too-large",
            _ => "body-unreadable",
        };
        Problem::new(
            status,
            kind,
            "send the items as a JSON array (application/json, at most 64 MiB) or as NDJSON (application/x-ndjson), and the whole body",
        )
    })?;
    Ok(body)
}

/// Reads an NDJSON body a line at a time, in chunks of [`CHUNK`] lines: memory holds one
/// chunk and one line, whatever the stream's length.
async fn stream_items(
    work: &Call<'_>,
    body: Body,
    answer: &mut CampaignCall,
) -> Result<(), Problem> {
    let mut frames = body.into_data_stream();
    let mut lines = LineSplitter::default();
    let mut pending: Vec<(usize, Result<Vec<u8>, Problem>)> = Vec::with_capacity(CHUNK);
    loop {
        let frame = tokio::time::timeout(STREAM_IDLE, frames.next())
            .await
            .map_err(|_| {
                Problem::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "request-timeout",
                    format!(
                        "the stream sent nothing for {} s after {} lines; the lines before were taken, and a new call may carry on from there",
                        STREAM_IDLE.as_secs(),
                        lines.index
                    ),
                )
            })?;
        let end = frame.is_none();
        match frame {
            Some(Ok(bytes)) => lines.push(&bytes, &mut pending),
            Some(Err(err)) => {
                return Err(Problem::new(
                    StatusCode::BAD_REQUEST,
                    "body-unreadable",
                    format!(
                        "the stream broke off after {} lines ({err}); the lines before were taken",
                        lines.index
                    ),
                ))
            }
            None => lines.finish(&mut pending),
        }
        while pending.len() >= CHUNK || (end && !pending.is_empty()) {
            let rest = if pending.len() > CHUNK {
                pending.split_off(CHUNK)
            } else {
                Vec::new()
            };
            let chunk = std::mem::replace(&mut pending, rest);
            let items = chunk
                .iter()
                .map(|(index, line)| {
                    (
                        *index,
                        line.as_ref().map(Vec::as_slice).map_err(Clone::clone),
                    )
                })
                .collect();
            work.chunk(items, answer).await?;
        }
        if end {
            return Ok(());
        }
    }
}

/// Splits a byte stream into lines, each an item; blank lines are skipped but counted, so
/// an item's index is its line number.
#[derive(Debug, Default)]
struct LineSplitter {
    /// The line being read.
    line: Vec<u8>,
    /// The current line's number (0-based).
    index: usize,
    /// The current line is past [`MAX_LINE_BYTES`]: its bytes are dropped to its end.
    too_long: bool,
}

impl LineSplitter {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<(usize, Result<Vec<u8>, Problem>)>) {
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.take(&rest[..at]);
            self.end_line(out);
            rest = &rest[at + 1..];
        }
        self.take(rest);
    }

    fn take(&mut self, bytes: &[u8]) {
        if self.too_long {
            return;
        }
        if self.line.len() + bytes.len() > MAX_LINE_BYTES {
            self.too_long = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn end_line(&mut self, out: &mut Vec<(usize, Result<Vec<u8>, Problem>)>) {
        let line = std::mem::take(&mut self.line);
        if self.too_long {
            out.push((
                self.index,
                Err(Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload-too-large",
                    format!("a line is at most {MAX_LINE_BYTES} bytes"),
                )),
            ));
        } else if !line.trim_ascii().is_empty() {
            out.push((self.index, Ok(line)));
        }
        self.too_long = false;
        self.index += 1;
    }

    /// The last line, if the stream did not end with a newline.
    fn finish(&mut self, out: &mut Vec<(usize, Result<Vec<u8>, Problem>)>) {
        if self.too_long || !self.line.is_empty() {
            self.end_line(out);
        }
    }
}

#[utoipa::path(
    get, path = "/api/v1/campaigns/{campaign_id}", tag = "campaigns",
    operation_id = "getCampaign",
    description = "Postino's extension: a campaign, for the service that opened it.",
    params(("campaign_id" = String, Path, description = "The campaign id")),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "The campaign", body = CampaignView),
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn get(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path(id): Path<String>,
) -> (RateHeaders, Result<Json<CampaignView>, Problem>) {
    let answer = async {
        let campaign = own_campaign(&state, &service, &id).await?;
        Ok(Json(CampaignView::of(&state, campaign).await?))
    };
    (rate, answer.await)
}

#[utoipa::path(
    post, path = "/api/v1/campaigns/{campaign_id}/cancel", tag = "campaigns",
    operation_id = "cancelCampaign",
    description = "Postino's extension: cancels a campaign. Its items not yet routed are not delivered (REJECTED, `CANCELLED_BY_SENDER`), its notifications not yet sent do not go (`SKIPPED:campaign_cancelled`), and it takes no more items (`409`). What was delivered or sent stays. Takes effect everywhere within 2 seconds. Cancelling again changes nothing.",
    params(("campaign_id" = String, Path, description = "The campaign id")),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "The campaign, cancelled", body = CampaignView),
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn cancel(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path(id): Path<String>,
) -> (RateHeaders, Result<Json<CampaignView>, Problem>) {
    let answer = async {
        let mut campaign = own_campaign(&state, &service, &id).await?;
        if campaign.cancelled_at.is_none() {
            campaign.cancelled_at = Some(Timestamp::now());
            state.store.put_campaign(&campaign).await?;
            tracing::info!(service_id = %service.id, campaign_id = %campaign.id, "campaign cancelled");
        }
        Ok(Json(CampaignView::of(&state, campaign).await?))
    };
    (rate, answer.await)
}

/// The most items one page of the listing holds.
const MAX_PAGE: usize = 1000;
/// The most items one listing request reads to fill a page filtered by status: a page may
/// then hold fewer than asked, and `next` goes on from where the reading stopped.
const MAX_SCANNED: usize = 20_000;

/// Which items `GET …/items` lists.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct ItemsQuery {
    /// Only items where this stands (all when absent).
    status: Option<StatusFilter>,
    /// How many, 1 to 1000 (default 100).
    limit: Option<usize>,
    /// The `next` of the page before.
    cursor: Option<String>,
}

/// A page of a campaign's items.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemsPage {
    pub items: Vec<ItemView>,
    /// Where the next page starts; absent at the end. A page filtered by status may hold
    /// fewer items than asked (even none) and still have a `next`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// One item of a campaign, where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemView {
    /// Its message id (for `getMessage`).
    pub id: String,
    /// `ACCEPTED` (pending), `PROCESSED`, `FAILED` or `REJECTED:<reason>`.
    pub status: String,
    /// `PLANNED`, `SENT`, `FAILED`, `EXPIRED`, `THROTTLED` or `SKIPPED:<reason>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

impl From<&CampaignItem> for ItemView {
    fn from(item: &CampaignItem) -> Self {
        let progress = item.progress;
        Self {
            id: item.id.to_string(),
            status: progress.status.unwrap_or(ItemStatus::Accepted).to_string(),
            push: progress.push.map(|p| p.to_string()),
            email: progress.email.map(|p| p.to_string()),
        }
    }
}

/// A cursor as the listing hands it out: `<part>.<last id>`.
fn cursor_text(cursor: ItemCursor) -> String {
    format!("{}.{}", cursor.bucket, cursor.id)
}

fn parse_cursor(text: &str) -> Result<ItemCursor, ValidationError> {
    let invalid = || ValidationError::new("cursor", "must be a `next` this listing handed out");
    let (bucket, id) = text.split_once('.').ok_or_else(invalid)?;
    let bucket: u16 = bucket.parse().map_err(|_| invalid())?;
    if bucket >= model::progress::BUCKETS {
        return Err(invalid());
    }
    let id = id.parse().map_err(|_| invalid())?;
    Ok(ItemCursor { bucket, id })
}

#[utoipa::path(
    get, path = "/api/v1/campaigns/{campaign_id}/items", tag = "campaigns",
    operation_id = "listCampaignItems",
    description = "Postino's extension: a campaign's items and where each stands, a page at a time, optionally only those of one status (`pending`: not yet routed). Follow `next` until it is absent.",
    params(("campaign_id" = String, Path, description = "The campaign id"), ItemsQuery),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "A page of items", body = ItemsPage),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn list_items(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path(id): Path<String>,
    query: Result<axum::extract::Query<ItemsQuery>, axum::extract::rejection::QueryRejection>,
) -> (RateHeaders, Result<Json<ItemsPage>, Problem>) {
    let answer = async {
        let axum::extract::Query(query) =
            query.map_err(|err| ValidationError::new("query", err.body_text()))?;
        let limit = query.limit.unwrap_or(100);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(ValidationError::new("limit", format!("must be 1 to {MAX_PAGE}")).into());
        }
        let mut after = query.cursor.as_deref().map(parse_cursor).transpose()?;
        let campaign = own_campaign(&state, &service, &id).await?;
        let read = if query.status.is_some() {
            MAX_PAGE
        } else {
            limit
        };
        let mut items = Vec::new();
        let mut scanned = 0;
        let next = loop {
            let page = state
                .store
                .campaign_items(&campaign.id, after, read)
                .await?;
            scanned += page.len();
            let ended = page.len() < read;
            for item in &page {
                after = Some(item.cursor());
                if query
                    .status
                    .is_none_or(|status| status.matches(&item.progress))
                {
                    items.push(ItemView::from(item));
                    if items.len() == limit {
                        break;
                    }
                }
            }
            // Full: the next page starts after the last item listed.
            if items.len() == limit || (!ended && scanned >= MAX_SCANNED) {
                break after.map(cursor_text);
            }
            if ended {
                break None;
            }
        };
        Ok(Json(ItemsPage { items, next }))
    };
    (rate, answer.await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(frames: &[&[u8]]) -> Vec<(usize, Result<String, u16>)> {
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for frame in frames {
            splitter.push(frame, &mut out);
        }
        splitter.finish(&mut out);
        out.into_iter()
            .map(|(i, line)| {
                (
                    i,
                    line.map(|l| String::from_utf8_lossy(&l).into_owned())
                        .map_err(|p| p.status),
                )
            })
            .collect()
    }

    #[test]
    fn lines_are_numbered_across_frames_and_blank_ones_skipped() {
        assert_eq!(
            split(&[b"{\"a\":1}\n\n{\"b\"", b":2}\r\n", b"  \n{\"c\":3}"]),
            vec![
                (0, Ok("{\"a\":1}".to_string())),
                (2, Ok("{\"b\":2}\r".to_string())),
                (4, Ok("{\"c\":3}".to_string())),
            ]
        );
        assert!(split(&[b""]).is_empty());
    }

    #[test]
    fn a_line_too_long_is_refused_alone() {
        let long = vec![b'x'; MAX_LINE_BYTES + 1];
        let lines = split(&[b"{}\n", &long, b"\n{}\n"]);
        assert_eq!(
            lines,
            vec![
                (0, Ok("{}".to_string())),
                (1, Err(413)),
                (2, Ok("{}".to_string()))
            ]
        );
    }

    #[test]
    fn ndjson_is_told_by_its_content_type() {
        let headers = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().expect("value"));
            h
        };
        assert!(is_ndjson(&headers("application/x-ndjson")));
        assert!(is_ndjson(&headers("application/jsonl; charset=utf-8")));
        assert!(!is_ndjson(&headers("application/json")));
        assert!(!is_ndjson(&HeaderMap::new()));
    }

    #[test]
    fn an_items_index_is_recovered_from_its_id() {
        let call = Ulid::new();
        for index in [0, 1, 9_999, 1_000_000] {
            assert_eq!(index_of(call, &campaign::item_id(call, index)), index);
        }
    }
}
