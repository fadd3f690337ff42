//! The fleet link against Debian's Mosquitto, with its own clients
//! (`mosquitto_sub`, `mosquitto_pub`) as the devices and the fleet manager:
//! the ACL the server writes, telemetry through the broker, offers, events
//! and last wills.

use std::time::Duration;

use lx_protocol::mqtt::Topic;
use lx_server::mqtt::test_broker::{SERVER_PASSWORD, TestBroker};
use serde_json::json;

use crate::common::{BOGOTA, Device, TestApp};
use crate::mqtt_support::Account;

const WAIT: Duration = Duration::from_secs(10);
/// Long enough for a message that would arrive to have arrived.
const SILENCE: Duration = Duration::from_millis(1500);

/// A server on the wall clock with its fleet link on a fresh Mosquitto.
async fn with_broker() -> (TestApp, TestBroker) {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut broker = TestBroker::configure(&dir).unwrap();
    let t = TestApp::spawn_realtime_with(|c| broker.apply(c)).await;
    broker.start().unwrap();
    (t, broker)
}

fn server_account(broker: &TestBroker) -> Account {
    Account::new(broker.port, "lx-server", SERVER_PASSWORD)
}

fn device_account(broker: &TestBroker, device: &Device) -> Account {
    let (user, password) = device
        .mqtt
        .clone()
        .expect("enrollment issued an MQTT account");
    Account::new(broker.port, &user, &password)
}

async fn wait_for_server_online(t: &TestApp) {
    let stats = t.fleet.clone().unwrap();
    for _ in 0..100 {
        if stats.connects.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the server's fleet link never connected");
}

/// The device says it is alive with a signed position over BOGOTA.
async fn heartbeat_at_bogota(t: &TestApp, device: &Device) {
    t.post(
        "/operators/heartbeat",
        device.auth(),
        json!({"sample": device.sample(None, t.clock_now(), BOGOTA, 3.0)}),
    )
    .await
    .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_reaches_only_its_own_topics_and_strangers_cannot_connect() {
    let (t, broker) = with_broker().await;
    let supplier = t.supplier("fleet-co", BOGOTA, false).await;
    let a = t.enroll(&supplier, "drone-a").await;
    let b = t.enroll(&supplier, "drone-b").await;
    let (a_user, _) = a.mqtt.clone().unwrap();
    assert_eq!(
        a_user,
        a.operator_id.to_string(),
        "devices log in as their operator id"
    );
    let server = server_account(&broker);
    let a_login = device_account(&broker, &a);
    let b_login = device_account(&broker, &b);

    // Strangers and wrong passwords are refused at CONNECT.
    for stranger in [
        Account::new(broker.port, "nobody", "guess"),
        Account::new(broker.port, &a_user, "not-the-password"),
    ] {
        // mosquitto_pub now and then reports the refused CONNECT as a
        // protocol error (the broker closed first): every try must fail,
        // and the broker's own reason must come within three.
        let mut said = Vec::new();
        for _ in 0..3 {
            let out = stranger.publish("lx/v1/anything", "{}").await;
            assert!(!out.status.success(), "{stranger:?} connected");
            said.push(String::from_utf8_lossy(&out.stderr).into_owned());
            if said.last().is_some_and(|s| s.contains("not authorised")) {
                break;
            }
        }
        assert!(
            said.iter().any(|s| s.contains("not authorised")),
            "{said:?}"
        );
    }

    // A's commands reach A, not B subscribing to them.
    let a_commands = Topic::Commands(a.operator_id).to_string();
    let mut a_sub = a_login.subscribe(&a_commands);
    a_sub.ready(&server, &a_commands).await;
    let mut b_spy = b_login.subscribe(&a_commands);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server
        .publish(&a_commands, r#"{"id":"c1","cmd":"online"}"#)
        .await;
    a_sub
        .until("A's command", WAIT, |_, j| j["id"] == "c1")
        .await;
    assert!(
        b_spy.next_within(SILENCE).await.is_none(),
        "B read A's commands"
    );

    // B publishing as A reaches nobody; A itself does.
    let a_telemetry = Topic::Telemetry(a.operator_id).to_string();
    let mut watch = server.subscribe(&a_telemetry);
    watch.ready(&server, &a_telemetry).await;
    let forged = b_login.publish(&a_telemetry, r#"{"forged":true}"#).await;
    assert!(forged.status.success(), "the broker drops it quietly");
    assert!(
        watch.next_within(SILENCE).await.is_none(),
        "B published on A's telemetry"
    );
    a_login.publish(&a_telemetry, r#"{"own":true}"#).await;
    watch
        .until("A's own publish", WAIT, |_, j| j["own"] == true)
        .await;

    // Nor may a device subscribe to everything.
    let mut greedy = b_login.subscribe("lx/v1/#");
    tokio::time::sleep(Duration::from_millis(500)).await;
    server
        .publish(&a_commands, r#"{"id":"c2","cmd":"online"}"#)
        .await;
    // It may read what every account reads (the server's presence), no more.
    while let Some((topic, payload)) = greedy.next_within(SILENCE).await {
        assert_eq!(topic, "lx/v1/server/status", "B read {topic} {payload}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_over_the_broker_is_verified_stored_and_acknowledged() {
    let (t, broker) = with_broker().await;
    wait_for_server_online(&t).await;
    let supplier = t.supplier("fleet-co", BOGOTA, false).await;
    let device = t.enroll(&supplier, "drone-1").await;
    let login = device_account(&broker, &device);
    let acks = Topic::TelemetryAck(device.operator_id).to_string();
    let telemetry = Topic::Telemetry(device.operator_id).to_string();
    let mut ack_sub = login.subscribe(&acks);
    ack_sub.ready(&server_account(&broker), &acks).await;

    let now = t.clock_now();
    let first = device.sample(None, now, BOGOTA, 3.0);
    login.publish(&telemetry, &first.to_string()).await;
    let ack = ack_sub
        .until("the first ack", WAIT, |_, j| j["lastSequence"] == 1)
        .await;
    assert!(ack.get("refused").is_none(), "{ack}");
    let op = t
        .app
        .store
        .operator(device.operator_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.last_sequence, Some(1));
    assert!(op.fix.is_some(), "an idle sample updates the last position");

    // The same sample again: acknowledged, not stored twice.
    login.publish(&telemetry, &first.to_string()).await;
    ack_sub
        .until("the replay's ack", WAIT, |_, j| {
            j["lastSequence"] == 1 && j.get("refused").is_none()
        })
        .await;

    // A forged signature is refused for good, and named.
    let mut forged = device.sample(None, now + 1000, BOGOTA, 3.0);
    forged["point"]["lat"] = json!(BOGOTA.0 + 0.01);
    login.publish(&telemetry, &forged.to_string()).await;
    let refused = ack_sub
        .until("the refusal", WAIT, |_, j| j["lastSequence"] == 2)
        .await;
    assert!(
        refused["refused"]
            .as_str()
            .unwrap()
            .contains("INVALID_SIGNATURE"),
        "{refused}"
    );
    let op = t
        .app
        .store
        .operator(device.operator_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.last_sequence, Some(1), "nothing stored for the forgery");

    // A burst in one go comes back as one acknowledgement of the last.
    for _ in 0..20 {
        let s = device.sample(None, t.clock_now(), BOGOTA, 3.0);
        login.publish(&telemetry, &s.to_string()).await;
    }
    ack_sub
        .until("the burst's ack", WAIT, |_, j| j["lastSequence"] == 22)
        .await;
    assert_eq!(
        t.app
            .store
            .operator(device.operator_id)
            .await
            .unwrap()
            .unwrap()
            .last_sequence,
        Some(22)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_reach_the_devices_and_events_the_fleet_manager() {
    let (t, broker) = with_broker().await;
    wait_for_server_online(&t).await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("fleet-co", BOGOTA, false).await;
    let device = t.enroll(&supplier, "drone-1").await;
    // Connected and located: the dispatcher picks workspaces with a device that is.
    heartbeat_at_bogota(&t, &device).await;
    let fleet = t
        .post(
            format!("/workspaces/{}/mqtt-credentials", supplier.workspace_id),
            supplier.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(fleet.status.as_u16(), 201);
    let fleet = Account::new(
        broker.port,
        fleet.data()["username"].as_str().unwrap(),
        fleet.data()["password"].as_str().unwrap(),
    );
    let server = server_account(&broker);
    let events_topic = Topic::WorkspaceEvents(supplier.workspace_id).to_string();
    let mut events = fleet.subscribe(&events_topic);
    events.ready(&server, &events_topic).await;
    let offers_topic = Topic::Offers(device.operator_id).to_string();
    let mut offers = device_account(&broker, &device).subscribe(&offers_topic);
    offers.ready(&server, &offers_topic).await;

    let id = t.request(&consumer, BOGOTA, 60).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let offer = offers
        .until("the offer", WAIT, |_, j| j["sessionId"] == id.as_str())
        .await;
    assert_eq!(offer["kind"], "OFFERED");
    assert!(
        offer["ratePerSecondMicroUsdc"].as_u64().unwrap() > 0,
        "{offer}"
    );
    events
        .until("session.offered", WAIT, |_, j| {
            j["event"] == "session.offered" && j["sessionId"] == id.as_str()
        })
        .await;

    t.post(format!("/sessions/{id}/accept"), device.auth(), json!({}))
        .await
        .ok();
    let assigned = events
        .until("session.assigned", WAIT, |_, j| {
            j["event"] == "session.assigned"
        })
        .await;
    assert_eq!(assigned["operatorId"], device.operator_id.to_string());
    t.call(
        reqwest::Method::DELETE,
        format!("/sessions/{id}"),
        consumer.auth(),
        None,
    )
    .await
    .ok();
    let withdrawn = offers
        .until("the withdrawal", WAIT, |_, j| j["kind"] == "WITHDRAWN")
        .await;
    assert_eq!(withdrawn["sessionId"], id.as_str());
    events
        .until("session.cancelled", WAIT, |_, j| {
            j["event"] == "session.cancelled"
        })
        .await;

    // The fleet manager's account is its workspace's only.
    let other = t.supplier("other-co", BOGOTA, false).await;
    let stranger = t.enroll(&other, "drone-x").await;
    let spy_topic = Topic::Status(stranger.operator_id).to_string();
    let mut spy = fleet.subscribe(&spy_topic);
    tokio::time::sleep(Duration::from_millis(500)).await;
    server.publish(&spy_topic, r#"{"state":"idle"}"#).await;
    assert!(spy.next_within(SILENCE).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_last_will_marks_it_disconnected() {
    let (t, broker) = with_broker().await;
    wait_for_server_online(&t).await;
    let supplier = t.supplier("fleet-co", BOGOTA, false).await;
    let device = t.enroll(&supplier, "drone-1").await;
    heartbeat_at_bogota(&t, &device).await;
    let connected = || async {
        t.get(
            format!("/workspaces/{}/operators", supplier.workspace_id),
            supplier.auth(),
        )
        .await
        .ok()
        .data()[0]["connected"]
            .as_bool()
            .unwrap()
    };
    assert!(connected().await);
    let login = device_account(&broker, &device);
    let status = Topic::Status(device.operator_id).to_string();
    let mut vanishing = login.connect_with_will(
        &Topic::Offers(device.operator_id).to_string(),
        &status,
        r#"{"state":"offline"}"#,
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    vanishing.start_kill().unwrap();
    let _ = vanishing.wait().await;
    for _ in 0..50 {
        if !connected().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the device still shows connected after its last will");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_store_each_devices_telemetry_once_and_hand_over() {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut broker = TestBroker::configure(&dir).unwrap();
    let (a, b) = crate::replicas::two_realtime_replicas(|c| broker.apply(c)).await;
    broker.start().unwrap();
    wait_for_server_online(&a).await;
    wait_for_server_online(&b).await;
    let supplier = a.supplier("fleet-co", BOGOTA, false).await;
    let mut devices = Vec::new();
    for i in 0..8 {
        devices.push(a.enroll(&supplier, &format!("drone-{i}")).await);
    }
    let stored = |t: &TestApp| {
        t.fleet
            .as_ref()
            .unwrap()
            .samples_stored
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let shared_store = std::sync::Arc::clone(&a.app.store);
    let last_sequence = |device: &Device| {
        let store = std::sync::Arc::clone(&shared_store);
        let id = device.operator_id;
        async move { store.operator(id).await.unwrap().unwrap().last_sequence }
    };
    // Ten samples from each device, one message each, devices side by side.
    let publish = |device: &Device, count: usize| {
        let login = device_account(&broker, device);
        let topic = Topic::Telemetry(device.operator_id).to_string();
        // Captured one after another, 100 ms apart, ending now.
        let now = lx_server::clock::wall_now_ms();
        let samples: Vec<String> = (0..count)
            .map(|i| {
                let captured = now - 100 * (count - i) as i64;
                device.sample(None, captured, BOGOTA, 3.0).to_string()
            })
            .collect();
        async move {
            for sample in samples {
                login.publish(&topic, &sample).await;
            }
        }
    };
    futures_util::future::join_all(devices.iter().map(|d| publish(d, 10))).await;
    for device in &devices {
        let deadline = tokio::time::Instant::now() + WAIT;
        while last_sequence(device).await != Some(10) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "device {} at {:?}; stored by A {}, by B {}",
                device.operator_id,
                last_sequence(device).await,
                stored(&a),
                stored(&b)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (by_a, by_b) = (stored(&a), stored(&b));
    assert_eq!(
        by_a + by_b,
        80,
        "stored once each: {by_a} by A, {by_b} by B"
    );
    assert_eq!(
        by_a.min(by_b),
        0,
        "one replica ingests: {by_a} by A, {by_b} by B"
    );

    // The ingesting replica goes away: the other takes over.
    let (gone, survivor) = if by_a > 0 { (a, b) } else { (b, a) };
    // Gone for good: its store, and with it the lease's connection, closed.
    let weak = std::sync::Arc::downgrade(&gone.app);
    drop((gone, shared_store));
    for _ in 0..100 {
        if weak.strong_count() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(weak.strong_count(), 0, "the stopped replica still runs");
    let before = stored(&survivor);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut sequence = 10;
    while stored(&survivor) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the survivor never took over the ingest"
        );
        // A device whose samples no ack covers sends on; so does this one.
        publish(&devices[0], 1).await;
        sequence += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let op = survivor
        .app
        .store
        .operator(devices[0].operator_id)
        .await
        .unwrap()
        .unwrap();
    assert!(op.last_sequence.unwrap() > 10 && op.last_sequence.unwrap() <= sequence);
}
