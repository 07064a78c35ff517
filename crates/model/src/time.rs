//! UTC timestamps, RFC 3339 on the wire.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A point in time, always UTC, microsecond precision, written as RFC 3339
/// (`2026-11-25T20:56:38.123456Z`). Parsing accepts any offset and converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, utoipa::ToSchema)]
#[schema(value_type = String, format = DateTime, example = "2026-11-25T20:56:38.123456Z")]
pub struct Timestamp(OffsetDateTime);

impl Timestamp {
    /// The current time, truncated to microseconds so it survives a round
    /// trip through text and through both databases unchanged.
    pub fn now() -> Timestamp {
        let now = OffsetDateTime::now_utc();
        let micros = now.microsecond();
        Timestamp(now.replace_microsecond(micros).unwrap_or(now))
    }

    /// Parses RFC 3339 text.
    pub fn parse(text: &str) -> Result<Timestamp, String> {
        OffsetDateTime::parse(text, &Rfc3339)
            .map(|t| Timestamp(t.to_offset(time::UtcOffset::UTC)))
            .map_err(|_| format!("'{text}' is not an RFC 3339 timestamp"))
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(&self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(&self) -> i64 {
        (self.0.unix_timestamp_nanos() / 1_000) as i64
    }

    /// From microseconds since the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Option<Timestamp> {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            .ok()
            .map(Timestamp)
    }

    /// The inner value.
    pub fn as_offset_date_time(&self) -> OffsetDateTime {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (year, month, day) = self.0.to_calendar_date();
        let (hour, minute, second, micros) = self.0.to_hms_micro();
        let Ok(year @ 0..=9999) = u32::try_from(year) else {
            return write!(
                f,
                "{year:04}-{:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{micros:06}Z",
                u8::from(month)
            );
        };
        // Every event and most rows carry timestamps: digits written in
        // place, not through the formatting machinery (a tenth of the cost).
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        for (at, width, value) in [
            (0, 4, year),
            (5, 2, u32::from(u8::from(month))),
            (8, 2, u32::from(day)),
            (11, 2, u32::from(hour)),
            (14, 2, u32::from(minute)),
            (17, 2, u32::from(second)),
            (20, 6, micros),
        ] {
            let mut value = value;
            for digit in out[at..at + width].iter_mut().rev() {
                *digit = b'0' + (value % 10) as u8;
                value /= 10;
            }
        }
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_through_text_in_utc() {
        let now = Timestamp::now();
        assert_eq!(Timestamp::parse(&now.to_string()), Ok(now));
        let shifted = Timestamp::parse("2020-01-23T12:53:49.131052+02:00").map(|t| t.to_string());
        assert_eq!(shifted, Ok("2020-01-23T10:53:49.131052Z".to_owned()));
    }

    #[test]
    fn text_is_rfc_3339_with_microseconds_in_any_year() {
        let t = |text: &str| Timestamp::parse(text).map(|t| t.to_string());
        assert_eq!(
            t("2026-11-30T09:05:07.000042Z"),
            Ok("2026-11-30T09:05:07.000042Z".to_owned())
        );
        assert_eq!(
            t("0999-01-02T03:04:05Z"),
            Ok("0999-01-02T03:04:05.000000Z".to_owned())
        );
        assert_eq!(
            t("9999-12-31T23:59:59.999999Z"),
            Ok("9999-12-31T23:59:59.999999Z".to_owned())
        );
        // Before year 0 (only reachable from a number): the general path,
        // as before.
        let early = Timestamp::from_unix_micros(-62_200_000_000_000_000).map(|t| t.to_string());
        assert_eq!(early.as_deref(), Some("-002-12-17T14:13:20.000000Z"));
    }

    #[test]
    fn text_order_follows_time_order() {
        let a = Timestamp::parse("2020-01-23T10:53:49.000001Z").map(|t| t.to_string());
        let b = Timestamp::parse("2020-01-23T10:53:49.1Z").map(|t| t.to_string());
        assert!(a < b);
    }
}
