//! Timestamps on the wire are RFC 3339 in UTC with milliseconds
//! (`2026-05-13T12:00:00.000Z`); inside the system they are Unix milliseconds.

use ::time::{OffsetDateTime, format_description::well_known::Rfc3339, macros::format_description};

/// Unix time in milliseconds.
pub type UnixMillis = i64;

/// Formats Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_millis(ms: UnixMillis) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    let at = OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".to_owned())
}

/// Parses an RFC 3339 timestamp into Unix milliseconds.
pub fn parse_millis(text: &str) -> Option<UnixMillis> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_in_utc() {
        assert_eq!(format_millis(1_778_673_720_123), "2026-05-13T12:02:00.123Z");
        assert_eq!(format_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn parse_reads_back_what_format_wrote() {
        for ms in [0, 1, 999, 1_778_673_720_123, 4_102_444_800_000] {
            assert_eq!(parse_millis(&format_millis(ms)), Some(ms));
        }
        assert_eq!(
            parse_millis("2026-05-13T14:02:00.123+02:00"),
            Some(1_778_673_720_123)
        );
        assert_eq!(parse_millis("yesterday"), None);
    }
}
