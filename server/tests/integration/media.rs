//! The built-in media plane end to end over loopback: real GStreamer
//! publishers POST to the session's WHIP URL, the server decodes, turns the
//! session LIVE, serves `/frame`, relays to WHEP viewers and meters media gaps.

use std::time::{Duration, Instant};

use lx_media::publish::{Publisher, PublisherConfig, VideoSource};
use lx_media::receive::{EncodedFrame, FrameSink, Receiver, ReceiverConfig};
use lx_media::{Codec, IceConfig};
use lx_protocol::time::parse_millis;
use serde_json::{Value, json};

use crate::common::{Actor, BOGOTA, TestApp};

pub(crate) fn loopback() -> IceConfig {
    IceConfig {
        local_addresses: vec!["127.0.0.1".into()],
        ..IceConfig::default()
    }
}

pub(crate) fn camera(codec: Codec) -> PublisherConfig {
    PublisherConfig {
        source: VideoSource::TestPattern {
            pattern: "smpte".into(),
        },
        codec,
        width: 320,
        height: 240,
        fps: 30,
        bitrate_kbps: 600,
        keyframe_interval_frames: 30,
        ice: loopback(),
        ..PublisherConfig::default()
    }
}

pub(crate) struct Live {
    pub(crate) t: TestApp,
    pub(crate) consumer: Actor,
    pub(crate) supplier: Actor,
    pub(crate) id: String,
    pub(crate) whip: String,
    pub(crate) whep: String,
}

/// A session dispatched and started on a server with the real media plane.
pub(crate) async fn started_session() -> Live {
    started_session_with(|_| {}).await
}

/// [`started_session`] on a server with a tweaked configuration.
pub(crate) async fn started_session_with(
    tweak: impl FnOnce(&mut lx_server::config::Config),
) -> Live {
    let t = TestApp::spawn_with_media(tweak).await;
    let consumer = t.consumer("media-consumer").await;
    let supplier = t.supplier("media-supplier", BOGOTA, true).await;
    let id = t.request(&consumer, BOGOTA, 600).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let started = t
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let whip = started.data()["whipUrl"]
        .as_str()
        .expect("whipUrl")
        .to_owned();
    let whep = started.data()["whepUrl"]
        .as_str()
        .expect("whepUrl")
        .to_owned();
    Live {
        t,
        consumer,
        supplier,
        id,
        whip,
        whep,
    }
}

/// POSTs an offer; returns (status, Location, body).
pub(crate) async fn post_sdp(url: &str, sdp: &str) -> (u16, Option<String>, String) {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/sdp")
        .body(sdp.to_owned())
        .send()
        .await
        .expect("POST reaches the server");
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, location, resp.text().await.unwrap_or_default())
}

/// Starts a publisher and connects it to the WHIP URL.
pub(crate) async fn publish(whip: &str, codec: Codec) -> (Publisher, String) {
    let publisher = Publisher::start(&camera(codec)).expect("publisher");
    let offer = publisher.offer().await.expect("offer");
    let (status, location, answer) = post_sdp(whip, &offer).await;
    assert_eq!(status, 201, "WHIP POST: {answer}");
    let location = location.expect("201 carries Location");
    assert!(location.starts_with("/media/whip/"), "{location}");
    publisher
        .accept_answer(&answer)
        .await
        .expect("answer applies");
    (publisher, location)
}

pub(crate) fn origin(url: &str) -> String {
    let parsed = reqwest::Url::parse(url).expect("url");
    parsed.origin().ascii_serialization()
}

pub(crate) async fn frame(live: &Live) -> reqwest::Response {
    reqwest::Client::new()
        .get(format!("{}/sessions/{}/frame", live.t.base, live.id))
        .bearer_auth(&live.consumer.api_key)
        .send()
        .await
        .expect("GET frame")
}

pub(crate) fn windows(session: &Value, reason: &str) -> Vec<(i64, Option<i64>)> {
    session["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w["reason"] == reason)
        .map(|w| {
            (
                parse_millis(w["openedAt"].as_str().expect("openedAt")).expect("time"),
                w["closedAt"]
                    .as_str()
                    .map(|t| parse_millis(t).expect("time")),
            )
        })
        .collect()
}

async fn goes_live_and_frame_shows_the_test_pattern(codec: Codec) {
    let live = started_session().await;
    let before = frame(&live).await;
    assert_eq!(before.status().as_u16(), 404);
    let body: Value = before.json().await.expect("envelope");
    assert_eq!(body["code"], "FRAME_NOT_AVAILABLE");
    assert_eq!(
        live.t.session(&live.consumer, &live.id).await["state"],
        "ASSIGNED"
    );

    let posted = Instant::now();
    let (publisher, _) = publish(&live.whip, codec).await;
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;
    let to_live = posted.elapsed();
    let session = live.t.session(&live.consumer, &live.id).await;
    assert!(
        session["startedAt"].is_string(),
        "startedAt stamped at the first frame: {session}"
    );

    let resp = frame(&live).await;
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert!(resp.headers().contains_key("x-lx-frame-decoded-at"));
    let jpeg = resp.bytes().await.expect("body");
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("a JPEG")
        .to_rgb8();
    assert_eq!(image.dimensions(), (320, 240));
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 320, 240)
        .expect("the test pattern's colours");
    eprintln!("{codec}: POST → LIVE in {to_live:?}");
    drop(publisher);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_publisher_turns_the_session_live_on_the_first_decoded_frame() {
    goes_live_and_frame_shows_the_test_pattern(Codec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_publisher_turns_the_session_live_on_the_first_decoded_frame() {
    goes_live_and_frame_shows_the_test_pattern(Codec::H264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whip_refuses_bad_offers_and_closed_sessions_by_name() {
    let live = started_session().await;
    let (status, _, body) = post_sdp(&live.whip, "v=0\r\nnonsense").await;
    assert_eq!(status, 400, "{body}");
    let vp9_only = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n";
    let (status, _, body) = post_sdp(&live.whip, vp9_only).await;
    assert_eq!(status, 400);
    assert!(body.contains("VP9"), "names what was offered: {body}");
    let wrong_type = reqwest::Client::new()
        .post(&live.whip)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status().as_u16(), 400);
    let forged = format!("{}0", &live.whip[..live.whip.len() - 1]);
    let forged = if forged == live.whip {
        format!("{}1", &live.whip[..live.whip.len() - 1])
    } else {
        forged
    };
    let (status, _, body) = post_sdp(&forged, "v=0\r\n").await;
    assert_eq!(status, 404, "{body}");
    // A viewer before any publisher is told to come back.
    let resp = reqwest::Client::new()
        .post(&live.whep)
        .header("content-type", "application/sdp")
        .body(vp9_only)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert_eq!(resp.headers()["retry-after"], "1");
    // After the end the URLs are closed.
    live.t
        .post(
            format!("/sessions/{}/end", live.id),
            live.supplier.auth(),
            json!({}),
        )
        .await
        .ok();
    let (status, _, body) = post_sdp(&live.whip, "v=0\r\n").await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("media:closed:CANCELLED"), "{body}");
}

/// Counts frames a WHEP subscriber receives.
#[derive(Default)]
pub(crate) struct Count(std::sync::atomic::AtomicUsize);

impl FrameSink for Count {
    fn on_frame(&self, _: EncodedFrame) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn on_failure(&self, _: String) {}
}

impl Count {
    pub(crate) fn get(&self) -> usize {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

pub(crate) async fn subscribe(whep: &str) -> (Receiver, std::sync::Arc<Count>, String) {
    let count = std::sync::Arc::new(Count::default());
    let config = ReceiverConfig {
        ice: loopback(),
        ..ReceiverConfig::default()
    };
    let (mut receiver, offer) = Receiver::offer(&config, count.clone())
        .await
        .expect("offer");
    let (status, location, answer) = post_sdp(whep, &offer).await;
    assert_eq!(status, 201, "WHEP POST: {answer}");
    receiver.accept_answer(&answer).await.expect("answer");
    (receiver, count, location.expect("Location"))
}

pub(crate) async fn grows(count: &Count, by: usize, limit: Duration) -> bool {
    let start = count.get();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if count.get() >= start + by {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_that_negotiates_badly_or_vanishes_stops_neither_the_ingest_nor_other_viewers() {
    let live = started_session().await;
    let (_publisher, _) = publish(&live.whip, Codec::Vp8).await;
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;

    let (_a, seen_a, _) = subscribe(&live.whep).await;
    assert!(
        grows(&seen_a, 30, Duration::from_secs(10)).await,
        "viewer A plays"
    );

    // Garbage, and an offer with a codec the stream is not in.
    let (status, _, _) = post_sdp(&live.whep, "garbage").await;
    assert_eq!(status, 400);
    let config = ReceiverConfig {
        ice: loopback(),
        codecs: vec![Codec::H264],
        ..ReceiverConfig::default()
    };
    let (_h264_only, offer) = Receiver::offer(&config, std::sync::Arc::new(Count::default()))
        .await
        .unwrap();
    let (status, _, body) = post_sdp(&live.whep, &offer).await;
    assert_eq!(status, 400, "{body}");

    // B negotiates, then vanishes without a DELETE.
    let (b, seen_b, _) = subscribe(&live.whep).await;
    assert!(
        grows(&seen_b, 10, Duration::from_secs(10)).await,
        "viewer B plays"
    );
    drop(b);
    // C hangs up properly.
    let (c, _, c_resource) = subscribe(&live.whep).await;
    let deleted = reqwest::Client::new()
        .delete(format!("{}{}", origin(&live.whep), c_resource))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status().as_u16(), 200);
    drop(c);

    assert!(
        grows(&seen_a, 60, Duration::from_secs(10)).await,
        "viewer A keeps playing"
    );
    let before = frame(&live).await.headers()["x-lx-frame-decoded-at"]
        .to_str()
        .unwrap()
        .to_owned();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = frame(&live).await.headers()["x-lx-frame-decoded-at"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(before, after, "the ingest still decodes fresh frames");
    assert_eq!(
        live.t.session(&live.consumer, &live.id).await["windows"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_publisher_opens_a_network_error_window_that_the_meter_skips_exactly() {
    let live = started_session().await;
    // A workspace without devices proves its place with location heartbeats.
    let _heartbeats = live.t.heartbeat_every_second(&live.supplier, BOGOTA);
    let (first, _) = publish(&live.whip, Codec::Vp8).await;
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Killed: no DELETE, the media just stops.
    let killed_ms = lx_server::clock::wall_now_ms();
    let killed = Instant::now();
    drop(first);
    let mut opened = None;
    while killed.elapsed() < Duration::from_secs(6) {
        let session = live.t.session(&live.consumer, &live.id).await;
        if let Some(&w) = windows(&session, "NETWORK_ERROR").first() {
            opened = Some((w, killed.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ((opened_ms, closed), seen_after) = opened.expect("a NETWORK_ERROR window opens");
    assert!(
        seen_after < Duration::from_secs(3),
        "opened {seen_after:?} after the kill"
    );
    assert!(closed.is_none());
    assert!(
        (opened_ms - killed_ms).abs() <= 1000,
        "the window starts at the last media: {opened_ms} vs {killed_ms}"
    );

    // The device comes back and POSTs to the same URL.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (_second, _) = publish(&live.whip, Codec::Vp8).await;
    let resumed_ms = lx_server::clock::wall_now_ms();
    let mut closed_ms = None;
    for _ in 0..200 {
        let session = live.t.session(&live.consumer, &live.id).await;
        if let Some((_, Some(c))) = windows(&session, "NETWORK_ERROR").first() {
            closed_ms = Some(*c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let closed_ms = closed_ms.expect("the window closes when media resumes");
    assert!(
        closed_ms >= resumed_ms - 100 && closed_ms - resumed_ms < 3000,
        "closed {closed_ms}, resumed {resumed_ms}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let ended = live
        .t
        .post(
            format!("/sessions/{}/end", live.id),
            live.consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    let session = ended.data();
    let started = parse_millis(session["startedAt"].as_str().unwrap()).unwrap();
    let end = parse_millis(session["endedAt"].as_str().unwrap()).unwrap();
    let meter = &session["meter"];
    let total = (end - started) / 1000;
    let failed = meter["failedSeconds"].as_i64().unwrap();
    let clean = meter["cleanSeconds"].as_i64().unwrap();
    let gap_s = (closed_ms - opened_ms) as f64 / 1000.0;
    assert_eq!(clean + failed, total);
    assert!(
        (failed as f64 - gap_s).abs() <= 1.0 + 1e-9,
        "failed {failed} s for a gap of {gap_s} s"
    );
    let rate = session["ratePerSecondMicroUsdc"].as_i64().unwrap();
    assert_eq!(meter["chargedMicroUsdc"].as_i64().unwrap(), clean * rate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_external_backend_provisions_on_an_edge_and_grabs_its_frames_over_whep() {
    // The edge: a built-in media plane taking live inputs with a token.
    let edge = TestApp::spawn_with_media(|c| c.media.edge_api_token = "edge-secret".into()).await;
    let edge_origin = edge.base.trim_end_matches("/api/v1").to_owned();
    let refused = reqwest::Client::new()
        .post(format!("{edge_origin}/media/live_inputs"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 401);

    let t = TestApp::spawn_with_external_media(|c| {
        c.media.external.api_url = format!("{edge_origin}/media");
        c.media.external.api_token = "edge-secret".into();
    })
    .await;
    let consumer = t.consumer("ext-consumer").await;
    let supplier = t.supplier("ext-supplier", BOGOTA, true).await;
    let id = t.request(&consumer, BOGOTA, 600).await;
    t.post(
        format!("/sessions/{id}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    let started = t
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
    assert!(
        whip.starts_with(&format!("{edge_origin}/media/whip/")),
        "{whip}"
    );
    assert!(
        started.data()["whepUrl"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{edge_origin}/media/whep/"))
    );

    // The device publishes to the edge; this server sees the frames.
    let (publisher, _) = publish(&whip, Codec::H264).await;
    t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(15))
        .await;
    let resp = reqwest::Client::new()
        .get(format!("{}/sessions/{id}/frame", t.base))
        .bearer_auth(&consumer.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let image =
        image::load_from_memory_with_format(&resp.bytes().await.unwrap(), image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 320, 240).expect("the edge's pictures");

    // Media stops at the edge: the window opens here too.
    drop(publisher);
    let mut opened = false;
    for _ in 0..80 {
        if !windows(&t.session(&consumer, &id).await, "NETWORK_ERROR").is_empty() {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        opened,
        "a NETWORK_ERROR window opens when the edge has no media"
    );

    // The end deletes the live input: its URLs close at the edge.
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    let (status, _, _) = post_sdp(&whip, "v=0\r\n").await;
    assert_eq!(status, 404, "the edge forgot the live input");
}
