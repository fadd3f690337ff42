//! The agent on a drone's flight controller: pymavlink (from PyPI, not
//! ours) plays the autopilot and streams a scripted orbit over a
//! pseudo-terminal (a UART, signed) and over UDP; the agent's signed samples
//! are the streamed positions to 1e-7°, the battery reaches the server, the
//! armed state and altitude reach `/healthz`, forged and unsigned messages
//! are ignored and counted, and nothing is ever sent back.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Duration;

use lx_protocol::telemetry::Source;
use serde_json::{Value, json};
use uuid::Uuid;

use super::common::{BOGOTA, TestApp};
use super::{agent_config, enrollment_token, operator_of, server_url, spawn_agent, wait_until};

fn python() -> PathBuf {
    let path = std::env::var_os("LX_PYTHON").map_or_else(
        || crate::common::manifest_dir().join("../tools/python/venv/bin/python"),
        PathBuf::from,
    );
    assert!(
        path.exists(),
        "{} is missing (LX_PYTHON); run `cargo xtask test`, which installs pymavlink into tools/python/venv",
        path.display()
    );
    path
}

fn flight_controller(out: &str, log: &std::path::Path, extra: &[&str]) -> std::process::Command {
    let script = crate::common::manifest_dir().join("tests/mavlink/flight_controller.py");
    let mut cmd = std::process::Command::new(python());
    cmd.arg(script)
        .args(["--out", out, "--seconds", "14"])
        .arg("--log")
        .arg(log)
        .args(extra);
    cmd
}

/// A loopback port nobody holds right now.
pub(super) fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// The agent's `/healthz`; null while it is not listening yet.
pub(super) async fn healthz(port: u16) -> Value {
    match reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await {
        Ok(resp) => resp.json().await.unwrap_or(Value::Null),
        Err(_) => Value::Null,
    }
}

/// Runs the agent on `endpoint` while `fc` streams; returns the session's
/// stored samples, the stand-in's log and the last `/healthz`.
async fn fly(
    endpoint: String,
    key: Option<&str>,
    fc: std::process::Child,
    log: &std::path::Path,
) -> (Vec<lx_protocol::telemetry::Sample>, Value, Value) {
    let mut fc = fc;
    let t = TestApp::spawn_realtime().await;
    let consumer = t.consumer("mavlink-consumer").await;
    let supplier = t.supplier("mavlink-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let health = free_port(false);
    let mut gps = vec![
        ("SOURCE", "\"mavlink\"".to_owned()),
        ("MAVLINK__ENDPOINT", format!("\"{endpoint}\"")),
    ];
    if let Some(key) = key {
        gps.push(("MAVLINK__SIGNING_KEY", format!("\"{key}\"")));
    }
    let mut config = agent_config(&server_url(&t), &dir.path().join("state"), &gps);
    config.health.listen = format!("127.0.0.1:{health}");
    let token = enrollment_token(&t, &supplier).await;
    let enrollment = lx_agent::run::enroll(&config, &token).await.unwrap();
    let (stop, agent) = spawn_agent(config);
    wait_until(
        "the drone to report its position and battery",
        15,
        || async {
            let op = operator_of(&t, &supplier).await;
            op["connected"] == true && op["position"].is_object() && op["batteryPercent"] == 76
        },
    )
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
        t.session(&consumer, &id).await["operatorId"],
        enrollment.operator_id.to_string()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let health = healthz(health).await;
    let _ = stop.send(true);
    agent.await.unwrap().unwrap();
    let status = tokio::task::spawn_blocking(move || fc.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "the flight controller stand-in failed");
    let flown: Value = serde_json::from_str(&std::fs::read_to_string(log).unwrap()).unwrap();
    let samples = t
        .app
        .store
        .session_samples(id.parse::<Uuid>().unwrap())
        .await
        .unwrap();
    (samples, flown, health)
}

fn assert_flown(samples: &[lx_protocol::telemetry::Sample], flown: &Value) {
    assert!(samples.len() >= 3, "only {} samples stored", samples.len());
    let positions: Vec<(i64, i64)> = flown["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_i64().unwrap(), p[1].as_i64().unwrap()))
        .collect();
    for s in samples {
        assert_eq!(s.source, Source::Mavlink);
        assert!(
            positions.contains(&(i64::from(s.lat_e7), i64::from(s.lng_e7))),
            "signed ({}, {}) is not a position the flight controller sent",
            s.lat_e7,
            s.lng_e7
        );
        assert_eq!(s.accuracy_cm, 120, "GPS_RAW_INT.h_acc, 1.2 m");
    }
    assert_eq!(
        flown["received_bytes"], 0,
        "the agent sent the vehicle nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_flight_controller_on_a_uart_is_the_position_and_forgeries_are_counted() {
    use lx_hal::sim::Pty;
    let key = "ab".repeat(32);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flown.json");
    let pty = Pty::open().unwrap();
    let mut writer = pty.writer().unwrap();
    let mut fc = flight_controller(
        "stdout",
        &log,
        &["--sign", &key, "--forge", &"cd".repeat(32), "--unsigned"],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .expect("python runs");
    let mut stream = fc.stdout.take().unwrap();
    // The UART: the stand-in's bytes into the pty the agent reads.
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stream.read(&mut buf) {
            if n == 0 || writer.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let endpoint = format!("serial:{}:921600", pty.path().display());
    let (samples, flown, health) = fly(endpoint, Some(&key), fc, &log).await;
    drop(pty);
    assert_flown(&samples, &flown);
    let vehicle = &health["vehicle"];
    assert_eq!(vehicle["armed"], true, "{health}");
    assert_eq!(vehicle["batteryPercent"], 76);
    assert_eq!(vehicle["relativeAltitudeMeters"], 40.5);
    assert_eq!(vehicle["satellites"], 14);
    let link = &vehicle["link"];
    assert!(link["badSignatureIgnored"].as_u64().unwrap() >= 5, "{link}");
    assert!(link["unsignedIgnored"].as_u64().unwrap() >= 5, "{link}");
    assert!(link["accepted"].as_u64().unwrap() >= 100, "{link}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flight_controller_over_udp_is_the_position_and_hears_nothing_back() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("flown.json");
    let port = free_port(true);
    let endpoint = format!("udpin:127.0.0.1:{port}");
    // The agent binds first; the stand-in starts sending once it is up.
    let fc = flight_controller(&format!("udp:127.0.0.1:{port}"), &log, &[])
        .spawn()
        .expect("python runs");
    let (samples, flown, health) = fly(endpoint, None, fc, &log).await;
    assert_flown(&samples, &flown);
    assert_eq!(health["vehicle"]["armed"], true, "{health}");
    assert_eq!(
        health["vehicle"]["link"]["unsignedIgnored"], 0,
        "no key: unsigned is fine"
    );
}
