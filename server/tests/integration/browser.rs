//! Headless Chromium (Debian's, driven by playwright-core) against the
//! built-in media plane: it plays a publisher's stream over WHEP, and it
//! publishes its fake camera over WHIP for the server to decode.
//!
//! The browser and the driver come from `cargo xtask test` (apt's chromium,
//! npm's playwright-core in tools/npm): `LX_CHROMIUM` and
//! `LX_PLAYWRIGHT_CORE` name them, else the places xtask installs them to.

use std::path::PathBuf;
use std::time::Duration;

use lx_media::Codec;
use serde_json::Value;

use crate::media::{frame, publish, started_session};

pub(crate) fn root() -> PathBuf {
    crate::common::manifest_dir()
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub(crate) fn tool(var: &str, default: PathBuf, install: &str) -> PathBuf {
    let path = std::env::var_os(var).map_or(default, PathBuf::from);
    assert!(
        path.exists(),
        "{} is missing ({var}); {install}, or run `cargo xtask test`, which installs it",
        path.display()
    );
    path
}

/// Runs the page script; its last stdout line is the JSON result.
async fn chromium(args: &[&str]) -> Value {
    let chromium = tool(
        "LX_CHROMIUM",
        "/usr/bin/chromium".into(),
        "apt-get install chromium",
    );
    let playwright = tool(
        "LX_PLAYWRIGHT_CORE",
        root().join("tools/npm/node_modules/playwright-core"),
        "npm install in tools/npm",
    );
    let script = crate::common::manifest_dir().join("tests/browser/webrtc.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args(args)
        .env("LX_CHROMIUM", &chromium)
        .env("LX_PLAYWRIGHT_CORE", &playwright)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stdout.lines().last().unwrap_or("");
    let result: Value = serde_json::from_str(last).unwrap_or_else(|_| {
        panic!("no result from the page script.\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    assert!(result.get("error").is_none(), "{result}\nstderr:\n{stderr}");
    result
}

/// Where screenshots and camera clips of the browser tests are kept.
fn artifacts() -> PathBuf {
    let dir = root().join("target/test-artifacts/browser");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

async fn chromium_plays_over_whep(codec: Codec) {
    let live = started_session().await;
    let (_publisher, _) = publish(&live.whip, codec).await;
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;
    // From a page of another origin, as a third-party player would.
    let origin = live.t.base.trim_end_matches("/api/v1").to_owned();
    let shot = artifacts().join(format!("whep-{codec}.png"));
    let played = chromium(&[
        "play",
        "elsewhere",
        &live.whep,
        "30",
        shot.to_str().unwrap(),
    ])
    .await;
    let page = played["pageOrigin"].as_str().unwrap();
    assert!(
        page.starts_with("http://127.0.0.1:") && page != origin,
        "{page}"
    );
    assert!(
        played["framesDecoded"].as_u64().unwrap() >= 30,
        "{}",
        played["framesDecoded"]
    );
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(320), Some(240))
    );
    assert_eq!(
        played["codec"].as_str().map(str::to_ascii_lowercase),
        Some(format!("video/{codec}")),
        "{}",
        played["codec"]
    );
    use base64::Engine;
    let rgb = base64::engine::general_purpose::STANDARD
        .decode(played["rgb"].as_str().expect("the picture"))
        .expect("base64");
    lx_media::testpattern::smpte_bars_match(&rgb, 320, 240)
        .unwrap_or_else(|e| panic!("the picture Chromium shows ({codec}): {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_a_vp8_publisher_over_whep() {
    chromium_plays_over_whep(Codec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_an_h264_publisher_over_whep() {
    chromium_plays_over_whep(Codec::H264).await;
}

async fn chromium_publishes_over_whip(codec: Codec) {
    let live = started_session().await;
    let clip = artifacts().join("smpte-640x480.y4m");
    std::fs::write(&clip, lx_media::testpattern::smpte_bars_y4m(640, 480, 30)).expect("clip");
    // From a page of another origin: every WHIP request is cross-origin.
    let whip = live.whip.clone();
    let codec_name = codec.to_string();
    let clip_path = clip.to_str().unwrap().to_owned();
    let browser = tokio::spawn(async move {
        chromium(&["publish", "elsewhere", &whip, "8", &codec_name, &clip_path]).await
    });
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(20))
        .await;
    let resp = frame(&live).await;
    assert_eq!(resp.status().as_u16(), 200);
    let jpeg = resp.bytes().await.unwrap();
    std::fs::write(artifacts().join(format!("whip-{codec}-frame.jpg")), &jpeg).unwrap();
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("a JPEG")
        .to_rgb8();
    assert_eq!(image.dimensions(), (640, 480));
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 640, 480)
        .expect("the browser's camera clip, decoded by the server");
    let published = browser.await.unwrap();
    assert!(
        published["framesSent"].as_u64().unwrap() > 30,
        "{published}"
    );
    assert_eq!(
        published["codec"].as_str().map(str::to_ascii_lowercase),
        Some(format!("video/{codec}")),
        "{published}"
    );
    assert_eq!(
        published["deleted"], 200,
        "the browser's DELETE hangs up: {published}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_vp8_over_whip_and_the_server_decodes_its_camera() {
    chromium_publishes_over_whip(Codec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_publishes_h264_over_whip_and_the_server_decodes_its_camera() {
    chromium_publishes_over_whip(Codec::H264).await;
}
