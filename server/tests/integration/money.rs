//! The money loop against every participant, each test written as the
//! attack: a real anvil chain with the contracts forge built, the real
//! server, a real relayer. Each passes because the attack fails.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lx_server::chain::Settler;
use serde_json::{Value, json};

use crate::chain::{Market, Relayer, a_metered_session, drain, evm_of, market, rpc};
use crate::chain_support::{WITHDRAWAL_NOTICE_SECONDS, deployed, relayer_config};
use crate::common::{Actor, BOGOTA, TestApp};

/// A session LIVE for about `seconds`, ended by the consumer, its meter made
/// final by a sweep past the settle delay; returns its id and final meter.
async fn a_final_session(
    t: &TestApp,
    consumer: &Actor,
    supplier: &Actor,
    seconds: u64,
) -> (String, Value) {
    let id = a_metered_session(t, consumer, supplier, seconds).await;
    finalize(t, consumer, &id).await
}

async fn finalize(t: &TestApp, consumer: &Actor, id: &str) -> (String, Value) {
    let ended = t.session(consumer, id).await;
    let ended_ms = lx_protocol::time::parse_millis(ended["endedAt"].as_str().unwrap()).unwrap();
    t.app.sweep(ended_ms + t.app.settle_delay_ms() + 1).await;
    let session = t.session(consumer, id).await;
    assert_eq!(session["meterFinal"], true, "{session}");
    (id.to_owned(), session["meter"].clone())
}

async fn settlement(t: &TestApp, consumer: &Actor, id: &str) -> Value {
    t.get(format!("/settlements/{id}"), consumer.auth())
        .await
        .ok()
        .data()
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_capping_its_rate_below_the_market_gets_no_quote_no_session_and_no_dispatch() {
    let d = deployed().await;
    let t = TestApp::spawn_with_chain(Arc::new(d.chain().await)).await;
    let supplier = t.supplier("cap-supplier", BOGOTA, true).await;
    let cheap = t.consumer("cap-cheap").await;
    d.fund(&cheap.key, 10_000_000, 5_000_000).await;
    // The market's base rate is 1000 µUSDC/s; the consumer allows 10.
    d.set_cap(&cheap.key, 10).await;

    let quote = t
        .get(
            format!(
                "/pricing/quote?lat={}&lng={}&durationSeconds=60",
                BOGOTA.0, BOGOTA.1
            ),
            cheap.auth(),
        )
        .await
        .expect(400, "RATE_ABOVE_CAP");
    assert_eq!(quote.detail(), "credit:rateAboveCap:10");
    assert!(quote.message().contains("cap of 10"), "{}", quote.message());
    let refused = t
        .post(
            "/sessions",
            cheap.auth(),
            json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60}),
        )
        .await
        .expect(400, "RATE_ABOVE_CAP");
    assert_eq!(refused.detail(), "credit:rateAboveCap:10");
    let mine = t.get("/sessions", cheap.auth()).await.ok();
    assert_eq!(mine.data().as_array().unwrap().len(), 0, "nothing created");
    assert_eq!(
        t.workspace(&supplier).await["availabilityState"],
        "ONLINE",
        "nothing dispatched"
    );

    // A cap set after the session was created: the dispatch is refused.
    let late = t.consumer("cap-late").await;
    d.fund(&late.key, 10_000_000, 5_000_000).await;
    let id = t.request(&late, BOGOTA, 60).await;
    d.set_cap(&late.key, 10).await;
    t.post(format!("/sessions/{id}/dispatch"), late.auth(), json!({}))
        .await
        .expect(400, "RATE_ABOVE_CAP");
    let session = t.session(&late, &id).await;
    assert_eq!(session["state"], "REQUESTED");
    assert!(session["operatorWorkspaceId"].is_null(), "{session}");
    assert_eq!(t.workspace(&supplier).await["availabilityState"], "ONLINE");
    // The wallet shows the cap it is judged by.
    let wallet = t.get("/wallet", late.auth()).await.ok();
    assert_eq!(wallet.data()["maxRatePerSecondMicroUsdc"], 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_requested_while_live_ends_the_session_and_the_seconds_served_are_paid_first()
{
    let deposit = 5_000_000;
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("withdraw", 10_000_000, deposit).await;
    let relayer = Relayer::spawn(&d, &t).await;

    let id = t.request(&consumer, BOGOTA, 600).await;
    let heartbeats = t.heartbeat_every_second(&supplier, BOGOTA);
    t.make_live(&consumer, &supplier, &id).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // The attack: everything back while the session runs.
    d.request_withdrawal(&consumer.key, deposit).await;
    let asked = Instant::now();
    let mut ended = Value::Null;
    while asked.elapsed() < Duration::from_secs(10) {
        ended = t.session(&consumer, &id).await;
        if ended["state"] != "LIVE" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let noticed = asked.elapsed();
    drop(heartbeats);
    assert_eq!(ended["state"], "EXPIRED", "{ended}");
    assert_eq!(ended["expiryReason"], "INSUFFICIENT_CREDIT", "{ended}");
    assert!(
        noticed < Duration::from_secs(5),
        "noticed after {noticed:?}"
    );
    eprintln!("the withdrawal request ended the session after {noticed:?}");
    assert_eq!(
        t.workspace(&supplier).await["availabilityState"],
        "ONLINE",
        "the supplier is free again"
    );

    // The requested withdrawal counts at once: no new session.
    let wallet = t.get("/wallet", consumer.auth()).await.ok();
    let w = wallet.data();
    assert_eq!(w["withdrawalRequestedMicroUsdc"], deposit, "{w}");
    assert_eq!(w["availableCreditMicroUsdc"], 0, "{w}");
    assert!(w["withdrawableAt"].as_str().is_some(), "{w}");
    t.post(
        "/sessions",
        consumer.auth(),
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60}),
    )
    .await
    .expect(400, "INSUFFICIENT_CREDIT");
    // And it cannot be taken yet.
    let early = d
        .withdraw(&consumer.key)
        .await
        .expect_err("not before the notice");
    assert!(early.contains("WithdrawalNotYet"), "{early}");

    // The seconds served are settled from the whole deposit.
    let (_, meter) = finalize(&t, &consumer, &id).await;
    let charged = meter["chargedMicroUsdc"].as_u64().unwrap();
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    assert!(charged >= 3_000, "at least three seconds served: {meter}");
    let mut confirmed = Value::Null;
    for _ in 0..100 {
        confirmed = settlement(&t, &consumer, &id).await;
        if confirmed["state"] == "CONFIRMED" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(confirmed["state"], "CONFIRMED", "{confirmed}");
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await,
        earned,
        "the operator is paid"
    );
    // The proof carries the settlement: anyone recomputes the meter from the
    // supplier's heartbeats and finds the amounts paid on chain.
    let proof = t
        .get(format!("/sessions/{id}/proof"), consumer.auth())
        .await
        .ok();
    let bundle: lx_protocol::proof::ProofBundle =
        serde_json::from_value(proof.data().clone()).unwrap();
    let verdict = lx_protocol::proof::verify(&bundle);
    assert!(verdict.ok, "{:#?}", verdict.findings);
    assert_eq!(verdict.recomputed.charged_micro_usdc, charged);
    assert_eq!(
        bundle.evidence,
        lx_protocol::proof::EvidenceKind::LocationHeartbeats
    );
    let tx = confirmed["txHash"].as_str().unwrap();
    assert!(
        verdict.findings.iter().any(|f| f.message.contains(tx)),
        "{:?}",
        verdict.findings
    );
    assert!(
        bundle
            .chain
            .as_ref()
            .is_some_and(|c| c.settlement_contract.is_some()),
        "{:?}",
        bundle.chain
    );

    // After the notice the consumer gets the rest, not the charge.
    d.advance(WITHDRAWAL_NOTICE_SECONDS).await;
    let before = d.usdc_of(evm_of(&consumer)).await;
    d.withdraw(&consumer.key).await.expect("after the notice");
    assert_eq!(
        d.usdc_of(evm_of(&consumer)).await,
        before + deposit - charged
    );
    assert_eq!(d.pool_of(evm_of(&consumer)).await, 0);
    relayer.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_whose_pool_was_emptied_is_a_debt_that_blocks_new_sessions_until_a_deposit_pays_it()
 {
    let deposit = 5_000_000;
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("debt", 20_000_000, deposit).await;
    let settler = d.settler().await;
    let (id, meter) = a_final_session(&t, &consumer, &supplier, 2).await;
    let charged = meter["chargedMicroUsdc"].as_u64().unwrap();
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    assert!(charged > 0, "{meter}");

    // The attack: the relayer is slow (down past the notice), and the
    // consumer empties its pool anyway.
    d.request_withdrawal(&consumer.key, deposit).await;
    d.advance(WITHDRAWAL_NOTICE_SECONDS).await;
    d.withdraw(&consumer.key)
        .await
        .expect("withdrawn after the notice");
    assert_eq!(d.pool_of(evm_of(&consumer)).await, 0);

    let now = t.app.now();
    drain(&t, &settler, now).await;
    let unpaid = settlement(&t, &consumer, &id).await;
    assert_eq!(unpaid["state"], "UNPAID", "{unpaid}");
    assert!(
        unpaid["lastError"]
            .as_str()
            .unwrap()
            .contains("InsufficientDeposit"),
        "{unpaid}"
    );
    let wallet = t.get("/wallet", consumer.auth()).await.ok();
    assert_eq!(wallet.data()["debts"][0]["sessionId"], id.as_str());
    assert_eq!(wallet.data()["debts"][0]["amountMicroUsdc"], charged);
    // New sessions are refused, naming the debt, even with money in the pool.
    d.deposit(&consumer.key, 1).await;
    let refused = t
        .post(
            "/sessions",
            consumer.auth(),
            json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60}),
        )
        .await
        .expect(402, "PAYMENT_REQUIRED");
    assert_eq!(refused.detail(), format!("credit:debt:{id}:{charged}"));
    assert!(refused.message().contains(&id), "{}", refused.message());
    // Tried again while the pool is still short: still a debt, never FAILED.
    drain(&t, &settler, now + 10_000).await;
    assert_eq!(settlement(&t, &consumer, &id).await["state"], "UNPAID");

    // A deposit pays it: the operator is paid and sessions are taken again.
    d.deposit(&consumer.key, 5_000_000).await;
    drain(&t, &settler, now + 20_000).await;
    let paid = settlement(&t, &consumer, &id).await;
    assert_eq!(paid["state"], "CONFIRMED", "{paid}");
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await,
        earned,
        "the operator is paid"
    );
    let wallet = t.get("/wallet", consumer.auth()).await.ok();
    assert_eq!(wallet.data()["debts"], json!([]));
    t.post(
        "/sessions",
        consumer.auth(),
        json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 60}),
    )
    .await
    .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sequence_n_backing_off_keeps_n_plus_one_waiting_and_both_settle_in_order() {
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("order", 20_000_000, 10_000_000).await;
    let settler = d.settler().await;
    let config = relayer_config();
    let (first, _) = a_final_session(&t, &consumer, &supplier, 1).await;
    let (second, _) = a_final_session(&t, &consumer, &supplier, 1).await;
    let now = t.app.now();
    assert_eq!(t.app.store.queue_settlements(now, &[]).await.unwrap(), 2);
    assert_eq!(settlement(&t, &consumer, &first).await["sequence"], 1);
    assert_eq!(settlement(&t, &consumer, &second).await["sequence"], 2);

    // Sequence 1 backs off (a passing fault); sequence 2 is due.
    let db = t.dir.path().join("lx.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute(
        "UPDATE settlements SET attempts = 1, next_attempt_ms = ?2, last_error = 'the node did not answer'
         WHERE session_id = ?1",
        rusqlite::params![first, now + 60_000],
    )
    .unwrap();
    let p = lx_server::settlement::pass(&t.app, &settler, &config, now)
        .await
        .unwrap();
    assert_eq!(p.submitted, 0, "sequence 2 waits for sequence 1: {p:?}");
    let waiting = settlement(&t, &consumer, &second).await;
    assert_eq!(
        (waiting["state"].as_str(), waiting["attempts"].as_u64()),
        (Some("PENDING"), Some(0))
    );

    drain(&t, &settler, now + 120_000).await;
    let a = settlement(&t, &consumer, &first).await;
    let b = settlement(&t, &consumer, &second).await;
    assert_eq!(
        (a["state"].as_str(), b["state"].as_str()),
        (Some("CONFIRMED"), Some("CONFIRMED"))
    );
    assert!(
        a["blockNumber"].as_u64().unwrap() < b["blockNumber"].as_u64().unwrap(),
        "in order: {a} then {b}"
    );
    assert_eq!(settler.last_sequence(consumer.wallet).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restore_the_relayer_numbers_after_the_chain_and_pays_no_session_twice() {
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("restore", 20_000_000, 10_000_000).await;
    let settler = d.settler().await;
    let (settled, meter) = a_final_session(&t, &consumer, &supplier, 1).await;
    let earned_first = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    drain(&t, &settler, t.app.now()).await;
    assert_eq!(
        settlement(&t, &consumer, &settled).await["state"],
        "CONFIRMED"
    );
    assert_eq!(d.usdc_of(evm_of(&supplier)).await, earned_first);

    // The database comes back from a backup taken before that settlement
    // was queued; another session ends meanwhile.
    let db = t.dir.path().join("lx.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.execute("DELETE FROM settlements", []).unwrap();
    let (next, meter) = a_final_session(&t, &consumer, &supplier, 1).await;
    let earned_next = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    assert_eq!(settler.last_sequence(consumer.wallet).await.unwrap(), 1);

    drain(&t, &settler, t.app.now()).await;
    let again = settlement(&t, &consumer, &settled).await;
    let fresh = settlement(&t, &consumer, &next).await;
    assert_eq!(again["state"], "CONFIRMED", "found on chain: {again}");
    assert_eq!(fresh["state"], "CONFIRMED", "{fresh}");
    assert!(
        again["sequence"].as_u64().unwrap() > 1 && fresh["sequence"].as_u64().unwrap() > 1,
        "numbered after the chain's last: {again} {fresh}"
    );
    assert_eq!(
        d.usdc_of(evm_of(&supplier)).await,
        earned_first + earned_next,
        "each session paid once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settlement_stuck_in_the_mempool_is_replaced_with_the_same_nonce_and_a_higher_fee() {
    let Market {
        d,
        t,
        consumer,
        supplier,
    } = market("stuck", 10_000_000, 5_000_000).await;
    let (id, meter) = a_final_session(&t, &consumer, &supplier, 2).await;
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    let settler = d.settler().await;
    let config = relayer_config();
    let now = t.app.now();

    rpc(&d, "evm_setAutomine", json!([false])).await;
    let p = lx_server::settlement::pass(&t.app, &settler, &config, now)
        .await
        .unwrap();
    assert_eq!(p.submitted, 1, "{p:?}");
    let first = settlement(&t, &consumer, &id).await;
    let stuck = first["txHash"].as_str().unwrap().to_owned();
    let old = rpc(&d, "eth_getTransactionByHash", json!([stuck])).await;
    assert!(old["blockNumber"].is_null(), "pending, not mined: {old}");
    // Within resubmit_after nothing happens.
    let p = lx_server::settlement::pass(&t.app, &settler, &config, now + 1)
        .await
        .unwrap();
    assert_eq!(p.replaced, 0, "{p:?}");
    let p = lx_server::settlement::pass(
        &t.app,
        &settler,
        &config,
        now + config.resubmit_after_ms + 1,
    )
    .await
    .unwrap();
    let second = settlement(&t, &consumer, &id).await;
    assert_eq!(p.replaced, 1, "{p:?} {second}");
    assert_eq!(second["state"], "SUBMITTED");
    let replacement = second["txHash"].as_str().unwrap().to_owned();
    assert_ne!(replacement, stuck);
    let new = rpc(&d, "eth_getTransactionByHash", json!([replacement])).await;
    assert_eq!(new["nonce"], old["nonce"], "the same nonce");
    let fee = |tx: &Value| {
        u128::from_str_radix(
            tx["maxFeePerGas"]
                .as_str()
                .unwrap()
                .trim_start_matches("0x"),
            16,
        )
        .unwrap()
    };
    assert!(fee(&new) > fee(&old), "a higher fee: {new} over {old}");

    rpc(&d, "evm_mine", json!([])).await;
    rpc(&d, "evm_setAutomine", json!([true])).await;
    let mut confirmed = 0;
    for i in 0..50 {
        let p = lx_server::settlement::pass(
            &t.app,
            &settler,
            &config,
            now + config.resubmit_after_ms + 2 + i,
        )
        .await
        .unwrap();
        assert_eq!((p.submitted, p.replaced), (0, 0), "{p:?}");
        confirmed += p.confirmed;
        if confirmed > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(confirmed, 1);
    let done = settlement(&t, &consumer, &id).await;
    assert_eq!(done["txHash"], replacement.as_str(), "{done}");
    let gone = rpc(&d, "eth_getTransactionReceipt", json!([stuck])).await;
    assert!(gone.is_null(), "the stuck one was never mined: {gone}");
    assert_eq!(d.usdc_of(evm_of(&supplier)).await, earned, "paid once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_refuses_a_contract_whose_withdrawal_notice_is_shorter_than_a_session_can_run() {
    let d = deployed().await;
    let mut config = lx_server::config::Config::defaults();
    config.chain.rpc_url = d.anvil.url.clone();
    config.chain.settlement_address = d.settlement.to_string();
    // A day-long session, 15 s of settle delay and 600 s of relayer margin
    // cannot be covered by the test contract's hour of notice.
    let refused = lx_server::serve::chain_reader(&config)
        .await
        .err()
        .expect("a notice shorter than a session");
    let text = format!("{refused:#}");
    assert!(
        text.contains(&format!("notice is {WITHDRAWAL_NOTICE_SECONDS} s"))
            && text.contains("87015"),
        "{text}"
    );
    config.sessions.max_duration_seconds = 1_800;
    assert!(
        lx_server::serve::chain_reader(&config)
            .await
            .unwrap()
            .is_some(),
        "1800 + 15 + 600 fits in 3600"
    );
}
