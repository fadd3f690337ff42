//! What the meter is shown: the positions a session's supplier proved, after
//! the no-backdating rule ([`lx_protocol::evidence`], shared with anyone
//! checking a proof bundle). Pure: no clock, no store.
//!
//! - A tier-0 workspace's location heartbeats are stamped by the server when
//!   received, so they cannot be late: each is a fix captured at its
//!   reception.
//! - The output keeps the input's order (the store hands both sorted by
//!   capture or reception time, which is what the meter needs).

pub use lx_protocol::evidence::{admissible, outages};
use lx_protocol::meter::Fix;

use crate::store::{LocationFix, Outage, StoredSample};

/// Samples one session may hold: two a second of its longest run, and ten
/// minutes' worth more for the time before LIVE and the settle delay. An
/// honest device sends one a second; a session is never paid for more.
pub fn max_samples(max_duration_seconds: u32) -> u64 {
    2 * u64::from(max_duration_seconds) + 1200
}

/// The device's samples that count, as the meter's fixes.
pub fn device_fixes(samples: &[StoredSample], outages: &[Outage], late_bound_ms: i64) -> Vec<Fix> {
    samples
        .iter()
        .filter_map(|s| {
            let captured_ms = i64::try_from(s.sample.captured_at_ms).unwrap_or(i64::MAX);
            admissible(captured_ms, s.received_ms, outages, late_bound_ms).then(|| Fix {
                captured_ms,
                point: s.sample.point(),
                accuracy_cm: s.sample.accuracy_cm,
            })
        })
        .collect()
}

/// A workspace's location heartbeats as the meter's fixes.
pub fn heartbeat_fixes(locations: &[LocationFix]) -> Vec<Fix> {
    locations
        .iter()
        .map(|l| Fix {
            captured_ms: l.received_ms,
            point: l.point,
            // Validated finite and non-negative at the route; saturates.
            accuracy_cm: (l.accuracy_m * 100.0)
                .round()
                .clamp(0.0, f64::from(u32::MAX)) as u32,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Window;
    use lx_protocol::api::WindowReason;
    use lx_protocol::geo::Point;
    use lx_protocol::telemetry::{Sample, Source};
    use proptest::prelude::*;

    const HOME: Point = Point {
        lat: 4.711,
        lng: -74.072,
    };
    const BOUND: i64 = 10_000;

    fn build_stored(sequence: u64, captured_ms: i64, received_ms: i64) -> StoredSample {
        StoredSample {
            sample: Sample::from_position(
                None,
                sequence,
                captured_ms as u64,
                HOME,
                3.0,
                Source::Gps,
            )
            .expect("valid sample"),
            signature: [0; 65],
            received_ms,
        }
    }

    fn captured(fixes: &[Fix]) -> Vec<i64> {
        fixes.iter().map(|f| f.captured_ms).collect()
    }

    #[test]
    fn samples_sent_on_time_count_and_late_ones_only_inside_an_outage() {
        let samples = [
            build_stored(1, 1_000, 1_200),
            // Ten seconds late exactly: still on time.
            build_stored(2, 2_000, 12_000),
            // Late, captured inside the device's outage 2.5 s .. 9 s.
            build_stored(3, 3_000, 40_000),
            // Late, captured where the device was heard from: a claim after the fact.
            build_stored(4, 20_000, 40_000),
            // Late, captured in the session's media gap (still open).
            build_stored(5, 30_000, 45_000),
        ];
        let device = [Outage {
            opened_ms: 2_500,
            closed_ms: Some(9_000),
        }];
        let windows = [Window {
            reason: WindowReason::NetworkError,
            opened_ms: 29_000,
            closed_ms: None,
        }];
        let outages = outages(&device, &windows);
        assert_eq!(
            captured(&device_fixes(&samples, &outages, BOUND)),
            vec![1_000, 2_000, 3_000, 30_000]
        );
        assert_eq!(
            captured(&device_fixes(&samples, &[], BOUND)),
            vec![1_000, 2_000],
            "without a recorded outage nothing late counts"
        );
    }

    #[test]
    fn a_heartbeat_is_a_fix_captured_when_it_was_received() {
        let fixes = heartbeat_fixes(&[LocationFix {
            sequence: 9,
            point: HOME,
            accuracy_m: 8.25,
            received_ms: 77,
        }]);
        assert_eq!(
            fixes,
            vec![Fix {
                captured_ms: 77,
                point: HOME,
                accuracy_cm: 825
            }]
        );
    }

    proptest! {
        /// Every sample sent in time counts; a late one counts only inside
        /// an outage; recording one more outage never drops a sample.
        #[test]
        fn late_samples_count_only_inside_a_recorded_outage(
            raw in proptest::collection::vec((0i64..100_000, 0i64..60_000), 0..50),
            raw_outages in proptest::collection::vec((0i64..100_000, proptest::option::of(0i64..30_000)), 0..4),
            extra in (0i64..100_000, 0i64..30_000),
        ) {
            let outages: Vec<Outage> = raw_outages
                .iter()
                .map(|&(opened_ms, len)| Outage { opened_ms, closed_ms: len.map(|l| opened_ms + l) })
                .collect();
            let mut sorted = raw.clone();
            sorted.sort_unstable();
            let samples: Vec<StoredSample> = sorted
                .iter()
                .enumerate()
                .map(|(i, &(at, delay))| build_stored(i as u64 + 1, at, at + delay))
                .collect();
            let kept = device_fixes(&samples, &outages, BOUND);
            let on_time = sorted.iter().filter(|&&(_, d)| d <= BOUND).count();
            let covered = |at: i64| {
                raw_outages.iter().any(|&(o, len)| o <= at && len.is_none_or(|l| at <= o + l))
            };
            let expected: Vec<i64> = sorted
                .iter()
                .filter(|&&(at, d)| d <= BOUND || covered(at))
                .map(|&(at, _)| at)
                .collect();
            prop_assert_eq!(captured(&kept), expected);
            prop_assert_eq!(device_fixes(&samples, &[], BOUND).len(), on_time);
            let mut more = outages.clone();
            more.push(Outage { opened_ms: extra.0, closed_ms: Some(extra.0 + extra.1) });
            prop_assert!(device_fixes(&samples, &more, BOUND).len() >= kept.len());
        }
    }
}
