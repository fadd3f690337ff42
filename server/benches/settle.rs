//! Settlement benchmark (`cargo xtask bench settle`), against a local anvil
//! with the contracts from forge's build of contracts/.
//!
//! - Gas per session: one `settleFromPool`, and `settleBatch` of 10 and of
//!   100 settlements (distinct consumers, each settled before; operators
//!   that were paid before, as a marketplace's are), from the receipts'
//!   `gasUsed`, the 21,000 of the transaction itself included; and what a
//!   consumer's very first settlement costs (its word created, not updated).
//! - Settlements per second the relayer sustains: 500 final sessions of 50
//!   other consumers in the store, relayer passes back to back until every one is
//!   CONFIRMED.

#![allow(clippy::unwrap_used)] // a benchmark fails by panicking

#[path = "../tests/common/chain.rs"]
mod chain_support;

use std::sync::Arc;
use std::time::Instant;

use alloy::providers::{Provider, ProviderBuilder};
use k256::ecdsa::SigningKey;
use lx_protocol::api::{Role, SessionState};
use lx_protocol::geo::Point;
use lx_protocol::wallet::Address;
use lx_server::app::App;
use lx_server::chain::{SettleItem, Settler};
use lx_server::clock::SystemClock;
use lx_server::config::Config;
use lx_server::credit::StaticCredit;
use lx_server::media::NoMedia;
use lx_server::store::sqlite::SqliteStore;
use lx_server::store::suite::{build_session, build_workspace};
use lx_server::store::{Meter, SettlementState, Transition};
use uuid::Uuid;

const CONSUMERS: usize = 100;
const OPERATORS: usize = 10;
const RELAY_CONSUMERS: usize = 50;
const RELAYED: usize = 500;

fn address(key: &SigningKey) -> Address {
    Address::from_signing_key(key)
}

async fn gas_of(url: &str, tx: &str) -> u64 {
    let p = ProviderBuilder::new().connect_http(url.parse().unwrap());
    for _ in 0..500 {
        if let Some(receipt) = p
            .get_transaction_receipt(tx.parse().unwrap())
            .await
            .unwrap()
        {
            assert!(receipt.status(), "{tx} reverted");
            return receipt.gas_used;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{tx} was not mined in 5 s");
}

fn items(consumers: &[Address], operators: &[Address], sequence: u64, n: usize) -> Vec<SettleItem> {
    (0..n)
        .map(|i| SettleItem {
            session_id: Uuid::new_v4(),
            consumer: consumers[i % consumers.len()],
            operator: operators[i % operators.len()],
            sequence,
            rate_micro_usdc: 1000,
            seconds: 60,
            to_amount: 54_000,
            fee_amount: 6_000,
        })
        .collect()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let d = chain_support::deployed().await;
        d.fund_relayer().await;
        let consumer_keys: Vec<SigningKey> = (0..CONSUMERS)
            .map(|_| SigningKey::random(&mut rand::thread_rng()))
            .collect();
        for key in &consumer_keys {
            d.fund(key, 100_000_000, 100_000_000).await;
        }
        let consumers: Vec<Address> = consumer_keys.iter().map(address).collect();
        let operators: Vec<Address> = (0..OPERATORS)
            .map(|_| address(&SigningKey::random(&mut rand::thread_rng())))
            .collect();
        println!(
            "anvil {} with the contracts, {CONSUMERS} funded consumers, {OPERATORS} operators, in {:.1} s",
            d.anvil.url,
            t.elapsed().as_secs_f64()
        );
        let settler = d.settler().await;

        // Steady state: every consumer and operator settled once before, so
        // the measured settlements update words instead of creating them.
        let first = settler.submit(&items(&consumers, &operators, 1, CONSUMERS)).await.unwrap();
        let first_gas = gas_of(&d.anvil.url, &first.tx_hash).await as f64 / CONSUMERS as f64;

        let mut singles = Vec::new();
        for (i, &consumer) in consumers.iter().enumerate().take(10) {
            let one = items(&[consumer], &operators[i % OPERATORS..][..1], 2, 1);
            let sent = settler.submit(&one).await.unwrap();
            singles.push(gas_of(&d.anvil.url, &sent.tx_hash).await);
        }
        singles.sort_unstable();
        let single = singles[singles.len() / 2];
        let batch10 = {
            let sent = settler.submit(&items(&consumers[10..20], &operators, 2, 10)).await.unwrap();
            gas_of(&d.anvil.url, &sent.tx_hash).await as f64 / 10.0
        };
        let batch100 = {
            let sent = settler.submit(&items(&consumers, &operators, 3, 100)).await.unwrap();
            gas_of(&d.anvil.url, &sent.tx_hash).await as f64 / 100.0
        };
        println!("gas per session, the transaction's 21000 included: single settleFromPool {single} (median of 10), settleBatch of 10 {batch10:.0}, of 100 {batch100:.0}; a consumer's very first settlement, in a batch of 100: {first_gas:.0}");

        // The relayer, through the store.
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::defaults();
        config.store.path = dir.path().join("lx.db");
        let store = Arc::new(SqliteStore::open(&config.store.path).unwrap());
        let app = App::new(
            Arc::new(config),
            store.clone(),
            Arc::new(SystemClock),
            Arc::new(StaticCredit::new(u64::MAX / 4)),
            Arc::new(NoMedia),
            None,
            [3u8; 32],
        )
        .await
        .unwrap();
        use lx_server::store::Store;
        let mut supplier = build_workspace("bench-operator", &[Role::Supplier], Some(Point::new(1.0, 2.0)));
        supplier.wallet = operators[0];
        let supplier = store.insert_workspace(supplier).await.unwrap();
        // Consumers of their own: the contract has settled none of theirs.
        let relay_keys: Vec<SigningKey> = (0..RELAY_CONSUMERS)
            .map(|_| SigningKey::random(&mut rand::thread_rng()))
            .collect();
        for key in &relay_keys {
            d.fund(key, 100_000_000, 100_000_000).await;
        }
        let relay_consumers: Vec<Address> = relay_keys.iter().map(address).collect();
        let mut payers = Vec::new();
        for (i, &wallet) in relay_consumers.iter().enumerate() {
            let mut ws = build_workspace(&format!("bench-consumer-{i}"), &[Role::Consumer], None);
            ws.wallet = wallet;
            payers.push(store.insert_workspace(ws).await.unwrap());
        }
        let t = Instant::now();
        for i in 0..RELAYED {
            let consumer = &payers[i % RELAY_CONSUMERS];
            let s = store.create_session(build_session(consumer, 1000, 600), u64::MAX, 1).await.unwrap();
            let step = |from, to| Transition {
                session_id: s.id,
                expected: Some(from),
                to: Some(to),
                ..Transition::default()
            };
            store
                .apply(Transition { operator_workspace_id: Some(supplier.id), assigned_ms: Some(2), ..step(SessionState::Requested, SessionState::Assigned) })
                .await
                .unwrap();
            store.apply(Transition { started_ms: Some(3), ..step(SessionState::Assigned, SessionState::Live) }).await.unwrap();
            let meter = Meter { clean_seconds: 60, failed_seconds: 0, charged_micro_usdc: 60_000, fee_micro_usdc: 6_000, operator_earned_micro_usdc: 54_000, fee_bps: 1000 };
            store
                .apply(Transition { ended_ms: Some(63_003 + i as i64), meter: Some(meter), meter_final: true, ..step(SessionState::Live, SessionState::Ended) })
                .await
                .unwrap();
        }
        println!("{RELAYED} final sessions of {RELAY_CONSUMERS} consumers in the store in {:.1} s", t.elapsed().as_secs_f64());
        let relayer = lx_server::settlement::RelayerConfig {
            interval: std::time::Duration::from_millis(1),
            batch_max: 100,
            confirmations: 1,
            debt_retry_ms: 1_000,
            resubmit_after_ms: 60_000,
        };
        let t = Instant::now();
        let mut passes = 0;
        let mut confirmed = 0;
        while confirmed < RELAYED {
            let p = lx_server::settlement::pass(&app, &settler, &relayer, app.now()).await.unwrap();
            confirmed += p.confirmed;
            assert_eq!(p.failed, 0, "{p:?}");
            passes += 1;
            assert!(passes < 1000, "the relayer stalls at {confirmed} confirmed");
        }
        let took = t.elapsed().as_secs_f64();
        let per_s = RELAYED as f64 / took;
        let open = store.open_settlements(10).await.unwrap();
        assert!(open.iter().all(|r| r.state == SettlementState::Confirmed) && open.is_empty());
        let last = settler.last_sequence(relay_consumers[0]).await.unwrap();
        println!("relayer: {RELAYED} settlements CONFIRMED in {took:.2} s over {passes} passes ({per_s:.0}/s); consumer 0's last sequence {last}");
        println!("BENCH settle.single_gas={single}");
        println!("BENCH settle.batch10_gas_per_session={batch10:.0}");
        println!("BENCH settle.batch100_gas_per_session={batch100:.0}");
        println!("BENCH settle.relayer_per_s={per_s:.0}");
    });
}
