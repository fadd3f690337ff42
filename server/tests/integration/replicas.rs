//! Two replicas on one PostgreSQL database, each a whole server over real
//! HTTP: what one commits the other sees, and a race split between them has
//! one winner.

use std::time::Duration;

use futures_util::future::join_all;
use serde_json::json;

use lx_server::config::Config;

use crate::common::{BOGOTA, TestApp};

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
