//! Fleet-link benchmark (`cargo xtask bench mqtt`), through a real
//! Mosquitto on loopback with the accounts and ACL the server writes.
//!
//! - Offer latency: a supplier workspace of ten devices that accept by
//!   hand; 300 sessions dispatched one after another. Each is timed from the
//!   dispatch call (the server deciding) until every one of the ten devices'
//!   MQTT clients (rumqttc, as the agent uses) has the offer.
//! - Telemetry through the broker: eight devices publish pre-signed samples
//!   (QoS 1) as fast as the broker takes them; the server verifies and
//!   stores each through the same path as HTTP and acknowledges; timed from
//!   the first publish until every device has the acknowledgement of its
//!   last sample.

#![allow(clippy::unwrap_used)] // a benchmark fails by panicking

use std::sync::Arc;
use std::time::{Duration, Instant};

use k256::ecdsa::SigningKey;
use lx_protocol::api::{Availability, DeviceKind, Role};
use lx_protocol::geo::Point;
use lx_protocol::mqtt::client::{self, Login};
use lx_protocol::mqtt::{BrokerUrl, OfferMessage, TelemetryAckMessage, Topic};
use lx_protocol::telemetry::{Sample, SampleJson, Source};
use lx_protocol::wallet::Address;
use lx_server::app::App;
use lx_server::auth::{generate_token, hash_key};
use lx_server::clock::{SystemClock, wall_now_ms};
use lx_server::config::Config;
use lx_server::credit::StaticCredit;
use lx_server::media::NoMedia;
use lx_server::mqtt::test_broker::TestBroker;
use lx_server::store::sqlite::SqliteStore;
use lx_server::store::suite::{build_session, build_workspace};
use lx_server::store::{EnrollmentToken, Operator, StoredSample, Workspace};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::mpsc;
use uuid::Uuid;

const OFFER_DEVICES: usize = 10;
const OFFERS: usize = 300;
const TELEMETRY_DEVICES: usize = 8;
const SAMPLES_PER_DEVICE: usize = 4_000;
const AT: Point = Point {
    lat: 4.711,
    lng: -74.072,
};

struct Device {
    key: SigningKey,
    id: Uuid,
    password: String,
}

async fn enroll(app: &App, ws: &Workspace, i: usize) -> Device {
    let now = wall_now_ms();
    let key = SigningKey::random(&mut rand::thread_rng());
    let enroll = generate_token("lxen_");
    app.store
        .insert_enrollment_token(EnrollmentToken {
            hash: hash_key(&enroll),
            workspace_id: ws.id,
            created_ms: now,
            expires_ms: now + 60_000,
        })
        .await
        .unwrap();
    let id = Uuid::new_v4();
    let (account, dto) =
        app.broker_accounts
            .as_ref()
            .unwrap()
            .issue(id.to_string(), ws.id, Some(id), now);
    let op = Operator {
        id,
        workspace_id: ws.id,
        name: format!("drone-{i}"),
        device_kind: DeviceKind::Drone,
        address: Address::from_signing_key(&key),
        public_key: key
            .verifying_key()
            .to_encoded_point(true)
            .as_bytes()
            .to_vec(),
        availability: Availability::Online,
        battery_pct: None,
        last_seen_ms: None,
        last_sequence: None,
        fix: None,
        created_ms: now,
        disconnected_ms: None,
        cooling_down_until_ms: None,
    };
    app.store
        .enroll_operator(
            hash_key(&enroll),
            op,
            hash_key(&generate_token("lxdv_")),
            account,
            now,
        )
        .await
        .unwrap();
    // Located and seen: the dispatcher offers to workspaces with such a device.
    let first = Sample::from_position(None, 1, now as u64, AT, 3.0, Source::Gps).unwrap();
    app.store
        .ingest_samples(
            id,
            vec![StoredSample {
                signature: first.sign(&key, app.config.chain.chain_id).0,
                sample: first,
                received_ms: now,
            }],
            now,
            app.late_sample_bound_ms(),
            u64::MAX,
        )
        .await
        .unwrap();
    Device {
        key,
        id,
        password: dto.password.unwrap(),
    }
}

/// A device's MQTT client; what it receives goes to `inbox` with the time.
async fn connect(
    url: &BrokerUrl,
    device: &Device,
    inbox: mpsc::UnboundedSender<(Uuid, String, Vec<u8>, Instant)>,
) -> AsyncClient {
    let login = Login {
        client_id: "bench-device".into(),
        username: Some(device.id.to_string()),
        password: Some(device.password.clone()),
        keep_alive: Duration::from_secs(30),
        ..Login::default()
    };
    let (options, network) = client::options(url, &login).unwrap();
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    eventloop.set_network_options(network);
    client
        .subscribe(Topic::Offers(device.id).to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    client
        .subscribe(Topic::TelemetryAck(device.id).to_string(), QoS::AtLeastOnce)
        .await
        .unwrap();
    let (subscribed_tx, subscribed_rx) = tokio::sync::oneshot::channel();
    let id = device.id;
    tokio::spawn(async move {
        let mut subscribed = Some(subscribed_tx);
        let mut acks = 0;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = inbox.send((id, p.topic, p.payload.to_vec(), Instant::now()));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    acks += 1;
                    if acks == 2
                        && let Some(tx) = subscribed.take()
                    {
                        let _ = tx.send(());
                    }
                }
                Ok(_) => {}
                // The broker stopping at the end; earlier, the waits time out.
                Err(_) => return,
            }
        }
    });
    subscribed_rx.await.unwrap();
    client
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = TestBroker::configure(&dir.path().join("broker")).unwrap();
        let mut config = Config::defaults();
        config.store.path = dir.path().join("lx.db");
        broker.apply(&mut config);
        let store = SqliteStore::open(&config.store.path).unwrap();
        let mut supplier = build_workspace("fleet-co", &[Role::Supplier], Some(AT));
        supplier.auto_accept = false;
        supplier.offer_timeout_seconds = 600;
        let consumer = build_workspace("consumer-co", &[Role::Consumer], None);
        let telemetry_ws = build_workspace("telemetry-co", &[Role::Supplier], None);
        use lx_server::store::Store as _;
        for ws in [&supplier, &consumer, &telemetry_ws] {
            store.insert_workspace(ws.clone()).await.unwrap();
        }
        let app = App::new(
            Arc::new(config),
            Arc::new(store),
            Arc::new(SystemClock),
            Arc::new(StaticCredit::new(u64::MAX / 4)),
            Arc::new(NoMedia),
            None,
            [7u8; 32],
        )
        .await
        .unwrap();
        let mut offer_devices = Vec::new();
        for i in 0..OFFER_DEVICES {
            offer_devices.push(enroll(&app, &supplier, i).await);
        }
        let mut telemetry_devices = Vec::new();
        for i in 0..TELEMETRY_DEVICES {
            telemetry_devices.push(enroll(&app, &telemetry_ws, i).await);
        }
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        let (stats, _tasks) = lx_server::mqtt::start(&app, stop_rx).await.unwrap();
        broker.start().unwrap();
        let url: BrokerUrl = broker.url().parse().unwrap();
        while stats.connects.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "mosquitto on {}; {OFFER_DEVICES} devices take offers, {TELEMETRY_DEVICES} send telemetry",
            broker.url()
        );

        // Offers.
        let (inbox_tx, mut inbox) = mpsc::unbounded_channel();
        let mut clients = Vec::new();
        for d in &offer_devices {
            clients.push(connect(&url, d, inbox_tx.clone()).await);
        }
        let mut latencies = Vec::with_capacity(OFFERS);
        let mut first_latencies = Vec::with_capacity(OFFERS);
        for n in 0..OFFERS + 20 {
            let mut new = build_session(&consumer, 1000, 60);
            new.point = AT;
            new.created_ms = wall_now_ms();
            let session = app
                .store
                .create_session(new, u64::MAX / 4, wall_now_ms())
                .await
                .unwrap();
            let t0 = Instant::now();
            app.dispatch(session.id, true).await.unwrap();
            let mut got = 0;
            let mut first = None;
            while got < OFFER_DEVICES {
                let (_, topic, payload, at) =
                    tokio::time::timeout(Duration::from_secs(5), inbox.recv())
                        .await
                        .expect("an offer within 5 s")
                        .unwrap();
                if !topic.ends_with("/offers") {
                    continue;
                }
                let offer: OfferMessage = serde_json::from_slice(&payload).unwrap();
                if offer.offer.session_id == session.id {
                    got += 1;
                    first.get_or_insert(at);
                    if got == OFFER_DEVICES && n >= 20 {
                        // The first 20 warm the connections up.
                        latencies.push(at.duration_since(t0).as_secs_f64() * 1000.0);
                        first_latencies
                            .push(first.unwrap().duration_since(t0).as_secs_f64() * 1000.0);
                    }
                }
            }
        }
        latencies.sort_by(f64::total_cmp);
        first_latencies.sort_by(f64::total_cmp);
        let (p50, p99) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99));
        println!(
            "offer, dispatch call to all {OFFER_DEVICES} devices: p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms; to the first device: p50 {:.2} ms, p99 {:.2} ms ({OFFERS} offers)",
            latencies.last().unwrap(),
            percentile(&first_latencies, 0.5),
            percentile(&first_latencies, 0.99),
        );
        drop(clients);

        // Telemetry.
        let (ack_tx, mut acks) = mpsc::unbounded_channel();
        let chain_id = app.config.chain.chain_id;
        let mut senders = Vec::new();
        for d in &telemetry_devices {
            let client = connect(&url, d, ack_tx.clone()).await;
            // A millisecond apart, ending now: none is in the future.
            let now = wall_now_ms() as u64 - SAMPLES_PER_DEVICE as u64;
            let payloads: Vec<Vec<u8>> = (0..SAMPLES_PER_DEVICE)
                .map(|i| {
                    let seq = i as u64 + 2;
                    let s = Sample::from_position(None, seq, now + i as u64, AT, 3.0, Source::Gps)
                        .unwrap();
                    serde_json::to_vec(&SampleJson::encode(&s, s.sign(&d.key, chain_id))).unwrap()
                })
                .collect();
            senders.push((client, d.id, payloads));
        }
        let last = SAMPLES_PER_DEVICE as u64 + 1;
        let start = Instant::now();
        let stored_before = stats.samples_stored.load(std::sync::atomic::Ordering::Relaxed);
        let mut publishing = Vec::new();
        for (client, id, payloads) in senders {
            publishing.push(tokio::spawn(async move {
                let topic = Topic::Telemetry(id).to_string();
                for p in payloads {
                    client.publish(&topic, QoS::AtLeastOnce, false, p).await.unwrap();
                }
                client
            }));
        }
        let mut done = std::collections::HashSet::new();
        while done.len() < TELEMETRY_DEVICES {
            let (id, topic, payload, _) = tokio::time::timeout(Duration::from_secs(60), acks.recv())
                .await
                .expect("acks keep coming")
                .unwrap();
            if topic.ends_with("/telemetry/ack") {
                let ack: TelemetryAckMessage = serde_json::from_slice(&payload).unwrap();
                assert!(ack.refused.is_none(), "{ack:?}");
                if ack.last_sequence == last {
                    done.insert(id);
                }
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        let total = (TELEMETRY_DEVICES * SAMPLES_PER_DEVICE) as f64;
        let stored = stats.samples_stored.load(std::sync::atomic::Ordering::Relaxed) - stored_before;
        assert_eq!(stored as f64, total, "every sample stored once");
        let rate = total / elapsed;
        println!(
            "telemetry through the broker: {total:.0} samples from {TELEMETRY_DEVICES} devices verified, stored and acknowledged in {elapsed:.2} s: {rate:.0}/s"
        );
        for task in publishing {
            drop(task.await.unwrap());
        }
        println!("BENCH mqtt.offer_p50_ms={p50:.3}");
        println!("BENCH mqtt.offer_p99_ms={p99:.3}");
        println!("BENCH mqtt.telemetry_msgs_per_s={rate:.0}");
        broker.stop();
    });
}
