//! The relayer: settles each ENDED session's final meter on chain.
//!
//! Every `interval` it queues the sessions whose final meter charged
//! something (each consumer's next sequences follow the higher of the
//! store's last and the contract's `lastSequence`, read before numbering),
//! then:
//!
//! - with a transaction in flight, it waits for its receipt and for
//!   `confirmations` blocks, then marks its settlements CONFIRMED; a
//!   reverted one goes back to PENDING. One without a receipt whose nonce
//!   was spent is looked up in the contract's `Settled` events; one still
//!   unmined after `resubmit_after_ms` is replaced: the same settlements,
//!   the same nonce, a higher fee. One transaction at a time keeps the nonce
//!   simple and makes a restart between submit and confirm a no-op:
//!   SUBMITTED records carry the hash and the nonce.
//! - otherwise it takes each consumer's lowest open settlement, strictly:
//!   a consumer whose lowest is not due (backing off, or a debt waiting for
//!   its next try) contributes nothing to the pass, because the contract
//!   refuses a sequence below one it has settled. It asks the contract about
//!   each alone and sends those it accepts in one `settleBatch` (or
//!   `settleFromPool` for one), `batch_max` at most.
//!
//! Refusals: an empty pool or a rate above the consumer's cap is the
//! consumer's doing: the settlement is UNPAID, a debt, tried again every
//! `debt_retry_ms` (it goes through once the pool has grown) and blocking
//! the consumer's new sessions until then. Over the rate or any other
//! refusal is our fault: FAILED with the reason, never retried. "Already
//! settled" is CONFIRMED if its `Settled` event exists (a restore), else
//! FAILED.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use lx_protocol::time::UnixMillis;
use tokio::sync::watch;

use crate::app::App;
use crate::chain::{ChainError, Revert, SettleItem, Settler};
use crate::store::{Lease, SettlementRecord, SettlementState, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayerConfig {
    pub interval: Duration,
    /// Settlements per transaction, 1 to 100.
    pub batch_max: usize,
    /// Blocks from the settlement's own before it is CONFIRMED (1: mined).
    pub confirmations: u64,
    /// How often a debt (UNPAID) is tried against the pool again.
    pub debt_retry_ms: i64,
    /// A transaction unmined this long is replaced (same nonce, higher fee).
    pub resubmit_after_ms: i64,
}

impl RelayerConfig {
    pub fn from_config(config: &crate::config::Config) -> Self {
        let c = &config.chain;
        Self {
            interval: Duration::from_millis(c.settle_interval_ms.max(50)),
            batch_max: (c.settle_batch_max as usize).clamp(1, 100),
            confirmations: u64::from(c.confirmations.max(1)),
            debt_retry_ms: i64::from(c.debt_retry_seconds.max(1)) * 1000,
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
    /// Transactions replaced by one with the same nonce and a higher fee.
    pub replaced: usize,
    pub confirmed: usize,
    /// Settlements that became debts.
    pub unpaid: usize,
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

/// What `GET /settlements/{id}` may show of a chain error: its kind, not its
/// text, which can carry the RPC URL (and a provider's key in it). The text
/// goes to the server's log.
fn shown(err: &ChainError) -> String {
    tracing::warn!(%err, "settlement chain call failed");
    match err {
        ChainError::Unreachable(_) => "the settlement chain did not answer; retried".to_owned(),
        ChainError::Config(_) => {
            "the relayer's chain configuration is wrong; see the server log".to_owned()
        }
    }
}

/// A passing fault (transport, a reverted transaction): PENDING again after a backoff.
fn retry(r: &mut SettlementRecord, now: UnixMillis, why: String) {
    r.state = SettlementState::Pending;
    r.attempts += 1;
    r.last_error = Some(why);
    r.next_attempt_ms = now + backoff_ms(r.attempts);
    r.updated_ms = now;
}

fn confirm(r: &mut SettlementRecord, now: UnixMillis, tx: String, block: u64) {
    r.state = SettlementState::Confirmed;
    r.tx_hash = Some(tx);
    r.block = Some(block);
    r.verify_onchain = false;
    r.updated_ms = now;
}

/// Each consumer's lowest open settlement, if it is due: a consumer whose
/// lowest is waiting contributes nothing, so its sequences go on chain in
/// order. `open` is sorted by consumer, then sequence.
fn due_heads(open: Vec<SettlementRecord>, now: UnixMillis, limit: usize) -> Vec<SettlementRecord> {
    let mut seen = HashSet::new();
    open.into_iter()
        .filter(|r| seen.insert(r.consumer))
        .filter(|r| r.next_attempt_ms <= now)
        .take(limit)
        .collect()
}

/// Queues the sessions whose final meter is in, numbering each consumer's
/// after the contract's `lastSequence` when that is ahead of the store.
async fn queue(app: &App, settler: &dyn Settler, now: UnixMillis) -> Result<usize, RelayerError> {
    let consumers = app.store.unqueued_consumers().await?;
    if consumers.is_empty() {
        return Ok(0);
    }
    let mut chain_last = Vec::with_capacity(consumers.len());
    for (consumer, stored) in consumers {
        let last = settler.last_sequence(consumer).await?;
        if last > stored {
            tracing::warn!(%consumer, stored, onchain = last,
                "the contract is ahead of the store (a restore?): numbering after it, and looking for each session's Settled event before sending");
        }
        chain_last.push((consumer, last));
    }
    Ok(app.store.queue_settlements(now, &chain_last).await?)
}

/// One pass of the relayer at `now`.
pub async fn pass(
    app: &App,
    settler: &dyn Settler,
    config: &RelayerConfig,
    now: UnixMillis,
) -> Result<Pass, RelayerError> {
    let mut done = Pass {
        queued: queue(app, settler, now).await?,
        ..Pass::default()
    };
    let open = app.store.open_settlements(10_000).await?;
    let in_flight: Vec<_> = open
        .iter()
        .filter(|r| r.state == SettlementState::Submitted)
        .cloned()
        .collect();
    if !in_flight.is_empty() {
        let updated = follow(settler, config, in_flight, now, &mut done).await?;
        app.store.save_settlements(updated).await?;
        return Ok(done);
    }
    let mut updated = Vec::new();
    let mut batch = Vec::new();
    for mut r in due_heads(open, now, config.batch_max) {
        if r.verify_onchain {
            match settler.settled_event(r.session_id).await {
                Ok(Some((tx, block))) => {
                    confirm(&mut r, now, tx, block);
                    done.confirmed += 1;
                    updated.push(r);
                    continue;
                }
                Ok(None) => r.verify_onchain = false,
                Err(err) => {
                    retry(&mut r, now, shown(&err));
                    updated.push(r);
                    break;
                }
            }
        }
        match settler.simulate(&item(&r)).await {
            Ok(None) => batch.push(r),
            Ok(Some(revert @ Revert::AlreadySettled { .. })) => {
                // Ours went through before (a restart lost the record of it),
                // or a later sequence of the consumer went first and this one
                // can no longer be settled.
                match settler.settled_event(r.session_id).await {
                    Ok(Some((tx, block))) => {
                        confirm(&mut r, now, tx, block);
                        done.confirmed += 1;
                    }
                    Ok(None) => {
                        r.state = SettlementState::Failed;
                        r.last_error = Some(revert.to_string());
                        r.updated_ms = now;
                        done.failed += 1;
                    }
                    Err(err) => {
                        retry(&mut r, now, shown(&err));
                        updated.push(r);
                        break;
                    }
                }
                updated.push(r);
            }
            Ok(Some(
                revert @ (Revert::InsufficientDeposit { .. } | Revert::RateAboveMax { .. }),
            )) => {
                if r.state != SettlementState::Unpaid {
                    tracing::warn!(session = %r.session_id, consumer = %r.consumer, %revert,
                        "settlement unpaid: a debt of the consumer until its pool covers it");
                    done.unpaid += 1;
                }
                r.state = SettlementState::Unpaid;
                r.attempts += 1;
                r.last_error = Some(revert.to_string());
                r.next_attempt_ms = now + config.debt_retry_ms;
                r.updated_ms = now;
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
                retry(&mut r, now, shown(&err));
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
                    retry(&mut r, now, shown(&err));
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
                        confirm(&mut r, now, hash.clone(), mined.block);
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
                let nonce = records.iter().find_map(|r| r.nonce);
                let spent = match nonce {
                    Some(n) => settler.mined_nonce().await? > n,
                    None => true,
                };
                if spent {
                    // Another transaction with this nonce was mined (the one
                    // this replaced, or one sent around the relayer): the
                    // contract's events say whether it settled these.
                    for mut r in records {
                        match settler.settled_event(r.session_id).await? {
                            Some((tx, block)) => {
                                confirm(&mut r, now, tx, block);
                                done.confirmed += 1;
                            }
                            None => retry(
                                &mut r,
                                now,
                                format!(
                                    "transaction {hash} was not mined and its nonce went to another"
                                ),
                            ),
                        }
                        updated.push(r);
                    }
                    continue;
                }
                let waited = records
                    .iter()
                    .map(|r| now - r.updated_ms)
                    .min()
                    .unwrap_or(0);
                if waited < config.resubmit_after_ms {
                    continue;
                }
                let items: Vec<SettleItem> = records.iter().map(item).collect();
                let stuck = crate::chain::Submitted {
                    tx_hash: hash.clone(),
                    nonce: nonce.unwrap_or_default(),
                };
                match settler.replace(&items, &stuck).await {
                    Ok(sent) => {
                        tracing::warn!(old = %hash, new = %sent.tx_hash, nonce = sent.nonce,
                            "settlement transaction unmined; replaced with a higher fee");
                        done.replaced += 1;
                        for mut r in records {
                            r.tx_hash = Some(sent.tx_hash.clone());
                            r.attempts += 1;
                            r.last_error =
                                Some(format!("transaction {hash} was not mined; replaced"));
                            r.updated_ms = now;
                            updated.push(r);
                        }
                    }
                    Err(err) => {
                        // Left SUBMITTED: the next pass looks again, and a
                        // nonce spent meanwhile is found above.
                        tracing::warn!(%err, tx = %hash, "could not replace the unmined settlement transaction");
                        for mut r in records {
                            r.last_error = Some(format!(
                                "transaction {hash} was not mined and could not be replaced yet: {}",
                                shown(&err)
                            ));
                            updated.push(r);
                        }
                    }
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
                // One replica settles at a time: one key, one nonce sequence.
                match app.store.hold_lease(Lease::Relayer).await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(err) => {
                        tracing::warn!(%err, "relayer lease not checked; next pass retries");
                        continue;
                    }
                }
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
