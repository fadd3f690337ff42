//! Helpers shared by the integration tests: where the gpsd logs are, how to
//! read gpsd's decoded output, and the `.expected` format derived from it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lx_hal::gps::{Output, Stats, Tracker};

/// This package's directory: cargo's, at run time, before the one compiled
/// in. Clones that share a target directory share test binaries, and cargo
/// does not rebuild one for a clone at another path, so the compiled-in
/// path can name another clone (or one since deleted).
pub(crate) fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

/// Positions agree to this many degrees (gpsd prints nine decimals).
pub(crate) const TOLERANCE_DEG: f64 = 1e-7;

/// The directory of gpsd's `test/daemon` logs: `$LX_GPSD_LOGS`, else
/// `<workspace>/.lx/fixtures/gpsd`. Fails (never skips) when missing.
pub(crate) fn gpsd_logs() -> PathBuf {
    let dir = std::env::var_os("LX_GPSD_LOGS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("../.lx/fixtures/gpsd"));
    assert!(
        dir.join("ublox-neo-m9n-nmea.log").is_file(),
        "gpsd's receiver logs are missing from {}: run `cargo xtask test` once \
         (it fetches Debian's gpsd source package and extracts test/daemon), \
         or point LX_GPSD_LOGS at a gpsd test/daemon directory",
        dir.display()
    );
    dir
}

/// The bytes of a gpsd log as a receiver would send them: gpsd's `#`
/// comment lines are not receiver output.
pub(crate) fn receiver_bytes(log: &Path) -> Vec<u8> {
    let raw = std::fs::read(log).unwrap_or_else(|e| panic!("{}: {e}", log.display()));
    let mut out = Vec::with_capacity(raw.len());
    for line in raw.split_inclusive(|&b| b == b'\n') {
        if line.first() != Some(&b'#') {
            out.extend_from_slice(line);
        }
    }
    out
}

/// What the tracker made of a whole log.
pub(crate) struct Tracked {
    /// The position of every fix reported, in order.
    pub(crate) positions: Vec<(f64, f64)>,
    pub(crate) last_utc_ms: Option<u64>,
    pub(crate) stats: Stats,
}

/// Feeds `bytes` in chunks of varying size (1 to 61 bytes), 10 ms apart.
pub(crate) fn track(bytes: &[u8]) -> Tracked {
    let mut tracker = Tracker::default();
    let t0 = Instant::now();
    let mut positions = Vec::new();
    let mut last_utc_ms = None;
    let mut rest = bytes;
    let mut step = 0u64;
    while !rest.is_empty() {
        let n = (1 + (step as usize * 7) % 61).min(rest.len());
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        tracker.feed(chunk, t0 + Duration::from_millis(10 * step));
        step += 1;
        while let Some(output) = tracker.poll_output() {
            if let Output::Fix(fix) = output {
                positions.push((fix.lat, fix.lng));
                last_utc_ms = fix.utc_ms.or(last_utc_ms);
            }
        }
    }
    Tracked {
        positions,
        last_utc_ms,
        stats: tracker.stats(),
    }
}

/// Drops consecutive repeats: the sequence of distinct positions,
/// independent of how often a decoder reports the same one.
pub(crate) fn distinct(positions: impl IntoIterator<Item = (f64, f64)>) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    for p in positions {
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    out
}

/// One TPV report of gpsd with a 2D or 3D fix.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GpsdFix {
    pub(crate) lat: f64,
    pub(crate) lon: f64,
    pub(crate) time: Option<String>,
}

/// gpsd's TPV reports with a 2D or 3D fix, from a `.chk` file (gpsd's
/// regression output: its JSON reports interleaved with the sentences).
pub(crate) fn gpsd_fixes(chk: &Path) -> Vec<GpsdFix> {
    let text = std::fs::read(chk).unwrap_or_else(|e| panic!("{}: {e}", chk.display()));
    String::from_utf8_lossy(&text)
        .lines()
        .filter(|line| line.starts_with('{'))
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["class"] == "TPV" && v["mode"].as_i64().unwrap_or(0) >= 2)
        .filter_map(|v| {
            Some(GpsdFix {
                lat: v["lat"].as_f64()?,
                lon: v["lon"].as_f64()?,
                time: v["time"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// What an `.expected` file holds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Expected {
    /// gpsd's time of its last fix, ISO 8601.
    pub(crate) last_utc: Option<String>,
    pub(crate) positions: Vec<(f64, f64)>,
}

/// The `.expected` text for a log, derived from gpsd's `.chk` alone.
pub(crate) fn expected_from_chk(log_name: &str, chk: &Path) -> String {
    let fixes = gpsd_fixes(chk);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# {log_name}: gpsd 3.22's decoding of test/daemon/{log_name} (its .chk file):\n\
         # the distinct positions (lat lon, degrees, as gpsd printed them) of its TPV\n\
         # reports with mode >= 2, consecutive repeats dropped, and the time of its\n\
         # last such report. Written by hal/tests/common::expected_from_chk."
    );
    if let Some(time) = fixes.iter().rev().find_map(|f| f.time.clone()) {
        let _ = writeln!(out, "last_utc {time}");
    }
    for (lat, lon) in distinct(fixes.iter().map(|f| (f.lat, f.lon))) {
        let _ = writeln!(out, "{lat:.9} {lon:.9}");
    }
    out
}

pub(crate) fn parse_expected(text: &str) -> Expected {
    let mut expected = Expected {
        last_utc: None,
        positions: Vec::new(),
    };
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        if let Some(time) = line.strip_prefix("last_utc ") {
            expected.last_utc = Some(time.to_owned());
            continue;
        }
        let mut it = line
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or_else(|e| panic!("{line}: {e}")));
        expected
            .positions
            .push((it.next().unwrap(), it.next().unwrap()));
    }
    expected
}

/// `2020-07-11T22:38:45.000Z` as Unix milliseconds.
pub(crate) fn iso_to_unix_ms(iso: &str) -> u64 {
    let num = |range: std::ops::Range<usize>| -> u32 {
        iso[range].parse().unwrap_or_else(|e| panic!("{iso}: {e}"))
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4) as i32, num(5..7), num(8..10)).unwrap();
    let time =
        chrono::NaiveTime::from_hms_milli_opt(num(11..13), num(14..16), num(17..19), num(20..23))
            .unwrap();
    u64::try_from(date.and_time(time).and_utc().timestamp_millis()).unwrap()
}

/// Index of the first position of `got` that is farther than `tolerance`
/// degrees from `want`'s, or of the first one missing on either side.
pub(crate) fn first_difference(
    got: &[(f64, f64)],
    want: &[(f64, f64)],
    tolerance: f64,
) -> Option<usize> {
    let far = |a: &(f64, f64), b: &(f64, f64)| {
        (a.0 - b.0).abs() > tolerance || (a.1 - b.1).abs() > tolerance
    };
    got.iter()
        .zip(want)
        .position(|(a, b)| far(a, b))
        .or_else(|| (got.len() != want.len()).then(|| got.len().min(want.len())))
}

pub(crate) fn data_dir() -> PathBuf {
    manifest_dir().join("tests/data")
}
