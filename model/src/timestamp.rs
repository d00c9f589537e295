//! Points in time as Postino keeps them: UTC, written in one text form (RFC 3339 with
//! milliseconds, `2026-11-29T10:00:00.000Z`) in records, rows and answers, and read back
//! strictly, so that a record with an unreadable time is refused where it is read instead
//! of counting as some other time.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// A point in time, in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// Text that is not an RFC 3339 date-time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 date-time (e.g. 2026-11-29T10:00:00.000Z)")]
pub struct TimestampError(String);

impl Timestamp {
    pub fn now() -> Self {
        Self::from(OffsetDateTime::now_utc())
    }

    /// Reads an RFC 3339 date-time; one with an offset is moved to UTC.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(Self::from)
            .map_err(|_| TimestampError(text.chars().take(64).collect()))
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    pub fn as_offset_date_time(self) -> OffsetDateTime {
        self.0
    }
}

/// Kept to the millisecond, as written, so that a timestamp read back equals the one written.
impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Self {
        let t = t.to_offset(UtcOffset::UTC);
        let millis = t.millisecond();
        Self(t.replace_millisecond(millis).unwrap_or(t))
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fmt = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        match self.0.format(&fmt) {
            Ok(text) => f.write_str(&text),
            // Only a year outside 0..=9999 cannot be written so; no clock gives one.
            Err(_) => write!(f, "{}", self.0.unix_timestamp()),
        }
    }
}

impl std::str::FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(text: &str) -> Result<Self, TimestampError> {
        Self::parse(text)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_out_and_a_strict_read_in() {
        let t = Timestamp::parse("2026-11-29T11:00:00.5+01:00").expect("RFC 3339");
        assert_eq!(t.to_string(), "2026-11-29T10:00:00.500Z");
        assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
        assert_eq!(t.unix_seconds(), 1_795_946_400);
        let json = serde_json::to_string(&t).expect("serialises");
        assert_eq!(json, "\"2026-11-29T10:00:00.500Z\"");
        assert_eq!(
            serde_json::from_str::<Timestamp>(&json).expect("reads back"),
            t
        );
        for bad in [
            "",
            "yesterday",
            "2026-11-29",
            "2026-13-01T00:00:00Z",
            "1795946400",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?}");
            assert!(
                serde_json::from_value::<Timestamp>(bad.into()).is_err(),
                "{bad:?}"
            );
        }
        assert!(
            serde_json::from_str::<Timestamp>("1795946400").is_err(),
            "a number"
        );
    }
}
