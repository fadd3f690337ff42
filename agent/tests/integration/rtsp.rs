//! An IP camera as fleets have them: GStreamer's RTSP server (Debian's
//! gst-rtsp-server, not ours) serves the SMPTE bars as H.264 main profile
//! behind a password; the agent publishes them over WHIP and the server's
//! `/frame` is the bars. What the agent sends is constrained baseline (the
//! offer's profile-level-id and the SPS of its encoder chain), and the
//! camera's password shows in no error.

use std::io::BufRead;
use std::time::Duration;

use lx_media::publish::{Publisher, PublisherConfig, VideoSource};
use lx_media::{Codec, IceConfig};
use serde_json::json;

use super::common::{BOGOTA, TestApp};
use super::mavlink::{free_port, healthz};
use super::{
    agent_config_with, assert_the_frame_is_the_bars, dispatched_until_live, enrollment_token,
    hovering_at, operator_of, server_url, spawn_agent, wait_until,
};

const PASSWORD: &str = "s3cr3t-Pa55";

/// The camera; killed when dropped.
struct Camera {
    child: std::process::Child,
    port: u16,
}

impl Drop for Camera {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Camera {
    fn start() -> Self {
        Self::start_on(free_port(false))
    }

    fn start_on(port: u16) -> Self {
        let script = crate::common::manifest_dir().join("tests/rtsp/camera.py");
        // Debian's Python: PyGObject and the RTSP server's typelib are its packages.
        let mut child = std::process::Command::new("/usr/bin/python3")
            .arg(script)
            .args([&port.to_string(), "cam", PASSWORD])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect(
                "Debian's python3 runs (apt-get install python3-gi gir1.2-gst-rtsp-server-1.0)",
            );
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the RTSP camera did not start");
        Self { child, port }
    }

    fn url(&self, password: &str) -> String {
        format!("rtsp://cam:{password}@127.0.0.1:{}/bars", self.port)
    }

    /// The agent's `[video]` for this camera (`KEY`, TOML value).
    fn agent_video(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ENABLED", "true".to_owned()),
            ("SOURCE", "\"rtsp\"".to_owned()),
            ("RTSP_URL", format!("\"{}\"", self.url(PASSWORD))),
            ("CODEC", "\"h264\"".to_owned()),
            ("WIDTH", "320".to_owned()),
            ("HEIGHT", "240".to_owned()),
            ("BITRATE_KBPS", "600".to_owned()),
            ("ICE__LOCAL_ADDRESSES", "[\"127.0.0.1\"]".to_owned()),
        ]
    }
}

fn rtsp_config(url: String) -> PublisherConfig {
    PublisherConfig {
        source: VideoSource::Rtsp {
            url,
            latency_ms: 100,
        },
        codec: Codec::H264,
        width: 320,
        height: 240,
        fps: 30,
        bitrate_kbps: 600,
        keyframe_interval_frames: 30,
        ice: IceConfig {
            local_addresses: vec!["127.0.0.1".into()],
            ..IceConfig::default()
        },
        ..PublisherConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rtsp_camera_behind_a_password_is_published_over_whip_and_the_frame_is_its_picture() {
    let camera = Camera::start();
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("rtsp-viewer").await;
    let supplier = t.supplier("rtsp-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let video = camera.agent_video();
    let config = agent_config_with(
        &server_url(&t),
        &dir.path().join("state"),
        &hovering_at(BOGOTA),
        &video,
    );
    let token = enrollment_token(&t, &supplier).await;
    lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);
    wait_until("the camera to be connected", 15, || async {
        operator_of(&t, &supplier).await["connected"] == true
    })
    .await;
    let id = dispatched_until_live(&t, &consumer, Duration::from_secs(30)).await;
    assert_the_frame_is_the_bars(&t, &consumer, &id).await;
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}

/// The first SPS of an Annex B stream: (profile_idc, constraint flags).
fn sps_profile(stream: &[u8]) -> Option<(u8, u8)> {
    stream
        .windows(6)
        .find(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 7)
        .map(|w| (w[4], w[5]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtsp_camera_is_sent_as_constrained_baseline_and_a_wrong_password_is_never_shown() {
    let camera = Camera::start();

    // The offer: H.264 constrained baseline (profile 0x42, constraint_set1).
    let publisher = Publisher::start(&rtsp_config(camera.url(PASSWORD))).expect("publisher");
    let offer = publisher.offer().await.expect("offer");
    let plid = offer
        .lines()
        .find_map(|l| l.split("profile-level-id=").nth(1))
        .map(|rest| rest.chars().take(6).collect::<String>())
        .expect("an H.264 profile-level-id in the offer");
    let constraints = u8::from_str_radix(&plid[2..4], 16).unwrap();
    assert!(
        plid.starts_with("42") && constraints & 0x40 != 0,
        "profile-level-id {plid} is not constrained baseline"
    );
    drop(publisher);

    // The bitstream: the publisher's own encoder chain, written to a file.
    let description =
        lx_media::publish::pipeline_description(&rtsp_config(camera.url(PASSWORD)), "x264enc");
    let (encoder_chain, _) = description
        .split_once(" ! rtph264pay")
        .expect("the payloader follows the encoder");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sent.h264");
    let launch = format!(
        "{encoder_chain} ! h264parse ! video/x-h264,stream-format=byte-stream ! filesink location={}",
        file.display()
    );
    let mut gst = std::process::Command::new("gst-launch-1.0")
        .arg("-e")
        .args(launch.split_whitespace())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 runs");
    wait_until("the encoded stream", 20, || async {
        std::fs::metadata(&file).is_ok_and(|m| m.len() > 2000)
    })
    .await;
    let _ = gst.kill();
    let _ = gst.wait();
    let stream = std::fs::read(&file).unwrap();
    let (profile, flags) = sps_profile(&stream).expect("an SPS in the stream");
    assert_eq!(profile, 66, "baseline profile_idc");
    assert!(
        flags & 0x40 != 0,
        "constraint_set1_flag: constrained baseline"
    );

    // A wrong password fails, and the failure does not quote it.
    let wrong = "not-the-Pa55word";
    let publisher = Publisher::start(&rtsp_config(camera.url(wrong))).expect("publisher");
    let mut failures = publisher.failures();
    let _ = publisher.offer().await;
    let reason = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Some(reason) = failures.borrow().clone() {
                return reason;
            }
            failures.changed().await.expect("the publisher reports");
        }
    })
    .await
    .expect("the wrong password fails within 15 s");
    assert!(!reason.contains(wrong), "the password leaked: {reason}");
    assert!(
        reason.to_lowercase().contains("unauthorized") || reason.contains("rtspsrc"),
        "{reason}"
    );
    let debug = format!(
        "{:?}",
        VideoSource::Rtsp {
            url: camera.url(wrong),
            latency_ms: 100
        }
    );
    assert!(!debug.contains(wrong), "{debug}");
}

/// `video.ready`: the worker waits with the camera's pipeline prepared while
/// the device is idle, goes at once when a session comes, and is ready
/// again after it. A camera that goes away while the device is idle is
/// reported, never fatal: the device stays online, and once the camera is
/// back the session it was given goes LIVE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ready_worker_waits_prepared_and_a_camera_gone_while_idle_is_reported_not_fatal() {
    let camera = Camera::start();
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("ready-viewer").await;
    let supplier = t.supplier("ready-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut video = camera.agent_video();
    video.push(("READY", "true".to_owned()));
    let mut config = agent_config_with(
        &server_url(&t),
        &dir.path().join("state"),
        &hovering_at(BOGOTA),
        &video,
    );
    let port = free_port(false);
    config.health.listen = format!("127.0.0.1:{port}");
    let token = enrollment_token(&t, &supplier).await;
    lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);
    let ready = || async {
        let h = healthz(port).await;
        h["video"]["state"] == "ready" && h["video"]["workerPid"].is_u64()
    };
    wait_until("a ready worker", 30, ready).await;
    let first = healthz(port).await["video"]["workerPid"].clone();

    let id = dispatched_until_live(&t, &consumer, Duration::from_secs(30)).await;
    assert_eq!(
        healthz(port).await["video"]["workerPid"],
        first,
        "the ready worker itself publishes"
    );
    assert_the_frame_is_the_bars(&t, &consumer, &id).await;
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    wait_until("a ready worker again after the session", 30, || async {
        ready().await && healthz(port).await["video"]["workerPid"] != first
    })
    .await;

    // The camera goes away while the device is idle.
    let camera_port = camera.port;
    drop(camera);
    let id = t.request(&consumer, BOGOTA, 300).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    wait_until("the camera's failure on /healthz", 30, || async {
        healthz(port).await["video"]["lastError"].is_string()
    })
    .await;
    let seen = healthz(port).await;
    let error = seen["video"]["lastError"].as_str().unwrap();
    assert!(!error.contains(PASSWORD), "the password leaked: {error}");
    assert_eq!(
        operator_of(&t, &supplier).await["connected"],
        true,
        "the device stays online: {seen}"
    );

    // The camera comes back: the session it was given goes LIVE.
    let _camera = Camera::start_on(camera_port);
    t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(45))
        .await;
    assert_the_frame_is_the_bars(&t, &consumer, &id).await;
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
}
