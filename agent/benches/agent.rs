//! Agent footprint benchmark (`cargo xtask bench agent`).
//!
//! Runs the release `lx-agent` binary as its own process against a server
//! in this process (the built-in media plane, Mosquitto for the fleet
//! link), and samples its resident memory and CPU time from /proc:
//!
//! 1. idle for 60 s, before any session, `video.ready = false`: telemetry
//!    only, a heartbeat every 5 s, the fleet link up, no video worker
//!    (`BENCH agent.rss_mb`, `BENCH agent.cpu_pct`);
//! 2. serving a session for 60 s, publishing the test camera at
//!    640x480/30 in H.264 over WHIP and signing every second, the agent and
//!    its video worker process together (`BENCH agent.serving_rss_mb`,
//!    `BENCH agent.serving_cpu_pct`).
//!
//! 3. idle again for 60 s, a second device with `video.ready` (the
//!    default): a worker waits with the pipeline prepared (`BENCH agent.ready_rss_mb`,
//!    `BENCH agent.ready_cpu_pct`).
//!
//! CPU is in percent of one core; memory is the peak of one-second samples.
//! With `LX_PYTHON` (set by `cargo xtask bench agent`) the device is a
//! drone: its position comes from a flight controller over MAVLink, the
//! pymavlink stand-in of the tests streaming at 10 Hz over UDP (heartbeat,
//! GPS_RAW_INT, GLOBAL_POSITION_INT: 30 messages a second); else from a
//! fixed position.

// A benchmark fails by panicking, helpers included.
#![allow(clippy::unwrap_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;
#[path = "support/device.rs"]
mod device;

use std::process::{Child, Command};
use std::time::Duration;

use common::{BOGOTA, TestApp};
use lx_server::mqtt::test_broker::TestBroker;
use serde_json::json;

const MEASURE: Duration = Duration::from_secs(60);

/// The flight controller stand-in, stopped when dropped.
struct FlightController(Child);

impl Drop for FlightController {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = TestBroker::configure(&dir.path().join("broker")).unwrap();
        let t = TestApp::spawn_with_media(|c| broker.apply(c)).await;
        broker.start().unwrap();
        let consumer = t.consumer("bench-consumer").await;
        let supplier = t.supplier("bench-fleet", BOGOTA, true).await;

        let mut settings = device::test_camera("h264", 640, 480);
        // A device on telemetry only until a session comes: no ready worker.
        settings.push(("VIDEO__READY", "false".into()));
        let _flight = match std::env::var_os("LX_PYTHON") {
            Some(python) => {
                let port = std::net::UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                settings.push(("GPS__SOURCE", "\"mavlink\"".into()));
                settings.push((
                    "GPS__MAVLINK__ENDPOINT",
                    format!("\"udpin:127.0.0.1:{port}\""),
                ));
                let script = common::manifest_dir()
                    .join("tests/mavlink/flight_controller.py");
                let seconds = (2 * MEASURE.as_secs() + 60).to_string();
                println!(
                    "position source: a MAVLink flight controller at 10 Hz over UDP (pymavlink)"
                );
                Some(FlightController(
                    Command::new(python)
                        .arg(script)
                        .args(["--out", &format!("udp:127.0.0.1:{port}")])
                        .args(["--seconds", &seconds])
                        .arg("--center")
                        .arg(format!("{},{}", BOGOTA.0, BOGOTA.1))
                        .arg("--log")
                        .arg(dir.path().join("flown.json"))
                        .spawn()
                        .expect("the flight controller stand-in runs"),
                ))
            }
            None => {
                println!("position source: fixed (set LX_PYTHON for a MAVLink flight controller)");
                settings.push(("GPS__SOURCE", "\"fixed\"".into()));
                settings.push(("GPS__FIXED__LAT", BOGOTA.0.to_string()));
                settings.push(("GPS__FIXED__LNG", BOGOTA.1.to_string()));
                None
            }
        };
        let agent = device::start_agent(
            &t,
            &supplier,
            "bench-drone",
            &dir.path().join("agent"),
            &settings,
        )
        .await;

        tokio::time::sleep(Duration::from_secs(3)).await;
        let (rss_mb, cpu_pct, processes) = agent.footprint(MEASURE).await;
        println!(
            "agent (pid {}) idle for {} s: peak RSS {rss_mb:.1} MB, CPU {cpu_pct:.2} % of one core, {processes} process(es)",
            agent.pid(),
            MEASURE.as_secs()
        );

        let id = t.request(&consumer, BOGOTA, 3600).await;
        t.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(20))
            .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (serving_rss_mb, serving_cpu_pct, processes) = agent.footprint(MEASURE).await;
        let samples = t
            .get(format!("/sessions/{id}/telemetry"), consumer.auth())
            .await
            .ok()
            .data()
            .as_array()
            .map_or(0, Vec::len);
        println!(
            "serving a LIVE session for {} s (test camera 640x480/30, H.264), agent and video worker ({processes} processes): peak RSS {serving_rss_mb:.1} MB, CPU {serving_cpu_pct:.2} % of one core, {samples} samples stored",
            MEASURE.as_secs()
        );
        assert!(
            samples as u64 >= MEASURE.as_secs(),
            "the agent did not sign every second ({samples} samples)"
        );
        t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
            .await
            .ok();
        drop(agent);

        // The same device with `video.ready` (the default): a worker waits
        // prepared.
        settings.retain(|(k, _)| *k != "VIDEO__READY");
        settings.push(("VIDEO__READY", "true".into()));
        let ready = device::start_agent(
            &t,
            &supplier,
            "bench-drone-ready",
            &dir.path().join("agent-ready"),
            &settings,
        )
        .await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (ready_rss_mb, ready_cpu_pct, processes) = ready.footprint(MEASURE).await;
        println!(
            "with video.ready, idle for {} s, agent and prepared worker ({processes} processes): peak RSS {ready_rss_mb:.1} MB, CPU {ready_cpu_pct:.2} % of one core",
            MEASURE.as_secs()
        );
        drop(ready);
        println!("BENCH agent.rss_mb={rss_mb:.1}");
        println!("BENCH agent.cpu_pct={cpu_pct:.2}");
        println!("BENCH agent.serving_rss_mb={serving_rss_mb:.1}");
        println!("BENCH agent.serving_cpu_pct={serving_cpu_pct:.2}");
        println!("BENCH agent.ready_rss_mb={ready_rss_mb:.1}");
        println!("BENCH agent.ready_cpu_pct={ready_cpu_pct:.2}");
    });
}
