//! Arbitrary bytes, in arbitrary chunks, into the NMEA parser and the fix
//! tracker: no panic, and every fix it reports is a position on Earth.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use lx_hal::gps::{Output, Tracker, parse_sentence};

fuzz_target!(|data: &[u8]| {
    let _ = parse_sentence(data);

    let mut tracker = Tracker::default();
    let t0 = Instant::now();
    // The first byte picks the chunk size, so the fuzzer explores splits.
    let (size, bytes) = data.split_first().map_or((1, data), |(s, rest)| (usize::from(*s).max(1), rest));
    for (i, chunk) in bytes.chunks(size).enumerate() {
        let now = t0 + Duration::from_millis(i as u64 * 37);
        tracker.feed(chunk, now);
        while let Some(output) = tracker.poll_output() {
            if let Output::Fix(fix) = output {
                assert!(fix.lat.abs() <= 90.0 && fix.lng.abs() <= 180.0);
                assert!(fix.accuracy_m.is_none_or(|a| a.is_finite() && a >= 0.0));
            }
        }
    }
    let _ = tracker.stats();
});
