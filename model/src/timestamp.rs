//! Points in time as Postino keeps them: UTC, written in one text form (RFC 3339 with
//! milliseconds, `2026-11-29T10:00:00.000Z`) in records, rows and answers, and read back
//! strictly, so that a record with an unreadable time is refused where it is read instead
//! of counting as some other time.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The length of the text form, `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const TEXT_LEN: usize = 24;

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

    /// Reads an RFC 3339 date-time; one with an offset is moved to UTC. Postino's own text
    /// form, which every record and row holds, is read without the general parser: it is
    /// read several times per message.
    pub fn parse(text: &str) -> Result<Self, TimestampError> {
        Self::parse_own_form(text.as_bytes())
            .or_else(|| OffsetDateTime::parse(text, &Rfc3339).ok().map(Self::from))
            .ok_or_else(|| TimestampError(text.chars().take(64).collect()))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`, or `None` for anything else (a valid RFC 3339 text in
    /// another form included).
    fn parse_own_form(text: &[u8]) -> Option<Self> {
        let separators = [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ];
        if text.len() != TEXT_LEN || separators.iter().any(|&(at, c)| text[at] != c) {
            return None;
        }
        let number = |from: usize, to: usize| {
            text[from..to].iter().try_fold(0u16, |n, &b| {
                b.is_ascii_digit().then(|| n * 10 + u16::from(b - b'0'))
            })
        };
        let byte = |from: usize, to: usize| number(from, to).and_then(|n| u8::try_from(n).ok());
        let month = Month::try_from(byte(5, 7)?).ok()?;
        let date = Date::from_calendar_date(i32::from(number(0, 4)?), month, byte(8, 10)?).ok()?;
        let (hour, minute, second) = (byte(11, 13)?, byte(14, 16)?, byte(17, 19)?);
        let time = Time::from_hms_milli(hour, minute, second, number(20, 23)?).ok()?;
        Some(Self(PrimitiveDateTime::new(date, time).assume_utc()))
    }

    /// The text form, written without the general formatter; `None` for a year outside
    /// 0..=9999, which no clock gives.
    fn text(self) -> Option<[u8; TEXT_LEN]> {
        let (year, month, day) = self.0.to_calendar_date();
        let (hour, minute, second, milli) = self.0.to_hms_milli();
        let year = u16::try_from(year).ok().filter(|y| *y <= 9999)?;
        let mut out = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut n: u16| {
            for digit in out[at..at + width].iter_mut().rev() {
                *digit = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, u16::from(u8::from(month)));
        put(8, 2, u16::from(day));
        put(11, 2, u16::from(hour));
        put(14, 2, u16::from(minute));
        put(17, 2, u16::from(second));
        put(20, 3, milli);
        Some(out)
    }

    /// Its UTC day, `YYYY-MM-DD`: how the subscriptions feed names a day.
    pub fn utc_day(self) -> String {
        let mut text = self.to_string();
        text.truncate(10);
        text
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000_000) as i64
    }

    /// The moment `millis` after the Unix epoch (the epoch itself for one out of range).
    pub fn from_unix_millis(millis: i64) -> Self {
        let nanos = i128::from(millis) * 1_000_000;
        Self::from(
            OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        )
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
        match self.text() {
            // ASCII digits and separators, so always UTF-8.
            Some(text) => f.write_str(std::str::from_utf8(&text).map_err(|_| std::fmt::Error)?),
            None => write!(f, "{}", self.0.unix_timestamp()),
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
        match self.text().as_ref().map(|text| std::str::from_utf8(text)) {
            Some(Ok(text)) => serializer.serialize_str(text),
            _ => serializer.collect_str(self),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// Reads the text where it lies, without copying it.
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = Timestamp;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RFC 3339 date-time")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timestamp, E> {
                Timestamp::parse(text).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Text)
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
        let now = Timestamp::now();
        assert_eq!(
            Timestamp::parse(&now.to_string()),
            Ok(now),
            "kept to the millisecond"
        );
        let fine = Timestamp::parse("2026-11-29T10:00:00.123456789Z").expect("nanoseconds");
        assert_eq!(fine.to_string(), "2026-11-29T10:00:00.123Z");
        // The own form's quick reader checks as much as the general one.
        for bad in [
            "2026-02-30T10:00:00.000Z",
            "2026-11-29T24:00:00.000Z",
            "2026-11-29T10:60:00.000Z",
            "2026-00-29T10:00:00.000Z",
            "2026-11-29T10:00:00.00xZ",
            "+026-11-29T10:00:00.000Z",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad:?}");
        }
        for good in ["0001-01-01T00:00:00.000Z", "2024-02-29T23:59:59.999Z"] {
            assert_eq!(Timestamp::parse(good).expect(good).to_string(), good);
        }
    }
}
