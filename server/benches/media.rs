//! Media benchmark (`cargo xtask bench media`).
//!
//! A real `lx-server` process (built-in media plane, ICE on 127.0.0.1) and,
//! in this process, the publishers and viewers:
//!
//! 1. `/start` → LIVE: 20 sessions one after another, each with a live
//!    VP8 480p30 publisher as the agent runs it; from POST /start until the
//!    session reads LIVE.
//! 2. Glass to glass: a publisher draws the wall clock into every frame
//!    (lx-media's barcode); a WHEP subscriber decodes every frame it gets
//!    from the server and reads the time back.
//! 3. Concurrency: 480p30 publishers looping a pre-encoded clip (so the
//!    publishing side costs no encoding), added in steps (to 128, then past
//!    it) until a session's latest frame is older than 1.5 s; at each step
//!    the server's CPU from /proc and the age of every session's latest
//!    frame. The last step where every frame is at most 1.5 s old is what
//!    the machine sustains (`media.concurrent_ingests`).

// A benchmark fails by panicking, helpers included.
#![allow(clippy::unwrap_used)]

#[path = "support/camera.rs"]
mod camera;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/process.rs"]
mod process;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use camera::{camera, loopback, percentile};
use common::{Actor, Api, BOGOTA};
use lx_media::barcode;
use lx_media::decode::{DecodeTo, Decoder};
use lx_media::publish::{Clip, Publisher};
use lx_media::receive::{EncodedFrame, FrameSink, Receiver, ReceiverConfig};
use lx_protocol::time::parse_millis;
use lx_server::clock::wall_now_ms;
use process::LxServer;
use serde_json::json;

const START_SESSIONS: usize = 20;
const GLASS_SECONDS: u64 = 10;
/// Ingests after each step: eight at a time to 32 (the target), then sixteen.
const STEPS: [usize; 16] = [
    8, 16, 24, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
];
const MAX_FRAME_AGE_MS: i64 = 1500;
const SETTLE: Duration = Duration::from_secs(5);
const MEASURE: Duration = Duration::from_secs(10);
/// Linux's USER_HZ: the unit of utime and stime in /proc/<pid>/stat.
const TICKS_PER_S: f64 = 100.0;

fn server_cpu_ticks(server: &LxServer) -> u64 {
    cpu_ticks(&format!("/proc/{}/stat", server.child.id()))
}

/// utime + stime of the process whose `stat` file this is.
fn cpu_ticks(stat_path: &str) -> u64 {
    let stat = std::fs::read_to_string(stat_path).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime: fields 14 and 15, 12 and 13 after the name.
    [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum()
}

fn self_cpu_ticks() -> u64 {
    cpu_ticks("/proc/self/stat")
}

/// Suppliers over the point; each serves one session at a time.
struct Fleet {
    api: Api,
    suppliers: Vec<Actor>,
}

struct Started {
    id: String,
    whip: String,
    whep: String,
    supplier: usize,
}

impl Fleet {
    /// A REQUESTED, dispatched and started session; adds a supplier when
    /// all are busy.
    async fn start(&mut self, consumer: &Actor) -> (Started, Instant) {
        let id = self.api.request(consumer, BOGOTA, 3600).await;
        let mut dispatched = self
            .api
            .post(
                format!("/sessions/{id}/dispatch"),
                consumer.auth(),
                json!({}),
            )
            .await;
        if dispatched.status != 200 {
            let slug = format!("bench-supplier-{}", self.suppliers.len());
            self.suppliers
                .push(self.api.supplier(&slug, BOGOTA, true).await);
            dispatched = self
                .api
                .post(
                    format!("/sessions/{id}/dispatch"),
                    consumer.auth(),
                    json!({}),
                )
                .await
                .ok();
        }
        let ws = dispatched.data()["operatorWorkspaceId"]
            .as_str()
            .expect("assigned")
            .to_owned();
        let supplier = self
            .suppliers
            .iter()
            .position(|s| s.workspace_id.to_string() == ws)
            .expect("a supplier of ours");
        let asked = Instant::now();
        let started = self
            .api
            .post(
                format!("/sessions/{id}/start"),
                self.suppliers[supplier].auth(),
                json!({}),
            )
            .await
            .ok();
        let data = started.data();
        (
            Started {
                id,
                whip: data["whipUrl"].as_str().expect("whipUrl").to_owned(),
                whep: data["whepUrl"].as_str().expect("whepUrl").to_owned(),
                supplier,
            },
            asked,
        )
    }

    async fn end(&self, s: &Started) {
        self.api
            .post(
                format!("/sessions/{}/end", s.id),
                self.suppliers[s.supplier].auth(),
                json!({}),
            )
            .await;
    }
}

async fn post_sdp(url: &str, offer: &str) -> String {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .expect("POST");
    assert_eq!(resp.status().as_u16(), 201, "{url}");
    resp.text().await.expect("answer")
}

async fn connect(publisher: &Publisher, whip: &str) {
    let offer = publisher.offer().await.expect("offer");
    let answer = post_sdp(whip, &offer).await;
    publisher
        .accept_answer(&answer)
        .await
        .expect("answer applies");
}

async fn start_to_live(fleet: &mut Fleet, consumer: &Actor) -> (f64, f64) {
    let mut seconds = Vec::new();
    for _ in 0..START_SESSIONS {
        let (s, asked) = fleet.start(consumer).await;
        let publisher = Publisher::start(&camera(false)).expect("publisher");
        connect(&publisher, &s.whip).await;
        loop {
            let state = fleet.api.session(consumer, &s.id).await["state"].clone();
            if state == "LIVE" {
                break;
            }
            assert!(
                asked.elapsed() < Duration::from_secs(15),
                "{} never went LIVE",
                s.id
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seconds.push(asked.elapsed().as_secs_f64());
        fleet.end(&s).await;
        drop(publisher);
    }
    seconds.sort_by(f64::total_cmp);
    println!(
        "start → LIVE over {START_SESSIONS} sessions (VP8 640x480@30, POST /start … LIVE): min {:.3} s, p50 {:.3} s, p95 {:.3} s, max {:.3} s",
        seconds[0],
        percentile(&seconds, 50.0),
        percentile(&seconds, 95.0),
        seconds[seconds.len() - 1]
    );
    (percentile(&seconds, 50.0), percentile(&seconds, 95.0))
}

/// Decodes every frame a subscriber gets and reads the time drawn into it.
struct GlassClock {
    decoder: Mutex<Option<Decoder>>,
    latencies: Arc<Mutex<Vec<f64>>>,
    unreadable: Arc<Mutex<u64>>,
}

impl FrameSink for GlassClock {
    fn on_frame(&self, frame: EncodedFrame) {
        let mut decoder = self.decoder.lock().unwrap();
        if decoder.is_none() {
            let latencies = Arc::clone(&self.latencies);
            let unreadable = Arc::clone(&self.unreadable);
            *decoder = Decoder::new(
                frame.codec,
                DecodeTo::I420,
                move |picture| match barcode::read(
                    &picture.data,
                    barcode::i420_stride(picture.width),
                ) {
                    Some(ms) => latencies
                        .lock()
                        .unwrap()
                        .push((wall_now_ms() - ms as i64) as f64),
                    None => *unreadable.lock().unwrap() += 1,
                },
            )
            .ok();
        }
        if let Some(d) = decoder.as_ref() {
            let _ = d.push(&frame.buffer);
        }
    }
    fn on_failure(&self, reason: String) {
        eprintln!("glass-to-glass subscriber: {reason}");
    }
}

async fn glass_to_glass(fleet: &mut Fleet, consumer: &Actor) -> (f64, f64) {
    let (s, _) = fleet.start(consumer).await;
    let publisher = Publisher::start(&camera(true)).expect("publisher");
    connect(&publisher, &s.whip).await;
    while fleet.api.session(consumer, &s.id).await["state"] != "LIVE" {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let clock = Arc::new(GlassClock {
        decoder: Mutex::new(None),
        latencies: Arc::default(),
        unreadable: Arc::default(),
    });
    let config = ReceiverConfig {
        ice: loopback(),
        // A browser's jitter buffer on a clean loopback stays near zero.
        latency_ms: 20,
        ..ReceiverConfig::default()
    };
    let (mut subscriber, offer) = Receiver::offer(&config, clock.clone())
        .await
        .expect("offer");
    let answer = post_sdp(&s.whep, &offer).await;
    subscriber.accept_answer(&answer).await.expect("answer");
    tokio::time::sleep(Duration::from_secs(GLASS_SECONDS)).await;
    drop(subscriber);
    let mut ms = clock.latencies.lock().unwrap().clone();
    ms.sort_by(f64::total_cmp);
    // The first second holds the join (key frame, jitter buffers filling).
    let skip = ms.len().min(30);
    let steady: Vec<f64> = {
        let mut in_order = clock.latencies.lock().unwrap().clone();
        in_order.drain(..skip);
        in_order.sort_by(f64::total_cmp);
        in_order
    };
    println!(
        "glass to glass (publisher clock drawn in the frame → server → WHEP subscriber decode, VP8 640x480@30, server jitter buffer {} ms, subscriber 20 ms): {} frames read, {} unreadable; p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        lx_server::config::Config::defaults()
            .media
            .jitter_latency_ms,
        ms.len(),
        clock.unreadable.lock().unwrap(),
        percentile(&steady, 50.0),
        percentile(&steady, 95.0),
        steady.last().copied().unwrap_or(f64::NAN),
    );
    fleet.end(&s).await;
    drop(publisher);
    (percentile(&steady, 50.0), percentile(&steady, 95.0))
}

/// The oldest latest frame among `sessions`, milliseconds; `None` if one has none.
async fn oldest_frame_ms(api: &Api, consumer: &Actor, sessions: &[Started]) -> Option<i64> {
    let http = reqwest::Client::new();
    let mut oldest = 0;
    for s in sessions {
        let resp = http
            .get(format!("{}/sessions/{}/frame", api.base, s.id))
            .bearer_auth(&consumer.api_key)
            .send()
            .await
            .ok()?;
        let decoded = resp
            .headers()
            .get("x-lx-frame-decoded-at")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_millis)?;
        oldest = oldest.max(wall_now_ms() - decoded);
    }
    Some(oldest)
}

struct Step {
    ingests: usize,
    server_cpu_pct: f64,
    bench_cpu_pct: f64,
    oldest_ms: Option<i64>,
}

async fn concurrency(server: &LxServer, fleet: &mut Fleet, consumer: &Actor) -> (usize, f64) {
    let clip = Clip::record(&camera(false), 60).expect("clip");
    let mut publishers = Vec::new();
    let mut sessions: Vec<Started> = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    for target in STEPS {
        while sessions.len() < target {
            let (s, _) = fleet.start(consumer).await;
            let publisher = Publisher::start_clip(&clip, &loopback()).expect("clip publisher");
            connect(&publisher, &s.whip).await;
            publishers.push(publisher);
            sessions.push(s);
        }
        tokio::time::sleep(SETTLE).await;
        let (server0, self0, t0) = (server_cpu_ticks(server), self_cpu_ticks(), Instant::now());
        let mut oldest = Some(0);
        let until = Instant::now() + MEASURE;
        while Instant::now() < until {
            oldest = match (
                oldest,
                oldest_frame_ms(&fleet.api, consumer, &sessions).await,
            ) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        let step = Step {
            ingests: sessions.len(),
            server_cpu_pct: (server_cpu_ticks(server) - server0) as f64 / TICKS_PER_S / secs
                * 100.0,
            bench_cpu_pct: (self_cpu_ticks() - self0) as f64 / TICKS_PER_S / secs * 100.0,
            oldest_ms: oldest,
        };
        println!(
            "  {:>3} ingests: server CPU {:>5.1} % of one core ({:.2} % per ingest), publishers' process {:>5.1} %, oldest latest frame {}",
            step.ingests,
            step.server_cpu_pct,
            step.server_cpu_pct / step.ingests as f64,
            step.bench_cpu_pct,
            step.oldest_ms
                .map_or("missing".to_string(), |ms| format!("{ms} ms")),
        );
        let held = step.oldest_ms.is_some_and(|ms| ms <= MAX_FRAME_AGE_MS);
        steps.push(step);
        if !held {
            break;
        }
    }
    for s in &sessions {
        fleet.end(s).await;
    }
    drop(publishers);
    let sustained = steps
        .iter()
        .rfind(|s| s.oldest_ms.is_some_and(|ms| ms <= MAX_FRAME_AGE_MS));
    match sustained {
        Some(s) => (s.ingests, s.server_cpu_pct / s.ingests as f64),
        None => (
            0,
            steps
                .first()
                .map_or(f64::NAN, |s| s.server_cpu_pct / s.ingests as f64),
        ),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        lx_media::init().expect("GStreamer");
        // One machine plays hundreds of fleets and consumers from one
        // address: the shipped rate limits would refuse all but the first.
        let server = LxServer::spawn(
            "[log]\nfilter = \"warn\"\n\
             [rate_limits]\n\
             challenges_per_minute = 1000000\n\
             sign_in_per_minute = 1000000\n\
             workspaces_per_minute = 1000000\n\
             registrations_per_minute = 1000000\n\
             media_offers_per_minute = 1000000\n\
             media_patches_per_minute = 1000000\n\
             quotes_per_minute = 1000000\n",
        )
        .await;
        let api = Api::new(format!("{}/api/v1", server.base));
        let consumer = api.consumer("bench-consumer").await;
        let mut fleet = Fleet {
            api,
            suppliers: Vec::new(),
        };
        println!("lx-server {} (built-in media, ICE on 127.0.0.1)", server.base);
        let (live_p50, live_p95) = start_to_live(&mut fleet, &consumer).await;
        let (g2g_p50, g2g_p95) = glass_to_glass(&mut fleet, &consumer).await;
        println!(
            "concurrent 480p30 ingests (clip publishers, steps {STEPS:?}, frames at most {MAX_FRAME_AGE_MS} ms old):"
        );
        let (ingests, per_ingest) = concurrency(&server, &mut fleet, &consumer).await;
        println!("BENCH media.start_to_live_p50_s={live_p50:.3}");
        println!("BENCH media.start_to_live_p95_s={live_p95:.3}");
        println!("BENCH media.glass_to_glass_p50_ms={g2g_p50:.0}");
        println!("BENCH media.glass_to_glass_p95_ms={g2g_p95:.0}");
        println!("BENCH media.ingest_cpu_pct={per_ingest:.2}");
        println!("BENCH media.concurrent_ingests={ingests}");
    });
}
