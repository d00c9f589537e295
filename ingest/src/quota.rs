//! Weekly quotas: a key of a service in test mode may make [`TEST_MODE_WEEKLY_QUOTA`]
//! requests per ISO week (UTC), as IO gives integrators under test; a service may also have
//! a `weekly_quota` of its own, for both keys together, in either mode.
//!
//! Every request counts, whatever it asks. The count is the store's ([`store::QuotaStore`]):
//! one conditional write per request, so it survives restarts and is exact across ingest
//! processes sharing the store. A service with no quota to keep asks the store nothing.
//! Over the quota: `429` with `Retry-After` to next Monday 00:00 UTC, when the count starts
//! again.

use axum::http::StatusCode;
use model::service::{KeySlot, Service, ServiceMode, TEST_MODE_WEEKLY_QUOTA};
use problem::Problem;
use time::{Duration, OffsetDateTime, Time};

use crate::IngestState;

/// The problem kind of a request over its weekly quota.
pub const QUOTA_EXCEEDED: &str = "weekly-quota-exceeded";

/// An ISO week: its name, and how long until the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Week {
    /// `2026-W49`: the ISO week-numbering year, then the week.
    pub name: String,
    /// Seconds until next Monday 00:00 UTC, at least 1.
    pub seconds_left: u64,
}

impl Week {
    /// The ISO week `now` is in.
    pub fn of(now: OffsetDateTime) -> Self {
        let now = now.to_offset(time::UtcOffset::UTC);
        let (year, week, weekday) = now.to_iso_week_date();
        let days_to_monday = 7 - i64::from(weekday.number_days_from_monday());
        let next_monday = (now.date() + Duration::days(days_to_monday))
            .with_time(Time::MIDNIGHT)
            .assume_utc();
        let left = (next_monday - now).whole_seconds().max(1);
        Self {
            name: format!("{year}-W{week:02}"),
            seconds_left: u64::try_from(left).unwrap_or(1),
        }
    }
}

/// The quotas this process has seen used up, so that each is logged once a week, not once
/// per refused request.
#[derive(Debug, Default)]
pub(crate) struct Refusing(std::sync::Mutex<std::collections::HashSet<String>>);

impl Refusing {
    /// Most remembered; beyond it the set starts over (a few more log lines, no more).
    const CAPACITY: usize = 10_000;

    fn first_time(&self, counter: &str, week: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= Self::CAPACITY {
            seen.clear();
        }
        seen.insert(format!("{counter}@{week}"))
    }
}

/// The quotas a request with `slot` of `service` takes from: (counter, limit, what it is).
fn quotas_of(service: &Service, slot: KeySlot) -> Vec<(String, u32, &'static str)> {
    let mut quotas = Vec::new();
    if service.limits.mode == ServiceMode::Test {
        let slot = match slot {
            KeySlot::Primary => "primary",
            KeySlot::Secondary => "secondary",
        };
        quotas.push((
            format!("test/{}/{slot}", service.id),
            TEST_MODE_WEEKLY_QUOTA,
            "a key of a service in test mode may make 1000 requests per ISO week",
        ));
    }
    if let Some(limit) = service.limits.weekly_quota {
        quotas.push((
            format!("service/{}", service.id),
            limit,
            "this service's weekly_quota is used up",
        ));
    }
    quotas
}

/// Takes `amount` requests from each quota of `service` for `slot`, all or none, or
/// refuses them with `429`.
pub(crate) async fn take(
    state: &IngestState,
    service: &Service,
    slot: KeySlot,
    amount: u32,
) -> Result<(), Problem> {
    let quotas = quotas_of(service, slot);
    if quotas.is_empty() {
        return Ok(());
    }
    let week = Week::of(OffsetDateTime::now_utc());
    for (counter, limit, rule) in quotas {
        if state
            .store
            .take_quota(&counter, &week.name, amount, limit)
            .await?
            .is_none()
        {
            let mut problem = Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                QUOTA_EXCEEDED,
                format!(
                    "{rule} ({limit} in {}); it starts again next Monday at 00:00 UTC",
                    week.name
                ),
            );
            problem.retry_after = Some(u32::try_from(week.seconds_left).unwrap_or(u32::MAX));
            if state.quotas_refusing.first_time(&counter, &week.name) {
                tracing::warn!(
                    service_id = %service.id,
                    week = %week.name,
                    limit,
                    "a service used its weekly quota: refusing its requests with 429 until Monday"
                );
            }
            return Err(problem);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_week_is_named_by_its_iso_year_and_ends_on_monday_at_midnight_utc() {
        // A Sunday evening: one hour left.
        let week = Week::of(datetime!(2026-11-29 23:00 UTC));
        assert_eq!(week.name, "2026-W48");
        assert_eq!(week.seconds_left, 3600);
        // Monday at midnight is the next week's first second: a whole week left.
        let week = Week::of(datetime!(2026-11-30 00:00 UTC));
        assert_eq!(week.name, "2026-W49");
        assert_eq!(week.seconds_left, 7 * 86_400);
        // Around a year's end the ISO year is not the calendar's.
        assert_eq!(Week::of(datetime!(2027-01-01 12:00 UTC)).name, "2026-W53");
        assert_eq!(Week::of(datetime!(2024-12-30 12:00 UTC)).name, "2025-W01");
        // An offset is read in UTC: 01:00 at +02:00 on Monday is still Sunday in UTC.
        let week = Week::of(datetime!(2026-11-30 01:00 +2));
        assert_eq!(week.name, "2026-W48");
        assert_eq!(week.seconds_left, 3600);
    }

    fn service(mode: ServiceMode, weekly_quota: Option<u32>) -> Service {
        let mut service = model::samples::service("s1");
        service.limits.mode = mode;
        service.limits.weekly_quota = weekly_quota;
        service
    }

    #[test]
    fn test_mode_counts_per_key_and_a_weekly_quota_per_service() {
        let counters = |s: &Service, slot| -> Vec<(String, u32)> {
            quotas_of(s, slot)
                .into_iter()
                .map(|(counter, limit, _)| (counter, limit))
                .collect()
        };
        assert!(counters(&service(ServiceMode::Production, None), KeySlot::Primary).is_empty());
        assert_eq!(
            counters(
                &service(ServiceMode::Production, Some(5)),
                KeySlot::Secondary
            ),
            vec![("service/s1".to_string(), 5)]
        );
        assert_eq!(
            counters(&service(ServiceMode::Test, None), KeySlot::Primary),
            vec![("test/s1/primary".to_string(), 1000)]
        );
        assert_eq!(
            counters(&service(ServiceMode::Test, Some(5)), KeySlot::Secondary),
            vec![
                ("test/s1/secondary".to_string(), 1000),
                ("service/s1".to_string(), 5)
            ]
        );
    }
}
