//! The EVM implementation of [`ChainReader`] over alloy's HTTP provider.

use alloy::primitives::{Address as EvmAddress, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use async_trait::async_trait;
use lx_protocol::wallet::Address;

use super::{ChainError, ChainReader};

// The generated call builders take one argument per ABI parameter.
#[allow(clippy::too_many_arguments)]
mod abi {
    alloy::sol! {
        #[sol(rpc)]
        interface ILuxxonSettlement {
            struct Settlement {
                bytes32 sessionId;
                address from;
                address to;
                uint64 sequence;
                uint256 ratePerSecond;
                uint256 chargeableSeconds;
                uint256 toAmount;
                uint256 feeAmount;
            }

            event Deposited(address indexed consumer, uint256 amount);
            event Withdrawn(address indexed consumer, uint256 amount);
            event Settled(bytes32 indexed sessionId, address indexed from, address indexed to, uint256 toAmount, uint256 feeAmount, uint256 ratePerSecond, uint256 chargeableSeconds, uint64 sequence);

            error AlreadySettled(bytes32 sessionId, uint64 sequence, uint64 lastSequence);
            error OverCharge(bytes32 sessionId, uint256 charged, uint256 allowed);
            error RateAboveMax(bytes32 sessionId, uint256 ratePerSecond, uint256 maxRatePerSecond);
            error InsufficientDeposit(address consumer, uint256 available, uint256 needed);

            function usdc() external view returns (address);
            function deposits(address consumer) external view returns (uint256);
            function maxRatePerSecond(address consumer) external view returns (uint256);
            function lastSequence(address consumer) external view returns (uint64);
            function deposit(uint256 amount) external;
            function withdraw(uint256 amount) external;
            function setMaxRatePerSecond(uint256 rate) external;
            function settleFromPool(bytes32 sessionId, address from, address to, uint64 sequence, uint256 ratePerSecond, uint256 chargeableSeconds, uint256 toAmount, uint256 feeAmount) external;
            function settleBatch(Settlement[] calldata items) external;
        }

        #[sol(rpc)]
        interface IErc20 {
            function balanceOf(address owner) external view returns (uint256);
            function approve(address spender, uint256 amount) external returns (bool);
            function transfer(address to, uint256 amount) external returns (bool);
        }
    }
}

pub use abi::{IErc20, ILuxxonSettlement};

pub(crate) fn evm(address: Address) -> EvmAddress {
    EvmAddress::from(address.0)
}

fn micro(value: U256) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn unreachable(err: impl std::fmt::Display) -> ChainError {
    ChainError::Unreachable(err.to_string())
}

/// Reads the settlement contract and its token.
#[derive(Debug, Clone)]
pub struct EvmChain {
    provider: DynProvider,
    settlement: EvmAddress,
    usdc: EvmAddress,
}

impl EvmChain {
    /// Connects to `rpc_url`, checks that the node is on `chain_id`, and
    /// reads the USDC address from the contract.
    pub async fn connect(
        rpc_url: &str,
        chain_id: u64,
        settlement: Address,
    ) -> Result<Self, ChainError> {
        let url = rpc_url
            .parse()
            .map_err(|e| ChainError::Config(format!("chain.rpc_url '{rpc_url}': {e}")))?;
        let provider = ProviderBuilder::new().connect_http(url).erased();
        let node_chain = provider
            .get_chain_id()
            .await
            .map_err(|e| unreachable(format!("{rpc_url}: {e}")))?;
        if node_chain != chain_id {
            return Err(ChainError::Config(format!(
                "{rpc_url} is chain {node_chain}, but chain.chain_id is {chain_id}"
            )));
        }
        let settlement = evm(settlement);
        let usdc = ILuxxonSettlement::new(settlement, &provider)
            .usdc()
            .call()
            .await
            .map_err(|e| {
                unreachable(format!(
                    "reading usdc() of the settlement contract {settlement}: {e}"
                ))
            })?;
        Ok(Self {
            provider,
            settlement,
            usdc,
        })
    }

    pub fn provider(&self) -> &DynProvider {
        &self.provider
    }

    pub fn settlement_address(&self) -> EvmAddress {
        self.settlement
    }

    pub fn usdc_address(&self) -> EvmAddress {
        self.usdc
    }
}

#[async_trait]
impl ChainReader for EvmChain {
    async fn deposits(&self, wallet: Address) -> Result<u64, ChainError> {
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        c.deposits(evm(wallet))
            .call()
            .await
            .map(micro)
            .map_err(unreachable)
    }

    async fn usdc_balance(&self, wallet: Address) -> Result<u64, ChainError> {
        let t = IErc20::new(self.usdc, &self.provider);
        t.balanceOf(evm(wallet))
            .call()
            .await
            .map(micro)
            .map_err(unreachable)
    }

    async fn max_rate_per_second(&self, wallet: Address) -> Result<Option<u64>, ChainError> {
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        let cap = c
            .maxRatePerSecond(evm(wallet))
            .call()
            .await
            .map_err(unreachable)?;
        Ok((!cap.is_zero()).then(|| micro(cap)))
    }
}
