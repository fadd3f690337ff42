//! The relayer: settles each ENDED session's final meter on chain.
//!
//! Every `interval` it queues the sessions whose final meter charged
//! something (the store gives each consumer's the next sequences), then:
//!
//! - with a transaction in flight, it waits for its receipt and for
//!   `confirmations` blocks, then marks its settlements CONFIRMED; a
//!   reverted one goes back to PENDING; one the node lost is looked up in
//!   the contract's `Settled` events (settled after all: CONFIRMED) and sent
//!   again otherwise. One transaction at a time keeps the nonce simple and
//!   makes a restart between submit and confirm a no-op: SUBMITTED records
//!   carry the hash, and the contract refuses a second settle anyway.
//! - otherwise it takes the due PENDING settlements, at most one per
//!   consumer (its lowest sequence: the contract wants them in order) and
//!   `batch_max` in all, asks the contract about each alone, and sends those
//!   it accepts in one `settleBatch` (or `settleFromPool` for one). A refusal
//!   for good (over the rate, above the consumer's cap) is FAILED with the
//!   reason and never retried; an empty pool is retried with backoff up to
//!   `max_attempts`; one the contract calls already settled is CONFIRMED if
//!   its `Settled` event exists, FAILED if a later sequence went first.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lx_protocol::time::UnixMillis;
use tokio::sync::watch;

use crate::app::App;
use crate::chain::{ChainError, Revert, SettleItem, Settler};
use crate::store::{SettlementRecord, SettlementState, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayerConfig {
    pub interval: Duration,
    /// Settlements per transaction, 1 to 100.
    pub batch_max: usize,
    /// Blocks from the settlement's own before it is CONFIRMED (1: mined).
    pub confirmations: u64,
    /// Tries for a settlement refused for a passing reason (an empty pool).
    pub max_attempts: u32,
    /// A transaction with no receipt after this long is looked up and sent again.
    pub resubmit_after_ms: i64,
}

impl RelayerConfig {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let c = &config.chain;
        Self {
            interval: Duration::from_millis(c.settle_interval_ms.max(50)),
            batch_max: (c.settle_batch_max as usize).clamp(1, 100),
            confirmations: u64::from(c.confirmations.max(1)),
            max_attempts: c.settle_max_attempts.max(1),
            resubmit_after_ms: i64::from(c.resubmit_after_seconds) * 1000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub queued: usize,
    pub submitted: usize,
    pub confirmed: usize,
    pub failed: usize,
}

fn backoff_ms(attempts: u32) -> i64 {
    (1000i64 << attempts.min(6)).min(60_000)
}

fn item(r: &SettlementRecord) -> SettleItem {
    SettleItem {
        session_id: r.session_id,
        consumer: r.consumer,
        operator: r.operator,
        sequence: r.sequence,
        rate_micro_usdc: r.rate_micro_usdc,
        seconds: r.seconds,
        to_amount: r.to_amount,
        fee_amount: r.fee_amount,
    }
}

fn retry(r: &mut SettlementRecord, now: UnixMillis, why: String) {
    r.state = SettlementState::Pending;
    r.attempts += 1;
    r.last_error = Some(why);
    r.next_attempt_ms = now + backoff_ms(r.attempts);
    r.updated_ms = now;
}

/// One pass of the relayer at `now`.
pub async fn pass(
    app: &App,
    settler: &dyn Settler,
    config: &RelayerConfig,
    now: UnixMillis,
) -> Result<Pass, RelayerError> {
    let mut done = Pass {
        queued: app.store.queue_settlements(now).await?,
        ..Pass::default()
    };
    let open = app.store.open_settlements(10_000).await?;
    let (in_flight, pending): (Vec<_>, Vec<_>) = open
        .into_iter()
        .partition(|r| r.state == SettlementState::Submitted);
    if !in_flight.is_empty() {
        let updated = follow(settler, config, in_flight, now, &mut done).await?;
        app.store.save_settlements(updated).await?;
        return Ok(done);
    }
    let mut seen = HashSet::new();
    let due: Vec<SettlementRecord> = pending
        .into_iter()
        .filter(|r| r.next_attempt_ms <= now)
        .filter(|r| seen.insert(r.consumer))
        .take(config.batch_max)
        .collect();
    let mut updated = Vec::new();
    let mut batch = Vec::new();
    for mut r in due {
        match settler.simulate(&item(&r)).await {
            Ok(None) => batch.push(r),
            Ok(Some(revert @ Revert::AlreadySettled { .. })) => {
                // Ours went through before (a restart lost the record of it),
                // or a later sequence of the consumer went first and this one
                // can no longer be settled.
                match settler.settled_event(r.session_id).await {
                    Ok(Some((tx, block))) => {
                        r.state = SettlementState::Confirmed;
                        r.tx_hash = Some(tx);
                        r.block = Some(block);
                        done.confirmed += 1;
                    }
                    Ok(None) => {
                        r.state = SettlementState::Failed;
                        r.last_error = Some(revert.to_string());
                        done.failed += 1;
                    }
                    Err(err) => {
                        retry(&mut r, now, err.to_string());
                        updated.push(r);
                        break;
                    }
                }
                r.updated_ms = now;
                updated.push(r);
            }
            Ok(Some(revert @ Revert::InsufficientDeposit { .. }))
                if r.attempts + 1 < config.max_attempts =>
            {
                retry(&mut r, now, revert.to_string());
                updated.push(r);
            }
            Ok(Some(revert)) => {
                tracing::warn!(session = %r.session_id, %revert, "settlement refused by the contract");
                r.state = SettlementState::Failed;
                r.attempts += 1;
                r.last_error = Some(revert.to_string());
                r.updated_ms = now;
                done.failed += 1;
                updated.push(r);
            }
            Err(err) => {
                retry(&mut r, now, err.to_string());
                updated.push(r);
                break;
            }
        }
    }
    if !batch.is_empty() {
        let items: Vec<SettleItem> = batch.iter().map(item).collect();
        match settler.submit(&items).await {
            Ok(sent) => {
                tracing::info!(tx = %sent.tx_hash, nonce = sent.nonce, settlements = batch.len(), "settlement sent");
                for mut r in batch {
                    r.state = SettlementState::Submitted;
                    r.tx_hash = Some(sent.tx_hash.clone());
                    r.nonce = Some(sent.nonce);
                    r.attempts += 1;
                    r.updated_ms = now;
                    done.submitted += 1;
                    updated.push(r);
                }
            }
            Err(err) => {
                tracing::warn!(%err, "settlement not sent");
                for mut r in batch {
                    retry(&mut r, now, err.to_string());
                    updated.push(r);
                }
            }
        }
    }
    app.store.save_settlements(updated).await?;
    Ok(done)
}

/// Follows the transaction in flight.
async fn follow(
    settler: &dyn Settler,
    config: &RelayerConfig,
    in_flight: Vec<SettlementRecord>,
    now: UnixMillis,
    done: &mut Pass,
) -> Result<Vec<SettlementRecord>, RelayerError> {
    let mut by_hash: HashMap<String, Vec<SettlementRecord>> = HashMap::new();
    for r in in_flight {
        by_hash
            .entry(r.tx_hash.clone().unwrap_or_default())
            .or_default()
            .push(r);
    }
    let head = settler.block_number().await?;
    let mut updated = Vec::new();
    for (hash, records) in by_hash {
        match settler.receipt(&hash).await? {
            Some(mined) if mined.success => {
                if head + 1 >= mined.block + config.confirmations {
                    for mut r in records {
                        r.state = SettlementState::Confirmed;
                        r.block = Some(mined.block);
                        r.updated_ms = now;
                        done.confirmed += 1;
                        updated.push(r);
                    }
                }
            }
            Some(_) => {
                for mut r in records {
                    retry(&mut r, now, format!("transaction {hash} reverted"));
                    updated.push(r);
                }
            }
            None => {
                let waited = records
                    .iter()
                    .map(|r| now - r.updated_ms)
                    .min()
                    .unwrap_or(0);
                if waited < config.resubmit_after_ms {
                    continue;
                }
                for mut r in records {
                    match settler.settled_event(r.session_id).await? {
                        Some((tx, block)) => {
                            r.state = SettlementState::Confirmed;
                            r.tx_hash = Some(tx);
                            r.block = Some(block);
                            r.updated_ms = now;
                            done.confirmed += 1;
                        }
                        None => retry(&mut r, now, format!("transaction {hash} was not mined")),
                    }
                    updated.push(r);
                }
            }
        }
    }
    Ok(updated)
}

/// Runs the relayer until `shutdown` turns true.
pub async fn run(
    app: Arc<App>,
    settler: Arc<dyn Settler>,
    config: RelayerConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    tracing::info!(relayer = %settler.relayer(), "relayer running");
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                match pass(&app, settler.as_ref(), &config, app.now()).await {
                    Ok(p) if p != Pass::default() => tracing::debug!(?p, "relayer pass"),
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "relayer pass failed; next pass retries"),
                }
            }
            _ = shutdown.changed() => break,
        }
    }
}
