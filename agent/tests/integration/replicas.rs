//! The real agent behind a load balancer in front of two server replicas on
//! one PostgreSQL database: the replica carrying its session's media goes
//! away, and the session goes on through the other.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use super::{
    BOGOTA, TestApp, agent_config_with, enrollment_token, frame_status, hovering_at,
    network_windows, spawn_agent, test_camera, wait_until,
};

/// A TCP load balancer on loopback: each connection goes to the next
/// backend that accepts it, round robin.
async fn balancer(backends: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (backends, next) = (backends.clone(), Arc::clone(&next));
            tokio::spawn(async move {
                let first = next.fetch_add(1, Ordering::Relaxed);
                for i in 0..backends.len() {
                    let backend = &backends[(first + i) % backends.len()];
                    if let Ok(mut server) = TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
    url
}

fn host_port(t: &TestApp) -> String {
    t.base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_media_replica_gone_the_agent_publishes_through_the_other_and_the_gap_is_not_charged() {
    let url = lx_server::store::postgres::cluster::shared()
        .fresh_database()
        .await;
    let replica = |url: String| TestApp::spawn_with_media(move |c| c.store.url = url);
    let replicas = vec![replica(url.clone()).await, replica(url).await];
    let lb = balancer(replicas.iter().map(host_port).collect()).await;
    let t = &replicas[0];
    let consumer = t.consumer("replicas-co").await;
    let supplier = t.supplier("replicas-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config_with(
        &lb,
        &dir.path().join("state"),
        &hovering_at(BOGOTA),
        &test_camera("vp8"),
    );
    let token = enrollment_token(t, &supplier).await;
    lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);
    wait_until("the device to be connected with a position", 20, || async {
        let list = t
            .get(
                format!("/workspaces/{}/operators", supplier.workspace_id),
                supplier.auth(),
            )
            .await
            .ok();
        list.data()[0]["connected"] == true
    })
    .await;
    let id = t.request(&consumer, BOGOTA, 300).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(20))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The replica whose media carry the session goes away.
    let session_id: uuid::Uuid = id.parse().unwrap();
    let media = t
        .app
        .store
        .session(session_id)
        .await
        .unwrap()
        .unwrap()
        .media
        .unwrap();
    let owner = replicas
        .iter()
        .position(|r| {
            media
                .whip_url
                .starts_with(&format!("http://{}", host_port(r)))
        })
        .expect("one of the replicas carries the media");
    let mut replicas = replicas;
    let gone = replicas.remove(owner);
    let survivor = replicas.pop().unwrap();
    let weak = Arc::downgrade(&gone.app);
    let stopped_ms = lx_server::clock::wall_now_ms();
    drop(gone);
    wait_until("the replica to be gone", 10, || {
        let weak = weak.clone();
        async move { weak.strong_count() == 0 }
    })
    .await;

    // The agent's WHIP endpoint reaches no server: it asks `start` again
    // through the balancer, gets the survivor's URLs and publishes there.
    let mut closed = None;
    for _ in 0..600 {
        let session = survivor.session(&consumer, &id).await;
        if let [(opened, Some(closed_ms))] = network_windows(&session).as_slice() {
            closed = Some((*opened, *closed_ms));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (opened_ms, closed_ms) = closed.expect("the gap closes: media flow through the survivor");
    // The gap counts from when the gone replica last said it was alive (each
    // does every second), not from when the agent noticed, seconds later.
    assert!(
        (stopped_ms - 1_500..=stopped_ms).contains(&opened_ms),
        "the gap opens at {opened_ms}, the replica stopped at {stopped_ms}"
    );
    let (status, _) = frame_status(&survivor, &consumer, &id).await;
    assert_eq!(status, 200, "the survivor decodes the agent's frames");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended = survivor
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let s = ended.data();
    assert_eq!(network_windows(s).len(), 1, "one gap: {s}");
    let failed = s["meter"]["failedSeconds"].as_i64().unwrap();
    let gap_s = (closed_ms - opened_ms) as f64 / 1000.0;
    assert!(
        (failed as f64 - gap_s).abs() <= 1.0,
        "{failed} s failed for a {gap_s} s gap: {s}"
    );
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}
