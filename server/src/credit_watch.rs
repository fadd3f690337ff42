//! The credit watch: a LIVE session is paid from a pool its consumer can
//! still shrink (a withdrawal request, a settlement of another session, a
//! rate cap set meanwhile). Every `credit.watch_interval_ms` it reads the
//! pool of each consumer with LIVE or PAUSED sessions (one call each) and
//! ends those sessions whose accrued charge the pool no longer covers:
//! EXPIRED with `expiryReason` INSUFFICIENT_CREDIT, metered and settled up
//! to then. The deposit itself stays in the contract through the
//! withdrawal notice, so the seconds served are still paid.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use lx_protocol::time::UnixMillis;
use lx_protocol::wallet::Address;
use tokio::sync::watch;

use crate::app::{ActError, App};
use crate::credit::{Obligations, PoolState};
use crate::session::lifecycle::Action;
use crate::store::{ApplyError, Session};

/// The most a session can have charged by `at`: every second since it
/// started, up to its maximum duration.
fn accrued_micro_usdc(session: &Session, at: UnixMillis) -> u64 {
    let started = session.started_ms.unwrap_or(at);
    let seconds = u64::try_from((at - started).max(0))
        .unwrap_or(0)
        .div_ceil(1000);
    session
        .rate_micro_usdc
        .saturating_mul(seconds.min(u64::from(session.max_duration_seconds)))
}

/// Whether the consumer's pool fails its live sessions at `now`: what it
/// keeps after the requested withdrawal and its unsettled charges must
/// cover what they will have accrued by the next look (`horizon_ms` on).
pub fn short_of_credit(
    pool: &PoolState,
    owed: &Obligations,
    live: &[Session],
    now: UnixMillis,
    horizon_ms: i64,
) -> bool {
    if live.iter().any(|s| pool.refuses_rate(s.rate_micro_usdc)) {
        return true;
    }
    let cover = pool
        .committed_micro_usdc()
        .saturating_sub(owed.unsettled_beyond(pool.last_sequence));
    let accrued = live
        .iter()
        .map(|s| accrued_micro_usdc(s, now + horizon_ms))
        .fold(0u64, u64::saturating_add);
    cover < accrued
}

/// One look at every consumer with live sessions; returns how many
/// sessions it ended.
pub async fn pass(app: &App, now: UnixMillis) -> usize {
    let live = match app.store.live_sessions(10_000).await {
        Ok(live) => live,
        Err(err) => {
            tracing::warn!(%err, "credit watch could not read the live sessions");
            return 0;
        }
    };
    let mut by_consumer: BTreeMap<Address, Vec<Session>> = BTreeMap::new();
    for s in live {
        by_consumer.entry(s.consumer_wallet).or_default().push(s);
    }
    let horizon_ms = i64::try_from(app.config.credit.watch_interval_ms).unwrap_or(i64::MAX);
    let mut ended = 0;
    for (wallet, sessions) in by_consumer {
        let pool = match app.credit.pool(wallet).await {
            Ok(pool) => pool,
            Err(err) => {
                // Not knowing is not a reason to cut a paying session.
                tracing::warn!(%err, consumer = %wallet, "credit watch could not read the pool");
                continue;
            }
        };
        let owed = match app.store.obligations(wallet).await {
            Ok(owed) => owed,
            Err(err) => {
                tracing::warn!(%err, consumer = %wallet, "credit watch could not read what is owed");
                continue;
            }
        };
        if !short_of_credit(&pool, &owed, &sessions, now, horizon_ms) {
            continue;
        }
        for session in sessions {
            let action = Action::CreditExhausted {
                now,
                fee_bps: app.fee_bps(),
            };
            match app.act(&session, action).await {
                Ok(_) => {
                    ended += 1;
                    tracing::warn!(session = %session.id, consumer = %wallet,
                        deposit = pool.deposit_micro_usdc,
                        withdrawal_requested = pool.withdrawal_requested_micro_usdc,
                        cap = ?pool.max_rate_per_second,
                        "session ended: the consumer's pool no longer covers it");
                }
                // It ended meanwhile.
                Err(ActError::Lifecycle(_)) | Err(ActError::Apply(ApplyError::State(_))) => {}
                Err(err) => {
                    tracing::warn!(session = %session.id, %err, "credit watch could not end the session")
                }
            }
        }
    }
    ended
}

/// Runs the watch until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_millis(app.config.credit.watch_interval_ms.max(100));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => { pass(&app, app.now()).await; }
            _ = shutdown.changed() => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::lifecycle::tests::build_session;
    use lx_protocol::api::SessionState;

    fn pool(deposit: u64, requested: u64) -> PoolState {
        PoolState {
            deposit_micro_usdc: deposit,
            withdrawal_requested_micro_usdc: requested,
            ..PoolState::default()
        }
    }

    #[test]
    fn a_withdrawal_request_below_the_accrued_charge_cuts_the_session() {
        // 1000 µUSDC/s, started 10 s ago: 10,000 accrued, 12,000 two seconds on.
        let s = build_session(SessionState::Live);
        let now = s.started_ms.unwrap() + 10_000;
        let live = [s];
        let owed = Obligations::default();
        assert!(!short_of_credit(
            &pool(300_000, 0),
            &owed,
            &live,
            now,
            2_000
        ));
        assert!(!short_of_credit(
            &pool(300_000, 288_000),
            &owed,
            &live,
            now,
            2_000
        ));
        assert!(short_of_credit(
            &pool(300_000, 288_001),
            &owed,
            &live,
            now,
            2_000
        ));
        assert!(short_of_credit(
            &pool(300_000, 300_000),
            &owed,
            &live,
            now,
            2_000
        ));
    }

    #[test]
    fn unsettled_charges_elsewhere_count_and_a_cap_below_the_rate_cuts_at_once() {
        let s = build_session(SessionState::Live);
        let now = s.started_ms.unwrap() + 10_000;
        let live = [s];
        let owed = Obligations {
            unsettled: 290_001,
            ..Obligations::default()
        };
        assert!(short_of_credit(&pool(300_000, 0), &owed, &live, now, 0));
        let mut capped = pool(1_000_000_000, 0);
        capped.max_rate_per_second = Some(999);
        assert!(short_of_credit(
            &capped,
            &Obligations::default(),
            &live,
            now,
            0
        ));
    }

    #[test]
    fn accrual_stops_at_the_maximum_duration() {
        let s = build_session(SessionState::Live);
        let far = s.started_ms.unwrap() + 10_000_000;
        assert_eq!(accrued_micro_usdc(&s, far), 300 * 1000);
    }
}
