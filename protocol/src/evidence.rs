//! Which signed samples count: the no-backdating rule, pure, so that the
//! server and anyone checking a proof bundle apply the same one.
//!
//! - A device's signed sample received at most `late_bound_ms` after its
//!   capture is evidence.
//! - A sample received later is evidence only if it was captured inside a
//!   recorded outage: one of the device's disconnect windows (from its last
//!   contact until its next one, as the server recorded them when they
//!   happened) or one of the session's NETWORK_ERROR windows. An open window
//!   runs on without end. Anything else signed long before it was sent is a
//!   claim made after the fact, and does not count.

use crate::api::WindowReason;
use crate::meter::Window;
use crate::time::UnixMillis;

/// A span during which a device was out of reach: from its last contact to
/// its next one (`None` while it has not been heard from again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    pub opened_ms: UnixMillis,
    pub closed_ms: Option<UnixMillis>,
}

/// The outages a late sample of the session may fill: the device's own,
/// then the session's NETWORK_ERROR windows.
pub fn outages(device: &[Outage], session_windows: &[Window]) -> Vec<Outage> {
    let media = session_windows
        .iter()
        .filter(|w| w.reason == WindowReason::NetworkError)
        .map(|w| Outage {
            opened_ms: w.opened_ms,
            closed_ms: w.closed_ms,
        });
    device.iter().copied().chain(media).collect()
}

fn inside(outages: &[Outage], at_ms: i64) -> bool {
    outages
        .iter()
        .any(|o| o.opened_ms <= at_ms && o.closed_ms.is_none_or(|closed| at_ms <= closed))
}

/// Whether a sample captured at `captured_ms` and received at `received_ms`
/// is evidence.
pub fn admissible(
    captured_ms: i64,
    received_ms: i64,
    outages: &[Outage],
    late_bound_ms: i64,
) -> bool {
    received_ms.saturating_sub(captured_ms) <= late_bound_ms || inside(outages, captured_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_and_derived_windows_are_not_outages() {
        let windows = [
            Window {
                reason: WindowReason::Paused,
                opened_ms: 0,
                closed_ms: None,
            },
            Window {
                reason: WindowReason::OutsideGeofence,
                opened_ms: 0,
                closed_ms: None,
            },
        ];
        assert!(outages(&[], &windows).is_empty());
    }

    #[test]
    fn an_open_outage_runs_on_and_a_closed_one_includes_its_ends() {
        let open = [Outage {
            opened_ms: 10,
            closed_ms: None,
        }];
        assert!(admissible(1_000_000, 9_000_000, &open, 10_000));
        assert!(!admissible(9, 9_000_000, &open, 10_000));
        let closed = [Outage {
            opened_ms: 10,
            closed_ms: Some(20),
        }];
        assert!(admissible(10, 50_000, &closed, 10_000));
        assert!(admissible(20, 50_000, &closed, 10_000));
        assert!(!admissible(21, 50_000, &closed, 10_000));
        assert!(
            admissible(21, 10_021, &closed, 10_000),
            "on time needs no outage"
        );
    }
}
