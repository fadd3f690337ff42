//! Formats GGA, RMC and GST sentences for a simulated receiver.
//!
//! Contract: every sentence is `$…*HH\r\n` with a correct checksum and fits
//! the 102-character limit of the `nmea` crate. Latitude and longitude carry
//! seven decimals of minutes (≈2e-9°), so a parser reads back the position
//! to well within 1e-7°; times carry milliseconds.

use std::fmt::Write as _;

use chrono::{DateTime, Datelike};

use crate::gps::MPS_PER_KNOT;

/// One epoch of a simulated receiver.
#[derive(Debug, Clone, PartialEq)]
pub struct Epoch {
    /// UTC time of the fix, Unix milliseconds.
    pub utc_ms: u64,
    pub lat: f64,
    pub lng: f64,
    pub altitude_m: f64,
    pub speed_mps: f64,
    pub course_deg: f64,
    pub satellites: u8,
    pub hdop: f32,
    /// Horizontal 1-sigma accuracy the GST reports (split evenly on both axes).
    pub accuracy_m: f64,
    /// Two-letter talker, `GP` or `GN` typically.
    pub talker: &'static str,
}

/// XOR of the bytes between `$` and `*`.
pub fn checksum(body: &str) -> u8 {
    body.bytes().fold(0, |acc, b| acc ^ b)
}

/// `$body*HH\r\n`.
pub fn frame(body: &str) -> String {
    format!("${body}*{:02X}\r\n", checksum(body))
}

/// GGA, RMC and GST for `epoch`, in the order a receiver sends them.
pub fn epoch_sentences(epoch: &Epoch) -> String {
    let mut out = gga(epoch);
    out.push_str(&rmc(epoch));
    out.push_str(&gst(epoch));
    out
}

pub fn gga(e: &Epoch) -> String {
    frame(&format!(
        "{}GGA,{},{},1,{:02},{:.2},{:.1},M,0.0,M,,",
        e.talker,
        hhmmss(e.utc_ms),
        lat_lng(e.lat, e.lng),
        e.satellites,
        e.hdop,
        e.altitude_m,
    ))
}

pub fn rmc(e: &Epoch) -> String {
    frame(&format!(
        "{}RMC,{},A,{},{:.3},{:.2},{},,,A",
        e.talker,
        hhmmss(e.utc_ms),
        lat_lng(e.lat, e.lng),
        e.speed_mps / MPS_PER_KNOT,
        e.course_deg,
        ddmmyy(e.utc_ms),
    ))
}

pub fn gst(e: &Epoch) -> String {
    let axis = e.accuracy_m / std::f64::consts::SQRT_2;
    frame(&format!(
        "{}GST,{},{:.3},{:.3},{:.3},0.0,{:.3},{:.3},{:.3}",
        e.talker,
        hhmmss(e.utc_ms),
        axis,
        axis,
        axis,
        axis,
        axis,
        2.0 * axis,
    ))
}

/// `ddmm.mmmmmmm,N,dddmm.mmmmmmm,E`, rounded once in integer units of 1e-7
/// minute so that 59.99999995 minutes carries into the degree.
fn lat_lng(lat: f64, lng: f64) -> String {
    let mut out = String::with_capacity(32);
    angle(&mut out, lat, 2, if lat < 0.0 { 'S' } else { 'N' });
    out.push(',');
    angle(&mut out, lng, 3, if lng < 0.0 { 'W' } else { 'E' });
    out
}

fn angle(out: &mut String, degrees: f64, width: usize, hemisphere: char) {
    const UNITS_PER_MINUTE: u64 = 10_000_000;
    const UNITS_PER_DEGREE: u64 = 60 * UNITS_PER_MINUTE;
    let units = (degrees.abs() * UNITS_PER_DEGREE as f64).round() as u64;
    let deg = units / UNITS_PER_DEGREE;
    let rest = units % UNITS_PER_DEGREE;
    let _ = write!(
        out,
        "{deg:0width$}{:02}.{:07},{hemisphere}",
        rest / UNITS_PER_MINUTE,
        rest % UNITS_PER_MINUTE,
    );
}

fn hhmmss(utc_ms: u64) -> String {
    let ms_of_day = utc_ms % 86_400_000;
    let secs = ms_of_day / 1000;
    format!(
        "{:02}{:02}{:02}.{:03}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        ms_of_day % 1000
    )
}

fn ddmmyy(utc_ms: u64) -> String {
    let date = i64::try_from(utc_ms)
        .ok()
        .and_then(DateTime::from_timestamp_millis)
        .unwrap_or_default();
    format!(
        "{:02}{:02}{:02}",
        date.day(),
        date.month(),
        date.year().rem_euclid(100)
    )
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use proptest::prelude::*;

    use super::*;
    use crate::gps::Tracker;

    fn build_epoch() -> Epoch {
        Epoch {
            utc_ms: 1_700_000_000_123,
            lat: 47.366_123_456_7,
            lng: -8.541_987_654_3,
            altitude_m: 410.5,
            speed_mps: 12.0,
            course_deg: 271.5,
            satellites: 11,
            hdop: 0.8,
            accuracy_m: 2.5,
            talker: "GN",
        }
    }

    #[test]
    fn the_checksum_is_the_xor_of_the_body() {
        assert_eq!(
            frame("GPGLL,4916.45,N,12311.12,W,225444,A"),
            "$GPGLL,4916.45,N,12311.12,W,225444,A*31\r\n"
        );
    }

    #[test]
    fn sentences_carry_time_date_and_hemispheres() {
        let e = build_epoch();
        let gga = gga(&e);
        assert!(
            gga.starts_with("$GNGGA,221320.123,4721.9674074,N,00832.5192593,W,1,11,0.80,410.5,M"),
            "{gga}"
        );
        assert!(rmc(&e).contains(",141123,"), "{}", rmc(&e));
    }

    #[test]
    fn minutes_that_round_up_carry_into_the_degree() {
        let mut out = String::new();
        angle(&mut out, 10.999_999_999_9, 2, 'N');
        assert_eq!(out, "1100.0000000,N");
    }

    #[test]
    fn every_sentence_fits_the_parser_length_limit() {
        let mut e = build_epoch();
        e.lat = -89.999_999_9;
        e.lng = -179.999_999_9;
        e.altitude_m = -12_345.6;
        e.speed_mps = 999.0;
        for line in epoch_sentences(&e).lines() {
            assert!(line.len() <= 102, "{line}");
        }
    }

    proptest! {
        #[test]
        fn generated_sentences_parse_back_to_the_same_position(
            lat in -89.999_999f64..89.999_999,
            lng in -179.999_999f64..179.999_999,
            // RMC's two-digit year reads 83–99 as 19xx: stay within 2000–2082.
            utc_ms in 946_684_800_000u64..3_565_987_200_000,
            speed_mps in 0.0f64..300.0,
            talker in prop_oneof![Just("GP"), Just("GN")],
        ) {
            let epoch = Epoch { lat, lng, utc_ms, speed_mps, talker, ..build_epoch() };
            let mut tracker = Tracker::default();
            tracker.feed(epoch_sentences(&epoch).as_bytes(), Instant::now());
            let stats = tracker.stats();
            prop_assert_eq!(stats.sentences_ok, 3, "{:?}", stats);
            let fix = tracker.fix().unwrap();
            prop_assert!((fix.lat - lat).abs() < 1e-7, "lat {} vs {}", fix.lat, lat);
            prop_assert!((fix.lng - lng).abs() < 1e-7, "lng {} vs {}", fix.lng, lng);
            prop_assert_eq!(fix.utc_ms, Some(utc_ms));
            prop_assert!((fix.speed_mps.unwrap() - speed_mps).abs() < 0.001);
            prop_assert!((fix.accuracy_m.unwrap() - epoch.accuracy_m).abs() < 0.002);
        }
    }
}
