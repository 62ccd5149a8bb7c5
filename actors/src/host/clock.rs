//! Timestamps as voltd writes them everywhere (log records, metrics,
//! status, explorer entries, credentials): RFC 3339 UTC with millisecond
//! precision, exactly as JavaScript's `Date.prototype.toISOString()` prints
//! them (`2026-11-23T10:00:00.123Z`) — what the VOLT server and its UI get
//! from the reference daemon.

use time::{OffsetDateTime, UtcOffset};

/// `at` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (converted to UTC).
pub fn iso_timestamp(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

/// The current time (see [`iso_timestamp`]).
pub fn now_iso() -> String {
    iso_timestamp(OffsetDateTime::now_utc())
}

/// A file time (see [`iso_timestamp`]).
pub fn system_time_iso(t: std::time::SystemTime) -> String {
    iso_timestamp(t.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::format_description::well_known::Rfc3339;
    use time::macros::datetime;

    #[test]
    fn timestamps_look_like_javascript_to_iso_string() {
        assert_eq!(
            iso_timestamp(datetime!(2026-11-23 10:00:00.123_456 UTC)),
            "2026-11-23T10:00:00.123Z"
        );
        assert_eq!(
            iso_timestamp(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02T03:04:05.000Z"
        );
        assert_eq!(
            iso_timestamp(datetime!(2026-01-01 01:30:00.999 +02:00)),
            "2025-12-31T23:30:00.999Z"
        );
        let now = now_iso();
        assert!(OffsetDateTime::parse(&now, &Rfc3339).is_ok(), "{now}");
        let epoch = system_time_iso(std::time::UNIX_EPOCH);
        assert_eq!(epoch, "1970-01-01T00:00:00.000Z");
    }
}
