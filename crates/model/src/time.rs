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
        let d = self.0;
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
            d.year(),
            u8::from(d.month()),
            d.day(),
            d.hour(),
            d.minute(),
            d.second(),
            d.microsecond()
        )
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
    fn text_order_follows_time_order() {
        let a = Timestamp::parse("2020-01-23T10:53:49.000001Z").map(|t| t.to_string());
        let b = Timestamp::parse("2020-01-23T10:53:49.1Z").map(|t| t.to_string());
        assert!(a < b);
    }
}
