//! Eyes-on-a-point benchmark (`cargo xtask bench live`).
//!
//! What a consumer feels: from its dispatch call until the session reads
//! LIVE. The server runs in this process on the built-in media plane (real
//! GStreamer ingest, LIVE on the first decoded frame), with Mosquitto for
//! the fleet link; the device is the release `lx-agent` process with the
//! test camera at 640x480/30, once with VP8 and once with H.264. Twenty
//! sessions one after another per codec, each a fresh WHIP resource (the
//! previous session ended and its publisher left). The state is polled
//! every 5 ms.
//!
//! The device keeps a video worker ready between sessions (`video.ready`,
//! the default; sessions 2 s apart so that it is); a third run has H.264
//! with `video.ready = false`, the worker started with each session.
//!
//! Prints per run `BENCH live.<codec>_dispatch_to_live_p50_s=…` and
//! `…_p95_s` (`live.cold_h264_…` for the third), and over the first two
//! `BENCH live.dispatch_to_live_p50_s=…` and
//! `BENCH live.dispatch_to_live_p95_s=…`.

// A benchmark fails by panicking, helpers included.
#![allow(clippy::unwrap_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;

#[path = "support/device.rs"]
mod device;

use std::time::{Duration, Instant};

use common::{Actor, BOGOTA, TestApp};
use lx_server::mqtt::test_broker::TestBroker;
use serde_json::json;
use uuid::Uuid;

const SESSIONS: usize = 20;
const MEDELLIN: (f64, f64) = (6.2442, -75.5812);
const CALI: (f64, f64) = (3.4516, -76.5320);
/// With `video.ready`, the rest between sessions: the worker prepares the
/// pipeline again in well under this.
const READY_REST: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(5);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Seconds from the dispatch call until the session reads LIVE, per session.
/// `between`: how long the device rests after a session before the next
/// (a ready worker prepares the pipeline again meanwhile).
async fn measure(t: &TestApp, consumer: &Actor, at: (f64, f64), between: Duration) -> Vec<f64> {
    let builtin = t.builtin.clone().unwrap();
    let mut seconds = Vec::new();
    for _ in 0..SESSIONS {
        let id = t.request(consumer, at, 300).await;
        let started = Instant::now();
        t.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        loop {
            let s = t.session(consumer, &id).await;
            if s["state"] == "LIVE" {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{id} not LIVE within 30 s: {s}"
            );
            tokio::time::sleep(POLL).await;
        }
        seconds.push(started.elapsed().as_secs_f64());
        t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
            .await
            .ok();
        let session: Uuid = id.parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        while builtin.peers(session).0 {
            assert!(Instant::now() < deadline, "the publisher of {id} stayed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(between).await;
    }
    seconds
}

fn report(label: &str, seconds: &mut [f64]) -> (f64, f64) {
    seconds.sort_by(f64::total_cmp);
    let (p50, p95) = (percentile(seconds, 50.0), percentile(seconds, 95.0));
    println!(
        "{label}: {} sessions, dispatch → LIVE min {:.3} s, p50 {p50:.3} s, p95 {p95:.3} s, max {:.3} s",
        seconds.len(),
        seconds[0],
        seconds[seconds.len() - 1]
    );
    (p50, p95)
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
        let mut all = Vec::new();
        // A device per run, far apart: each dispatch finds the one meant.
        let runs = [
            ("vp8", BOGOTA, true),
            ("h264", MEDELLIN, true),
            ("h264", CALI, false),
        ];
        for (codec, at, ready) in runs {
            let name = if ready {
                codec.to_string()
            } else {
                format!("cold_{codec}")
            };
            let slug = name.replace('_', "-");
            let supplier = t.supplier(&format!("bench-fleet-{slug}"), at, true).await;
            let mut settings = device::hovering_at(at);
            settings.extend(device::test_camera(codec, 640, 480));
            settings.push(("TELEMETRY__IDLE_INTERVAL_MS", "1000".into()));
            settings.push(("VIDEO__READY", ready.to_string()));
            let agent = device::start_agent(
                &t,
                &supplier,
                &format!("bench-{slug}"),
                &dir.path().join(&slug),
                &settings,
            )
            .await;
            let between = if ready {
                // The first session waits for the worker's first preparation.
                tokio::time::sleep(READY_REST).await;
                READY_REST
            } else {
                Duration::ZERO
            };
            let mut seconds = measure(&t, &consumer, at, between).await;
            drop(agent);
            let in_order: Vec<String> = seconds.iter().map(|s| format!("{s:.3}")).collect();
            println!("{name}, session by session: {}", in_order.join(" "));
            let (p50, p95) = report(&name, &mut seconds);
            println!("BENCH live.{name}_dispatch_to_live_p50_s={p50:.3}");
            println!("BENCH live.{name}_dispatch_to_live_p95_s={p95:.3}");
            if ready {
                all.extend(seconds);
            }
        }
        let (p50, p95) = report("both codecs, video.ready", &mut all);
        println!("BENCH live.dispatch_to_live_p50_s={p50:.3}");
        println!("BENCH live.dispatch_to_live_p95_s={p95:.3}");
    });
}
