//! The meter: a pure function over a session's timeline.
//!
//! The timeline runs one second at a time from `startedAt` to `endedAt`,
//! clamped to `maxDurationSeconds`. For the second `[t, t + 1 s)`:
//!
//! - it touches a PAUSED window: not metered at all;
//! - NETWORK_ERROR windows (the ingest saw no media) cover at least half of
//!   it: failed. So the failed seconds of a media gap are its length within
//!   a second, neither rounded up at both ends nor forgiven;
//! - no verified sample was captured in `[t + 1 s − fresh, t + 1 s)`, or the
//!   latest such sample is less accurate than `max_accuracy_cm`: failed,
//!   STALE_TELEMETRY;
//! - that sample lies farther than the geofence radius from the requested
//!   point: failed, OUTSIDE_GEOFENCE;
//! - otherwise clean.
//!
//! The charge is `clean × rate`, the fee `charge × feeBps / 10000` rounded
//! down, and the operator earns the rest: integers throughout. Runs of failed
//! seconds become the windows shown on the session, at most
//! [`MAX_DERIVED_WINDOWS`]: past that, later runs are folded into the last
//! one shown (the counts stay exact).
//!
//! One pass over the seconds with a cursor into the fixes and a sweep over
//! the windows sorted by opening: linear in seconds plus fixes plus windows
//! (times the windows open at once, which do not overlap in practice).
//!
//! The fixes are whatever evidence the supplier's trust tier gives (a
//! device's signed samples, or a tier-0 workspace's location heartbeats),
//! already through the no-backdating filter of [`crate::evidence`]: the
//! meter judges them, it does not decide which count.

use crate::api::WindowReason;
use crate::geo::Point;
use crate::time::UnixMillis;

/// A span of a session: PAUSED or NETWORK_ERROR as recorded, or a run of
/// STALE_TELEMETRY or OUTSIDE_GEOFENCE seconds the meter derived. An open
/// window runs to the end of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub reason: WindowReason,
    pub opened_ms: UnixMillis,
    pub closed_ms: Option<UnixMillis>,
}

/// What the meter found, in integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Meter {
    pub clean_seconds: u64,
    pub failed_seconds: u64,
    pub charged_micro_usdc: u64,
    pub fee_micro_usdc: u64,
    pub operator_earned_micro_usdc: u64,
    pub fee_bps: u32,
}

/// The meter as the API shows it.
impl From<Meter> for crate::api::MeterDto {
    fn from(m: Meter) -> Self {
        Self {
            clean_seconds: m.clean_seconds,
            failed_seconds: m.failed_seconds,
            charged_micro_usdc: m.charged_micro_usdc,
            fee_micro_usdc: m.fee_micro_usdc,
            operator_earned_micro_usdc: m.operator_earned_micro_usdc,
            fee_bps: m.fee_bps,
        }
    }
}

/// A verified position, as the meter needs it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fix {
    pub captured_ms: UnixMillis,
    pub point: Point,
    pub accuracy_cm: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TelemetryRules {
    pub requested: Point,
    pub geofence_radius_m: f64,
    pub fresh_ms: i64,
    pub max_accuracy_cm: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeterInput<'a> {
    pub started_ms: UnixMillis,
    pub ended_ms: UnixMillis,
    pub max_duration_seconds: u32,
    pub rate_micro_usdc: u64,
    pub fee_bps: u32,
    /// PAUSED and NETWORK_ERROR windows.
    pub windows: &'a [Window],
    /// Verified samples sorted by `captured_ms`. With `None` rules the
    /// telemetry conditions do not apply (a session without a device).
    pub fixes: &'a [Fix],
    pub telemetry: Option<TelemetryRules>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MeterOutput {
    pub meter: Meter,
    /// STALE_TELEMETRY and OUTSIDE_GEOFENCE runs, closed.
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Second {
    Paused,
    Clean,
    Failed(WindowReason),
}

/// STALE_TELEMETRY and OUTSIDE_GEOFENCE windows shown on one session.
pub const MAX_DERIVED_WINDOWS: usize = 1000;

/// `active`: the recorded windows that touch `[from, to)`.
fn judge(
    input: &MeterInput<'_>,
    active: &[&Window],
    from: UnixMillis,
    to: UnixMillis,
    cursor: &mut usize,
) -> Second {
    let ended = input.ended_ms;
    let mut without_media_ms = 0;
    for w in active {
        match w.reason {
            WindowReason::Paused => return Second::Paused,
            WindowReason::NetworkError => {
                let overlap = w.closed_ms.unwrap_or(ended).min(to) - w.opened_ms.max(from);
                without_media_ms += overlap.max(0);
            }
            _ => {}
        }
    }
    if without_media_ms * 2 >= to - from {
        return Second::Failed(WindowReason::NetworkError);
    }
    let Some(rules) = input.telemetry else {
        return Second::Clean;
    };
    // Advance to the last fix captured before `to`; fixes are sorted.
    while *cursor < input.fixes.len() && input.fixes[*cursor].captured_ms < to {
        *cursor += 1;
    }
    let latest = cursor.checked_sub(1).map(|i| input.fixes[i]);
    match latest {
        Some(fix)
            if fix.captured_ms >= to - rules.fresh_ms
                && fix.accuracy_cm <= rules.max_accuracy_cm =>
        {
            if fix.point.distance_m(rules.requested) <= rules.geofence_radius_m {
                Second::Clean
            } else {
                Second::Failed(WindowReason::OutsideGeofence)
            }
        }
        _ => Second::Failed(WindowReason::StaleTelemetry),
    }
}

pub fn compute(input: MeterInput<'_>) -> MeterOutput {
    let elapsed_ms = (input.ended_ms - input.started_ms).max(0);
    let seconds = (elapsed_ms / 1000).min(i64::from(input.max_duration_seconds));
    let (mut clean, mut failed) = (0u64, 0u64);
    let mut windows: Vec<Window> = Vec::new();
    let mut open: Option<Window> = None;
    let mut cursor = 0usize;
    let mut by_opening: Vec<&Window> = input.windows.iter().collect();
    by_opening.sort_by_key(|w| w.opened_ms);
    let mut next_window = 0usize;
    let mut active: Vec<&Window> = Vec::new();
    for i in 0..seconds {
        let from = input.started_ms + i * 1000;
        let to = from + 1000;
        while next_window < by_opening.len() && by_opening[next_window].opened_ms < to {
            active.push(by_opening[next_window]);
            next_window += 1;
        }
        active.retain(|w| w.closed_ms.unwrap_or(input.ended_ms) > from);
        let second = judge(&input, &active, from, to, &mut cursor);
        let derived = match second {
            Second::Failed(r @ (WindowReason::StaleTelemetry | WindowReason::OutsideGeofence)) => {
                Some(r)
            }
            _ => None,
        };
        match (&mut open, derived) {
            (Some(w), Some(r)) if w.reason == r => w.closed_ms = Some(to),
            (slot, next) => {
                if let Some(done) = slot.take() {
                    windows.push(done);
                }
                match next {
                    // Past the cap, a new run (of either reason) extends
                    // the last window shown.
                    Some(_) if windows.len() >= MAX_DERIVED_WINDOWS => {
                        if let Some(last) = windows.last_mut() {
                            last.closed_ms = Some(to);
                        }
                    }
                    next => {
                        *slot = next.map(|reason| Window {
                            reason,
                            opened_ms: from,
                            closed_ms: Some(to),
                        });
                    }
                }
            }
        }
        match second {
            Second::Paused => {}
            Second::Clean => clean += 1,
            Second::Failed(_) => failed += 1,
        }
    }
    windows.extend(open);
    let charged = clean.saturating_mul(input.rate_micro_usdc);
    let fee = u64::try_from(u128::from(charged) * u128::from(input.fee_bps.min(10_000)) / 10_000)
        .unwrap_or(charged);
    MeterOutput {
        meter: Meter {
            clean_seconds: clean,
            failed_seconds: failed,
            charged_micro_usdc: charged,
            fee_micro_usdc: fee,
            operator_earned_micro_usdc: charged - fee,
            fee_bps: input.fee_bps,
        },
        windows,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const START: i64 = 1_000_000;
    const HOME: Point = Point {
        lat: 4.711,
        lng: -74.072,
    };

    fn window(reason: WindowReason, opened_ms: i64, closed_ms: Option<i64>) -> Window {
        Window {
            reason,
            opened_ms,
            closed_ms,
        }
    }

    fn rules() -> TelemetryRules {
        TelemetryRules {
            requested: HOME,
            geofence_radius_m: 150.0,
            fresh_ms: 3000,
            max_accuracy_cm: 5000,
        }
    }

    fn build_input<'a>(
        windows: &'a [Window],
        fixes: &'a [Fix],
        telemetry: Option<TelemetryRules>,
    ) -> MeterInput<'a> {
        MeterInput {
            started_ms: START,
            ended_ms: START + 60_500,
            max_duration_seconds: 300,
            rate_micro_usdc: 1000,
            fee_bps: 1000,
            windows,
            fixes,
            telemetry,
        }
    }

    /// One fix a second at `at(i)` for seconds `0..n`, captured 200 ms into each.
    fn build_fixes(n: i64, at: impl Fn(i64) -> Point) -> Vec<Fix> {
        (0..n)
            .map(|i| Fix {
                captured_ms: START + i * 1000 + 200,
                point: at(i),
                accuracy_cm: 400,
            })
            .collect()
    }

    /// About `metres` north of home.
    fn north(metres: f64) -> Point {
        Point::new(HOME.lat + metres / 111_195.0, HOME.lng)
    }

    #[test]
    fn an_uninterrupted_minute_is_sixty_clean_seconds() {
        let m = compute(build_input(&[], &[], None)).meter;
        assert_eq!((m.clean_seconds, m.failed_seconds), (60, 0));
        assert_eq!(
            (
                m.charged_micro_usdc,
                m.fee_micro_usdc,
                m.operator_earned_micro_usdc
            ),
            (60_000, 6_000, 54_000)
        );
    }

    #[test]
    fn paused_seconds_are_neither_clean_nor_failed() {
        let w = [window(
            WindowReason::Paused,
            START + 10_000,
            Some(START + 20_000),
        )];
        let m = compute(build_input(&w, &[], None)).meter;
        assert_eq!((m.clean_seconds, m.failed_seconds), (50, 0));
    }

    #[test]
    fn a_media_gap_fails_the_seconds_it_covers_at_least_half_of() {
        let half_at_both_ends = [window(
            WindowReason::NetworkError,
            START + 10_500,
            Some(START + 13_500),
        )];
        let m = compute(build_input(&half_at_both_ends, &[], None)).meter;
        assert_eq!((m.clean_seconds, m.failed_seconds), (56, 4));
        let less_than_half = [window(
            WindowReason::NetworkError,
            START + 10_600,
            Some(START + 13_400),
        )];
        let m = compute(build_input(&less_than_half, &[], None)).meter;
        assert_eq!((m.clean_seconds, m.failed_seconds), (58, 2));
        // Two short gaps in one second add up.
        let two = [
            window(
                WindowReason::NetworkError,
                START + 20_000,
                Some(START + 20_300),
            ),
            window(
                WindowReason::NetworkError,
                START + 20_600,
                Some(START + 20_900),
            ),
        ];
        let m = compute(build_input(&two, &[], None)).meter;
        assert_eq!(m.failed_seconds, 1);
    }

    #[test]
    fn the_meter_stops_at_the_maximum_duration() {
        let mut input = build_input(&[], &[], None);
        input.max_duration_seconds = 30;
        assert_eq!(compute(input).meter.clean_seconds, 30);
    }

    #[test]
    fn a_hovering_drone_with_steady_fixes_is_clean_throughout() {
        let fixes = build_fixes(61, |_| north(20.0));
        let out = compute(build_input(&[], &fixes, Some(rules())));
        assert_eq!((out.meter.clean_seconds, out.meter.failed_seconds), (60, 0));
        assert!(out.windows.is_empty());
    }

    #[test]
    fn a_drone_that_leaves_the_geofence_and_returns_is_not_billed_while_away() {
        // Seconds 20..35 it is 400 m north: outside the 150 m fence.
        let fixes = build_fixes(61, |i| {
            if (20..35).contains(&i) {
                north(400.0)
            } else {
                north(10.0)
            }
        });
        let out = compute(build_input(&[], &fixes, Some(rules())));
        assert_eq!(
            (out.meter.clean_seconds, out.meter.failed_seconds),
            (45, 15)
        );
        assert_eq!(
            out.windows,
            vec![window(
                WindowReason::OutsideGeofence,
                START + 20_000,
                Some(START + 35_000)
            )]
        );
    }

    #[test]
    fn a_gps_that_goes_silent_is_stale_after_the_freshness_window() {
        // Fixes stop after second 29 (last captured at 29.2 s): seconds 30 and
        // 31 still see it within 3 s; from second 32 on nothing is fresh.
        let fixes = build_fixes(30, |_| HOME);
        let out = compute(build_input(&[], &fixes, Some(rules())));
        assert_eq!(
            (out.meter.clean_seconds, out.meter.failed_seconds),
            (32, 28)
        );
        assert_eq!(
            out.windows,
            vec![window(
                WindowReason::StaleTelemetry,
                START + 32_000,
                Some(START + 60_000)
            )]
        );
    }

    #[test]
    fn an_inaccurate_fix_counts_as_stale() {
        let mut fixes = build_fixes(61, |_| HOME);
        for f in &mut fixes[10..12] {
            f.accuracy_cm = 9_000;
        }
        // Seconds 10 and 11 have only the poor fixes as their latest.
        let out = compute(build_input(&[], &fixes, Some(rules())));
        assert_eq!(out.meter.failed_seconds, 2);
    }

    /// The meter's rule read literally: every window and every fix looked at
    /// for every second. The sweep must agree with it.
    fn literal_counts(input: &MeterInput<'_>) -> (u64, u64) {
        let seconds = ((input.ended_ms - input.started_ms).max(0) / 1000)
            .min(i64::from(input.max_duration_seconds));
        let (mut clean, mut failed) = (0, 0);
        for i in 0..seconds {
            let from = input.started_ms + i * 1000;
            let to = from + 1000;
            let touching: Vec<&Window> = input
                .windows
                .iter()
                .filter(|w| w.opened_ms < to && w.closed_ms.unwrap_or(input.ended_ms) > from)
                .collect();
            if touching.iter().any(|w| w.reason == WindowReason::Paused) {
                continue;
            }
            let gap: i64 = touching
                .iter()
                .map(|w| {
                    (w.closed_ms.unwrap_or(input.ended_ms).min(to) - w.opened_ms.max(from)).max(0)
                })
                .sum();
            let rules = input.telemetry.unwrap();
            let latest = input.fixes.iter().rfind(|f| f.captured_ms < to);
            let good = gap * 2 < 1000
                && latest.is_some_and(|f| {
                    f.captured_ms >= to - rules.fresh_ms
                        && f.accuracy_cm <= rules.max_accuracy_cm
                        && f.point.distance_m(rules.requested) <= rules.geofence_radius_m
                });
            if good {
                clean += 1;
            } else {
                failed += 1;
            }
        }
        (clean, failed)
    }

    #[test]
    fn runs_of_alternating_reasons_fold_past_the_window_cap_too() {
        // Out of the fence, then too inaccurate, every other second: a new
        // run each second and never a clean one between.
        let seconds = 2 * MAX_DERIVED_WINDOWS as i64 + 200;
        let mut fixes = build_fixes(seconds + 1, |_| north(500.0));
        for f in fixes.iter_mut().skip(1).step_by(2) {
            f.accuracy_cm = 90_000;
        }
        let input = MeterInput {
            ended_ms: START + seconds * 1000,
            max_duration_seconds: u32::MAX,
            ..build_input(&[], &fixes, Some(rules()))
        };
        let out = compute(input);
        assert_eq!(out.windows.len(), MAX_DERIVED_WINDOWS);
        assert_eq!(out.meter.failed_seconds, seconds as u64);
    }

    #[test]
    fn past_the_window_cap_runs_fold_into_the_last_window_and_counts_stay_exact() {
        // Inside and outside the fence every other second: a run per second.
        let seconds = 2 * MAX_DERIVED_WINDOWS as i64 + 200;
        let fixes = build_fixes(
            seconds + 1,
            |i| if i % 2 == 0 { HOME } else { north(500.0) },
        );
        let input = MeterInput {
            ended_ms: START + seconds * 1000,
            max_duration_seconds: u32::MAX,
            ..build_input(&[], &fixes, Some(rules()))
        };
        let out = compute(input);
        assert_eq!(out.windows.len(), MAX_DERIVED_WINDOWS);
        assert_eq!(
            out.windows.last().unwrap().closed_ms,
            Some(START + seconds * 1000),
            "the last window runs to the last failed second"
        );
        assert_eq!(
            (out.meter.clean_seconds, out.meter.failed_seconds),
            literal_counts(&input)
        );
    }

    /// (duration ms, max seconds, windows (at, len, kind), fixes (at, metres north, accuracy cm)).
    type Timeline = (i64, u32, Vec<(i64, i64, u8)>, Vec<(i64, f64, u32)>);

    fn arb_timeline() -> impl Strategy<Value = Timeline> {
        (
            0i64..200_000,
            1u32..300,
            proptest::collection::vec((0i64..200_000, 0i64..30_000, 0u8..2), 0..6),
            proptest::collection::vec((0i64..200_000, 0.0f64..600.0, 0u32..10_000), 0..200),
        )
    }

    proptest! {
        #[test]
        fn meter_invariants_hold_on_random_timelines(
            (duration, max, raw_windows, raw_fixes) in arb_timeline(),
            rate in 0u64..100_000,
            fee_bps in 0u32..=10_000,
        ) {
            let windows: Vec<Window> = raw_windows.iter().map(|&(at, len, kind)| {
                let reason = if kind == 0 { WindowReason::Paused } else { WindowReason::NetworkError };
                window(reason, START + at, Some(START + at + len))
            }).collect();
            let mut fixes: Vec<Fix> = raw_fixes.iter().map(|&(at, metres, acc)| Fix {
                captured_ms: START + at, point: north(metres), accuracy_cm: acc,
            }).collect();
            fixes.sort_by_key(|f| f.captured_ms);
            let input = MeterInput {
                started_ms: START, ended_ms: START + duration, max_duration_seconds: max,
                rate_micro_usdc: rate, fee_bps, windows: &windows, fixes: &fixes, telemetry: Some(rules()),
            };
            let out = compute(input);
            let m = out.meter;
            let wall = (duration / 1000).min(i64::from(max)) as u64;
            prop_assert!(m.clean_seconds + m.failed_seconds <= wall, "clean seconds never exceed wall-clock");
            prop_assert_eq!(m.charged_micro_usdc, m.clean_seconds * rate);
            prop_assert_eq!(m.fee_micro_usdc + m.operator_earned_micro_usdc, m.charged_micro_usdc);
            // Only fixes inside the fence can make a second clean: with every
            // fix moved outside, nothing is clean.
            let outside: Vec<Fix> = fixes.iter().map(|f| Fix { point: north(151.0), ..*f }).collect();
            let none = compute(MeterInput { fixes: &outside, ..input });
            prop_assert_eq!(none.meter.clean_seconds, 0);
            prop_assert_eq!((m.clean_seconds, m.failed_seconds), literal_counts(&input));
        }

        #[test]
        fn a_media_gap_fails_its_own_length_within_a_second(
            opened in 0i64..50_000,
            length in 0i64..30_000,
        ) {
            let w = [window(WindowReason::NetworkError, START + opened, Some(START + opened + length))];
            let input = MeterInput {
                started_ms: START, ended_ms: START + 100_000, max_duration_seconds: 1000,
                rate_micro_usdc: 10, fee_bps: 0, windows: &w, fixes: &[], telemetry: None,
            };
            let failed = compute(input).meter.failed_seconds as i64;
            prop_assert!((failed * 1000 - length).abs() <= 1000, "{failed} s failed for a {length} ms gap");
        }
    }
}
