//! The settlement chain: reads of the LuxxonSettlement contract and of
//! USDC over JSON-RPC (alloy), behind a trait so the rest of the server
//! (credit, the wallet routes, the relayer) can be tested without a node.
//!
//! Amounts on chain are `uint256` of USDC's 6 decimals: micro-USDC, the
//! server's unit. A value above `u64::MAX` saturates.

use async_trait::async_trait;
use lx_protocol::wallet::Address;

#[cfg(feature = "chain")]
pub mod evm;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the chain is unreachable: {0}")]
    Unreachable(String),
    #[error("chain configuration: {0}")]
    Config(String),
}

#[async_trait]
pub trait ChainReader: Send + Sync + 'static {
    /// The consumer's pool in the settlement contract, micro-USDC.
    async fn deposits(&self, wallet: Address) -> Result<u64, ChainError>;
    /// The wallet's USDC balance, micro-USDC.
    async fn usdc_balance(&self, wallet: Address) -> Result<u64, ChainError>;
    /// The consumer's own rate cap; `None` when it set none.
    async fn max_rate_per_second(&self, wallet: Address) -> Result<Option<u64>, ChainError>;
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

    async fn available_micro_usdc(
        &self,
        wallet: Address,
    ) -> Result<u64, crate::credit::CreditError> {
        self.chain
            .deposits(wallet)
            .await
            .map_err(|e| crate::credit::CreditError::Unavailable(e.to_string()))
    }
}
