//! Where a consumer's available credit comes from. The on-chain pool reader
//! (`deposits(consumer)` on the settlement contract) plugs in here; until a
//! chain is configured, `static` credit lines from the config apply.

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

#[async_trait]
pub trait CreditSource: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    /// The consumer's pool balance in micro-USDC.
    async fn available_micro_usdc(&self, wallet: Address) -> Result<u64, CreditError>;
}

/// Credit lines from the config, adjustable at run time (a top-up).
#[derive(Debug, Default)]
pub struct StaticCredit {
    default_micro_usdc: u64,
    wallets: RwLock<HashMap<Address, u64>>,
}

impl StaticCredit {
    pub fn from_config(config: &CreditConfig) -> anyhow::Result<Self> {
        let mut wallets = HashMap::new();
        for (text, amount) in &config.wallets {
            let address: Address = text
                .parse()
                .map_err(|e| anyhow::anyhow!("credit.wallets key '{text}': {e}"))?;
            wallets.insert(address, *amount);
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

    pub fn set(&self, wallet: Address, micro_usdc: u64) {
        if let Ok(mut map) = self.wallets.write() {
            map.insert(wallet, micro_usdc);
        }
    }
}

#[async_trait]
impl CreditSource for StaticCredit {
    fn name(&self) -> &'static str {
        "static"
    }

    async fn available_micro_usdc(&self, wallet: Address) -> Result<u64, CreditError> {
        let map = self
            .wallets
            .read()
            .map_err(|_| CreditError::Unavailable("lock poisoned".into()))?;
        Ok(map.get(&wallet).copied().unwrap_or(self.default_micro_usdc))
    }
}
