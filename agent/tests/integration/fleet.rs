//! The real agent on the fleet link, through Debian's Mosquitto: a fleet
//! manager with Mosquitto's own clients sees its status and telemetry and
//! drives it with commands; offers arrive over the broker; a broker
//! restart in the middle of a session loses no sample.

use std::time::Duration;

use lx_protocol::mqtt::Topic;
use lx_server::mqtt::test_broker::{SERVER_PASSWORD, TestBroker};
use serde_json::json;
use uuid::Uuid;

use super::common::{Actor, BOGOTA, TestApp};
use super::mqtt_support::{Account, Subscriber};
use super::{
    agent_config, enrollment_token, hovering_at, live_session, operator_of, spawn_agent, wait_until,
};

pub(super) const WAIT: Duration = Duration::from_secs(15);

pub(super) struct Fleet {
    pub(super) t: TestApp,
    broker: TestBroker,
    pub(super) supplier: Actor,
    pub(super) manager: Account,
    server: Account,
}

pub(super) async fn fleet(auto_accept: bool) -> Fleet {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut broker = TestBroker::configure(&dir.join("broker")).unwrap();
    let t = TestApp::spawn_realtime_with(|c| broker.apply(c)).await;
    broker.start().unwrap();
    let supplier = t.supplier("fleet-co", BOGOTA, auto_accept).await;
    let issued = t
        .post(
            format!("/workspaces/{}/mqtt-credentials", supplier.workspace_id),
            supplier.auth(),
            json!({}),
        )
        .await
        .ok();
    let manager = Account::new(
        broker.port,
        issued.data()["username"].as_str().unwrap(),
        issued.data()["password"].as_str().unwrap(),
    );
    let server = Account::new(broker.port, "lx-server", SERVER_PASSWORD);
    Fleet {
        t,
        broker,
        supplier,
        manager,
        server,
    }
}

/// An enrolled agent hovering over BOGOTA, with a fast status refresh.
async fn agent(f: &Fleet, state: &std::path::Path) -> lx_agent::config::Config {
    let mut config = agent_config(&super::server_url(&f.t), state, &hovering_at(BOGOTA));
    config.mqtt.status_interval_ms = 1000;
    config.mqtt.resend_after_ms = 2000;
    let token = enrollment_token(&f.t, &f.supplier).await;
    let enrolled = lx_agent::run::enroll(&config, &token).await.unwrap();
    assert!(
        enrolled.mqtt.is_some(),
        "enrollment issued a broker account"
    );
    config
}

/// The ack says the command failed, with `says` in its error.
pub(super) fn assert_refused(ack: &serde_json::Value, says: &str) {
    assert_eq!(ack["ok"], false, "{ack}");
    let error = ack["error"].as_str().unwrap_or_default();
    assert!(error.contains(says), "{says:?} not in {ack}");
}

pub(super) async fn command(
    f: &Fleet,
    acks: &mut Subscriber,
    device: Uuid,
    id: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut message = body;
    message["id"] = json!(id);
    f.manager
        .publish(&Topic::Commands(device).to_string(), &message.to_string())
        .await;
    acks.until(&format!("the ack of {id}"), WAIT, |topic, j| {
        topic.ends_with("/commands/ack") && j["id"] == id
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_manager_sees_the_agent_and_drives_it_with_mosquittos_clients() {
    let f = fleet(false).await;
    let consumer = f.t.consumer("consumer-co").await;
    let dir = tempfile::tempdir().unwrap();
    let config = agent(&f, &dir.path().join("state")).await;
    let (stop, task) = spawn_agent(config);
    let device: Uuid = operator_of(&f.t, &f.supplier).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // Status (retained) and telemetry, as mosquitto_sub sees them.
    let mut watch = f.manager.subscribe(&format!("lx/v1/operators/{device}/#"));
    let status = watch
        .until("an idle status", WAIT, |topic, j| {
            topic.ends_with("/status") && j["state"] == "idle"
        })
        .await;
    assert_eq!(status["availability"], "ONLINE");
    assert!(status["fix"]["lat"].as_f64().is_some(), "{status}");
    let sample = watch
        .until("a telemetry sample", WAIT, |topic, j| {
            topic.ends_with("/telemetry") && j["sequence"].as_u64().is_some()
        })
        .await;
    assert!(sample["signature"].as_str().unwrap().starts_with("0x"));

    // Commands from mosquitto_pub are carried out and acknowledged.
    let ack = command(&f, &mut watch, device, "c1", json!({"cmd": "offline"})).await;
    assert_eq!(ack, json!({"id": "c1", "ok": true}));
    assert_eq!(
        operator_of(&f.t, &f.supplier).await["availabilityState"],
        "OFFLINE"
    );
    watch
        .until("the status saying OFFLINE", WAIT, |topic, j| {
            topic.ends_with("/status") && j["availability"] == "OFFLINE"
        })
        .await;
    let ack = command(&f, &mut watch, device, "c2", json!({"cmd": "fly"})).await;
    assert_refused(&ack, "unknown cmd 'fly'");
    let ack = command(
        &f,
        &mut watch,
        device,
        "c3",
        json!({"cmd": "start", "args": {"sessionId": Uuid::new_v4()}}),
    )
    .await;
    assert_eq!(ack["ok"], false, "a session that is not its own: {ack}");
    f.manager
        .publish(&Topic::Commands(device).to_string(), "not json")
        .await;
    let ack = watch
        .until("the ack of garbage", WAIT, |topic, j| {
            topic.ends_with("/commands/ack") && j["id"] == ""
        })
        .await;
    assert!(ack["error"].as_str().unwrap().contains("not JSON"), "{ack}");
    let ack = command(&f, &mut watch, device, "c4", json!({"cmd": "online"})).await;
    assert_eq!(ack["ok"], true);

    // An offer reaches it over the broker: it accepts well before its next
    // poll (15 s apart while the link is up).
    let id = f.t.request(&consumer, BOGOTA, 60).await;
    let asked = std::time::Instant::now();
    f.t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    f.t.wait_for_state_within(&consumer, &id, "ASSIGNED", Duration::from_secs(5))
        .await;
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    watch
        .until("the status saying assigned", WAIT, |topic, j| {
            topic.ends_with("/status") && j["sessionId"] == id.as_str()
        })
        .await;

    // A pilot holds the device's stream: the fleet's session commands are
    // refused by the device, not carried out behind the lock.
    let held =
        f.t.post(
            format!("/operators/{device}/lock"),
            f.supplier.auth(),
            json!({"subsystem": "stream"}),
        )
        .await
        .ok();
    let holder = held.data()["holder"].as_str().unwrap().to_owned();
    let ack = command(
        &f,
        &mut watch,
        device,
        "c5",
        json!({"cmd": "end", "args": {"sessionId": id}}),
    )
    .await;
    assert_refused(&ack, &format!("locked by {holder}"));
    let state = f.t.session(&consumer, &id).await["state"].clone();
    assert!(
        state == "ASSIGNED" || state == "LIVE",
        "the session goes on: {state}"
    );
    f.t.post(
        format!("/operators/{device}/unlock"),
        f.supplier.auth(),
        json!({"subsystem": "stream"}),
    )
    .await
    .ok();

    // A clean stop says offline itself (a will is not sent on DISCONNECT).
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
    watch
        .until("the offline status", WAIT, |topic, j| {
            topic.ends_with("/status") && j["state"] == "offline"
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_mid_session_loses_no_sample_and_the_agent_resubscribes() {
    broker_restart_mid_session(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_killed_mid_session_loses_no_sample_either() {
    broker_restart_mid_session(true).await;
}

/// A session LIVE over the link; the broker stopped (SIGTERM: it saves its
/// state) or killed (nothing saved) for 3 s, then started again.
async fn broker_restart_mid_session(kill: bool) {
    let mut f = fleet(true).await;
    let consumer = f.t.consumer("consumer-co").await;
    let dir = tempfile::tempdir().unwrap();
    let config = agent(&f, &dir.path().join("state")).await;
    let (stop, task) = spawn_agent(config);
    wait_until("the device to be connected", 15, || async {
        operator_of(&f.t, &f.supplier).await["connected"] == true
    })
    .await;
    let device: Uuid = operator_of(&f.t, &f.supplier).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let id = live_session(&f.t, &consumer, BOGOTA, 600).await;
    let sid: Uuid = id.parse().unwrap();
    let stored = || {
        f.t.fleet
            .as_ref()
            .unwrap()
            .samples_stored
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        stored() >= 2,
        "samples came over the broker before the restart"
    );

    if kill {
        f.broker.kill();
    } else {
        f.broker.stop();
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    f.broker.start().unwrap();
    let before = stored();
    wait_until("samples over the broker again", 20, || async {
        stored() > before + 2
    })
    .await;

    // Subscribed again: a command is carried out.
    let mut acks = f.manager.subscribe(&Topic::CommandAck(device).to_string());
    acks.ready(&f.server, &Topic::CommandAck(device).to_string())
        .await;
    let ack = command(
        &f,
        &mut acks,
        device,
        "after-restart",
        json!({"cmd": "set-config", "args": {"autoAccept": true}}),
    )
    .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let ended =
        f.t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
            .await
            .ok();
    let ended_ms =
        lx_protocol::time::parse_millis(ended.data()["endedAt"].as_str().unwrap()).unwrap();
    wait_until("the last samples", 20, || async {
        let samples = f.t.app.store.session_samples(sid).await.unwrap();
        samples
            .last()
            .is_some_and(|s| s.captured_at_ms as i64 >= ended_ms - 1500)
    })
    .await;
    let samples = f.t.app.store.session_samples(sid).await.unwrap();
    let sequences: Vec<u64> = samples.iter().map(|s| s.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "a sample is missing: {sequences:?}"
    );
    let span_s = (samples.last().unwrap().captured_at_ms - samples[0].captured_at_ms) / 1000;
    assert!(
        samples.len() as u64 + 1 >= span_s,
        "{} samples over {span_s} s",
        samples.len()
    );
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reaches_the_broker_over_tls_with_the_fleets_ca() {
    let dir = tempfile::tempdir().unwrap().keep();
    let mut broker = TestBroker::configure(&dir.join("broker")).unwrap();
    let (tls_url, ca) = broker.add_tls_listener().unwrap();
    // The server on plain MQTT; its devices are told the TLS listener.
    let t = TestApp::spawn_realtime_with(|c| {
        broker.apply(c);
        c.mqtt.device_url = tls_url.clone();
    })
    .await;
    broker.start().unwrap();
    let supplier = t.supplier("fleet-co", BOGOTA, false).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = agent_config(
        &super::server_url(&t),
        &state.path().join("state"),
        &hovering_at(BOGOTA),
    );
    config.mqtt.status_interval_ms = 1000;
    let token = enrollment_token(&t, &supplier).await;
    let enrolled = lx_agent::run::enroll(&config, &token).await.unwrap();
    assert_eq!(enrolled.mqtt.as_ref().unwrap().url, tls_url);

    // Without the fleet's CA the broker's certificate is not trusted.
    let untrusting = {
        let (stop, task) = spawn_agent(config.clone());
        tokio::time::sleep(Duration::from_secs(3)).await;
        let _ = stop.send(true);
        task.await.unwrap().unwrap();
        t.fleet
            .as_ref()
            .unwrap()
            .samples_stored
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    assert_eq!(untrusting, 0, "no sample came over an untrusted link");

    config.mqtt.ca_file = ca;
    let (stop, task) = spawn_agent(config);
    // Generous: under qemu-user (cargo xtask cross --test) a TLS handshake
    // through an emulated OpenSSL takes seconds.
    wait_until("samples over the TLS link", 60, || async {
        t.fleet
            .as_ref()
            .unwrap()
            .samples_stored
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    })
    .await;
    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_manager_asks_for_a_devices_logs_and_its_admin_reads_them() {
    // The agent's own logging, as `lx-agent run` sets it up.
    lx_agent::logs::init(tracing_subscriber::EnvFilter::new("info"), false);
    let f = fleet(false).await;
    let dir = tempfile::tempdir().unwrap();
    let config = agent(&f, &dir.path().join("state")).await;
    let (stop, task) = spawn_agent(config);
    let device: Uuid = operator_of(&f.t, &f.supplier).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut watch = f.manager.subscribe(&format!("lx/v1/operators/{device}/#"));
    watch
        .until("an idle status", WAIT, |topic, j| {
            topic.ends_with("/status") && j["state"] == "idle"
        })
        .await;
    let path = format!("/operators/{device}/logs");
    f.t.get(&path, f.supplier.auth())
        .await
        .expect(404, "NOT_FOUND");

    // Over the cap: refused by name, nothing sent.
    let ack = command(
        &f,
        &mut watch,
        device,
        "l1",
        json!({"cmd": "logs", "args": {"lines": 100000}}),
    )
    .await;
    assert_refused(&ack, "args.lines must be 1 to 5000");

    let ack = command(
        &f,
        &mut watch,
        device,
        "l2",
        json!({"cmd": "logs", "args": {"lines": 50, "minutes": 10}}),
    )
    .await;
    assert_eq!(ack, json!({"id": "l2", "ok": true}));
    let logs = f.t.get(&path, f.supplier.auth()).await.ok();
    let lines = logs.data()["lines"].as_array().unwrap();
    assert!(!lines.is_empty() && lines.len() <= 50, "{}", logs.data());
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("fleet link")),
        "the agent's own lines: {lines:?}"
    );
    // Another workspace does not see them.
    let stranger = f.t.supplier("stranger-co", BOGOTA, false).await;
    f.t.get(&path, stranger.auth())
        .await
        .expect(404, "NOT_FOUND");

    let _ = stop.send(true);
    task.await.unwrap().unwrap();
}
