//! The EVM implementation of [`ChainReader`] over alloy's HTTP provider.

use alloy::primitives::{Address as EvmAddress, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use async_trait::async_trait;
use lx_protocol::wallet::Address;

use super::{
    ChainError, ChainReader, Mined, PoolState, Revert, SettleItem, Settler, Submitted, WalletEvent,
    WalletEventKind,
};

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
            event WithdrawalRequested(address indexed consumer, uint256 amount, uint64 availableAt);
            event Withdrawn(address indexed consumer, uint256 amount);
            event Settled(bytes32 indexed sessionId, address indexed from, address indexed to, uint256 toAmount, uint256 feeAmount, uint256 ratePerSecond, uint256 chargeableSeconds);

            error AlreadySettled(bytes32 sessionId, uint64 sequence, uint64 lastSequence);
            error OverCharge(bytes32 sessionId, uint256 charged, uint256 allowed);
            error RateAboveMax(bytes32 sessionId, uint256 ratePerSecond, uint256 maxRatePerSecond);
            error InsufficientDeposit(address consumer, uint256 available, uint256 needed);
            error NotRelayer(address caller);
            error ZeroAddress();
            error ZeroAmount();
            error BatchSize(uint256 size);
            error EnforcedPause();
            error NoWithdrawalRequested(address consumer);
            error WithdrawalNotYet(uint64 availableAt);

            function usdc() external view returns (address);
            function deposits(address consumer) external view returns (uint256);
            function maxRatePerSecond(address consumer) external view returns (uint256);
            function lastSequence(address consumer) external view returns (uint64);
            function deposit(uint256 amount) external;
            function requestWithdrawal(uint256 amount) external;
            function cancelWithdrawal() external;
            function withdraw() external returns (uint256 paid);
            function withdrawalNotice() external view returns (uint64);
            function poolOf(address consumer) external view returns (uint256 deposit, uint64 lastSequence, uint256 maxRatePerSecond, uint256 withdrawalRequested, uint64 withdrawableAt);
            function setMaxRatePerSecond(uint256 rate) external;
            function settleFromPool(bytes32 sessionId, address from, address to, uint64 sequence, uint256 ratePerSecond, uint256 chargeableSeconds, uint256 toAmount, uint256 feeAmount) external;
            function settleBatch(Settlement[] calldata items) external;
        }

        #[sol(rpc)]
        interface IErc20 {
            event Approval(address indexed owner, address indexed spender, uint256 value);
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
    fn contracts(&self) -> Option<(Address, Address)> {
        Some((Address(self.settlement.0.0), Address(self.usdc.0.0)))
    }

    async fn wallet_events(
        &self,
        wallet: Address,
        after: Option<(u64, u64)>,
        limit: usize,
    ) -> Result<Vec<WalletEvent>, ChainError> {
        use abi::IErc20::Approval;
        use abi::ILuxxonSettlement::{Deposited, Settled, WithdrawalRequested, Withdrawn};
        use alloy::rpc::types::{Filter, Log};
        use alloy::sol_types::SolEvent;
        let who = evm(wallet).into_word();
        let from_block = after.map_or(0, |(block, _)| block);
        // A cursor past the head (a chain reset, or a made-up cursor) has
        // nothing after it; nodes refuse such a range instead of saying so.
        let head = self
            .provider
            .get_block_number()
            .await
            .map_err(unreachable)?;
        if from_block > head {
            return Ok(Vec::new());
        }
        let on = |address: EvmAddress, signature| {
            Filter::new()
                .address(address)
                .event_signature(signature)
                .from_block(from_block)
        };
        let filters = [
            on(self.settlement, Deposited::SIGNATURE_HASH).topic1(who),
            on(self.settlement, WithdrawalRequested::SIGNATURE_HASH).topic1(who),
            on(self.settlement, Withdrawn::SIGNATURE_HASH).topic1(who),
            on(self.settlement, Settled::SIGNATURE_HASH).topic2(who),
            on(self.settlement, Settled::SIGNATURE_HASH).topic3(who),
            on(self.usdc, Approval::SIGNATURE_HASH)
                .topic1(who)
                .topic2(self.settlement.into_word()),
        ];
        let mut logs: Vec<Log> = Vec::new();
        for filter in &filters {
            logs.extend(self.provider.get_logs(filter).await.map_err(unreachable)?);
        }
        let mut events: Vec<WalletEvent> = logs
            .iter()
            .filter_map(|log| {
                let at = (log.block_number?, log.log_index?);
                let tx_hash = log.transaction_hash?.to_string();
                let event = |kind, amount, session_id, counterparty| WalletEvent {
                    kind,
                    block: at.0,
                    log_index: at.1,
                    tx_hash: tx_hash.clone(),
                    amount_micro_usdc: micro(amount),
                    session_id,
                    counterparty,
                };
                let topic0 = *log.topic0()?;
                if topic0 == Deposited::SIGNATURE_HASH {
                    let e = log.log_decode::<Deposited>().ok()?.inner.data;
                    Some(event(WalletEventKind::Deposit, e.amount, None, None))
                } else if topic0 == WithdrawalRequested::SIGNATURE_HASH {
                    let e = log.log_decode::<WithdrawalRequested>().ok()?.inner.data;
                    Some(event(
                        WalletEventKind::WithdrawalRequested,
                        e.amount,
                        None,
                        None,
                    ))
                } else if topic0 == Withdrawn::SIGNATURE_HASH {
                    let e = log.log_decode::<Withdrawn>().ok()?.inner.data;
                    Some(event(WalletEventKind::Withdrawal, e.amount, None, None))
                } else if topic0 == Approval::SIGNATURE_HASH {
                    let e = log.log_decode::<Approval>().ok()?.inner.data;
                    Some(event(WalletEventKind::Approval, e.value, None, None))
                } else {
                    let e = log.log_decode::<Settled>().ok()?.inner.data;
                    let mut id = [0u8; 16];
                    id.copy_from_slice(&e.sessionId[..16]);
                    let paid = e.from == evm(wallet);
                    let (amount, other) = if paid {
                        (e.toAmount + e.feeAmount, e.to)
                    } else {
                        (e.toAmount, e.from)
                    };
                    Some(event(
                        WalletEventKind::Settle,
                        amount,
                        Some(uuid::Uuid::from_bytes(id)),
                        Some(Address(other.0.0)),
                    ))
                }
            })
            .filter(|e| after.is_none_or(|a| (e.block, e.log_index) > a))
            .collect();
        events.sort_by_key(|e| (e.block, e.log_index));
        events.dedup_by_key(|e| (e.block, e.log_index));
        events.truncate(limit);
        Ok(events)
    }

    async fn pool(&self, wallet: Address) -> Result<PoolState, ChainError> {
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        let p = c.poolOf(evm(wallet)).call().await.map_err(unreachable)?;
        let requested = micro(p.withdrawalRequested);
        Ok(PoolState {
            deposit_micro_usdc: micro(p.deposit),
            last_sequence: p.lastSequence,
            max_rate_per_second: (!p.maxRatePerSecond.is_zero()).then(|| micro(p.maxRatePerSecond)),
            withdrawal_requested_micro_usdc: requested,
            withdrawable_at_s: (requested > 0).then_some(p.withdrawableAt),
        })
    }

    async fn withdrawal_notice_seconds(&self) -> Result<u64, ChainError> {
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        c.withdrawalNotice().call().await.map_err(unreachable)
    }

    async fn usdc_balance(&self, wallet: Address) -> Result<u64, ChainError> {
        let t = IErc20::new(self.usdc, &self.provider);
        t.balanceOf(evm(wallet))
            .call()
            .await
            .map(micro)
            .map_err(unreachable)
    }
}

/// What a replacement transaction sends in place of the stuck one.
struct Replacement {
    max_fee_per_gas: u128,
    max_priority_fee_per_gas: u128,
    /// The stuck transaction's gas limit and access list, when the node
    /// still has it.
    gas_and_access_list: Option<(u64, alloy::rpc::types::AccessList)>,
}

/// Sends settlements with the relayer's key.
pub struct EvmSettler {
    provider: DynProvider,
    settlement: EvmAddress,
    relayer: EvmAddress,
}

impl std::fmt::Debug for EvmSettler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EvmSettler")
            .field("settlement", &self.settlement)
            .field("relayer", &self.relayer)
            .finish()
    }
}

fn bytes32(id: uuid::Uuid) -> alloy::primitives::FixedBytes<32> {
    let mut b = [0u8; 32];
    b[..16].copy_from_slice(id.as_bytes());
    b.into()
}

fn abi_item(item: &SettleItem) -> abi::ILuxxonSettlement::Settlement {
    abi::ILuxxonSettlement::Settlement {
        sessionId: bytes32(item.session_id),
        from: evm(item.consumer),
        to: evm(item.operator),
        sequence: item.sequence,
        ratePerSecond: U256::from(item.rate_micro_usdc),
        chargeableSeconds: U256::from(item.seconds),
        toAmount: U256::from(item.to_amount),
        feeAmount: U256::from(item.fee_amount),
    }
}

/// `settleFromPool(…)` with the item's arguments.
fn settle_one(item: &SettleItem) -> abi::ILuxxonSettlement::settleFromPoolCall {
    let i = abi_item(item);
    abi::ILuxxonSettlement::settleFromPoolCall {
        sessionId: i.sessionId,
        from: i.from,
        to: i.to,
        sequence: i.sequence,
        ratePerSecond: i.ratePerSecond,
        chargeableSeconds: i.chargeableSeconds,
        toAmount: i.toAmount,
        feeAmount: i.feeAmount,
    }
}

fn revert_of(err: &alloy::contract::Error) -> Option<Revert> {
    use abi::ILuxxonSettlement::ILuxxonSettlementErrors as E;
    if let Some(decoded) = err.as_decoded_interface_error::<E>() {
        return Some(match decoded {
            E::AlreadySettled(e) => Revert::AlreadySettled {
                last: e.lastSequence,
            },
            E::OverCharge(e) => Revert::OverCharge {
                charged: micro(e.charged),
                allowed: micro(e.allowed),
            },
            E::RateAboveMax(e) => Revert::RateAboveMax {
                rate: micro(e.ratePerSecond),
                max: micro(e.maxRatePerSecond),
            },
            E::InsufficientDeposit(e) => Revert::InsufficientDeposit {
                available: micro(e.available),
                needed: micro(e.needed),
            },
            E::NotRelayer(e) => Revert::Other(format!("NotRelayer({})", e.caller)),
            E::ZeroAddress(_) => Revert::Other("ZeroAddress".into()),
            E::ZeroAmount(_) => Revert::Other("ZeroAmount".into()),
            E::BatchSize(e) => Revert::Other(format!("BatchSize({})", e.size)),
            E::EnforcedPause(_) => Revert::Other("EnforcedPause: the contract is paused".into()),
            E::NoWithdrawalRequested(_) | E::WithdrawalNotYet(_) => {
                Revert::Other("a withdrawal error on the settle path".into())
            }
        });
    }
    err.as_revert_data()
        .map(|data| Revert::Other(format!("unknown revert 0x{}", alloy::hex::encode(data))))
}

impl EvmSettler {
    /// Signs and sends the settlements with `nonce`: the provider estimates
    /// gas and fees, unless `replacing` says what to send in place of a
    /// stuck transaction.
    async fn send(
        &self,
        items: &[SettleItem],
        nonce: u64,
        replacing: Option<Replacement>,
    ) -> Result<Submitted, ChainError> {
        use alloy::network::TransactionBuilder;
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        let mut tx = match items {
            [one] => c.call_builder(&settle_one(one)).into_transaction_request(),
            many => c
                .settleBatch(many.iter().map(abi_item).collect())
                .into_transaction_request(),
        };
        tx.set_from(self.relayer);
        tx.set_nonce(nonce);
        let reused = match replacing {
            Some(r) => {
                tx.set_max_fee_per_gas(r.max_fee_per_gas);
                tx.set_max_priority_fee_per_gas(r.max_priority_fee_per_gas);
                // The node's pending state already holds the stuck
                // transaction, so estimating there would revert: the
                // replacement takes the gas and access list it had.
                if let Some((gas, list)) = r.gas_and_access_list {
                    tx.set_gas_limit(gas);
                    tx.set_access_list(list);
                    true
                } else {
                    false
                }
            }
            None => false,
        };
        // An EIP-2930 access list names the token and the words the settle
        // touches up front: 200 gas less for each than a cold first access.
        // The contract itself is warm as the transaction's `to`: listing it
        // would cost 2,400 more than its words save.
        if !reused {
            match self.provider.create_access_list(&tx).await {
                Ok(list) => {
                    let mut list = list.access_list;
                    list.0.retain(|item| item.address != self.settlement);
                    tx.set_access_list(list);
                }
                Err(err) => tracing::debug!(%err, "no access list; sending without"),
            }
        }
        let pending = self
            .provider
            .send_transaction(tx)
            .await
            .map_err(unreachable)?;
        Ok(Submitted {
            tx_hash: pending.tx_hash().to_string(),
            nonce,
        })
    }

    pub async fn connect(
        rpc_url: &str,
        chain_id: u64,
        settlement: Address,
        signer: alloy::signers::local::PrivateKeySigner,
    ) -> Result<Self, ChainError> {
        let url = rpc_url
            .parse()
            .map_err(|e| ChainError::Config(format!("chain.rpc_url '{rpc_url}': {e}")))?;
        let relayer = signer.address();
        let provider = ProviderBuilder::new()
            .wallet(alloy::network::EthereumWallet::from(signer))
            .connect_http(url)
            .erased();
        let node_chain = provider.get_chain_id().await.map_err(unreachable)?;
        if node_chain != chain_id {
            return Err(ChainError::Config(format!(
                "{rpc_url} is chain {node_chain}, but chain.chain_id is {chain_id}"
            )));
        }
        Ok(Self {
            provider,
            settlement: evm(settlement),
            relayer,
        })
    }
}

#[async_trait]
impl Settler for EvmSettler {
    fn relayer(&self) -> Address {
        Address(self.relayer.0.0)
    }

    async fn simulate(&self, item: &SettleItem) -> Result<Option<Revert>, ChainError> {
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        let call = c.call_builder(&settle_one(item)).from(self.relayer);
        match call.call().await {
            Ok(_) => Ok(None),
            Err(err) => match revert_of(&err) {
                Some(revert) => Ok(Some(revert)),
                None => Err(unreachable(err)),
            },
        }
    }

    async fn submit(&self, items: &[SettleItem]) -> Result<Submitted, ChainError> {
        let nonce = self
            .provider
            .get_transaction_count(self.relayer)
            .pending()
            .await
            .map_err(unreachable)?;
        self.send(items, nonce, None).await
    }

    async fn replace(
        &self,
        items: &[SettleItem],
        stuck: &Submitted,
    ) -> Result<Submitted, ChainError> {
        let hash = stuck.tx_hash.parse().map_err(|e| {
            ChainError::Config(format!("transaction hash '{}': {e}", stuck.tx_hash))
        })?;
        let old = self
            .provider
            .get_transaction_by_hash(hash)
            .await
            .map_err(unreachable)?;
        let market = self
            .provider
            .estimate_eip1559_fees()
            .await
            .map_err(unreachable)?;
        // A node takes a replacement only above the fees of the one it
        // replaces (geth: by 10 %); a quarter more than the higher of the
        // old fees and today's clears that and the market's drift.
        let (old_max, old_tip, gas_and_access_list) = match &old {
            Some(tx) => {
                use alloy::consensus::Transaction;
                (
                    tx.max_fee_per_gas(),
                    tx.max_priority_fee_per_gas().unwrap_or(0),
                    Some((
                        tx.gas_limit(),
                        tx.access_list().cloned().unwrap_or_default(),
                    )),
                )
            }
            // The node lost it: nothing pending to outbid, and estimating
            // afresh works again.
            None => (0, 0, None),
        };
        let bump = |fee: u128| fee.saturating_add(fee / 4).saturating_add(1);
        let tip = bump(old_tip.max(market.max_priority_fee_per_gas));
        let max = bump(old_max.max(market.max_fee_per_gas)).max(tip);
        let replacement = Replacement {
            max_fee_per_gas: max,
            max_priority_fee_per_gas: tip,
            gas_and_access_list,
        };
        self.send(items, stuck.nonce, Some(replacement)).await
    }

    async fn mined_nonce(&self) -> Result<u64, ChainError> {
        self.provider
            .get_transaction_count(self.relayer)
            .latest()
            .await
            .map_err(unreachable)
    }

    async fn receipt(&self, tx_hash: &str) -> Result<Option<Mined>, ChainError> {
        let hash = tx_hash
            .parse()
            .map_err(|e| ChainError::Config(format!("transaction hash '{tx_hash}': {e}")))?;
        let receipt = self
            .provider
            .get_transaction_receipt(hash)
            .await
            .map_err(unreachable)?;
        Ok(receipt.and_then(|r| {
            r.block_number.map(|block| Mined {
                success: r.status(),
                block,
            })
        }))
    }

    async fn block_number(&self) -> Result<u64, ChainError> {
        self.provider.get_block_number().await.map_err(unreachable)
    }

    async fn last_sequence(&self, consumer: Address) -> Result<u64, ChainError> {
        let c = ILuxxonSettlement::new(self.settlement, &self.provider);
        c.lastSequence(evm(consumer))
            .call()
            .await
            .map_err(unreachable)
    }

    async fn settled_event(
        &self,
        session_id: uuid::Uuid,
    ) -> Result<Option<(String, u64)>, ChainError> {
        use alloy::sol_types::SolEvent;
        let filter = alloy::rpc::types::Filter::new()
            .address(self.settlement)
            .event_signature(abi::ILuxxonSettlement::Settled::SIGNATURE_HASH)
            .topic1(bytes32(session_id))
            .from_block(0);
        let logs = self.provider.get_logs(&filter).await.map_err(unreachable)?;
        Ok(logs
            .first()
            .and_then(|log| Some((log.transaction_hash?.to_string(), log.block_number?))))
    }
}
