//! The session state machine, sans IO.
//!
//! `plan` looks at a session as last read and an action with its `now`, and
//! answers with the [`Transition`] the store must apply as one
//! compare-and-swap, or why the action is refused. It never reads a clock
//! and never writes: two racing callers may both get a plan, and the store
//! lets exactly one of them through.
//!
//! ```text
//! REQUESTED ─accept/assign─▶ ASSIGNED ─first frame─▶ LIVE ◀─resume/pause─▶ PAUSED
//!     │  ▲                       │                     │                     │
//!     │  └──not LIVE in time─────┘ (the supplier cools down)                 │
//!     └──cancel / end / wait timeout──▶ CANCELLED|EXPIRED   └─end / max duration─▶ ENDED|EXPIRED
//! ```
//!
//! Trust tiers: an assignment without a device is tier 0, with one tier 1;
//! a session is never assigned below its `min_trust_tier`.

use lx_protocol::api::{
    ExpiryReason, SessionState, TRUST_TIER_DEVICE, TRUST_TIER_WORKSPACE, WindowReason,
};
use lx_protocol::time::UnixMillis;
use uuid::Uuid;

use super::meter::{self, Fix, MeterInput, TelemetryRules};
use crate::store::{CoolDown, Offer, Session, Transition};

use SessionState::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The dispatcher gives the session to an auto-accepting supplier, or
    /// to one of its enrolled devices.
    Assign {
        workspace: Uuid,
        device: Option<Uuid>,
        now: UnixMillis,
    },
    /// The dispatcher offers the session to a supplier that accepts by hand.
    Offer {
        workspace: Uuid,
        expires_ms: UnixMillis,
    },
    /// An offered supplier takes the session, itself or with one of its devices.
    Accept {
        workspace: Uuid,
        device: Option<Uuid>,
        now: UnixMillis,
    },
    /// The offer ran out without an answer.
    OfferTimedOut {
        now: UnixMillis,
    },
    /// The assigned supplier is not LIVE `timeout_ms` after the assignment:
    /// the session goes back to REQUESTED and the supplier (and its device)
    /// cools down for `cooldown_ms`.
    LiveTimedOut {
        now: UnixMillis,
        timeout_ms: i64,
        cooldown_ms: i64,
    },
    /// The media plane decoded the first frame.
    FirstFrame {
        at: UnixMillis,
    },
    /// No media since `at` (longer than the media timeout): a NETWORK_ERROR
    /// window opens there.
    MediaLost {
        at: UnixMillis,
    },
    /// Media flows again from `at`: the window closes.
    MediaResumed {
        at: UnixMillis,
    },
    Pause {
        now: UnixMillis,
    },
    Resume {
        now: UnixMillis,
    },
    /// Either party hangs up. Before LIVE this is a cancel.
    End {
        now: UnixMillis,
        fee_bps: u32,
    },
    Cancel {
        now: UnixMillis,
    },
    /// The sweeper's two expiries.
    ExpireWait {
        now: UnixMillis,
    },
    ExpireMaxDuration {
        now: UnixMillis,
        fee_bps: u32,
    },
    /// The credit watch found the consumer's pool no longer covering what
    /// the session accrued: it ends now, metered to here.
    CreditExhausted {
        now: UnixMillis,
        fee_bps: u32,
    },
    /// `settleDelaySeconds` after the end: late samples are in, the meter is final.
    FinalizeMeter {
        fee_bps: u32,
    },
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Assign { .. } => "dispatch",
            Self::Offer { .. } => "dispatch",
            Self::Accept { .. } => "accept",
            Self::OfferTimedOut { .. } => "offerTimeout",
            Self::LiveTimedOut { .. } => "liveTimeout",
            Self::FirstFrame { .. } => "firstFrame",
            Self::MediaLost { .. } => "mediaLost",
            Self::MediaResumed { .. } => "mediaResumed",
            Self::Pause { .. } => "pause",
            Self::Resume { .. } => "resume",
            Self::End { .. } => "end",
            Self::Cancel { .. } => "cancel",
            Self::ExpireWait { .. } => "expire",
            Self::ExpireMaxDuration { .. } => "expire",
            Self::CreditExhausted { .. } => "creditExhausted",
            Self::FinalizeMeter { .. } => "finalizeMeter",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("'{operation}' is not allowed while the session is {state}")]
    NotAllowed {
        operation: &'static str,
        state: SessionState,
    },
    #[error("the session is not offered to this workspace")]
    NotOffered,
    #[error("the offer expired")]
    OfferExpired,
    #[error("the session is not due")]
    NotDue,
    #[error("the session asks for trust tier {required}; this supplier is tier {offered}")]
    BelowMinTrustTier { required: u8, offered: u8 },
    #[error("the session has had {0} pauses, the most one may have")]
    TooManyWindows(usize),
}

/// PAUSED windows, and apart NETWORK_ERROR windows, one session may
/// record. Past the first a pause is refused; past the second a new media
/// gap joins the last one (its seconds between count as failed: the
/// supplier's flapping is not billed, and cannot use up the consumer's
/// pauses).
pub const MAX_RECORDED_WINDOWS: usize = 1000;

fn recorded_windows(session: &Session, reason: WindowReason) -> usize {
    session
        .windows
        .iter()
        .filter(|w| w.reason == reason)
        .count()
}

/// The tier of an assignment: an enrolled device signs its telemetry.
pub fn tier_of(device: Option<Uuid>) -> u8 {
    if device.is_some() {
        TRUST_TIER_DEVICE
    } else {
        TRUST_TIER_WORKSPACE
    }
}

/// Refuses an assignment below the session's minimum tier.
fn check_tier(session: &Session, device: Option<Uuid>) -> Result<u8, LifecycleError> {
    let offered = tier_of(device);
    if offered < session.min_trust_tier {
        return Err(LifecycleError::BelowMinTrustTier {
            required: session.min_trust_tier,
            offered,
        });
    }
    Ok(offered)
}

/// What the meter sees besides the session: its verified fixes (sorted by
/// capture time) and the rules they are judged by. A session without an
/// enrolled device has no rules: only media and pauses count.
#[derive(Debug, Clone, Copy, Default)]
pub struct Evidence<'a> {
    pub fixes: &'a [Fix],
    pub rules: Option<TelemetryRules>,
}

pub fn plan(session: &Session, action: Action) -> Result<Transition, LifecycleError> {
    plan_with(session, action, Evidence::default())
}

pub fn plan_with(
    session: &Session,
    action: Action,
    evidence: Evidence<'_>,
) -> Result<Transition, LifecycleError> {
    let refuse = || LifecycleError::NotAllowed {
        operation: action.name(),
        state: session.state,
    };
    let base = Transition {
        session_id: session.id,
        expected: Some(session.state),
        ..Transition::default()
    };
    let release = |now| release_workspace(session, now);
    let release_operator = session.operator_id;
    match (session.state, action) {
        (
            Requested,
            Action::Assign {
                workspace,
                device,
                now,
            },
        ) => Ok(Transition {
            to: Some(Assigned),
            operator_workspace_id: Some(workspace),
            operator_id: device,
            assigned_ms: Some(now),
            clear_offer: true,
            claim: device.is_none().then_some(workspace),
            claim_operator: device,
            record_attempt: Some(workspace),
            trust_tier: Some(check_tier(session, device)?),
            ..base
        }),
        (
            Requested,
            Action::Offer {
                workspace,
                expires_ms,
            },
        ) => Ok(Transition {
            set_offer: Some(Offer {
                workspace_id: workspace,
                expires_ms,
            }),
            record_attempt: Some(workspace),
            ..base
        }),
        (
            Requested,
            Action::Accept {
                workspace,
                device,
                now,
            },
        ) => {
            let offer = session.offer.filter(|o| o.workspace_id == workspace);
            match offer {
                None => Err(LifecycleError::NotOffered),
                Some(o) if o.expires_ms <= now => Err(LifecycleError::OfferExpired),
                Some(_) => Ok(Transition {
                    trust_tier: Some(check_tier(session, device)?),
                    to: Some(Assigned),
                    expected_offer: Some(workspace),
                    operator_workspace_id: Some(workspace),
                    operator_id: device,
                    assigned_ms: Some(now),
                    clear_offer: true,
                    claim: device.is_none().then_some(workspace),
                    claim_operator: device,
                    ..base
                }),
            }
        }
        (Requested, Action::OfferTimedOut { now }) => match session.offer {
            Some(o) if o.expires_ms <= now => Ok(Transition {
                expected_offer: Some(o.workspace_id),
                clear_offer: true,
                ..base
            }),
            _ => Err(LifecycleError::NotDue),
        },
        (
            Assigned,
            Action::LiveTimedOut {
                now,
                timeout_ms,
                cooldown_ms,
            },
        ) => {
            let assigned = session.assigned_ms.unwrap_or(session.created_ms);
            if timeout_ms <= 0 || now < assigned + timeout_ms {
                return Err(LifecycleError::NotDue);
            }
            let Some(workspace) = session.operator_workspace_id else {
                return Err(refuse());
            };
            Ok(Transition {
                to: Some(Requested),
                unassign: true,
                release: release(now),
                release_operator,
                release_media: session.media.clone(),
                record_attempt: Some(workspace),
                cool_down: Some(CoolDown {
                    workspace,
                    operator: session.operator_id,
                    until: now.saturating_add(cooldown_ms.max(0)),
                }),
                ..base
            })
        }
        (Assigned, Action::FirstFrame { at }) => Ok(Transition {
            to: Some(Live),
            started_ms: Some(at),
            ..base
        }),
        (Live | Paused, Action::MediaLost { at }) => {
            let at_cap =
                recorded_windows(session, WindowReason::NetworkError) >= MAX_RECORDED_WINDOWS;
            Ok(if at_cap {
                Transition {
                    reopen_window: Some(WindowReason::NetworkError),
                    ..base
                }
            } else {
                Transition {
                    open_window: Some((WindowReason::NetworkError, at)),
                    ..base
                }
            })
        }
        (Live | Paused, Action::MediaResumed { at }) => Ok(Transition {
            close_windows: vec![(WindowReason::NetworkError, at)],
            ..base
        }),
        (Live, Action::Pause { now }) => {
            let recorded = recorded_windows(session, WindowReason::Paused);
            if recorded >= MAX_RECORDED_WINDOWS {
                return Err(LifecycleError::TooManyWindows(recorded));
            }
            Ok(Transition {
                to: Some(Paused),
                open_window: Some((WindowReason::Paused, now)),
                ..base
            })
        }
        (Paused, Action::Resume { now }) => Ok(Transition {
            to: Some(Live),
            close_windows: vec![(WindowReason::Paused, now)],
            ..base
        }),
        (Requested | Assigned, Action::End { now, .. } | Action::Cancel { now }) => {
            Ok(Transition {
                to: Some(Cancelled),
                ended_ms: Some(now),
                clear_offer: true,
                release: release(now),
                release_operator,
                ..base
            })
        }
        (Live | Paused, Action::End { now, fee_bps }) => {
            Ok(finish(session, &base, now, fee_bps, None, evidence))
        }
        (Requested | Assigned, Action::ExpireWait { now }) => {
            if now < session.wait_deadline_ms() {
                return Err(LifecycleError::NotDue);
            }
            Ok(Transition {
                to: Some(Expired),
                ended_ms: Some(now),
                expiry_reason: Some(ExpiryReason::WaitTimeout),
                clear_offer: true,
                release: release(now),
                release_operator,
                ..base
            })
        }
        (Live | Paused, Action::ExpireMaxDuration { now, fee_bps }) => {
            let started = session.started_ms.unwrap_or(session.created_ms);
            let deadline = started + i64::from(session.max_duration_seconds) * 1000;
            if now < deadline {
                return Err(LifecycleError::NotDue);
            }
            Ok(finish(
                session,
                &base,
                deadline,
                fee_bps,
                Some(ExpiryReason::MaxDuration),
                evidence,
            ))
        }
        (Live | Paused, Action::CreditExhausted { now, fee_bps }) => Ok(finish(
            session,
            &base,
            now,
            fee_bps,
            Some(ExpiryReason::InsufficientCredit),
            evidence,
        )),
        (Ended | Expired, Action::FinalizeMeter { fee_bps }) => {
            let (Some(started), Some(ended), Some(_), false) = (
                session.started_ms,
                session.ended_ms,
                session.meter,
                session.meter_final,
            ) else {
                return Err(refuse());
            };
            let out = measure(session, started, ended, fee_bps, evidence);
            Ok(Transition {
                meter: Some(out.meter),
                meter_final: true,
                derived_windows: Some(out.windows),
                ..base
            })
        }
        _ => Err(refuse()),
    }
}

/// The meter of `session` from `started_ms` to `ended_ms`, judged by the
/// recorded PAUSED and NETWORK_ERROR windows and `evidence`.
pub fn measure(
    session: &Session,
    started_ms: UnixMillis,
    ended_ms: UnixMillis,
    fee_bps: u32,
    evidence: Evidence<'_>,
) -> meter::MeterOutput {
    use lx_protocol::api::WindowReason::{NetworkError, Paused};
    // Derived windows are recomputed from the fixes, never fed back in.
    let recorded: Vec<_> = session
        .windows
        .iter()
        .filter(|w| matches!(w.reason, Paused | NetworkError))
        .copied()
        .collect();
    meter::compute(MeterInput {
        started_ms,
        ended_ms,
        max_duration_seconds: session.max_duration_seconds,
        rate_micro_usdc: session.rate_micro_usdc,
        fee_bps,
        windows: &recorded,
        fixes: evidence.fixes,
        telemetry: evidence.rules,
    })
}

/// LIVE or PAUSED → ENDED (or EXPIRED at the maximum duration), with the
/// meter as far as the samples so far allow; it is final later.
fn finish(
    session: &Session,
    base: &Transition,
    ended_ms: UnixMillis,
    fee_bps: u32,
    expiry: Option<ExpiryReason>,
    evidence: Evidence<'_>,
) -> Transition {
    let started = session.started_ms.unwrap_or(ended_ms);
    let out = measure(session, started, ended_ms, fee_bps, evidence);
    // Windows still open end with the session.
    let close_windows = session
        .windows
        .iter()
        .filter(|w| w.closed_ms.is_none())
        .filter(|w| matches!(w.reason, WindowReason::Paused | WindowReason::NetworkError))
        .map(|w| (w.reason, ended_ms))
        .collect();
    Transition {
        to: Some(if expiry.is_some() { Expired } else { Ended }),
        ended_ms: Some(ended_ms),
        expiry_reason: expiry,
        meter: Some(out.meter),
        derived_windows: Some(out.windows),
        close_windows,
        release: release_workspace(session, ended_ms),
        release_operator: session.operator_id,
        ..base.clone()
    }
}

/// A device-served session frees its device (`release_operator`); otherwise
/// the supplier workspace goes back ONLINE, idle since `now`.
fn release_workspace(session: &Session, now: UnixMillis) -> Option<(Uuid, UnixMillis)> {
    match session.operator_id {
        Some(_) => None,
        None => session.operator_workspace_id.map(|ws| (ws, now)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use lx_protocol::geo::Point;
    use lx_protocol::wallet::Address;

    pub(crate) fn build_session(state: SessionState) -> Session {
        Session {
            id: Uuid::from_u128(1),
            state,
            point: Point::new(4.71, -74.07),
            geofence_radius_m: 150,
            max_duration_seconds: 300,
            wait_timeout_seconds: 60,
            rate_micro_usdc: 1000,
            consumer_workspace_id: Uuid::from_u128(2),
            consumer_wallet: Address([7; 20]),
            operator_workspace_id: matches!(state, Assigned | Live | Paused)
                .then_some(Uuid::from_u128(3)),
            operator_id: None,
            quote_id: None,
            offer: None,
            created_ms: 1_000_000,
            assigned_ms: None,
            started_ms: matches!(state, Live | Paused).then_some(1_010_000),
            ended_ms: None,
            expiry_reason: None,
            media: None,
            meter: None,
            meter_final: false,
            windows: Vec::new(),
            min_trust_tier: 0,
            trust_tier: None,
        }
    }

    #[test]
    fn credit_exhausted_ends_a_live_session_metered_with_its_reason() {
        let s = build_session(Live);
        let now = s.started_ms.unwrap() + 10_000;
        let t = plan(&s, Action::CreditExhausted { now, fee_bps: 1000 }).unwrap();
        assert_eq!(t.to, Some(Expired));
        assert_eq!(t.expiry_reason, Some(ExpiryReason::InsufficientCredit));
        assert_eq!(t.ended_ms, Some(now));
        let meter = t.meter.unwrap();
        assert_eq!(meter.clean_seconds, 10, "metered up to the end: {meter:?}");
        assert_eq!(
            t.release,
            Some((Uuid::from_u128(3), now)),
            "the supplier is freed"
        );
        for state in [Requested, Assigned, Ended, Cancelled] {
            assert!(
                plan(
                    &build_session(state),
                    Action::CreditExhausted { now, fee_bps: 0 }
                )
                .is_err(),
                "{state}"
            );
        }
    }

    #[test]
    fn accept_needs_an_open_offer_to_the_caller() {
        let ws = Uuid::from_u128(9);
        let mut s = build_session(Requested);
        assert_eq!(
            plan(
                &s,
                Action::Accept {
                    workspace: ws,
                    device: None,
                    now: 1
                }
            ),
            Err(LifecycleError::NotOffered)
        );
        s.offer = Some(Offer {
            workspace_id: ws,
            expires_ms: 2_000_000,
        });
        let t = plan(
            &s,
            Action::Accept {
                workspace: ws,
                device: None,
                now: 1_500_000,
            },
        )
        .unwrap();
        assert_eq!(t.to, Some(Assigned));
        assert_eq!(t.claim, Some(ws));
        assert_eq!(t.expected, Some(Requested));
        assert_eq!(
            plan(
                &s,
                Action::Accept {
                    workspace: ws,
                    device: None,
                    now: 2_000_000
                }
            ),
            Err(LifecycleError::OfferExpired)
        );
    }

    #[test]
    fn a_device_assignment_claims_the_device_and_frees_it_at_the_end() {
        let device = Uuid::from_u128(77);
        let s = build_session(Requested);
        let t = plan(
            &s,
            Action::Assign {
                workspace: Uuid::from_u128(3),
                device: Some(device),
                now: 5,
            },
        )
        .unwrap();
        assert_eq!(
            (t.claim, t.claim_operator, t.operator_id),
            (None, Some(device), Some(device))
        );
        let mut live = build_session(Live);
        live.operator_id = Some(device);
        let t = plan(
            &live,
            Action::End {
                now: 1_020_000,
                fee_bps: 0,
            },
        )
        .unwrap();
        assert_eq!((t.release, t.release_operator), (None, Some(device)));
    }

    #[test]
    fn the_final_meter_counts_late_fixes_once() {
        let mut s = build_session(Ended);
        s.started_ms = Some(1_000_000);
        s.ended_ms = Some(1_010_000);
        s.meter = Some(crate::store::Meter::default());
        let fixes: Vec<Fix> = (0..10)
            .map(|i| Fix {
                captured_ms: 1_000_100 + i * 1000,
                point: s.point,
                accuracy_cm: 100,
            })
            .collect();
        let rules = TelemetryRules {
            requested: s.point,
            geofence_radius_m: 150.0,
            fresh_ms: 3000,
            max_accuracy_cm: 5000,
        };
        let t = plan_with(
            &s,
            Action::FinalizeMeter { fee_bps: 0 },
            Evidence {
                fixes: &fixes,
                rules: Some(rules),
            },
        )
        .unwrap();
        assert!(t.meter_final);
        assert_eq!(t.meter.unwrap().clean_seconds, 10);
        s.meter_final = true;
        assert!(plan(&s, Action::FinalizeMeter { fee_bps: 0 }).is_err());
    }

    #[test]
    fn a_session_asking_for_tier_1_is_never_assigned_to_a_workspace_without_a_device() {
        let mut s = build_session(Requested);
        s.min_trust_tier = TRUST_TIER_DEVICE;
        let ws = Uuid::from_u128(3);
        let alone = Action::Assign {
            workspace: ws,
            device: None,
            now: 5,
        };
        assert_eq!(
            plan(&s, alone),
            Err(LifecycleError::BelowMinTrustTier {
                required: 1,
                offered: 0
            })
        );
        let device = Uuid::from_u128(77);
        let t = plan(
            &s,
            Action::Assign {
                workspace: ws,
                device: Some(device),
                now: 5,
            },
        )
        .unwrap();
        assert_eq!(t.trust_tier, Some(TRUST_TIER_DEVICE));
        // An offer accepted without a device is refused the same way.
        s.offer = Some(Offer {
            workspace_id: ws,
            expires_ms: 2_000_000,
        });
        let accept = |device| Action::Accept {
            workspace: ws,
            device,
            now: 1_500_000,
        };
        assert!(matches!(
            plan(&s, accept(None)),
            Err(LifecycleError::BelowMinTrustTier { .. })
        ));
        assert_eq!(plan(&s, accept(Some(device))).unwrap().trust_tier, Some(1));
        // A tier-0 session takes either, and records which.
        s.min_trust_tier = 0;
        assert_eq!(plan(&s, accept(None)).unwrap().trust_tier, Some(0));
    }

    #[test]
    fn a_supplier_not_live_in_time_gives_the_session_back_and_cools_down() {
        let mut s = build_session(Assigned);
        s.assigned_ms = Some(1_005_000);
        s.trust_tier = Some(0);
        s.media = Some(crate::store::MediaEndpoints {
            backend_ref: "r".into(),
            whip_url: "w".into(),
            whep_url: "v".into(),
        });
        let timeout = |now| Action::LiveTimedOut {
            now,
            timeout_ms: 30_000,
            cooldown_ms: 300_000,
        };
        assert_eq!(plan(&s, timeout(1_034_999)), Err(LifecycleError::NotDue));
        let t = plan(&s, timeout(1_035_000)).unwrap();
        let ws = Uuid::from_u128(3);
        assert_eq!((t.expected, t.to), (Some(Assigned), Some(Requested)));
        assert!(t.unassign);
        assert_eq!(
            t.release,
            Some((ws, 1_035_000)),
            "the workspace is free again"
        );
        assert_eq!(t.release_media, s.media, "its media is torn down");
        assert_eq!(t.record_attempt, Some(ws), "and the attempt kept");
        assert_eq!(
            t.cool_down,
            Some(CoolDown {
                workspace: ws,
                operator: None,
                until: 1_335_000
            })
        );
        // With a device: the device is freed, and both cool down.
        let device = Uuid::from_u128(77);
        s.operator_id = Some(device);
        let t = plan(&s, timeout(1_040_000)).unwrap();
        assert_eq!((t.release, t.release_operator), (None, Some(device)));
        assert_eq!(t.cool_down.unwrap().operator, Some(device));
        // Off when the timeout is 0; never from another state.
        let off = Action::LiveTimedOut {
            now: i64::MAX,
            timeout_ms: 0,
            cooldown_ms: 1,
        };
        assert_eq!(plan(&s, off), Err(LifecycleError::NotDue));
        for state in [Requested, Live, Paused, Ended] {
            assert!(plan(&build_session(state), timeout(i64::MAX / 2)).is_err());
        }
    }

    #[test]
    fn live_is_entered_only_by_the_first_frame() {
        let s = build_session(Assigned);
        let t = plan(&s, Action::FirstFrame { at: 1_234 }).unwrap();
        assert_eq!((t.to, t.started_ms), (Some(Live), Some(1_234)));
        let live = build_session(Live);
        assert!(plan(&live, Action::FirstFrame { at: 5 }).is_err());
    }

    #[test]
    fn cancel_is_refused_once_live_and_names_the_state() {
        let s = build_session(Live);
        assert_eq!(
            plan(&s, Action::Cancel { now: 5 }),
            Err(LifecycleError::NotAllowed {
                operation: "cancel",
                state: Live
            })
        );
    }

    #[test]
    fn ending_before_live_cancels_and_frees_the_supplier() {
        let s = build_session(Assigned);
        let t = plan(
            &s,
            Action::End {
                now: 1_005_000,
                fee_bps: 1000,
            },
        )
        .unwrap();
        assert_eq!(t.to, Some(Cancelled));
        assert_eq!(t.release, Some((Uuid::from_u128(3), 1_005_000)));
        assert!(t.meter.is_none());
    }

    #[test]
    fn ending_a_live_session_meters_it() {
        let s = build_session(Live);
        let t = plan(
            &s,
            Action::End {
                now: 1_040_000,
                fee_bps: 1000,
            },
        )
        .unwrap();
        let meter = t.meter.unwrap();
        assert_eq!(meter.clean_seconds, 30);
        assert_eq!(meter.charged_micro_usdc, 30_000);
        assert_eq!(t.to, Some(Ended));
    }

    #[test]
    fn ending_while_paused_closes_the_pause() {
        let mut s = build_session(Paused);
        s.windows.push(crate::store::Window {
            reason: WindowReason::Paused,
            opened_ms: 1_020_000,
            closed_ms: None,
        });
        let t = plan(
            &s,
            Action::End {
                now: 1_040_000,
                fee_bps: 0,
            },
        )
        .unwrap();
        assert_eq!(t.close_windows, vec![(WindowReason::Paused, 1_040_000)]);
        assert_eq!(t.meter.unwrap().clean_seconds, 10);
    }

    #[test]
    fn at_the_window_caps_a_pause_is_refused_and_a_new_gap_joins_the_last() {
        let window = |reason, i: i64| crate::store::Window {
            reason,
            opened_ms: 1_010_000 + i * 10,
            closed_ms: Some(1_010_000 + i * 10 + 5),
        };
        // A supplier whose media flapped a thousand times: the consumer
        // still pauses, and the next gap joins the last.
        let mut s = build_session(Live);
        for i in 0..MAX_RECORDED_WINDOWS as i64 {
            s.windows.push(window(WindowReason::NetworkError, i));
        }
        assert!(plan(&s, Action::Pause { now: 1_030_000 }).is_ok());
        let t = plan(&s, Action::MediaLost { at: 1_030_000 }).unwrap();
        assert_eq!(t.open_window, None);
        assert_eq!(t.reopen_window, Some(WindowReason::NetworkError));
        s.windows.pop();
        let t = plan(&s, Action::MediaLost { at: 1_030_000 }).unwrap();
        assert_eq!(
            t.open_window,
            Some((WindowReason::NetworkError, 1_030_000)),
            "under the cap, a gap is its own window"
        );
        // A consumer who paused a thousand times pauses no more.
        let mut s = build_session(Live);
        for i in 0..MAX_RECORDED_WINDOWS as i64 {
            s.windows.push(window(WindowReason::Paused, i));
        }
        assert_eq!(
            plan(&s, Action::Pause { now: 1_030_000 }),
            Err(LifecycleError::TooManyWindows(MAX_RECORDED_WINDOWS))
        );
        let t = plan(&s, Action::MediaLost { at: 1_030_000 }).unwrap();
        assert_eq!(t.open_window, Some((WindowReason::NetworkError, 1_030_000)));
    }

    #[test]
    fn the_wait_expiry_fires_only_after_its_deadline() {
        let s = build_session(Assigned);
        assert_eq!(
            plan(&s, Action::ExpireWait { now: 1_059_999 }),
            Err(LifecycleError::NotDue)
        );
        let t = plan(&s, Action::ExpireWait { now: 1_060_000 }).unwrap();
        assert_eq!(t.to, Some(Expired));
        assert_eq!(t.expiry_reason, Some(ExpiryReason::WaitTimeout));
        assert!(t.release.is_some());
    }

    #[test]
    fn an_overrun_is_metered_up_to_the_maximum_only() {
        let s = build_session(Live);
        let t = plan(
            &s,
            Action::ExpireMaxDuration {
                now: 2_000_000,
                fee_bps: 1000,
            },
        )
        .unwrap();
        assert_eq!(t.ended_ms, Some(1_010_000 + 300_000));
        assert_eq!(t.meter.unwrap().clean_seconds, 300);
        assert_eq!(t.expiry_reason, Some(ExpiryReason::MaxDuration));
    }

    #[test]
    fn nothing_leaves_a_terminal_state() {
        for state in [Ended, Cancelled, Expired] {
            let s = build_session(state);
            for action in [
                Action::Cancel { now: 1 },
                Action::End { now: 1, fee_bps: 0 },
                Action::FirstFrame { at: 1 },
                Action::Pause { now: 1 },
                Action::ExpireWait { now: i64::MAX },
            ] {
                assert!(plan(&s, action).is_err(), "{state} accepted {action:?}");
            }
        }
    }
}
