//! Two replicas on one PostgreSQL database, each a whole server over real
//! HTTP: what one commits the other sees, and a race split between them has
//! one winner.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use lx_server::config::Config;

use crate::common::{BOGOTA, TestApp};
use crate::media::{Live, frame, publish};

/// Two servers on one fresh database.
async fn two_replicas() -> (TestApp, TestApp) {
    let url = lx_server::store::postgres::cluster::shared()
        .fresh_database()
        .await;
    let a = TestApp::spawn_with(|c| c.store.url = url.clone()).await;
    let b = TestApp::spawn_with(|c| c.store.url = url.clone()).await;
    (a, b)
}

/// Two servers on the wall clock on one fresh database, configured alike.
pub(crate) async fn two_realtime_replicas(tweak: impl Fn(&mut Config)) -> (TestApp, TestApp) {
    let url = lx_server::store::postgres::cluster::shared()
        .fresh_database()
        .await;
    let mut replicas = Vec::new();
    for _ in 0..2 {
        replicas.push(
            TestApp::spawn_realtime_with(|c| {
                c.store.url = url.clone();
                tweak(c);
            })
            .await,
        );
    }
    let b = replicas.pop().unwrap();
    (replicas.pop().unwrap(), b)
}

/// Waits until `replica`'s dispatch index holds `n` suppliers.
async fn indexed(replica: &TestApp, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while replica.app.dispatcher.len() != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index holds {} suppliers, not {n}",
            replica.app.dispatcher.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn accepts_split_across_replicas_have_one_winner() {
    let (a, b) = two_replicas().await;
    let consumer = a.consumer("consumer-co").await;
    let supplier = a.supplier("supplier-co", BOGOTA, false).await;
    let id = a.request(&consumer, BOGOTA, 60).await;
    let offered = a
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(offered.data()["state"], "REQUESTED");
    // The offer is read through the other replica as through its own.
    let offers = b.get("/sessions/offers", supplier.auth()).await.ok();
    assert_eq!(offers.data()[0]["sessionId"], id.as_str());

    let path = format!("/sessions/{id}/accept");
    let results = join_all((0..32).map(|i| {
        let replica = if i % 2 == 0 { &a } else { &b };
        replica.post(&path, supplier.auth(), json!({}))
    }))
    .await;
    let winners = results.iter().filter(|r| r.status == 200).count();
    assert_eq!(winners, 1, "{results:?}");
    for loser in results.iter().filter(|r| r.status != 200) {
        assert_eq!(loser.status, 409, "{}", loser.body);
        assert_eq!(loser.detail(), "session:accept:ASSIGNED");
    }
    assert_eq!(b.workspace(&supplier).await["availabilityState"], "BUSY");
}

#[tokio::test]
async fn a_supplier_online_through_one_replica_is_dispatched_once_by_either() {
    let (a, b) = two_replicas().await;
    let consumer = a.consumer("consumer-co").await;
    let supplier = a.supplier("supplier-co", BOGOTA, true).await;
    // Gone ONLINE through the first replica, the supplier reaches the
    // second's index through the change feed.
    indexed(&a, 1).await;
    indexed(&b, 1).await;

    let first = a.request(&consumer, BOGOTA, 60).await;
    let second = b.request(&consumer, BOGOTA, 60).await;
    let (one, other) = tokio::join!(
        a.post(
            format!("/sessions/{first}/dispatch"),
            consumer.auth(),
            json!({})
        ),
        b.post(
            format!("/sessions/{second}/dispatch"),
            consumer.auth(),
            json!({})
        ),
    );
    let outcomes = [&one, &other];
    let assigned: Vec<_> = outcomes.iter().filter(|r| r.status == 200).collect();
    assert_eq!(assigned.len(), 1, "{one:?} {other:?}");
    assert_eq!(assigned[0].data()["state"], "ASSIGNED");
    assert_eq!(
        assigned[0].data()["operatorWorkspaceId"],
        supplier.workspace_id.to_string()
    );
    let refused = outcomes.iter().find(|r| r.status != 200).unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(refused.code(), "NO_COVERAGE");
    // Taken, the supplier leaves both indexes; freed, it comes back to both.
    indexed(&a, 0).await;
    indexed(&b, 0).await;
    b.post(
        "/sessions/cancel-all-assignments",
        supplier.auth(),
        json!({}),
    )
    .await
    .ok();
    indexed(&a, 1).await;
    indexed(&b, 1).await;
}

#[tokio::test]
async fn both_sweepers_expire_each_due_session_once() {
    let (a, b) = two_replicas().await;
    let consumer = a.consumer("consumer-co").await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(a.request(&consumer, BOGOTA, 60).await);
    }
    // Past every session's wait timeout, for both replicas' clocks.
    for replica in [&a, &b] {
        replica.clock.advance_ms(10 * 60_000);
    }
    let (by_a, by_b) = tokio::join!(a.app.sweep(a.clock_now()), b.app.sweep(b.clock_now()));
    assert_eq!(by_a + by_b, ids.len(), "expired by A: {by_a}, by B: {by_b}");
    for id in &ids {
        let session = b.session(&consumer, id).await;
        assert_eq!(session["state"], "EXPIRED", "{session}");
    }
}

/// Two replicas with the built-in media plane and a session LIVE on the
/// first: (the second, the session through the first, its publisher).
async fn live_on_the_first_of_two() -> (TestApp, Live, lx_media::publish::Publisher) {
    let url = lx_server::store::postgres::cluster::shared()
        .fresh_database()
        .await;
    let with_media = |url: String| TestApp::spawn_with_media(move |c| c.store.url = url);
    let (a, b) = (with_media(url.clone()).await, with_media(url).await);
    let consumer = a.consumer("media-consumer").await;
    let supplier = a.supplier("media-supplier", BOGOTA, true).await;
    let id = a.request(&consumer, BOGOTA, 600).await;
    a.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let started = a
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
    let whep = started.data()["whepUrl"].as_str().unwrap().to_owned();
    let (publisher, _) = publish(&whip, lx_media::Codec::Vp8).await;
    b.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(10))
        .await;
    let live = Live {
        t: a,
        consumer,
        supplier,
        id,
        whip,
        whep,
    };
    (b, live, publisher)
}

/// The session's one NETWORK_ERROR window, once it is closed (within
/// 15 s): (opened, closed).
async fn the_closed_gap(
    api: &crate::common::Api,
    consumer: &crate::common::Actor,
    id: &str,
) -> (i64, i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let session = api.session(consumer, id).await;
        let gaps = crate::media::windows(&session, "NETWORK_ERROR");
        if let [(opened, Some(closed))] = gaps.as_slice() {
            return (*opened, *closed);
        }
        assert!(gaps.len() <= 1, "more than one gap: {session}");
        assert!(
            tokio::time::Instant::now() < deadline,
            "no closed gap: {session}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Stops a replica and waits until nothing of it runs.
async fn stop(replica: TestApp) {
    let weak = std::sync::Arc::downgrade(&replica.app);
    drop(replica);
    for _ in 0..100 {
        if weak.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the stopped replica still runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_media_replica_is_gone_the_device_publishes_through_the_other() {
    let (b, live, publisher) = live_on_the_first_of_two().await;
    let Live {
        t: a,
        consumer,
        supplier,
        id,
        whip,
        ..
    } = live;
    // A WHIP POST would fail now: the device asks to start again, of the
    // replica that answers.
    drop(publisher);
    let stopped_ms = lx_server::clock::wall_now_ms();
    stop(a).await;
    let started = b
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let moved = started.data()["whipUrl"].as_str().unwrap().to_owned();
    assert_ne!(moved, whip);
    assert!(
        moved.starts_with(b.base.trim_end_matches("/api/v1")),
        "{moved}"
    );
    let (publisher, _) = publish(&moved, lx_media::Codec::Vp8).await;
    // The gap is one NETWORK_ERROR window, closed by the first frame here.
    let (opened, _) = the_closed_gap(&b, &consumer, &id).await;
    // From the gone replica's last sign of life (every second), not from
    // when the device asked again.
    assert!(
        (stopped_ms - 1_500..=stopped_ms).contains(&opened),
        "the gap opens at {opened}, the replica stopped at {stopped_ms}"
    );
    assert_eq!(b.session(&consumer, &id).await["state"], "LIVE");
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_asked_of_the_replica_without_the_media_comes_from_the_one_with_it() {
    let (b, live, publisher) = live_on_the_first_of_two().await;
    let Live {
        t: a,
        consumer,
        supplier,
        id,
        whip,
        whep,
    } = live;
    // A replica restarting watches only the media it carries: the other's
    // silence is no gap in its sessions.
    assert_eq!(b.app.adopt_media().await.unwrap(), 0);
    assert_eq!(a.app.adopt_media().await.unwrap(), 1);
    // The consumer asks the replica that does not carry the media.
    let through_b = Live {
        t: b,
        consumer,
        supplier,
        id,
        whip,
        whep,
    };
    let resp = frame(&through_b).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert!(resp.headers().contains_key("x-lx-frame-decoded-at"));
    let jpeg = resp.bytes().await.unwrap();
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .to_rgb8();
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 320, 240)
        .expect("the publisher's test pattern");
    // The owner gone, the other replica says so by name.
    drop(publisher);
    drop(a);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let resp = frame(&through_b).await;
        if resp.status().as_u16() == 404 {
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["code"], "FRAME_NOT_AVAILABLE", "{body}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "frames after the owner stopped"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The TOML of one replica of a pair on `store_url`, with the built-in
/// media plane, the chain `d` and its relayer keystore.
fn replica_config(
    port: u16,
    dir: &std::path::Path,
    store_url: &str,
    d: &crate::chain_support::Deployed,
    keystore: &std::path::Path,
    password_env: &str,
) -> String {
    format!(
        "[http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
         [store]\npath = \"{db}\"\nurl = \"{store_url}\"\n\
         [auth]\ncookie_secret = \"{secret}\"\n\
         [credit]\nsource = \"onchain\"\n\
         [chain]\nrpc_url = \"{rpc}\"\nsettlement_address = \"{settlement}\"\n\
         relayer_keystore = \"{keystore}\"\nrelayer_password_env = \"{password_env}\"\nsettle_interval_ms = 200\nrelayer_margin_seconds = 60\n\
         [sessions]\nmax_duration_seconds = 1800\n\
         [telemetry]\nsettle_delay_seconds = 1\n\
         [media]\nbackend = \"builtin\"\ntoken_secret = \"{secret}\"\n\
         [media.ice]\nlocal_addresses = [\"127.0.0.1\"]\n\
         [log]\nfilter = \"warn\"\n",
        db = dir.join(format!("lx-{port}.db")).display(),
        secret = "6c78".repeat(16),
        rpc = d.anvil.url,
        settlement = d.settlement,
        keystore = keystore.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_replica_with_the_media_and_the_relayer_lease_loses_no_second_and_no_settlement()
 {
    let d = crate::chain_support::deployed().await;
    d.fund_relayer().await;
    let dir = tempfile::tempdir().unwrap();
    alloy::signers::local::PrivateKeySigner::encrypt_keystore(
        dir.path(),
        &mut rand::thread_rng(),
        d.relayer.to_bytes(),
        "replicas",
        Some("relayer.json"),
    )
    .unwrap();
    let keystore = dir.path().join("relayer.json");
    let password_env = "LX_TEST_REPLICA_RELAYER_PASSWORD";
    let store_url = lx_server::store::postgres::cluster::shared()
        .fresh_database()
        .await;
    let start = |port: u16| {
        let config = dir.path().join(format!("replica-{port}.toml"));
        std::fs::write(
            &config,
            replica_config(port, dir.path(), &store_url, &d, &keystore, password_env),
        )
        .unwrap();
        async move {
            crate::ServerProcess::start_exactly(&config, port, &[(password_env, "replicas")]).await
        }
    };
    // The first replica's relayer takes the lease at its first pass; the
    // second starts after it.
    let a = start(crate::free_port()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = start(crate::free_port()).await;

    let consumer = a.api.consumer("kill-consumer").await;
    d.fund(&consumer.key, 10_000_000, 5_000_000).await;
    let supplier = b.api.supplier("kill-supplier", BOGOTA, true).await;
    let operator_before = d.usdc_of(crate::chain::evm_of(&supplier)).await;
    // A supplier without devices: its location heartbeats are its evidence,
    // sent through the replica that stays.
    let _heartbeats = b.api.heartbeat_every_second(&supplier, BOGOTA);
    let id = a.api.request(&consumer, BOGOTA, 600).await;
    a.api
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    let started = a
        .api
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
    assert!(
        whip.starts_with(a.api.base.trim_end_matches("/api/v1")),
        "{whip}"
    );
    let (publisher, _) = publish(&whip, lx_media::Codec::Vp8).await;
    b.api
        .wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // kill -9: no goodbye, its database connections (and leases) cut.
    let killed_ms = lx_server::clock::wall_now_ms();
    drop(publisher);
    a.kill_9();
    // The device asks the replica that answers to start again.
    let started = b
        .api
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let moved = started.data()["whipUrl"].as_str().unwrap().to_owned();
    assert!(
        moved.starts_with(b.api.base.trim_end_matches("/api/v1")),
        "{moved}"
    );
    let (publisher, _) = publish(&moved, lx_media::Codec::Vp8).await;
    let (opened, closed) = the_closed_gap(&b.api, &consumer, &id).await;
    assert!(
        (killed_ms - 1_500..=killed_ms).contains(&opened),
        "the gap opens at {opened}, the replica was killed at {killed_ms}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended = b
        .api
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    drop(publisher);
    assert_eq!(
        crate::media::windows(ended.data(), "NETWORK_ERROR").len(),
        1,
        "{}",
        ended.data()
    );

    // The survivor's relayer took the lease: the session is settled once,
    // the operator paid exactly the final meter's share, within 10 s of
    // the end (a 1 s settle delay, then the relayer's passes).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let settlement = loop {
        let s = b
            .api
            .get(format!("/settlements/{id}"), consumer.auth())
            .await;
        if s.status == 200 && s.data()["state"] == "CONFIRMED" {
            break s.data().clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never CONFIRMED: {}",
            s.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(settlement["sequence"], 1);
    let session = b.api.session(&consumer, &id).await;
    let meter = &session["meter"];
    assert_eq!(session["meterFinal"], true, "{session}");
    let failed = meter["failedSeconds"].as_i64().unwrap();
    let gap_s = (closed - opened) as f64 / 1000.0;
    assert!(
        (failed as f64 - gap_s).abs() <= 1.0,
        "{failed} s failed for a {gap_s} s gap"
    );
    let earned = meter["operatorEarnedMicroUsdc"].as_u64().unwrap();
    assert_eq!(
        d.usdc_of(crate::chain::evm_of(&supplier)).await - operator_before,
        earned
    );
}
