//! When notifications may go: daily windows of local time (a campaign's send window, the
//! deployment's quiet hours), and a campaign's schedule, which gives each of its items the
//! moment it is due.

use std::fmt;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp as Instant, Zoned};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::timestamp::Timestamp;
use crate::ValidationError;

/// A stretch of every day, in local time of a time zone: `08:00-20:00`, or across midnight
/// `21:00-08:00`. Its start is inside, its end is not.
#[derive(Debug, Clone, PartialEq)]
pub struct DailyWindow {
    start: Time,
    end: Time,
    zone: TimeZone,
    zone_name: String,
}

impl DailyWindow {
    /// `"HH:MM-HH:MM"` in the IANA zone `zone` (e.g. `Europe/Rome`).
    pub fn parse(field: &str, hours: &str, zone: &str) -> Result<Self, ValidationError> {
        let (start, end) = hours.split_once('-').ok_or_else(|| {
            ValidationError::new(field, "must be two local times, as 08:00-20:00")
        })?;
        let time = |text: &str| {
            let text = text.trim();
            let valid = text.len() == 5 && text.as_bytes()[2] == b':';
            valid
                .then(|| Time::strptime("%H:%M", text).ok())
                .flatten()
                .ok_or_else(|| {
                    ValidationError::new(field, format!("{text:?} is not a local time as 08:00"))
                })
        };
        let (start, end) = (time(start)?, time(end)?);
        if start == end {
            return Err(ValidationError::new(field, "must not start where it ends"));
        }
        let zone_name = zone.trim().to_string();
        let zone = TimeZone::get(&zone_name).map_err(|_| {
            ValidationError::new(field, format!("{zone_name:?} is not an IANA time zone"))
        })?;
        Ok(Self {
            start,
            end,
            zone,
            zone_name,
        })
    }

    /// Whether `at` falls inside.
    pub fn contains(&self, at: Timestamp) -> bool {
        let time = self.local(at).time();
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }

    /// `at` if it is inside, else the next moment the window opens.
    pub fn next_open(&self, at: Timestamp) -> Timestamp {
        if self.contains(at) {
            return at;
        }
        let local = self.local(at);
        let today = local.date().to_zoned(self.zone.clone()).ok();
        // The start today, or else tomorrow (a time a DST change skips moves on).
        let opening = [0, 1]
            .into_iter()
            .filter_map(|days| {
                let day = today
                    .as_ref()?
                    .checked_add(jiff::Span::new().days(days))
                    .ok()?;
                day.date()
                    .at(self.start.hour(), self.start.minute(), 0, 0)
                    .to_zoned(self.zone.clone())
                    .ok()
            })
            .find(|start| start.timestamp() > local.timestamp());
        opening.map_or(at, |start| from_instant(start.timestamp()))
    }

    /// When the window, open from `at` (or its next opening), has been open for `open`:
    /// the time of a spread counts only while the window is open.
    pub fn advance(&self, at: Timestamp, open: SignedDuration) -> Timestamp {
        let mut now = self.next_open(at);
        let mut left = open;
        // A window is open at least a minute a day, and spreads are bounded (days), so this
        // ends; the bound only keeps a mistake from spinning.
        for _ in 0..10_000 {
            let close = self.next_close(now);
            let until_close = SignedDuration::from_secs(close.unix_seconds() - now.unix_seconds());
            if left < until_close {
                return add(now, left);
            }
            left -= until_close;
            now = self.next_open(close);
        }
        now
    }

    /// The next moment the window closes after `at` (for `at` inside it: when it ends).
    pub fn next_close(&self, at: Timestamp) -> Timestamp {
        let local = self.local(at);
        [0, 1]
            .into_iter()
            .filter_map(|days| {
                let day = local
                    .date()
                    .checked_add(jiff::Span::new().days(days))
                    .ok()?;
                day.at(self.end.hour(), self.end.minute(), 0, 0)
                    .to_zoned(self.zone.clone())
                    .ok()
            })
            .find(|end| end.timestamp() > local.timestamp())
            .map_or(at, |end| from_instant(end.timestamp()))
    }

    fn local(&self, at: Timestamp) -> Zoned {
        to_instant(at).to_zoned(self.zone.clone())
    }
}

impl fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{} {}",
            self.start.strftime("%H:%M"),
            self.end.strftime("%H:%M"),
            self.zone_name
        )
    }
}

fn to_instant(at: Timestamp) -> Instant {
    Instant::from_millisecond(at.unix_millis()).unwrap_or(Instant::UNIX_EPOCH)
}

fn from_instant(at: Instant) -> Timestamp {
    Timestamp::from_unix_millis(at.as_millisecond())
}

fn add(at: Timestamp, by: SignedDuration) -> Timestamp {
    Timestamp::from_unix_millis(at.unix_millis() + by.as_millis() as i64)
}

/// `id`'s place in a spread of `over` from `from`: ids that differ only in their low bits
/// (items of one call) land evenly apart.
pub fn spread(from: Timestamp, over: SignedDuration, id: ulid::Ulid) -> Timestamp {
    add(from, place(over, id))
}

fn place(over: SignedDuration, id: ulid::Ulid) -> SignedDuration {
    let total_ms = over.as_millis().max(1) as u128;
    // Multiplied by the golden ratio (a Weyl sequence), consecutive ids land evenly apart.
    let mixed = id
        .random()
        .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
        >> 64;
    SignedDuration::from_millis((mixed % total_ms) as i64)
}

/// The longest spread a campaign may ask for.
pub const MAX_SPREAD_HOURS: u32 = 168;

/// When a campaign's items go, as its sender asks (Postino's extension).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CampaignSchedule {
    /// Nothing goes before this moment (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub not_before: Option<Timestamp>,
    /// Items go only while this daily window is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<SendWindowPayload>,
    /// Items are spread evenly over this many hours (1 to 168) from `not_before` (or from
    /// when they are added), counting only the hours the window is open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread_hours: Option<u32>,
}

/// A send window as a sender writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindowPayload {
    /// Local time it opens, `HH:MM`.
    pub start: String,
    /// Local time it closes, `HH:MM` (earlier than `start`: across midnight).
    pub end: String,
    /// IANA time zone, e.g. `Europe/Rome`.
    pub time_zone: String,
}

impl CampaignSchedule {
    /// Checks it, naming the field that is wrong.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.send_window()?;
        if let Some(hours) = self.spread_hours {
            if !(1..=MAX_SPREAD_HOURS).contains(&hours) {
                return Err(ValidationError::new(
                    "schedule.spread_hours",
                    format!("must be 1 to {MAX_SPREAD_HOURS}"),
                ));
            }
        }
        Ok(())
    }

    fn send_window(&self) -> Result<Option<DailyWindow>, ValidationError> {
        self.window
            .as_ref()
            .map(|w| {
                DailyWindow::parse(
                    "schedule.window",
                    &format!("{}-{}", w.start, w.end),
                    &w.time_zone,
                )
            })
            .transpose()
    }

    /// Whether it delays anything at all.
    pub fn is_immediate(&self) -> bool {
        self.not_before.is_none() && self.window.is_none() && self.spread_hours.is_none()
    }

    /// When the item `id`, added at `added`, is due: from `not_before` (or `added`, the
    /// later), its share of the spread (its place derived from its id, so a retried call
    /// gives it the same), counting only open time of the window, and never outside it.
    pub fn due_at(&self, added: Timestamp, id: ulid::Ulid) -> Timestamp {
        let start = self
            .not_before
            .map_or(added, |not_before| not_before.max(added));
        let spread = self.spread_hours.map_or(SignedDuration::ZERO, |hours| {
            let total_ms = u128::from(hours) * 3_600_000;
            // Items of one call differ by their index in an id's low bits: multiplied by
            // the golden ratio (a Weyl sequence), consecutive ids land evenly apart.
            let mixed = id
                .random()
                .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                >> 64;
            let place = (mixed % total_ms) as i64;
            SignedDuration::from_millis(place)
        });
        // The window is checked when the schedule is taken; one unreadable here (never)
        // delays nothing beyond the spread.
        match self.send_window().ok().flatten() {
            Some(window) => window.advance(start, spread),
            None => add(start, spread),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        Timestamp::parse(text).expect("time")
    }

    fn rome(hours: &str) -> DailyWindow {
        DailyWindow::parse("w", hours, "Europe/Rome").expect("window")
    }

    #[test]
    fn a_window_contains_its_start_not_its_end_and_may_cross_midnight() {
        let day = rome("08:00-20:00");
        // 07:00Z is 08:00 in Rome in winter (UTC+1).
        assert!(day.contains(at("2026-12-01T07:00:00Z")));
        assert!(!day.contains(at("2026-12-01T06:59:59Z")));
        assert!(!day.contains(at("2026-12-01T19:00:00Z")));
        let night = rome("21:00-08:00");
        assert!(night.contains(at("2026-12-01T23:30:00Z")));
        assert!(night.contains(at("2026-12-01T06:00:00Z")));
        assert!(!night.contains(at("2026-12-01T12:00:00Z")));
        // Summer time: 08:00 in Rome is 06:00Z.
        assert!(day.contains(at("2026-07-01T06:00:00Z")));
    }

    #[test]
    fn the_next_opening_is_today_or_tomorrow_in_local_time() {
        let day = rome("08:00-20:00");
        assert_eq!(
            day.next_open(at("2026-12-01T05:00:00Z")),
            at("2026-12-01T07:00:00Z")
        );
        assert_eq!(
            day.next_open(at("2026-12-01T20:00:00Z")),
            at("2026-12-02T07:00:00Z")
        );
        let inside = at("2026-12-01T10:00:00Z");
        assert_eq!(day.next_open(inside), inside);
    }

    #[test]
    fn a_spread_counts_only_open_hours() {
        let day = rome("08:00-20:00");
        // Six open hours from 17:00 local: three today, three from 08:00 tomorrow.
        let from = at("2026-12-01T16:00:00Z");
        assert_eq!(
            day.advance(from, SignedDuration::from_hours(6)),
            at("2026-12-02T10:00:00Z")
        );
        // From outside the window, the spread starts at its opening.
        assert_eq!(
            day.advance(at("2026-12-01T02:00:00Z"), SignedDuration::from_hours(1)),
            at("2026-12-01T08:00:00Z")
        );
    }

    #[test]
    fn a_schedule_spreads_a_calls_items_evenly_and_the_same_way_twice() {
        let schedule = CampaignSchedule {
            not_before: Some(at("2026-12-01T08:00:00Z")),
            window: None,
            spread_hours: Some(10),
        };
        schedule.validate().expect("valid");
        let added = at("2026-11-30T12:00:00Z");
        let call = ulid::Ulid::new();
        let mut per_hour = [0u32; 10];
        for i in 0..10_000 {
            let due = schedule.due_at(added, crate::campaign::item_id(call, i));
            let hour = (due.unix_seconds() - at("2026-12-01T08:00:00Z").unix_seconds()) / 3600;
            per_hour[usize::try_from(hour).expect("within the spread")] += 1;
        }
        // 1000 an hour, give or take: items of one call take consecutive places.
        assert!(
            per_hour.iter().all(|&n| (900..=1100).contains(&n)),
            "{per_hour:?}"
        );
        let id = crate::campaign::item_id(call, 3);
        assert_eq!(schedule.due_at(added, id), schedule.due_at(added, id));
        // Added after `not_before`: from then.
        let late = at("2026-12-02T00:00:00Z");
        assert!(schedule.due_at(late, id) >= late);
        assert!(CampaignSchedule::default().is_immediate());
    }

    #[test]
    fn bad_windows_and_spreads_are_refused_by_field() {
        for (hours, zone) in [
            ("08:00", "Europe/Rome"),
            ("8-20", "Europe/Rome"),
            ("08:00-25:00", "Europe/Rome"),
            ("08:00-08:00", "Europe/Rome"),
            ("08:00-20:00", "Europe/Atlantis"),
            ("08:00-20:00", ""),
        ] {
            assert!(
                DailyWindow::parse("w", hours, zone).is_err(),
                "{hours} {zone}"
            );
        }
        let spread = |hours| CampaignSchedule {
            spread_hours: Some(hours),
            ..CampaignSchedule::default()
        };
        assert_eq!(
            spread(0).validate().unwrap_err().field,
            "schedule.spread_hours"
        );
        assert_eq!(
            spread(169).validate().unwrap_err().field,
            "schedule.spread_hours"
        );
        let window = CampaignSchedule {
            window: Some(SendWindowPayload {
                start: "08:00".into(),
                end: "20:00".into(),
                time_zone: "Mars/Olympus".into(),
            }),
            ..CampaignSchedule::default()
        };
        assert_eq!(window.validate().unwrap_err().field, "schedule.window");
        assert_eq!(rome("21:00-08:00").to_string(), "21:00-08:00 Europe/Rome");
    }
}
