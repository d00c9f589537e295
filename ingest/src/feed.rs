//! IO's subscriptions feed (`getSubscriptionsFeedForDate`): the citizens who subscribed to
//! or unsubscribed from the calling service on a UTC day, as SHA-256 hashes of their fiscal
//! codes (IO's `LOWERCASE(HEX(SHA256(UPPERCASE(CF))))`).
//!
//! The citizen API records each change as it happens ([`store::SubscriptionFeedStore`]):
//! a citizen enabling or disabling their inbox concerns every service, a service
//! preference one service. For one service and day, a citizen's change to that service
//! wins over their inbox change; each citizen is in one list at most. A service in test
//! mode sees only its `authorized_recipients`: the feed must not tell a sandbox key who
//! is registered.

use std::collections::{BTreeMap, HashSet};

use axum::extract::{Path, State};
use axum::Json;
use model::service::{Service, ServiceMode};
use model::ValidationError;
use problem::{doc, Problem};
use serde::Serialize;
use store::{FEED_KEPT_DAYS, FEED_SCOPE_INBOX};
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;

use crate::auth::ServiceCaller;
use crate::rate::RateHeaders;
use crate::IngestState;

/// IO `SubscriptionsFeed`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionsFeed {
    /// `YYYY-MM-DD`.
    #[serde(rename = "dateUTC")]
    pub date_utc: String,
    /// Hex SHA-256 of the fiscal codes that subscribed.
    pub subscriptions: Vec<String>,
    /// Hex SHA-256 of the fiscal codes that unsubscribed.
    pub unsubscriptions: Vec<String>,
}

const DATE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// The day asked for, if it is one the feed can answer for `today`.
fn day(text: &str, today: Date) -> Result<Date, Problem> {
    let day = Date::parse(text, DATE)
        .map_err(|_| ValidationError::new("date", "must be a date such as 2026-11-30 (UTC)"))?;
    if day > today {
        return Err(Problem::not_found(format!(
            "the subscriptions feed of {text} is not available yet"
        )));
    }
    if (today - day).whole_days() >= i64::from(FEED_KEPT_DAYS) {
        return Err(Problem::not_found(format!(
            "the subscriptions feed is kept for {FEED_KEPT_DAYS} days; {text} is older"
        )));
    }
    Ok(day)
}

#[utoipa::path(
    get, path = "/api/v1/subscriptions-feed/{date}", tag = "profiles",
    operation_id = "getSubscriptionsFeedForDate",
    description = "The hashed fiscal codes (lowercase hex SHA-256 of the upper-case code) of the citizens who subscribed to or unsubscribed from the calling service on `date` (UTC), for the last 31 days. Today's answer holds the changes so far.",
    params(("date" = String, Path, description = "A UTC day, YYYY-MM-DD")),
    security(("SubscriptionKey" = [])),
    responses(
        (status = 200, description = "The day's changes", body = SubscriptionsFeed),
        doc::BadRequest,
        doc::Unauthorized,
        doc::Forbidden,
        doc::NotFound,
        doc::TooManyRequests,
    )
)]
pub(crate) async fn get_feed(
    State(state): State<IngestState>,
    ServiceCaller(service, rate, _): ServiceCaller,
    Path(date): Path<String>,
) -> (RateHeaders, Result<Json<SubscriptionsFeed>, Problem>) {
    (rate, feed(&state, &service, &date).await)
}

async fn feed(
    state: &IngestState,
    service: &Service,
    date: &str,
) -> Result<Json<SubscriptionsFeed>, Problem> {
    let day = day(date, OffsetDateTime::now_utc().date())?;
    let day = day
        .format(DATE)
        .map_err(|_| Problem::internal("cannot write a date"))?;
    let inbox = state
        .store
        .subscription_changes(&day, FEED_SCOPE_INBOX)
        .await?;
    let own = state.store.subscription_changes(&day, &service.id).await?;
    let mut changes: BTreeMap<String, bool> = inbox.into_iter().collect();
    changes.extend(own);
    if service.limits.mode == ServiceMode::Test {
        let allowed: HashSet<String> = service
            .payload
            .authorized_recipients
            .iter()
            .map(|fc| fc.feed_hash())
            .collect();
        changes.retain(|hash, _| allowed.contains(hash));
    }
    let (subscribed, unsubscribed): (Vec<_>, Vec<_>) =
        changes.into_iter().partition(|(_, subscribed)| *subscribed);
    Ok(Json(SubscriptionsFeed {
        date_utc: day,
        subscriptions: subscribed.into_iter().map(|(hash, _)| hash).collect(),
        unsubscriptions: unsubscribed.into_iter().map(|(hash, _)| hash).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn a_day_must_be_a_date_of_the_kept_past() {
        let today = date!(2026 - 11 - 30);
        assert_eq!(day("2026-11-30", today).ok(), Some(today));
        assert_eq!(day("2026-10-31", today).ok(), Some(date!(2026 - 10 - 31)));
        for malformed in [
            "2026-13-01",
            "30-11-2026",
            "2026-11-3",
            "",
            "2026-11-30T00:00",
        ] {
            let problem = day(malformed, today).expect_err(malformed);
            assert_eq!(problem.status, 400, "{malformed}");
            assert_eq!(problem.field.as_deref(), Some("date"));
        }
        assert_eq!(
            day("2026-12-01", today).map_err(|p| p.status).err(),
            Some(404)
        );
        assert_eq!(
            day("2026-10-30", today).map_err(|p| p.status).err(),
            Some(404)
        );
    }
}
