//! Wall-clock timestamps as the reference server writes them: ISO 8601 in
//! UTC with milliseconds (`2026-11-23T10:00:00.000Z`, what JavaScript's
//! `Date.prototype.toISOString` produces).
//!
//! Timeouts (heartbeat, delete, update) are measured with
//! `tokio::time::Instant` instead, so paused-time tests work; these wall-clock
//! values are only what the records and DTOs show.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Milliseconds since the Unix epoch, shown as an ISO string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The current wall-clock time, truncated to milliseconds.
    pub fn now() -> Self {
        let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
        Timestamp(i64::try_from(nanos / 1_000_000).unwrap_or(i64::MAX))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_millis(self) -> i64 {
        self.0
    }

    /// Parses any RFC 3339 time.
    pub fn parse(s: &str) -> Result<Self, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(Timestamp(
            i64::try_from(t.unix_timestamp_nanos() / 1_000_000).map_err(|e| e.to_string())?,
        ))
    }

    /// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn to_iso(self) -> String {
        let fmt = format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000)
            .ok()
            .and_then(|t| t.format(&fmt).ok())
            // Only reachable for years beyond 9999; never for `now()`.
            .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_iso())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_iso())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trip_with_milliseconds() {
        let t = Timestamp::parse("2026-11-23T10:00:00.123Z").unwrap();
        assert_eq!(t.to_iso(), "2026-11-23T10:00:00.123Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2026-11-23T10:00:00.123Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
    }

    #[test]
    fn now_is_recent_and_ordered() {
        let a = Timestamp::now();
        let b = Timestamp::now();
        assert!(b >= a);
        assert!(a.unix_millis() > 1_700_000_000_000);
        assert!(a.to_iso().ends_with('Z'));
    }

    #[test]
    fn offsets_are_normalised_to_utc() {
        let t = Timestamp::parse("2026-11-23T12:00:00+02:00").unwrap();
        assert_eq!(t.to_iso(), "2026-11-23T10:00:00.000Z");
        assert!(Timestamp::parse("yesterday").is_err());
    }
}
