//! The real agent against a real server on loopback: enrollment, GPS from a
//! log replayed into a pseudo-terminal, signed telemetry, an outage.

// Tests fail by panicking, helpers included.
#![allow(clippy::unwrap_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
#[path = "integration/fleet.rs"]
mod fleet;
#[path = "integration/health.rs"]
mod health;
#[path = "integration/mavlink.rs"]
mod mavlink;
#[path = "../../server/tests/common/mqtt.rs"]
mod mqtt_support;
#[path = "integration/replicas.rs"]
mod replicas;
#[path = "integration/rtsp.rs"]
mod rtsp;
#[path = "integration/supervise.rs"]
mod supervise;
#[path = "integration/update.rs"]
mod update;
#[path = "integration/video_worker.rs"]
mod video_worker;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Actor, Auth, BOGOTA, TestApp};
use lx_agent::config::Config;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use uuid::Uuid;

/// Agent settings for a test: fast polling, its own state, health on any
/// port, no video.
fn agent_config(server_url: &str, state: &std::path::Path, gps: &[(&str, String)]) -> Config {
    agent_config_with(server_url, state, gps, &[("ENABLED", "false".to_owned())])
}

/// The same, with `LX_AGENT__VIDEO__…` settings.
fn agent_config_with(
    server_url: &str,
    state: &std::path::Path,
    gps: &[(&str, String)],
    video: &[(&str, String)],
) -> Config {
    let mut env = vec![
        (
            "LX_AGENT__SERVER__URL".to_owned(),
            format!("\"{server_url}\""),
        ),
        (
            "LX_AGENT__DEVICE__STATE_DIR".to_owned(),
            format!("\"{}\"", state.display()),
        ),
        (
            "LX_AGENT__LIFECYCLE__POLL_INTERVAL_MS".to_owned(),
            "100".to_owned(),
        ),
        (
            "LX_AGENT__TELEMETRY__IDLE_INTERVAL_MS".to_owned(),
            "500".to_owned(),
        ),
        (
            "LX_AGENT__HEALTH__LISTEN".to_owned(),
            "\"127.0.0.1:0\"".to_owned(),
        ),
    ];
    env.extend(
        gps.iter()
            .map(|(k, v)| (format!("LX_AGENT__GPS__{k}"), v.clone())),
    );
    env.extend(
        video
            .iter()
            .map(|(k, v)| (format!("LX_AGENT__VIDEO__{k}"), v.clone())),
    );
    // The agent runs inside the test binary; its video worker is the real
    // lx-agent-video.
    env.push((
        "LX_AGENT__VIDEO__WORKER_PROGRAM".to_owned(),
        format!("\"{}\"", env!("CARGO_BIN_EXE_lx-agent-video")),
    ));
    Config::from_layers(None, env).unwrap()
}

fn server_url(t: &TestApp) -> String {
    t.base.trim_end_matches("/api/v1").to_owned()
}

async fn enrollment_token(t: &TestApp, supplier: &Actor) -> String {
    let r = t
        .post(
            format!("/workspaces/{}/enrollment-tokens", supplier.workspace_id),
            supplier.auth(),
            json!({}),
        )
        .await
        .ok();
    r.data()["token"].as_str().unwrap().to_owned()
}

/// Starts the agent; it stops when the returned sender says so.
fn spawn_agent(
    config: Config,
) -> (
    watch::Sender<bool>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop, mut rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        let exit = lx_agent::run::run(config, async move {
            let _ = rx.changed().await;
        })
        .await?;
        anyhow::ensure!(exit.is_none(), "the agent stopped on its own: {exit:?}");
        Ok(())
    });
    (stop, task)
}

async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut check: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn operator_of(t: &TestApp, supplier: &Actor) -> serde_json::Value {
    let list = t
        .get(
            format!("/workspaces/{}/operators", supplier.workspace_id),
            supplier.auth(),
        )
        .await
        .ok();
    list.data()[0].clone()
}

/// Drives a session at `at` to LIVE on the agent's device.
async fn live_session(t: &TestApp, consumer: &Actor, at: (f64, f64), max: u32) -> String {
    let id = t.request(consumer, at, max).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let started = |_: ()| async {
        t.media
            .provisioned
            .lock()
            .unwrap()
            .iter()
            .any(|s| s.to_string() == id)
    };
    wait_until("the agent to start the session", 10, || started(())).await;
    t.media
        .first_frame(id.parse().unwrap(), t.clock_now())
        .await;
    t.wait_for_state(consumer, &id, "LIVE").await;
    id
}

/// The positions a receiver log holds, as our tracker reads them.
fn positions_of(log: &str) -> Vec<(f64, f64)> {
    use lx_hal::gps::{Output, Tracker, TrackerConfig};
    let mut tracker = Tracker::new(TrackerConfig::default()).unwrap();
    tracker.feed(log.as_bytes(), std::time::Instant::now());
    let mut positions = Vec::new();
    while let Some(out) = tracker.poll_output() {
        if let Output::Fix(f) = out {
            positions.push((f.lat, f.lng));
        }
    }
    positions
}

/// gpsd's receiver logs, fetched by `cargo xtask test`.
fn gpsd_log(name: &str) -> std::path::PathBuf {
    let dir = std::env::var_os("LX_GPSD_LOGS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::manifest_dir().join("../.lx/fixtures/gpsd"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask test`, which fetches gpsd's logs",
        path.display()
    );
    path
}

/// Replays `log` into a pty read by a real agent, serves a session at the
/// log's first position, and checks every stored sample is a position of
/// the log to 1e-7 degrees.
async fn replay_through_an_agent(log_path: std::path::PathBuf) {
    use lx_hal::sim::{Pacer, Pty};

    // About 25 s of the log is enough, and keeps the replay thread short.
    let full = String::from_utf8_lossy(&std::fs::read(&log_path).unwrap()).into_owned();
    let mut epochs = 0;
    let log: String = full
        .split_inclusive('\n')
        .take_while(|line| {
            epochs += usize::from(line.contains("GGA,"));
            epochs <= 25
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("replayed.nmea");
    std::fs::write(&log_path, &log).unwrap();
    let logged = positions_of(&log);
    assert!(
        logged.len() >= 15,
        "{} has only {} fixes",
        log_path.display(),
        logged.len()
    );
    let at = logged[0];
    let t = TestApp::spawn_realtime().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("fleet-co", at, true).await;

    let pty = Pty::open().unwrap();
    let writer = pty.writer().unwrap();
    // Not joined: once the agent stops reading, the writer may block on a
    // full pty; the thread ends with the test process.
    std::thread::spawn(move || {
        lx_hal::sim::replay_file(
            &log_path,
            writer,
            Pacer::new(1.0, Duration::from_secs(2)).unwrap(),
        )
    });
    let gps = [
        ("SOURCE", "\"serial\"".to_owned()),
        ("PORT", format!("\"{}\"", pty.path().display())),
    ];
    let config = agent_config(&server_url(&t), &dir.path().join("state"), &gps);
    let token = enrollment_token(&t, &supplier).await;
    let enrollment = lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);
    wait_until("the device to be connected with a position", 15, || async {
        let op = operator_of(&t, &supplier).await;
        op["connected"] == true && op["position"].is_object()
    })
    .await;

    // A geofence wide enough for the whole log: this test is about the numbers.
    let id = t.request(&consumer, at, 300).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let session = t.session(&consumer, &id).await;
    assert_eq!(session["operatorId"], enrollment.operator_id.to_string());
    tokio::time::sleep(Duration::from_secs(6)).await;
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
    drop(pty);

    let stored = t
        .app
        .store
        .session_samples(id.parse::<Uuid>().unwrap())
        .await
        .unwrap();
    assert!(stored.len() >= 4, "only {} samples stored", stored.len());
    for s in &stored {
        let p = s.point();
        let matched = logged
            .iter()
            .any(|&(lat, lng)| (lat - p.lat).abs() <= 1e-7 && (lng - p.lng).abs() <= 1e-7);
        assert!(matched, "stored {p:?} is not a position of the log");
    }
    let sequences: Vec<u64> = stored.iter().map(|s| s.sequence).collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
}

#[tokio::test]
async fn a_real_u_blox_log_replayed_into_a_pty_reaches_the_server_to_1e7_degrees() {
    replay_through_an_agent(gpsd_log("ublox-neo-m9n-nmea.log")).await;
}

#[tokio::test]
async fn a_synthetic_orbit_log_replayed_into_a_pty_reaches_the_server_to_1e7_degrees() {
    use lx_hal::sim::{LatLng, Path, Synth};
    let synth = Synth::new(
        Path::Orbit {
            center: LatLng::new(BOGOTA.0, BOGOTA.1),
            radius_m: 40.0,
            period_s: 30.0,
        },
        1_700_000_000_000,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("orbit.nmea");
    std::fs::write(
        &path,
        (0..25)
            .map(|s| synth.sentences(Duration::from_secs(s)))
            .collect::<String>(),
    )
    .unwrap();
    replay_through_an_agent(path).await;
}

/// A TCP relay to the server that can cut the network: refuse new
/// connections and kill the open ones.
struct Relay {
    addr: std::net::SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
}

impl Relay {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (c, g) = (Arc::clone(&cut), generation.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut killed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = killed.changed() => {}
                    }
                });
            }
        });
        Self {
            addr,
            cut,
            generation,
        }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            self.generation.send_modify(|g| *g += 1);
        }
    }
}

#[tokio::test]
async fn samples_of_a_60_second_outage_arrive_in_order_and_count() {
    let t = TestApp::spawn_realtime().await;
    let consumer = t.consumer("consumer-co").await;
    let supplier = t.supplier("fleet-co", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let upstream: std::net::SocketAddr = t
        .base
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .parse()
        .unwrap();
    let relay = Relay::start(upstream).await;
    let gps = [
        ("SOURCE", "\"simulated\"".to_owned()),
        ("SIMULATED__JITTER_M", "0.5".to_owned()),
    ];
    let config = agent_config(
        &format!("http://{}", relay.addr),
        &dir.path().join("state"),
        &gps,
    );
    let token = enrollment_token(&t, &supplier).await;
    lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);
    wait_until("the device to be connected", 15, || async {
        operator_of(&t, &supplier).await["connected"] == true
    })
    .await;

    let id = live_session(&t, &consumer, BOGOTA, 600).await;
    let sid: Uuid = id.parse().unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    relay.set_cut(true);
    let cut_at = t.clock_now();
    tokio::time::sleep(Duration::from_secs(52)).await;
    // The consumer ends while the device is still cut off.
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let ended_ms =
        lx_protocol::time::parse_millis(ended.data()["endedAt"].as_str().unwrap()).unwrap();
    let provisional = ended.data()["meter"]["cleanSeconds"].as_u64().unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    relay.set_cut(false);
    let restored_at = t.clock_now();
    assert!(restored_at - cut_at >= 60_000);

    // Everything signed during the outage arrives, in order.
    wait_until("the backlog to reach the server", 20, || async {
        let samples = t.app.store.session_samples(sid).await.unwrap();
        samples
            .last()
            .is_some_and(|s| s.captured_at_ms as i64 >= ended_ms - 1000)
    })
    .await;
    let samples = t.app.store.session_samples(sid).await.unwrap();
    let sequences: Vec<u64> = samples.iter().map(|s| s.sequence).collect();
    assert!(
        sequences.windows(2).all(|w| w[1] == w[0] + 1),
        "a sample is missing: {sequences:?}"
    );
    let during: Vec<_> = samples
        .iter()
        .filter(|s| (s.captured_at_ms as i64) > cut_at && (s.captured_at_ms as i64) < ended_ms)
        .collect();
    assert!(
        during.len() >= 48,
        "{} samples from the outage",
        during.len()
    );

    // Within the settle delay they count: the final meter is all clean.
    tokio::time::sleep_until(
        tokio::time::Instant::now()
            + Duration::from_millis((ended_ms + 15_100 - t.clock_now()).max(0) as u64),
    )
    .await;
    t.app.sweep(t.clock_now()).await;
    let final_ = t.session(&consumer, &id).await;
    assert_eq!(final_["meterFinal"], true);
    let meter = &final_["meter"];
    assert_eq!(meter["failedSeconds"], 0, "{meter}");
    assert!(
        meter["cleanSeconds"].as_u64().unwrap() > provisional + 40,
        "{meter} vs provisional {provisional}"
    );
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
    let _ = Auth::None;
}

/// The agent's test camera on loopback ICE, small and light.
fn test_camera(codec: &str) -> Vec<(&'static str, String)> {
    vec![
        ("ENABLED", "true".to_owned()),
        ("SOURCE", "\"test\"".to_owned()),
        ("CODEC", format!("\"{codec}\"")),
        ("WIDTH", "320".to_owned()),
        ("HEIGHT", "240".to_owned()),
        ("BITRATE_KBPS", "600".to_owned()),
        ("ICE__LOCAL_ADDRESSES", "[\"127.0.0.1\"]".to_owned()),
    ]
}

fn hovering_at(at: (f64, f64)) -> Vec<(&'static str, String)> {
    vec![
        ("SOURCE", "\"simulated\"".to_owned()),
        ("SIMULATED__KIND", "\"hover\"".to_owned()),
        ("SIMULATED__LAT", at.0.to_string()),
        ("SIMULATED__LNG", at.1.to_string()),
    ]
}

/// A 300 s session at BOGOTA, dispatched and LIVE within `within`.
async fn dispatched_until_live(t: &TestApp, consumer: &Actor, within: Duration) -> String {
    let id = t.request(consumer, BOGOTA, 300).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    t.wait_for_state_within(consumer, &id, "LIVE", within).await;
    id
}

/// The session's `/frame`: the SMPTE bars at 320x240.
async fn assert_the_frame_is_the_bars(t: &TestApp, consumer: &Actor, id: &str) {
    let (status, jpeg) = frame_status(t, consumer, id).await;
    assert_eq!(status, 200);
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .to_rgb8();
    assert_eq!(image.dimensions(), (320, 240));
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 320, 240).unwrap();
}

async fn frame_status(t: &TestApp, consumer: &Actor, id: &str) -> (u16, Vec<u8>) {
    let resp = reqwest::Client::new()
        .get(format!("{}/sessions/{id}/frame", t.base))
        .bearer_auth(&consumer.api_key)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.bytes().await.unwrap().to_vec())
}

fn network_windows(session: &serde_json::Value) -> Vec<(i64, Option<i64>)> {
    use lx_protocol::time::parse_millis;
    session["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["reason"] == "NETWORK_ERROR")
        .map(|w| {
            (
                parse_millis(w["openedAt"].as_str().unwrap()).unwrap(),
                w["closedAt"].as_str().map(|t| parse_millis(t).unwrap()),
            )
        })
        .collect()
}

/// An enrolled drone with the test camera, hovering over BOGOTA, connected.
async fn a_drone_with_a_camera(
    t: &TestApp,
    supplier: &Actor,
    state: &std::path::Path,
    codec: &str,
) -> Config {
    let config = agent_config_with(
        &server_url(t),
        state,
        &hovering_at(BOGOTA),
        &test_camera(codec),
    );
    let token = enrollment_token(t, supplier).await;
    lx_agent::run::enroll(&config, &token).await.unwrap();
    config
}

async fn the_agent_publishes_and_the_frame_shows_its_camera(codec: &str) {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("viewer-co").await;
    let supplier = t.supplier("camera-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = a_drone_with_a_camera(&t, &supplier, &dir.path().join("state"), codec).await;
    let (stop, agent) = spawn_agent(config);
    wait_until("the device to be connected with a position", 15, || async {
        let op = operator_of(&t, &supplier).await;
        op["connected"] == true && op["position"].is_object()
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
    assert_eq!(
        frame_status(&t, &consumer, &id).await.0,
        404,
        "no frame before LIVE"
    );
    t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(20))
        .await;
    assert_the_frame_is_the_bars(&t, &consumer, &id).await;

    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    // The agent hangs up: the publisher leaves the ingest.
    let builtin = t.builtin.clone().unwrap();
    let session_id: Uuid = id.parse().unwrap();
    wait_until("the publisher to leave", 10, || async {
        !builtin.peers(session_id).0
    })
    .await;
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_publishes_vp8_and_the_session_goes_live_with_its_pictures() {
    the_agent_publishes_and_the_frame_shows_its_camera("vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_publishes_h264_and_the_session_goes_live_with_its_pictures() {
    the_agent_publishes_and_the_frame_shows_its_camera("h264").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_restarted_posts_to_the_same_url_and_the_meter_skips_the_gap() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("gap-co").await;
    let supplier = t.supplier("gap-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let config = a_drone_with_a_camera(&t, &supplier, &dir.path().join("state"), "vp8").await;
    let (_stop, agent) = spawn_agent(config.clone());
    wait_until("the device to be connected with a position", 15, || async {
        operator_of(&t, &supplier).await["connected"] == true
    })
    .await;
    let id = dispatched_until_live(&t, &consumer, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Killed: the task is dropped where it stands, no DELETE, no goodbye.
    let killed_ms = lx_server::clock::wall_now_ms();
    agent.abort();
    let _ = agent.await;
    let mut opened = None;
    for _ in 0..60 {
        if let Some(&w) = network_windows(&t.session(&consumer, &id).await).first() {
            opened = Some(w);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (opened_ms, _) = opened.expect("a NETWORK_ERROR window opens within 3 s");
    assert!(
        (opened_ms - killed_ms).abs() <= 1000,
        "{opened_ms} vs {killed_ms}"
    );

    // Restarted from its state directory: it starts the LIVE session again
    // and POSTs to the same WHIP URL.
    let (stop, agent) = spawn_agent(config);
    let mut closed = None;
    for _ in 0..300 {
        if let Some((_, Some(c))) = network_windows(&t.session(&consumer, &id).await).first() {
            closed = Some(*c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_ms = closed.expect("media resumes and the window closes");
    let (status, _) = frame_status(&t, &consumer, &id).await;
    assert_eq!(status, 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ended = t
        .post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let s = ended.data();
    let meter = &s["meter"];
    let failed = meter["failedSeconds"].as_i64().unwrap();
    let gap_s = (closed_ms - opened_ms) as f64 / 1000.0;
    assert!(
        (failed as f64 - gap_s).abs() <= 1.0,
        "{failed} s failed for a {gap_s} s gap: {s}"
    );
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}
