//! Where a consumer's credit comes from: its pool in the settlement
//! contract (`poolOf(consumer)`, one call) or, without a chain, `static`
//! credit lines from the config.
//!
//! The pool is only the start. What a new session may hold is
//! [`available_micro_usdc`]: the deposit, less the withdrawal the consumer
//! requested (it leaves once the notice passes), less what the store knows
//! the consumer already owes or may owe (holds of open sessions, charges not
//! settled yet, debts).

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;
use lx_protocol::wallet::Address;

use crate::config::CreditConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreditError {
    #[error("credit source unavailable: {0}")]
    Unavailable(String),
}

/// A consumer's pool as the contract keeps it, in micro-USDC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolState {
    pub deposit_micro_usdc: u64,
    /// The consumer's last settled sequence.
    pub last_sequence: u64,
    /// The consumer's own cap on the rate; `None` when it set none.
    pub max_rate_per_second: Option<u64>,
    /// A withdrawal requested and not yet taken.
    pub withdrawal_requested_micro_usdc: u64,
    /// When the requested withdrawal can be taken, unix seconds.
    pub withdrawable_at_s: Option<u64>,
}

impl PoolState {
    /// The deposit that stays: less the requested withdrawal.
    pub fn committed_micro_usdc(&self) -> u64 {
        self.deposit_micro_usdc
            .saturating_sub(self.withdrawal_requested_micro_usdc)
    }

    /// Whether `rate` is above the consumer's cap.
    pub fn refuses_rate(&self, rate_micro_usdc: u64) -> bool {
        self.max_rate_per_second
            .is_some_and(|cap| rate_micro_usdc > cap)
    }
}

/// What the store knows a consumer owes or may owe, micro-USDC.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Obligations {
    /// Worst cases (`rate × maxDurationSeconds`) of the open sessions.
    pub held: u64,
    /// Charges of ended sessions not settled yet, debts included.
    pub unsettled: u64,
    /// The queued part of `unsettled`: (sequence, amount) of each PENDING,
    /// SUBMITTED or UNPAID settlement.
    pub queued: Vec<(u64, u64)>,
    /// UNPAID settlements: (session, amount, the contract's reason).
    pub debts: Vec<Debt>,
}

impl Obligations {
    /// `unsettled` less what the contract already took: a settlement whose
    /// sequence is at most the pool's `lastSequence` left the deposit, even
    /// while the store still waits for its confirmations.
    pub fn unsettled_beyond(&self, last_sequence: u64) -> u64 {
        let taken: u64 = self
            .queued
            .iter()
            .filter(|(sequence, _)| *sequence <= last_sequence)
            .map(|(_, amount)| amount)
            .fold(0, |a, b| a.saturating_add(*b));
        self.unsettled.saturating_sub(taken)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Debt {
    pub session_id: uuid::Uuid,
    pub amount_micro_usdc: u64,
    pub last_error: Option<String>,
}

/// What a new session's worst case must fit in.
pub fn available_micro_usdc(pool: &PoolState, owed: &Obligations) -> u64 {
    pool.committed_micro_usdc()
        .saturating_sub(owed.held)
        .saturating_sub(owed.unsettled_beyond(pool.last_sequence))
}

#[async_trait]
pub trait CreditSource: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The consumer's pool now.
    async fn pool(&self, wallet: Address) -> Result<PoolState, CreditError>;
}

/// Credit lines from the config, adjustable at run time (a top-up, a cap, a
/// withdrawal request: what tests without a chain need).
#[derive(Debug, Default)]
pub struct StaticCredit {
    default_micro_usdc: u64,
    wallets: RwLock<HashMap<Address, PoolState>>,
}

impl StaticCredit {
    pub fn from_config(config: &CreditConfig) -> anyhow::Result<Self> {
        let mut wallets = HashMap::new();
        for (text, amount) in &config.wallets {
            let address: Address = text
                .parse()
                .map_err(|e| anyhow::anyhow!("credit.wallets key '{text}': {e}"))?;
            wallets.insert(
                address,
                PoolState {
                    deposit_micro_usdc: *amount,
                    ..PoolState::default()
                },
            );
        }
        Ok(Self {
            default_micro_usdc: config.default_micro_usdc,
            wallets: RwLock::new(wallets),
        })
    }

    pub fn new(default_micro_usdc: u64) -> Self {
        Self {
            default_micro_usdc,
            wallets: RwLock::default(),
        }
    }

    /// Sets the wallet's deposit, keeping the rest of its pool.
    pub fn set(&self, wallet: Address, micro_usdc: u64) {
        self.update(wallet, |p| p.deposit_micro_usdc = micro_usdc);
    }

    /// Changes the wallet's pool in place.
    pub fn update(&self, wallet: Address, change: impl FnOnce(&mut PoolState)) {
        if let Ok(mut map) = self.wallets.write() {
            let pool = map.entry(wallet).or_insert(PoolState {
                deposit_micro_usdc: self.default_micro_usdc,
                ..PoolState::default()
            });
            change(pool);
        }
    }
}

#[async_trait]
impl CreditSource for StaticCredit {
    fn name(&self) -> &'static str {
        "static"
    }

    async fn pool(&self, wallet: Address) -> Result<PoolState, CreditError> {
        let map = self
            .wallets
            .read()
            .map_err(|_| CreditError::Unavailable("lock poisoned".into()))?;
        Ok(map.get(&wallet).copied().unwrap_or(PoolState {
            deposit_micro_usdc: self.default_micro_usdc,
            ..PoolState::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_credit_takes_out_the_withdrawal_the_holds_and_what_is_owed() {
        let pool = PoolState {
            deposit_micro_usdc: 1_000,
            withdrawal_requested_micro_usdc: 300,
            ..PoolState::default()
        };
        let owed = Obligations {
            held: 200,
            unsettled: 100,
            ..Obligations::default()
        };
        assert_eq!(available_micro_usdc(&pool, &owed), 400);
        let broke = Obligations {
            held: 2_000,
            ..owed
        };
        assert_eq!(
            available_micro_usdc(&pool, &broke),
            0,
            "floored, never wraps"
        );
    }

    #[test]
    fn a_settlement_the_contract_already_took_is_not_counted_twice() {
        // Sequence 4 is mined (the pool's last sequence) but not yet
        // confirmed in the store; 5 is still pending.
        let owed = Obligations {
            unsettled: 700,
            queued: vec![(4, 300), (5, 400)],
            ..Obligations::default()
        };
        assert_eq!(owed.unsettled_beyond(3), 700);
        assert_eq!(owed.unsettled_beyond(4), 400);
        assert_eq!(owed.unsettled_beyond(5), 0);
    }

    #[test]
    fn only_a_rate_above_a_set_cap_is_refused() {
        let mut pool = PoolState::default();
        assert!(!pool.refuses_rate(u64::MAX), "no cap: anything goes");
        pool.max_rate_per_second = Some(1_000);
        assert!(!pool.refuses_rate(1_000));
        assert!(pool.refuses_rate(1_001));
    }
}
