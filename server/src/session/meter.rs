//! The meter: a pure function over a session's timeline.
//!
//! The timeline runs one second at a time from `startedAt` to `endedAt`,
//! clamped to `maxDurationSeconds`. A second that touches a PAUSED window is
//! not metered at all; a second that touches any other window (media lost,
//! stale telemetry, outside the geofence) is a failed second; every other
//! second is clean. The charge is `clean × rate`, the fee `charge × feeBps /
//! 10000` rounded down, and the operator earns the rest: integers throughout.

use lx_protocol::api::WindowReason;
use lx_protocol::time::UnixMillis;

use crate::store::{Meter, Window};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MeterInput<'a> {
    pub started_ms: UnixMillis,
    pub ended_ms: UnixMillis,
    pub max_duration_seconds: u32,
    pub rate_micro_usdc: u64,
    pub fee_bps: u32,
    pub windows: &'a [Window],
}

pub fn compute(input: MeterInput<'_>) -> Meter {
    let elapsed_ms = (input.ended_ms - input.started_ms).max(0);
    let seconds = (elapsed_ms / 1000).min(i64::from(input.max_duration_seconds));
    let (mut clean, mut failed) = (0u64, 0u64);
    for i in 0..seconds {
        let from = input.started_ms + i * 1000;
        let to = from + 1000;
        let touches = |w: &Window| {
            let closed = w.closed_ms.unwrap_or(input.ended_ms);
            w.opened_ms < to && closed > from
        };
        let mut paused = false;
        let mut broken = false;
        for w in input.windows.iter().filter(|w| touches(w)) {
            match w.reason {
                WindowReason::Paused => paused = true,
                _ => broken = true,
            }
        }
        if paused {
            continue;
        }
        if broken {
            failed += 1;
        } else {
            clean += 1;
        }
    }
    let charged = clean.saturating_mul(input.rate_micro_usdc);
    let fee = u64::try_from(u128::from(charged) * u128::from(input.fee_bps.min(10_000)) / 10_000)
        .unwrap_or(charged);
    Meter {
        clean_seconds: clean,
        failed_seconds: failed,
        charged_micro_usdc: charged,
        fee_micro_usdc: fee,
        operator_earned_micro_usdc: charged - fee,
        fee_bps: input.fee_bps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn window(reason: WindowReason, opened_ms: i64, closed_ms: Option<i64>) -> Window {
        Window {
            reason,
            opened_ms,
            closed_ms,
        }
    }

    fn build_input(windows: &[Window]) -> MeterInput<'_> {
        MeterInput {
            started_ms: 1_000_000,
            ended_ms: 1_000_000 + 60_500,
            max_duration_seconds: 300,
            rate_micro_usdc: 1000,
            fee_bps: 1000,
            windows,
        }
    }

    #[test]
    fn an_uninterrupted_minute_is_sixty_clean_seconds() {
        let m = compute(build_input(&[]));
        assert_eq!((m.clean_seconds, m.failed_seconds), (60, 0));
        assert_eq!(m.charged_micro_usdc, 60_000);
        assert_eq!(m.fee_micro_usdc, 6_000);
        assert_eq!(m.operator_earned_micro_usdc, 54_000);
    }

    #[test]
    fn paused_seconds_are_neither_clean_nor_failed() {
        let w = [window(WindowReason::Paused, 1_010_000, Some(1_020_000))];
        let m = compute(build_input(&w));
        assert_eq!((m.clean_seconds, m.failed_seconds), (50, 0));
    }

    #[test]
    fn a_media_gap_fails_the_seconds_it_touches() {
        let w = [window(
            WindowReason::NetworkError,
            1_010_500,
            Some(1_013_500),
        )];
        let m = compute(build_input(&w));
        // touches seconds 10, 11, 12, 13
        assert_eq!((m.clean_seconds, m.failed_seconds), (56, 4));
    }

    #[test]
    fn a_window_left_open_runs_to_the_end() {
        let w = [window(WindowReason::StaleTelemetry, 1_050_000, None)];
        let m = compute(build_input(&w));
        assert_eq!((m.clean_seconds, m.failed_seconds), (50, 10));
    }

    #[test]
    fn the_meter_stops_at_the_maximum_duration() {
        let mut input = build_input(&[]);
        input.max_duration_seconds = 30;
        assert_eq!(compute(input).clean_seconds, 30);
    }

    proptest! {
        #[test]
        fn charge_is_clean_times_rate_and_splits_exactly(
            duration_ms in 0i64..600_000,
            max in 1u32..700,
            rate in 0u64..100_000,
            fee_bps in 0u32..=10_000,
            raw in proptest::collection::vec((0i64..600_000, 0i64..60_000, 0u8..4), 0..8),
        ) {
            let started = 5_000_000;
            let windows: Vec<Window> = raw.iter().map(|&(at, len, kind)| {
                let reason = match kind {
                    0 => WindowReason::Paused,
                    1 => WindowReason::NetworkError,
                    2 => WindowReason::StaleTelemetry,
                    _ => WindowReason::OutsideGeofence,
                };
                window(reason, started + at, Some(started + at + len))
            }).collect();
            let m = compute(MeterInput {
                started_ms: started,
                ended_ms: started + duration_ms,
                max_duration_seconds: max,
                rate_micro_usdc: rate,
                fee_bps,
                windows: &windows,
            });
            let wall = (duration_ms / 1000).min(i64::from(max)) as u64;
            prop_assert!(m.clean_seconds + m.failed_seconds <= wall);
            prop_assert_eq!(m.charged_micro_usdc, m.clean_seconds * rate);
            prop_assert_eq!(m.fee_micro_usdc + m.operator_earned_micro_usdc, m.charged_micro_usdc);
        }
    }
}
