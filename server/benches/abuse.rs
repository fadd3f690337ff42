//! Abuse benchmark (`cargo xtask bench abuse`).
//!
//! A real `lx-server` process (built-in media plane, the shipped rate
//! limits, a SQLite file store) and one honest consumer running a session
//! end to end with a real GStreamer publisher: quote, create, dispatch,
//! start, LIVE, polls of the session and its frame while the supplier sends
//! its location every second, end, and the final meter. It runs twice: once
//! alone, once while attackers from four other loopback addresses
//! (127.0.0.2–5) flood, each as fast as it can with a few calls in flight:
//!
//! - wallet challenges (each would store a nonce),
//! - device registrations with self-signed proofs and made-up tokens,
//! - telemetry with a forged device token,
//! - webhook creation with a key of their own workspace,
//! - WHEP offers to the honest session's (leaked) viewer URL.
//!
//! It prints `BENCH abuse.honest_p99_ratio` (the honest client's API p99
//! under attack ÷ alone), `abuse.attack_429_share` (attacker calls refused
//! with 429), `abuse.db_growth_mb` (database and WAL growth over the
//! attack; `abuse.db_growth_mb_alone` is the same session's without) and
//! panics when the honest session does not reach LIVE or its
//! final meter during the attack.

// A benchmark fails by panicking, helpers included.
#![allow(clippy::unwrap_used)]

#[path = "support/camera.rs"]
mod camera;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/process.rs"]
mod process;

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use camera::{camera, loopback, percentile};
use common::{Actor, Api, BOGOTA};
use k256::ecdsa::SigningKey;
use lx_media::publish::Publisher;
use lx_media::receive::{EncodedFrame, FrameSink, Receiver, ReceiverConfig};
use lx_protocol::wallet::{Address, sign_personal};
use process::LxServer;
use serde_json::json;

/// How long the honest session stays LIVE in each run.
const LIVE_FOR: Duration = Duration::from_secs(20);
const ATTACKERS: u8 = 4;
/// Calls each attacker keeps in flight per kind of attack: a refusal comes
/// after rate_limits.refusal_delay_ms, so an attacker's best rate is many
/// connections at once.
const IN_FLIGHT: usize = 8;

/// The database and its WAL, bytes.
fn db_bytes(server: &LxServer) -> u64 {
    let size = |p: &std::path::Path| std::fs::metadata(p).map_or(0, |m| m.len());
    size(&server.db) + size(&server.db.with_extension("db-wal"))
}

/// The honest client's calls, timed.
#[derive(Default)]
struct Timings(Vec<f64>);

impl Timings {
    async fn time<T>(&mut self, call: impl std::future::Future<Output = T>) -> T {
        let started = Instant::now();
        let out = call.await;
        self.0.push(started.elapsed().as_secs_f64() * 1000.0);
        out
    }

    fn p99(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 99.0)
    }

    fn p50(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        percentile(&sorted, 50.0)
    }
}

/// What the honest session came to.
struct Outcome {
    timings: Timings,
    to_live: Duration,
    clean_seconds: u64,
    charged: u64,
}

/// The honest session's id and viewer URL, once it has them: what the
/// attackers aim at.
type Target = Option<(String, String)>;

/// One honest session end to end; `leak` gets its id and viewer URL as
/// soon as there are.
async fn honest_session(
    api: &Api,
    consumer: &Actor,
    supplier: &Actor,
    leak: &tokio::sync::watch::Sender<Target>,
) -> Outcome {
    let mut t = Timings::default();
    let quote = t
        .time(api.get(
            format!(
                "/pricing/quote?lat={}&lng={}&durationSeconds=600",
                BOGOTA.0, BOGOTA.1
            ),
            consumer.auth(),
        ))
        .await
        .ok();
    let created = t
        .time(api.post(
            "/sessions",
            consumer.auth(),
            json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 600,
                "quoteId": quote.data()["quoteId"]}),
        ))
        .await
        .ok();
    let id = created.data()["id"].as_str().unwrap().to_owned();
    t.time(api.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    ))
    .await
    .ok();
    let heartbeats = api.heartbeat_every_second(supplier, BOGOTA);
    let asked = Instant::now();
    let started = t
        .time(api.post(format!("/sessions/{id}/start"), supplier.auth(), json!({})))
        .await
        .ok();
    let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
    let whep = started.data()["whepUrl"].as_str().unwrap().to_owned();
    leak.send_replace(Some((id.clone(), whep)));
    let publisher = Publisher::start(&camera(false)).expect("publisher");
    let offer = publisher.offer().await.expect("offer");
    let answer = reqwest::Client::new()
        .post(&whip)
        .header("content-type", "application/sdp")
        .body(offer)
        .send()
        .await
        .expect("WHIP POST");
    assert_eq!(
        answer.status().as_u16(),
        201,
        "the honest publisher is refused"
    );
    publisher
        .accept_answer(&answer.text().await.unwrap())
        .await
        .expect("answer applies");
    loop {
        let session = t
            .time(api.get(format!("/sessions/{id}"), consumer.auth()))
            .await
            .ok();
        if session.data()["state"] == "LIVE" {
            break;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(20),
            "the honest session never went LIVE: {}",
            session.data()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let to_live = asked.elapsed();
    let live_since = Instant::now();
    let mut polls = 0u64;
    while live_since.elapsed() < LIVE_FOR {
        t.time(api.get(format!("/sessions/{id}"), consumer.auth()))
            .await
            .ok();
        if polls.is_multiple_of(5) {
            let frame = t
                .time(api.get(format!("/sessions/{id}/frame"), consumer.auth()))
                .await;
            assert_eq!(frame.status, 200, "no frame for the honest consumer");
        }
        polls += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.time(api.post(format!("/sessions/{id}/end"), consumer.auth(), json!({})))
        .await
        .ok();
    drop(heartbeats);
    drop(publisher);
    let ended = Instant::now();
    let session = loop {
        let session = t
            .time(api.get(format!("/sessions/{id}"), consumer.auth()))
            .await
            .ok();
        if session.data()["meterFinal"] == true {
            break session;
        }
        assert!(
            ended.elapsed() < Duration::from_secs(30),
            "the honest session's meter never became final: {}",
            session.data()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let meter = &session.data()["meter"];
    Outcome {
        timings: t,
        to_live,
        clean_seconds: meter["cleanSeconds"].as_u64().unwrap(),
        charged: meter["chargedMicroUsdc"].as_u64().unwrap(),
    }
}

/// Attacker calls by outcome.
#[derive(Default)]
struct Tally {
    total: AtomicU64,
    limited: AtomicU64,
    server_errors: AtomicU64,
}

impl Tally {
    fn count(&self, status: u16) {
        self.total.fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.limited.fetch_add(1, Ordering::Relaxed);
        } else if status >= 500 && status != 503 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What an attacker sends, one call at a time.
#[derive(Clone, Copy, Debug)]
enum Attack {
    Challenge,
    Registration,
    Telemetry,
    Webhook,
    WhepOffer,
}

const ATTACKS: [Attack; 5] = [
    Attack::Challenge,
    Attack::Registration,
    Attack::Telemetry,
    Attack::Webhook,
    Attack::WhepOffer,
];

struct Arsenal {
    base: String,
    /// A key of the attackers' own workspace, with webhooks:write.
    webhook_key: String,
    /// Registrations signed by their own keys over made-up tokens.
    registrations: Vec<serde_json::Value>,
    /// A real WHEP offer (a GStreamer subscriber's), never answered.
    whep_offer: String,
    target: tokio::sync::watch::Receiver<Target>,
}

/// A WHEP subscriber that is never answered gets no frames.
struct NoFrames;

impl FrameSink for NoFrames {
    fn on_frame(&self, _: EncodedFrame) {}
    fn on_failure(&self, _: String) {}
}

async fn fire(http: &reqwest::Client, arsenal: &Arsenal, attack: Attack, n: u64) -> Option<u16> {
    let api = format!("{}/api/v1", arsenal.base);
    let request = match attack {
        Attack::Challenge => {
            let wallet = Address::from_signing_key(&SigningKey::random(&mut rand::thread_rng()));
            http.post(format!("{api}/auth/wallet/challenge"))
                .json(&json!({"walletAddress": wallet.to_checksum()}))
        }
        Attack::Registration => http
            .post(format!("{api}/operators/register"))
            .json(&arsenal.registrations[n as usize % arsenal.registrations.len()]),
        Attack::Telemetry => {
            let (id, _) = arsenal.target.borrow().clone()?;
            http.post(format!("{api}/sessions/{id}/telemetry"))
                .bearer_auth(format!("lxdv_forged{n}"))
                .json(&json!({"sequence": n, "capturedAt": "2026-12-06T00:00:00Z"}))
        }
        Attack::Webhook => http
            .post(format!("{api}/webhooks"))
            .bearer_auth(&arsenal.webhook_key)
            .json(&json!({"url": format!("https://93.184.215.14/hooks/{n}")})),
        Attack::WhepOffer => {
            let (_, url) = arsenal.target.borrow().clone()?;
            http.post(url)
                .header("content-type", "application/sdp")
                .body(arsenal.whep_offer.clone())
        }
    };
    request.send().await.ok().map(|r| r.status().as_u16())
}

/// Every attacker address floods every kind of attack until `stop`.
fn unleash(
    arsenal: &Arc<Arsenal>,
    tallies: &Arc<[Tally; 5]>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for a in 0..ATTACKERS {
        let address = IpAddr::from([127, 0, 0, 2 + a]);
        let http = reqwest::Client::builder()
            .local_address(address)
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        for (kind, attack) in ATTACKS.into_iter().enumerate() {
            for lane in 0..IN_FLIGHT {
                let (http, arsenal, tallies, stop) = (
                    http.clone(),
                    Arc::clone(arsenal),
                    Arc::clone(tallies),
                    Arc::clone(stop),
                );
                tasks.push(tokio::spawn(async move {
                    let mut n = lane as u64;
                    while !stop.load(Ordering::Relaxed) {
                        match fire(&http, &arsenal, attack, n).await {
                            Some(status) => tallies[kind].count(status),
                            None => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                        n += IN_FLIGHT as u64;
                    }
                }));
            }
        }
    }
    tasks
}

async fn arm(api: &Api, base: &str, target: tokio::sync::watch::Receiver<Target>) -> Arsenal {
    let attacker = api
        .actor("bench-attacker", &["CONSUMER"], &["webhooks:write"])
        .await;
    let registrations = (0..32)
        .map(|i| {
            let key = SigningKey::random(&mut rand::thread_rng());
            let token = format!("lxen_madeup{i:04}");
            json!({"enrollmentToken": token, "name": "drone", "deviceKind": "DRONE",
                "address": Address::from_signing_key(&key).to_checksum(),
                "proof": sign_personal(&key, token.as_bytes()).to_string()})
        })
        .collect();
    let (_subscriber, whep_offer) = Receiver::offer(
        &ReceiverConfig {
            ice: loopback(),
            ..ReceiverConfig::default()
        },
        Arc::new(NoFrames),
    )
    .await
    .expect("a WHEP offer");
    Arsenal {
        base: base.to_owned(),
        webhook_key: attacker.api_key,
        registrations,
        whep_offer,
        target,
    }
}

fn report(label: &str, outcome: &Outcome) {
    println!(
        "{label}: {} honest calls, p50 {:.1} ms, p99 {:.1} ms; POST /start → LIVE {:.2} s; final meter {} clean s, {} µUSDC",
        outcome.timings.0.len(),
        outcome.timings.p50(),
        outcome.timings.p99(),
        outcome.to_live.as_secs_f64(),
        outcome.clean_seconds,
        outcome.charged
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    lx_media::init().expect("GStreamer");
    // The shipped [rate_limits]; a short settle delay so that the final
    // meter comes within the run.
    let server =
        LxServer::spawn("[telemetry]\nsettle_delay_seconds = 2\n[log]\nfilter = \"error\"\n").await;
    let api = Api::new(format!("{}/api/v1", server.base));
    let consumer = api.consumer("bench-honest-consumer").await;
    let supplier = api.supplier("bench-honest-supplier", BOGOTA, true).await;

    let (nobody, _) = tokio::sync::watch::channel(None);
    let db_before_alone = db_bytes(&server);
    let alone = honest_session(&api, &consumer, &supplier, &nobody).await;
    let db_growth_alone_mb = db_bytes(&server).saturating_sub(db_before_alone) as f64 / 1e6;
    report("alone", &alone);

    let (leak, target) = tokio::sync::watch::channel(None);
    let arsenal = arm(&api, &server.base, target).await;
    let tallies: Arc<[Tally; 5]> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let db_before = db_bytes(&server);
    let attack_started = Instant::now();
    let attackers = unleash(&Arc::new(arsenal), &tallies, &stop);
    let attacked = honest_session(&api, &consumer, &supplier, &leak).await;
    stop.store(true, Ordering::Relaxed);
    for attacker in attackers {
        let _ = attacker.await;
    }
    let attack_seconds = attack_started.elapsed().as_secs_f64();
    report("under attack", &attacked);
    let db_growth_mb = db_bytes(&server).saturating_sub(db_before) as f64 / 1e6;

    let sum = |f: fn(&Tally) -> &AtomicU64| -> u64 {
        tallies.iter().map(|t| f(t).load(Ordering::Relaxed)).sum()
    };
    let total = sum(|t| &t.total);
    let limited = sum(|t| &t.limited);
    for (attack, tally) in ATTACKS.iter().zip(tallies.iter()) {
        println!(
            "  {attack:?}: {} calls, {} refused with 429",
            tally.total.load(Ordering::Relaxed),
            tally.limited.load(Ordering::Relaxed)
        );
    }
    println!(
        "attackers: {ATTACKERS} addresses × 5 kinds × {IN_FLIGHT} in flight for {attack_seconds:.0} s: {total} calls ({:.0}/s), {limited} refused with 429, {} server errors",
        total as f64 / attack_seconds,
        sum(|t| &t.server_errors)
    );
    assert!(attacked.charged > 0, "the honest session was not charged");
    let ratio = attacked.timings.p99() / alone.timings.p99();
    println!("BENCH abuse.honest_p99_ms_alone={:.1}", alone.timings.p99());
    println!(
        "BENCH abuse.honest_p99_ms_attacked={:.1}",
        attacked.timings.p99()
    );
    println!("BENCH abuse.honest_p99_ratio={ratio:.2}");
    println!(
        "BENCH abuse.attack_429_share={:.3}",
        limited as f64 / total.max(1) as f64
    );
    println!(
        "BENCH abuse.attack_calls_per_s={:.0}",
        total as f64 / attack_seconds
    );
    println!("BENCH abuse.db_growth_mb={db_growth_mb:.2}");
    println!("BENCH abuse.db_growth_mb_alone={db_growth_alone_mb:.2}");
}
