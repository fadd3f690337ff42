//! The settlement chain: reads of the LuxxonSettlement contract and of
//! USDC over JSON-RPC (alloy), behind a trait so the rest of the server
//! (credit, the wallet routes, the relayer) can be tested without a node.
//!
//! Amounts on chain are `uint256` of USDC's 6 decimals: micro-USDC, the
//! server's unit. A value above `u64::MAX` saturates.

use async_trait::async_trait;
use lx_protocol::wallet::Address;

pub use crate::credit::PoolState;

#[cfg(feature = "chain")]
pub mod evm;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the chain is unreachable: {0}")]
    Unreachable(String),
    #[error("chain configuration: {0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalletEventKind {
    Deposit,
    /// The first step of a withdrawal; the amount requested.
    WithdrawalRequested,
    Withdrawal,
    /// A settlement paid from (or to) the wallet.
    Settle,
    /// The wallet let the settlement contract take its USDC.
    Approval,
}

/// One on-chain event of a wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletEvent {
    pub kind: WalletEventKind,
    pub block: u64,
    pub log_index: u64,
    pub tx_hash: String,
    /// Deposited, withdrawn, approved; for a settlement the charge when the
    /// wallet paid, its share when it was paid.
    pub amount_micro_usdc: u64,
    pub session_id: Option<uuid::Uuid>,
    /// The other side of a settlement.
    pub counterparty: Option<Address>,
}

#[async_trait]
pub trait ChainReader: Send + Sync + 'static {
    /// The wallet's events, oldest first, after `(block, log index)`.
    async fn wallet_events(
        &self,
        wallet: Address,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Vec<WalletEvent>, ChainError>;
    /// The consumer's pool in the settlement contract: deposit, last
    /// sequence, cap and requested withdrawal, in one call.
    async fn pool(&self, wallet: Address) -> Result<PoolState, ChainError>;
    /// The wallet's USDC balance, micro-USDC.
    async fn usdc_balance(&self, wallet: Address) -> Result<u64, ChainError>;
    /// The contract's withdrawal notice, seconds: how long a requested
    /// withdrawal stays settleable.
    async fn withdrawal_notice_seconds(&self) -> Result<u64, ChainError>;
    /// The settlement contract's and the USDC token's addresses, when the
    /// reader knows them.
    fn contracts(&self) -> Option<(Address, Address)> {
        None
    }
}

/// Credit as the settlement contract holds it: the consumer's pool.
pub struct OnchainCredit {
    chain: std::sync::Arc<dyn ChainReader>,
}

impl OnchainCredit {
    pub fn new(chain: std::sync::Arc<dyn ChainReader>) -> Self {
        Self { chain }
    }
}

#[async_trait]
impl crate::credit::CreditSource for OnchainCredit {
    fn name(&self) -> &'static str {
        "onchain"
    }

    async fn pool(&self, wallet: Address) -> Result<PoolState, crate::credit::CreditError> {
        self.chain
            .pool(wallet)
            .await
            .map_err(|e| crate::credit::CreditError::Unavailable(e.to_string()))
    }
}

/// One settlement as the contract takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettleItem {
    pub session_id: uuid::Uuid,
    pub consumer: Address,
    pub operator: Address,
    pub sequence: u64,
    pub rate_micro_usdc: u64,
    pub seconds: u64,
    pub to_amount: u64,
    pub fee_amount: u64,
}

/// Why the contract refuses a settlement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Revert {
    #[error("AlreadySettled: the consumer's last settled sequence is {last}")]
    AlreadySettled { last: u64 },
    #[error("OverCharge: {charged} µUSDC is more than rate × seconds = {allowed}")]
    OverCharge { charged: u64, allowed: u64 },
    #[error("RateAboveMax: rate {rate} µUSDC/s is above the consumer's cap {max}")]
    RateAboveMax { rate: u64, max: u64 },
    #[error("InsufficientDeposit: the pool holds {available} µUSDC, the settlement needs {needed}")]
    InsufficientDeposit { available: u64, needed: u64 },
    #[error("reverted: {0}")]
    Other(String),
}

/// A transaction sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub tx_hash: String,
    pub nonce: u64,
}

/// A transaction in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mined {
    pub success: bool,
    pub block: u64,
}

/// The relayer's side of the chain: it signs and sends settlements.
#[async_trait]
pub trait Settler: Send + Sync + 'static {
    fn relayer(&self) -> Address;
    /// What the contract would say to this settlement alone, now.
    async fn simulate(&self, item: &SettleItem) -> Result<Option<Revert>, ChainError>;
    /// Sends one transaction: `settleFromPool` for one, `settleBatch` for more.
    async fn submit(&self, items: &[SettleItem]) -> Result<Submitted, ChainError>;
    /// Sends the same settlements again in place of `stuck`: its nonce, a
    /// higher fee, so that at most one of the two is ever mined.
    async fn replace(
        &self,
        items: &[SettleItem],
        stuck: &Submitted,
    ) -> Result<Submitted, ChainError>;
    /// How many of the relayer's transactions are mined: a nonce below it
    /// is spent, by whichever transaction carried it.
    async fn mined_nonce(&self) -> Result<u64, ChainError>;
    async fn receipt(&self, tx_hash: &str) -> Result<Option<Mined>, ChainError>;
    async fn block_number(&self) -> Result<u64, ChainError>;
    async fn last_sequence(&self, consumer: Address) -> Result<u64, ChainError>;
    /// The `Settled` event of this session, if the contract emitted one:
    /// (transaction hash, block).
    async fn settled_event(
        &self,
        session_id: uuid::Uuid,
    ) -> Result<Option<(String, u64)>, ChainError>;
}
