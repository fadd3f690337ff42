//! Retention: the rows that only grow (challenges, unused quotes, heartbeat
//! samples, location heartbeats, dispatch attempts, enrollment tokens,
//! webhook deliveries and events, closed outages, revoked cookies) are
//! dropped once they are `[retention]`'s ages past the point they can matter.
//! Anything a session's meter, settlement or proof needs is kept.

use std::sync::Arc;
use std::time::Duration;

use lx_protocol::time::UnixMillis;
use tokio::sync::watch;

use crate::app::App;
use crate::config::RetentionConfig;
use crate::store::PruneBefore;

/// The cutoffs of a pass at `now`.
pub fn cutoffs(config: &RetentionConfig, now: UnixMillis) -> PruneBefore {
    let before = |seconds: u64| {
        now.saturating_sub(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX))
    };
    PruneBefore {
        challenges_ms: before(config.challenges_seconds),
        quotes_ms: before(config.quotes_seconds),
        heartbeat_samples_ms: before(config.heartbeat_samples_seconds),
        locations_ms: before(config.locations_seconds),
        dispatch_attempts_ms: before(config.dispatch_attempts_seconds),
        enrollment_tokens_ms: before(config.enrollment_tokens_seconds),
        webhook_rows_ms: before(config.webhook_rows_seconds),
        outages_ms: before(config.outages_seconds),
        cookies_ms: now,
    }
}

/// Prunes every `interval_seconds` until `shutdown` turns true.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let period = Duration::from_secs(app.config.retention.interval_seconds.max(1));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match app.store.prune(cutoffs(&app.config.retention, app.now())).await {
                    Ok(0) => {}
                    Ok(rows) => tracing::info!(rows, "retention: old rows pruned"),
                    Err(err) => tracing::warn!(%err, "retention pass failed; the next one retries"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
