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

/// Reads `YYYY-MM-DDTHH:MM:SS.mmmZ`, exactly what [`format_millis`] writes
/// for years 1970 to 9999, without a general RFC 3339 parser: every signed
/// sample's capture time passes here on the server's ingest path. `None`
/// for anything else, which [`parse_millis`] may still read.
pub fn parse_canonical_millis(text: &str) -> Option<UnixMillis> {
    let b = text.as_bytes();
    if b.len() != 24
        || [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'.'),
            (23, b'Z'),
        ]
        .iter()
        .any(|&(i, c)| b[i] != c)
    {
        return None;
    }
    let number = |from: usize, to: usize| -> Option<i64> {
        b[from..to].iter().try_fold(0i64, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (number(0, 4)?, number(5, 7)?, number(8, 10)?);
    let (hour, minute, second, milli) = (
        number(11, 13)?,
        number(14, 16)?,
        number(17, 19)?,
        number(20, 23)?,
    );
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date, counted in eras
    // of 400 years from March (so that the leap day ends a year).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + milli)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_canonical_reader_reads_what_format_wrote(ms in 0i64..253_402_300_800_000) {
            prop_assert_eq!(parse_canonical_millis(&format_millis(ms)), Some(ms));
        }

        #[test]
        fn the_canonical_reader_agrees_with_the_general_one(
            year in 1960u32..2500, month in 0u32..14, day in 0u32..33,
            hour in 0u32..26, minute in 0u32..62, second in 0u32..62, milli in 0u32..1000,
        ) {
            let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z");
            let general = parse_millis(&text).filter(|&ms| ms >= 0 && format_millis(ms) == text);
            prop_assert_eq!(parse_canonical_millis(&text), general, "{}", text);
        }
    }

    #[test]
    fn the_canonical_reader_refuses_other_shapes() {
        for text in [
            "2026-05-13T12:02:00.123+00:00",
            "2026-05-13T12:02:00Z",
            "2026-05-13 12:02:00.123Z",
            "2026-05-13T12:02:00.12aZ",
            "2026-02-29T00:00:00.000Z",
            "2026-05-13T12:02:60.000Z",
            "+026-05-13T12:02:00.123Z",
        ] {
            assert_eq!(parse_canonical_millis(text), None, "{text}");
        }
        assert_eq!(
            parse_canonical_millis("2024-02-29T00:00:00.000Z"),
            parse_millis("2024-02-29T00:00:00.000Z")
        );
    }

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
