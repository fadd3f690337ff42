//! One NMEA line to one typed [`Sentence`], through the `nmea` crate.
//!
//! Contract: [`parse_sentence`] takes a line without its terminator, checks
//! the `$…*HH` framing and the checksum itself (so a checksum error is told
//! apart from a truncated line), keeps only the talkers and sentence types
//! the tracker uses, and hands the rest to `nmea::parse_str`. Values out of
//! their physical range (latitude beyond ±90°, NaN, negative DOP) are
//! rejected as [`SentenceError::Unparsed`]. Never panics.

use chrono::{NaiveDate, NaiveTime};
use nmea::ParseResult;
use nmea::sentences::gsa::GsaMode2;
use nmea::sentences::rmc::RmcStatusOfFix;
use nmea::sentences::{FaaMode, FixType};

use crate::error::SentenceError;
use crate::gps::Quality;

/// Knots to metres per second.
pub(crate) const MPS_PER_KNOT: f64 = 1852.0 / 3600.0;

/// Talkers whose sentences the tracker reads: GPS, any-GNSS, GLONASS,
/// Galileo, and BeiDou under both its NMEA 4.10 (`BD`) and 4.11 (`GB`) ids.
pub const TALKERS: [&str; 6] = ["GP", "GN", "GL", "GA", "BD", "GB"];

/// Sentence types the tracker reads.
pub const SENTENCE_TYPES: [&str; 5] = ["GGA", "RMC", "GSA", "GST", "VTG"];

/// A sentence the tracker uses, reduced to what it needs.
#[derive(Debug, Clone, PartialEq)]
pub enum Sentence {
    /// Fix data: position, quality, satellites, HDOP, altitude.
    Gga {
        time: Option<NaiveTime>,
        quality: Quality,
        position: Option<(f64, f64)>,
        altitude_m: Option<f64>,
        satellites: Option<u8>,
        hdop: Option<f32>,
    },
    /// Recommended minimum: position, validity, date, speed, course.
    Rmc {
        time: Option<NaiveTime>,
        date: Option<NaiveDate>,
        /// `NoFix` when the receiver marks the data void.
        quality: Quality,
        position: Option<(f64, f64)>,
        speed_mps: Option<f64>,
        course_deg: Option<f64>,
    },
    /// DOP and active satellites.
    Gsa {
        /// Mode 2 (2D) or 3 (3D), not 1 (no fix).
        has_fix: bool,
        hdop: Option<f32>,
    },
    /// Pseudorange error statistics; `accuracy_m` is √(σlat² + σlng²).
    Gst {
        time: Option<NaiveTime>,
        accuracy_m: Option<f64>,
    },
    /// Course and speed over ground.
    Vtg {
        speed_mps: Option<f64>,
        course_deg: Option<f64>,
    },
}

/// Parses one line (`$` up to, not including, CR/LF).
pub fn parse_sentence(line: &[u8]) -> Result<Sentence, SentenceError<'_>> {
    let text = framed_text(line).ok_or(SentenceError::Malformed(line))?;
    let star = text.len() - 3;
    let body = &text.as_bytes()[1..star];
    let found =
        u8::from_str_radix(&text[star + 1..], 16).map_err(|_| SentenceError::Malformed(line))?;
    let computed = body.iter().fold(0u8, |acc, b| acc ^ b);
    if computed != found {
        return Err(SentenceError::Checksum {
            sentence: text,
            computed,
            found,
        });
    }
    let used = body.len() >= 6
        && body[5] == b','
        && TALKERS.iter().any(|t| t.as_bytes() == &body[..2])
        && SENTENCE_TYPES.iter().any(|t| t.as_bytes() == &body[2..5]);
    if !used {
        return Err(SentenceError::Ignored { sentence: text });
    }
    let unparsed = |reason: String| SentenceError::Unparsed {
        sentence: text,
        reason,
    };
    let parsed = nmea::parse_str(text).map_err(|e| unparsed(e.to_string()))?;
    convert(parsed).map_err(|reason| unparsed(reason.to_string()))
}

/// `text` when `line` is printable ASCII shaped `$…*HH` with at least one
/// body byte and nothing after the two checksum digits.
fn framed_text(line: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(line).ok()?;
    let printable = text.bytes().all(|b| (0x20..=0x7e).contains(&b));
    let shaped = text.len() >= 5
        && text.starts_with('$')
        && text.find('*') == Some(text.len() - 3)
        && text.as_bytes()[text.len() - 2..]
            .iter()
            .all(u8::is_ascii_hexdigit);
    (printable && shaped).then_some(text)
}

fn convert(parsed: ParseResult) -> Result<Sentence, &'static str> {
    match parsed {
        ParseResult::GGA(gga) => Ok(Sentence::Gga {
            time: gga.fix_time,
            quality: gga.fix_type.map_or(Quality::NoFix, Quality::from),
            position: position(gga.latitude, gga.longitude)?,
            altitude_m: finite(gga.altitude.map(f64::from), "altitude")?,
            satellites: gga
                .fix_satellites
                .map(|n| u8::try_from(n).unwrap_or(u8::MAX)),
            hdop: dop(gga.hdop)?,
        }),
        ParseResult::RMC(rmc) => {
            let quality = match (rmc.status_of_fix, rmc.faa_mode) {
                (RmcStatusOfFix::Invalid, _) => Quality::NoFix,
                (_, Some(mode)) => Quality::from(FixType::from(mode)),
                (RmcStatusOfFix::Differential, None) => Quality::Dgps,
                (RmcStatusOfFix::Autonomous, None) => Quality::Gps,
            };
            // FAA modes that carry no position although the status says A.
            let quality = match rmc.faa_mode {
                Some(FaaMode::DataNotValid | FaaMode::Caution | FaaMode::Unsafe) => Quality::NoFix,
                _ => quality,
            };
            Ok(Sentence::Rmc {
                time: rmc.fix_time,
                date: rmc.fix_date,
                quality,
                position: position(rmc.lat, rmc.lon)?,
                speed_mps: non_negative(rmc.speed_over_ground, "speed")?
                    .map(|kn| kn * MPS_PER_KNOT),
                course_deg: finite(rmc.true_course.map(f64::from), "course")?,
            })
        }
        ParseResult::GSA(gsa) => Ok(Sentence::Gsa {
            has_fix: gsa.mode2 != GsaMode2::NoFix,
            hdop: dop(gsa.hdop)?,
        }),
        ParseResult::GST(gst) => {
            let lat = non_negative(gst.lat_sd, "latitude sigma")?;
            let lng = non_negative(gst.long_sd, "longitude sigma")?;
            Ok(Sentence::Gst {
                time: gst.time,
                accuracy_m: lat.zip(lng).map(|(a, b)| a.hypot(b)),
            })
        }
        ParseResult::VTG(vtg) => Ok(Sentence::Vtg {
            speed_mps: non_negative(vtg.speed_over_ground, "speed")?.map(|kn| kn * MPS_PER_KNOT),
            course_deg: finite(vtg.true_course.map(f64::from), "course")?,
        }),
        _ => Err("sentence type not handled"),
    }
}

fn position(lat: Option<f64>, lng: Option<f64>) -> Result<Option<(f64, f64)>, &'static str> {
    match (lat, lng) {
        (Some(lat), Some(lng)) => {
            if !(lat.is_finite() && (-90.0..=90.0).contains(&lat)) {
                return Err("latitude out of range");
            }
            if !(lng.is_finite() && (-180.0..=180.0).contains(&lng)) {
                return Err("longitude out of range");
            }
            Ok(Some((lat, lng)))
        }
        _ => Ok(None),
    }
}

fn finite(value: Option<f64>, what: &'static str) -> Result<Option<f64>, &'static str> {
    match value {
        Some(v) if !v.is_finite() => Err(what),
        _ => Ok(value),
    }
}

fn non_negative(value: Option<f32>, what: &'static str) -> Result<Option<f64>, &'static str> {
    match value.map(f64::from) {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err(what),
        v => Ok(v),
    }
}

fn dop(value: Option<f32>) -> Result<Option<f32>, &'static str> {
    match value {
        Some(v) if !(v.is_finite() && v >= 0.0) => Err("dop out of range"),
        _ => Ok(value),
    }
}

impl From<FixType> for Quality {
    fn from(fix: FixType) -> Self {
        match fix {
            FixType::Invalid => Quality::NoFix,
            FixType::Gps => Quality::Gps,
            FixType::DGps => Quality::Dgps,
            FixType::Pps => Quality::Pps,
            FixType::Rtk => Quality::Rtk,
            FixType::FloatRtk => Quality::FloatRtk,
            FixType::Estimated => Quality::Estimated,
            FixType::Manual => Quality::Manual,
            FixType::Simulation => Quality::Simulation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GGA: &[u8] = b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*76";

    #[test]
    fn a_gga_sentence_yields_position_quality_and_dop() {
        let Ok(Sentence::Gga {
            position: Some((lat, lng)),
            quality,
            satellites,
            hdop,
            altitude_m,
            time,
        }) = parse_sentence(GGA)
        else {
            panic!("not a GGA: {:?}", parse_sentence(GGA));
        };
        assert!((lat - (53.0 + 21.6802 / 60.0)).abs() < 1e-12);
        assert!((lng + (6.0 + 30.3372 / 60.0)).abs() < 1e-12);
        assert_eq!(quality, Quality::Gps);
        assert_eq!(satellites, Some(8));
        assert_eq!(hdop, Some(1.03));
        assert_eq!(altitude_m.map(|a| (a * 10.0).round()), Some(617.0));
        assert_eq!(time, NaiveTime::from_hms_opt(9, 27, 50));
    }

    #[test]
    fn a_wrong_checksum_is_a_checksum_error_not_a_parse_error() {
        let line = b"$GPGGA,092750.000,5321.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,*77";
        assert_eq!(
            parse_sentence(line),
            Err(SentenceError::Checksum {
                sentence: std::str::from_utf8(line).unwrap(),
                computed: 0x76,
                found: 0x77,
            })
        );
    }

    #[test]
    fn a_line_without_its_checksum_is_malformed() {
        let line = b"$GPRMC,000346.03,A,4808";
        assert_eq!(parse_sentence(line), Err(SentenceError::Malformed(line)));
        assert_eq!(
            parse_sentence(b"$*00"),
            Err(SentenceError::Malformed(b"$*00"))
        );
        assert_eq!(parse_sentence(b""), Err(SentenceError::Malformed(b"")));
    }

    #[test]
    fn junk_after_the_checksum_makes_the_line_malformed() {
        let line = b"$GPGSA,A,1,,,,,,,,,,,,,,,*1E0,*4E";
        assert_eq!(parse_sentence(line), Err(SentenceError::Malformed(line)));
    }

    #[test]
    fn other_talkers_and_types_are_ignored() {
        let gsv = b"$GPGSV,3,1,12,20,76,058,40,11,73,252,,06,41,274,,14,41,185,*7D";
        assert!(matches!(
            parse_sentence(gsv),
            Err(SentenceError::Ignored { .. })
        ));
        let pubx = b"$PUBX,00*33";
        assert!(matches!(
            parse_sentence(pubx),
            Err(SentenceError::Ignored { .. })
        ));
    }

    #[test]
    fn a_void_rmc_has_no_fix_quality() {
        let line = b"$GPRMC,235948.00,V,0000.0000,N,00000.0000,E,,,161206,,,N*45";
        let Ok(Sentence::Rmc { quality, date, .. }) = parse_sentence(line) else {
            panic!("{:?}", parse_sentence(line));
        };
        assert_eq!(quality, Quality::NoFix);
        assert_eq!(date, NaiveDate::from_ymd_opt(2006, 12, 16));
    }

    #[test]
    fn rmc_speed_is_converted_from_knots() {
        let line = b"$GNRMC,223745.00,A,3806.62964,N,12237.61382,W,10.0,45.5,110720,,,D,V*21";
        let Ok(Sentence::Rmc {
            speed_mps,
            course_deg,
            quality,
            ..
        }) = parse_sentence(line)
        else {
            panic!("{:?}", parse_sentence(line));
        };
        assert!((speed_mps.unwrap() - 5.144_444).abs() < 1e-5);
        assert_eq!(course_deg, Some(45.5));
        assert_eq!(quality, Quality::Dgps);
    }

    #[test]
    fn gst_accuracy_combines_both_axes() {
        let line = b"$GPGST,172814.0,0.006,0.023,0.020,273.6,3.0,4.0,0.031*6E";
        assert_eq!(
            parse_sentence(line),
            Ok(Sentence::Gst {
                time: NaiveTime::from_hms_opt(17, 28, 14),
                accuracy_m: Some(5.0),
            })
        );
    }

    #[test]
    fn a_latitude_beyond_the_pole_is_unparsed() {
        let body = "GPGGA,092750.000,9921.6802,N,00630.3372,W,1,8,1.03,61.7,M,55.2,M,,";
        let line = format!("${body}*{:02X}", body.bytes().fold(0, |a, b| a ^ b));
        assert!(matches!(
            parse_sentence(line.as_bytes()),
            Err(SentenceError::Unparsed { .. })
        ));
    }
}
