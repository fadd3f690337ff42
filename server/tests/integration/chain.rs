//! The server against a real chain: a local anvil with the contracts
//! deployed from forge's build of contracts/, consumers with real pools.

use std::sync::Arc;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address as EvmAddress, U256};
use alloy::providers::{Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use serde_json::json;

use crate::chain_support::{Deployed, deployed, relayer_config};
use crate::common::{Actor, BOGOTA, TestApp};

async fn request(t: &TestApp, consumer: &Actor, seconds: u32) -> crate::common::Resp {
    t.post(
        "/sessions",
        consumer.auth(),
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": seconds}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credit_is_the_onchain_pool_counting_every_open_session_and_a_top_up_clears_it() {
    let d = deployed().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("chain-consumer").await;
    t.supplier("chain-supplier", BOGOTA, true).await;
    // 60 s at 1000 µUSDC/s holds 0.06 USDC; the pool has 0.05.
    d.fund(&consumer.key, 1_000_000, 50_000).await;
    let refused = request(&t, &consumer, 60)
        .await
        .expect(400, "INSUFFICIENT_CREDIT");
    assert!(refused.message().contains("50000"), "{}", refused.message());

    // A top-up on chain counts at once, no restart.
    d.deposit(&consumer.key, 100_000).await;
    let first = request(&t, &consumer, 60).await.ok();
    let mut held = first.data()["holdMicroUsdc"].as_u64().unwrap();
    // More sessions until the pool is held in full: the open ones always
    // fit in it, and the one refused would not (demand raises the rate).
    let mut refused = None;
    for _ in 0..5 {
        let resp = request(&t, &consumer, 60).await;
        if resp.status == 200 {
            held += resp.data()["holdMicroUsdc"].as_u64().unwrap();
            assert!(
                held <= 150_000,
                "open sessions hold {held} of a 150000 pool"
            );
        } else {
            refused = Some(resp.expect(400, "INSUFFICIENT_CREDIT"));
            break;
        }
    }
    let refused = refused.expect("the pool runs out");
    assert!(
        refused.message().contains("holds 150000"),
        "{}",
        refused.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wallet_reads_the_pool_the_balance_and_the_cap_from_the_chain() {
    let d = deployed().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer("wallet-consumer").await;
    d.fund(&consumer.key, 2_000_000, 750_000).await;
    let wallet = t.get("/wallet", consumer.auth()).await.ok();
    let w = wallet.data();
    assert_eq!(w["walletAddress"], consumer.wallet.to_checksum());
    assert_eq!(w["chainId"], 31337);
    assert_eq!(w["poolMicroUsdc"], 750_000);
    assert_eq!(w["usdcBalanceMicroUsdc"], 1_250_000);
    assert_eq!(w["maxRatePerSecondMicroUsdc"], serde_json::Value::Null);

    // Its history: the approval and the deposit, paged one at a time.
    let first = t.get("/wallet/events?limit=1", consumer.auth()).await.ok();
    let page = first.data();
    assert_eq!(page["events"][0]["type"], "APPROVAL", "{page}");
    assert_eq!(page["events"][0]["amountMicroUsdc"], 750_000);
    let cursor = page["nextCursor"].as_str().expect("a next page").to_owned();
    let second = t
        .get(
            format!("/wallet/events?limit=1&cursor={cursor}"),
            consumer.auth(),
        )
        .await
        .ok();
    assert_eq!(second.data()["events"][0]["type"], "DEPOSIT");
    assert_eq!(second.data()["events"][0]["amountMicroUsdc"], 750_000);
    assert!(second.data()["nextCursor"].is_null(), "{}", second.data());
    t.get("/wallet/events?cursor=yesterday", consumer.auth())
        .await
        .expect(400, "INVALID_INPUT");
    t.get("/wallet/events?limit=0", consumer.auth())
        .await
        .expect(400, "INVALID_INPUT");

    // Without a chain the answer says so rather than inventing numbers.
    let none = TestApp::spawn().await;
    let c = none.consumer("no-chain").await;
    let resp = none
        .get("/wallet", c.auth())
        .await
        .expect(503, "UPSTREAM_UNAVAILABLE");
    assert_eq!(resp.detail(), "chain:none");
}

/// A chain with the contracts, a server on it (its relayer funded, not
/// running), a consumer with `minted` µUSDC of which `pool` is in its pool,
/// and an auto-accepting supplier without devices at BOGOTA.
pub(crate) struct Market {
    pub d: Deployed,
    pub t: TestApp,
    pub consumer: Actor,
    pub supplier: Actor,
}

pub(crate) async fn market(name: &str, minted: u64, pool: u64) -> Market {
    let d = deployed().await;
    d.fund_relayer().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let consumer = t.consumer(&format!("{name}-consumer")).await;
    let supplier = t.supplier(&format!("{name}-supplier"), BOGOTA, true).await;
    d.fund(&consumer.key, minted, pool).await;
    Market {
        d,
        t,
        consumer,
        supplier,
    }
}

/// The relayer running on its own, as the server runs it.
pub(crate) struct Relayer {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relayer {
    pub(crate) async fn spawn(d: &Deployed, t: &TestApp) -> Self {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(lx_server::settlement::run(
            Arc::clone(&t.app),
            Arc::new(d.settler().await),
            relayer_config(),
            stopped,
        ));
        Self { stop, task }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("the relayer stops");
    }
}

pub(crate) fn evm_of(actor: &Actor) -> EvmAddress {
    EvmAddress::from(actor.wallet.0)
}

/// A session of `consumer` at BOGOTA, LIVE through the media double for
/// about `seconds`, then ended by the consumer; returns its id.
pub(crate) async fn a_metered_session(
    t: &TestApp,
    consumer: &Actor,
    supplier: &Actor,
    seconds: u64,
) -> String {
    let id = t.request(consumer, BOGOTA, 600).await;
    // The supplier has no devices: its location heartbeats are its evidence.
    let _heartbeats = t.heartbeat_every_second(supplier, BOGOTA);
    t.make_live(consumer, supplier, &id).await;
    tokio::time::sleep(std::time::Duration::from_millis(seconds * 1000 + 100)).await;
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    id
}

async fn settlement_state(
    t: &TestApp,
    consumer: &Actor,
    id: &str,
    want: &str,
) -> serde_json::Value {
    for _ in 0..200 {
        let s = t
            .get(format!("/settlements/{id}"), consumer.auth())
            .await
            .ok();
        if s.data()["state"] == want {
            return s.data().clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "settlement of {id} never {want}: {}",
        t.get(format!("/settlements/{id}"), consumer.auth())
            .await
            .data()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_settled_on_chain_and_the_operator_and_fee_wallet_get_exactly_the_meter()
 {
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("settle", 10_000_000, 5_000_000).await;
    let relayer = Relayer::spawn(&d, &t).await;

    let id = a_metered_session(&t, &consumer, &supplier, 3).await;
    let pending = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(
        pending.data()["state"],
        "NOT_READY",
        "the meter is final only after the settle delay"
    );
    // Balances before the meter is final: nothing can be settled before it,
    // and once it is, the relayer may settle between two reads.
    let before = (
        d.usdc_of(evm_of(&supplier)).await,
        d.usdc_of(d.platform).await,
        d.pool_of(evm_of(&consumer)).await,
    );
    // The test config settles after the default delay; the sweeper runs by hand.
    let ended = t.session(&consumer, &id).await;
    let ended_ms = lx_protocol::time::parse_millis(ended["endedAt"].as_str().unwrap()).unwrap();
    t.app.sweep(ended_ms + t.app.settle_delay_ms() + 1).await;
    let session = t.session(&consumer, &id).await;
    let meter = session["meter"].clone();
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let fee = meter["feeMicroUsdc"].as_u64().unwrap();
    let charged = meter["chargedMicroUsdc"].as_u64().unwrap();
    assert!(charged > 0 && earned + fee == charged, "{meter}");
    // The meter's three figures also at the top level, as the reference has them.
    for figure in ["cleanSeconds", "failedSeconds", "chargedMicroUsdc"] {
        assert_eq!(session[figure], meter[figure], "{figure}: {session}");
    }

    let confirmed = settlement_state(&t, &consumer, &id, "CONFIRMED").await;
    assert!(
        confirmed["txHash"].as_str().unwrap().starts_with("0x"),
        "{confirmed}"
    );
    assert_eq!(confirmed["sequence"], 1);
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await - before.0,
        earned,
        "the operator's share"
    );
    assert_eq!(d.usdc_of(d.platform).await - before.1, fee, "the fee");
    assert_eq!(
        before.2 - d.pool_of(evm_of(&consumer)).await,
        charged,
        "out of the consumer's pool"
    );
    // The consumer's history shows the settlement, with the session and the payee.
    let events = t.get("/wallet/events", consumer.auth()).await.ok();
    let settle = events.data()["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "SETTLE")
        .cloned()
        .expect("a SETTLE event");
    assert_eq!(settle["sessionId"], id.as_str());
    assert_eq!(settle["amountMicroUsdc"], charged);
    assert_eq!(settle["counterparty"], supplier.wallet.to_checksum());
    assert_eq!(settle["txHash"], confirmed["txHash"]);
    relayer.stop().await;
}

/// Relayer passes at `at` until nothing is in flight or due: the node
/// mines at once but may answer for a receipt a moment later.
pub(crate) async fn drain(t: &TestApp, settler: &dyn lx_server::chain::Settler, at: i64) {
    let config = relayer_config();
    for i in 0..80 {
        lx_server::settlement::pass(&t.app, settler, &config, at + i)
            .await
            .unwrap();
        let open = t.app.store.open_settlements(1000).await.unwrap();
        let busy = open.iter().any(|r| {
            r.state == lx_server::store::SettlementState::Submitted || r.next_attempt_ms <= at + i
        });
        if !busy {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the relayer did not settle down");
}

/// A JSON-RPC call to the node; its answer.
pub(crate) async fn rpc(
    d: &Deployed,
    method: &str,
    params: serde_json::Value,
) -> serde_json::Value {
    let p = ProviderBuilder::new().connect_http(d.anvil.url.parse().expect("url"));
    p.raw_request(method.to_owned().into(), params)
        .await
        .unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// A session metered and final, its settlement queued; returns its id and meter.
async fn a_final_session(
    t: &TestApp,
    consumer: &Actor,
    supplier: &Actor,
) -> (String, serde_json::Value) {
    let id = a_metered_session(t, consumer, supplier, 2).await;
    let ended = t.session(consumer, &id).await;
    let ended_ms = lx_protocol::time::parse_millis(ended["endedAt"].as_str().unwrap()).unwrap();
    t.app.sweep(ended_ms + t.app.settle_delay_ms() + 1).await;
    let meter = t.session(consumer, &id).await["meter"].clone();
    (id, meter)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayer_killed_between_submit_and_confirm_settles_once_after_its_restart() {
    use lx_server::settlement::pass;
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("restart", 10_000_000, 5_000_000).await;
    let (id, meter) = a_final_session(&t, &consumer, &supplier).await;
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let config = relayer_config();

    // The node holds the transaction unmined while the relayer dies.
    rpc(&d, "evm_setAutomine", json!([false])).await;
    {
        let settler = d.settler().await;
        let p = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
        assert_eq!(p.submitted, 1, "{p:?}");
    }
    let submitted = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(submitted.data()["state"], "SUBMITTED");
    let tx = submitted.data()["txHash"].as_str().unwrap().to_owned();

    // It comes back; the block is mined meanwhile.
    rpc(&d, "evm_mine", json!([])).await;
    rpc(&d, "evm_setAutomine", json!([true])).await;
    let settler = d.settler().await;
    let mut confirmed = 0;
    for _ in 0..50 {
        let p = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
        assert_eq!(p.submitted, 0, "not sent again: {p:?}");
        confirmed += p.confirmed;
        if confirmed > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(confirmed, 1);
    let confirmed = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(confirmed.data()["state"], "CONFIRMED");
    assert_eq!(
        confirmed.data()["txHash"],
        tx.as_str(),
        "the same transaction, not a second one"
    );
    assert_eq!(d.usdc_of(evm_of(&supplier)).await, earned, "paid once");
    // Nothing left to do.
    let idle = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
    assert_eq!(idle, lx_server::settlement::Pass::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_transaction_is_sent_again_with_its_nonce_and_settles_once() {
    use lx_server::settlement::pass;
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("lost", 10_000_000, 5_000_000).await;
    let (id, meter) = a_final_session(&t, &consumer, &supplier).await;
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let config = relayer_config();
    let settler = d.settler().await;

    rpc(&d, "evm_setAutomine", json!([false])).await;
    assert_eq!(
        pass(&t.app, &settler, &config, t.app.now())
            .await
            .unwrap()
            .submitted,
        1
    );
    // The node forgets it.
    rpc(&d, "anvil_dropAllTransactions", json!([])).await;
    rpc(&d, "evm_setAutomine", json!([true])).await;
    // Not yet given up on: within resubmit_after nothing happens.
    let p = pass(&t.app, &settler, &config, t.app.now()).await.unwrap();
    assert_eq!(p, lx_server::settlement::Pass::default());
    let lost = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok()
        .data()["txHash"]
        .as_str()
        .unwrap()
        .to_owned();
    // Then sent again in its place: the same nonce (still unspent), a
    // higher fee, and no Settled event found meanwhile.
    let later = t.app.now() + config.resubmit_after_ms + 1;
    let p = pass(&t.app, &settler, &config, later).await.unwrap();
    assert_eq!((p.replaced, p.confirmed), (1, 0), "{p:?}");
    let again = t
        .get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok();
    assert_eq!(again.data()["state"], "SUBMITTED");
    assert_ne!(again.data()["txHash"].as_str().unwrap(), lost);
    assert!(
        again.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("not mined")
    );
    // The node mines at once but may answer for the receipt a moment later.
    let mut confirmed = 0;
    for i in 0..50 {
        let p = pass(&t.app, &settler, &config, later + 1 + i)
            .await
            .unwrap();
        assert_eq!(
            (p.submitted, p.replaced),
            (0, 0),
            "not sent a third time: {p:?}"
        );
        confirmed += p.confirmed;
        if confirmed > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(confirmed, 1);
    assert_eq!(d.usdc_of(evm_of(&supplier)).await, earned, "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_the_contract_refuses_are_failed_or_owed_with_its_reason() {
    let d = deployed().await;
    d.fund_relayer().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let supplier = t.supplier("refused-supplier", BOGOTA, true).await;
    let settler = d.settler().await;
    let db = t.dir.path().join("lx.db");
    let tamper = |sql: String| {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
        c.execute(&sql, []).unwrap();
    };

    // 1. Above a cap the consumer set after its session (the server refuses
    // sessions above a cap set before): the consumer's doing, a debt.
    let capped = t.consumer("capped").await;
    d.fund(&capped.key, 10_000_000, 5_000_000).await;
    let (capped_id, _) = a_final_session(&t, &capped, &supplier).await;
    let consumer_wallet = ProviderBuilder::new()
        .wallet(EthereumWallet::from(PrivateKeySigner::from_signing_key(
            capped.key.clone(),
        )))
        .connect_http(d.anvil.url.parse().unwrap());
    lx_server::chain::evm::ILuxxonSettlement::new(d.settlement, &consumer_wallet)
        .setMaxRatePerSecond(U256::from(10u64))
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();

    // 2. More than rate × seconds (a record gone wrong).
    let greedy = t.consumer("greedy").await;
    d.fund(&greedy.key, 10_000_000, 5_000_000).await;
    let (greedy_id, _) = a_final_session(&t, &greedy, &supplier).await;

    assert_eq!(
        t.app
            .store
            .queue_settlements(t.app.now(), &[])
            .await
            .unwrap(),
        2
    );
    tamper(format!(
        "UPDATE settlements SET to_amount = rate * seconds + 1 WHERE session_id = '{greedy_id}'"
    ));
    drain(&t, &settler, t.app.now() + 120_000).await;
    let capped_s = t
        .get(format!("/settlements/{capped_id}"), capped.auth())
        .await
        .ok();
    assert_eq!(capped_s.data()["state"], "UNPAID", "{}", capped_s.data());
    assert!(
        capped_s.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("RateAboveMax")
    );
    let greedy_s = t
        .get(format!("/settlements/{greedy_id}"), greedy.auth())
        .await
        .ok();
    assert_eq!(greedy_s.data()["state"], "FAILED", "{}", greedy_s.data());
    assert!(
        greedy_s.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("OverCharge")
    );
    assert_eq!(
        capped_s.data()["attempts"],
        1,
        "once: a debt waits debt_retry_ms for its next try"
    );
    assert_eq!(greedy_s.data()["attempts"], 1);

    // 3. A sequence the contract is past, for a session it never settled
    // (a later one of the same consumer went first).
    let twice = t.consumer("twice").await;
    d.fund(&twice.key, 10_000_000, 5_000_000).await;
    let (first_id, _) = a_final_session(&t, &twice, &supplier).await;
    drain(&t, &settler, t.app.now() + 240_000).await;
    assert_eq!(
        t.get(format!("/settlements/{first_id}"), twice.auth())
            .await
            .data()["state"],
        "CONFIRMED"
    );
    let (second_id, _) = a_final_session(&t, &twice, &supplier).await;
    assert_eq!(
        t.app
            .store
            .queue_settlements(t.app.now(), &[])
            .await
            .unwrap(),
        1
    );
    tamper(format!(
        "UPDATE settlements SET sequence = 0, state = 'PENDING', tx_hash = NULL, next_attempt_ms = 0, attempts = 0 WHERE session_id = '{second_id}'"
    ));
    drain(&t, &settler, t.app.now() + 480_000).await;
    let second = t
        .get(format!("/settlements/{second_id}"), twice.auth())
        .await
        .ok();
    assert_eq!(second.data()["state"], "FAILED", "{}", second.data());
    assert!(
        second.data()["lastError"]
            .as_str()
            .unwrap()
            .contains("AlreadySettled")
    );
    // 4. A settlement the contract has but whose record was lost (a restore
    // from an older backup): the Settled event makes it CONFIRMED again,
    // with no second payment.
    let paid = d.usdc_of(evm_of(&supplier)).await;
    tamper(format!(
        "UPDATE settlements SET state = 'PENDING', tx_hash = NULL, block = NULL, next_attempt_ms = 0 WHERE session_id = '{first_id}'"
    ));
    drain(&t, &settler, t.app.now() + 600_000).await;
    let first = t
        .get(format!("/settlements/{first_id}"), twice.auth())
        .await
        .ok();
    assert_eq!(first.data()["state"], "CONFIRMED", "{}", first.data());
    assert!(first.data()["txHash"].as_str().unwrap().starts_with("0x"));
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await,
        paid,
        "no second payment"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relayer_key_comes_from_an_encrypted_keystore_and_a_wrong_password_is_named() {
    let d = deployed().await;
    let dir = tempfile::tempdir().unwrap();
    PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rand::thread_rng(),
        d.relayer.to_bytes(),
        "correct horse",
        Some("relayer.json"),
    )
    .unwrap();
    let var = format!("LX_TEST_RELAYER_PASSWORD_{}", std::process::id());
    let mut config = lx_server::config::Config::defaults();
    config.chain.rpc_url = d.anvil.url.clone();
    config.chain.settlement_address = d.settlement.to_string();
    config.chain.relayer_keystore = dir.path().join("relayer.json").display().to_string();
    config.chain.relayer_password_env = var.clone();

    let env = |password: Option<&'static str>| {
        let var = var.clone();
        move |name: &str| {
            (name == var)
                .then_some(password)
                .flatten()
                .map(str::to_owned)
        }
    };
    let missing = lx_server::serve::settler_with(&config, env(None))
        .await
        .err()
        .expect("no password");
    assert!(format!("{missing:#}").contains(&var), "{missing:#}");
    let wrong = lx_server::serve::settler_with(&config, env(Some("wrong")))
        .await
        .err()
        .expect("a wrong password");
    assert!(format!("{wrong:#}").contains("relayer.json"), "{wrong:#}");
    let settler = lx_server::serve::settler_with(&config, env(Some("correct horse")))
        .await
        .unwrap()
        .expect("a settler");
    assert_eq!(
        settler.relayer(),
        lx_protocol::wallet::Address(d.relayer.address().0.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_one_relayer_settles_each_session_once_and_the_other_takes_over() {
    let d = deployed().await;
    d.fund_relayer().await;
    let url = lx_server::store::postgres::cluster::shared()
        .fresh_database()
        .await;
    let replica = |url: String| async {
        TestApp::spawn_with_chain_and(Arc::new(d.chain().await), move |c| c.store.url = url).await
    };
    let (a, b) = (replica(url.clone()).await, replica(url).await);
    let consumer = a.consumer("replicas-consumer").await;
    let supplier = a.supplier("replicas-supplier", BOGOTA, true).await;
    d.fund(&consumer.key, 10_000_000, 5_000_000).await;
    let earned_of = |meter: &serde_json::Value| meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let operator_before = d.usdc_of(evm_of(&supplier)).await;

    // The first replica's relayer takes the lease with the first settlement;
    // the second's then runs beside it.
    let relayer_a = Relayer::spawn(&d, &a).await;
    let (first, first_meter) = a_final_session(&a, &consumer, &supplier).await;
    settlement_state(&a, &consumer, &first, "CONFIRMED").await;
    let relayer_b = Relayer::spawn(&d, &b).await;
    let (second, second_meter) = a_final_session(&b, &consumer, &supplier).await;
    let confirmed = settlement_state(&b, &consumer, &second, "CONFIRMED").await;
    assert_eq!(confirmed["sequence"], 2);

    // The holder goes away: the other replica's relayer takes the lease.
    relayer_a.stop().await;
    let weak = Arc::downgrade(&a.app);
    drop(a);
    for _ in 0..100 {
        if weak.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(weak.strong_count(), 0, "the first replica still runs");
    let (third, third_meter) = a_final_session(&b, &consumer, &supplier).await;
    let queued = std::time::Instant::now();
    let confirmed = settlement_state(&b, &consumer, &third, "CONFIRMED").await;
    assert!(
        queued.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        queued.elapsed()
    );
    assert_eq!(confirmed["sequence"], 3);
    // Each settled exactly once: the operator got exactly the three shares.
    let earned = earned_of(&first_meter) + earned_of(&second_meter) + earned_of(&third_meter);
    assert_eq!(d.usdc_of(evm_of(&supplier)).await - operator_before, earned);
    relayer_b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_names_the_settlement_contract_and_the_usdc_token() {
    let d = deployed().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let config = t.get("/config", crate::common::Auth::None).await.ok();
    let named = |key: &str| config.data()[key].as_str().unwrap_or_default().to_owned();
    assert_eq!(named("settlementContract"), d.settlement.to_checksum(None));
    assert_eq!(named("usdcContract"), d.usdc.to_checksum(None));
    // Without a chain there is nothing to name.
    let none = TestApp::spawn().await;
    let config = none.get("/config", crate::common::Auth::None).await.ok();
    assert!(
        config.data()["settlementContract"].is_null(),
        "{}",
        config.body
    );
}
