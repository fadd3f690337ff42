//! The web console at `/console/`: what the server sends for it, the API
//! calls it makes with a wallet's `lx_session` cookie, and the whole thing
//! in headless Chromium (`tests/browser/console.mjs`): two wallets sign in
//! through an injected EIP-1193 wallet, the operator publishes its fake
//! camera from the session page over WHIP, the consumer watches it over WHEP
//! in its own session page and ends the session.
//!
//! The browser's wallet signs with the actors' real keys: `personal_sign`
//! in the page calls a function the script exposes from Node, which asks a
//! loopback signer this test runs (k256, `sign_personal`). The server
//! verifies those signatures like any other wallet's.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use k256::ecdsa::SigningKey;
use lx_protocol::wallet::{Address, sign_personal};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::browser::{root, tool};
use crate::common::{Auth, BOGOTA, TestApp};

fn artifacts() -> PathBuf {
    let dir = root().join("target/test-artifacts/console");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    dir
}

fn origin_of(t: &TestApp) -> String {
    t.base.trim_end_matches("/api/v1").to_owned()
}

/// A client that shows redirects instead of following them.
fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

// ------------------------------------------------------------- static files

#[tokio::test]
async fn the_console_is_served_with_its_types_no_cache_and_a_strict_csp() {
    let t = TestApp::spawn().await;
    let origin = origin_of(&t);
    let http = plain_client();

    let index = http.get(format!("{origin}/console/")).send().await.unwrap();
    assert_eq!(index.status().as_u16(), 200);
    let headers = index.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        &format!("connect-src 'self' {origin};"),
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = index.text().await.unwrap();
    assert!(
        html.contains(r#"<script type="module" src="app.js"></script>"#),
        "{html}"
    );

    for (file, kind) in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("pages.js", "text/javascript; charset=utf-8"),
        ("media.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let resp = http
            .get(format!("{origin}/console/{file}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{file}");
        assert_eq!(resp.headers()["content-type"], kind, "{file}");
        assert_eq!(resp.headers()["cache-control"], "no-cache", "{file}");
        assert!(resp.headers().contains_key("content-security-policy"));
    }

    let missing = http
        .get(format!("{origin}/console/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "NOT_FOUND", "{body}");
    let nested = http
        .get(format!("{origin}/console/a/app.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(nested.status().as_u16(), 404);

    for path in ["/", "/console"] {
        let resp = http.get(format!("{origin}{path}")).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 307, "{path}");
        assert_eq!(resp.headers()["location"], "/console/", "{path}");
    }
}

// ------------------------------------------------- the API with a cookie

#[tokio::test]
async fn a_wallet_cookie_lists_sessions_and_gets_the_media_urls_of_its_side() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("cookie-consumer").await;
    let supplier = t.supplier("cookie-supplier", BOGOTA, true).await;
    let as_consumer = || Auth::Cookie(consumer.cookie.clone());
    let as_supplier = || Auth::Cookie(supplier.cookie.clone());

    let me = t.get("/me", as_supplier()).await.ok();
    assert_eq!(me.data()["kind"], "WALLET");
    assert_eq!(me.data()["workspaceId"], supplier.workspace_id.to_string());

    let id = t.request(&consumer, BOGOTA, 60).await;
    t.post(format!("/sessions/{id}/dispatch"), as_consumer(), json!({}))
        .await
        .ok();
    for who in [as_consumer(), as_supplier()] {
        let list = t.get("/sessions?limit=100", who).await.ok();
        let ids: Vec<_> = list
            .data()
            .as_array()
            .unwrap()
            .iter()
            .map(|s| &s["id"])
            .collect();
        assert_eq!(ids, vec![&json!(id)]);
    }

    // Before start there are no media URLs yet; the console starts then.
    t.get(format!("/sessions/{id}/producer-token"), as_supplier())
        .await
        .expect(409, "INVALID_STATE");
    let started = t
        .post(format!("/sessions/{id}/start"), as_supplier(), json!({}))
        .await
        .ok();
    let producer = t
        .get(format!("/sessions/{id}/producer-token"), as_supplier())
        .await
        .ok();
    assert_eq!(producer.data()["whipUrl"], started.data()["whipUrl"]);
    t.get(format!("/sessions/{id}/producer-token"), as_consumer())
        .await
        .expect(403, "NOT_AUTHORIZED");
    let viewer = t
        .get(format!("/sessions/{id}/viewer-token"), as_consumer())
        .await
        .ok();
    assert_eq!(viewer.data()["whepUrl"], started.data()["whepUrl"]);

    t.media
        .first_frame(id.parse().unwrap(), t.clock_now())
        .await;
    t.wait_for_state(&consumer, &id, "LIVE").await;
    // Seen through the cookie: the scripted media plane keeps no pictures.
    t.get(format!("/sessions/{id}/frame"), as_consumer())
        .await
        .expect(404, "FRAME_NOT_AVAILABLE");
    t.get(
        format!("/workspaces/{}/operators", supplier.workspace_id),
        as_supplier(),
    )
    .await
    .ok();
    t.get(
        format!("/workspaces/{}/operators", supplier.workspace_id),
        as_consumer(),
    )
    .await
    .expect(404, "WORKSPACE_NOT_FOUND");
    let ended = t
        .post(format!("/sessions/{id}/end"), as_consumer(), json!({}))
        .await
        .ok();
    assert_eq!(ended.data()["state"], "ENDED");
    t.get(format!("/settlements/{id}"), as_consumer())
        .await
        .ok();
}

#[tokio::test]
async fn a_cookie_write_from_another_origin_is_refused() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("csrf-consumer").await;
    let id = t.request(&consumer, BOGOTA, 60).await;
    let origin = origin_of(&t);
    let http = plain_client();
    let cancel = |auth: &str, from: Option<&str>| {
        let mut req = http.delete(format!("{}/sessions/{id}", t.base));
        req = if auth == "cookie" {
            req.header("cookie", format!("lx_session={}", consumer.cookie))
        } else {
            req.bearer_auth(&consumer.api_key)
        };
        if let Some(from) = from {
            req = req.header("origin", from);
        }
        req.send()
    };
    // A page on another port of the same host: same-site, so the cookie goes.
    let forged = cancel("cookie", Some("http://127.0.0.1:1")).await.unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let body: Value = forged.json().await.unwrap();
    assert_eq!(body["code"], "NOT_AUTHORIZED", "{body}");
    assert_eq!(body["detail"], "auth:crossOrigin", "{body}");
    assert_eq!(t.session(&consumer, &id).await["state"], "REQUESTED");
    // Reads from anywhere, and API keys from anywhere, are not affected.
    let read = http
        .get(format!("{}/sessions/{id}", t.base))
        .header("cookie", format!("lx_session={}", consumer.cookie))
        .header("origin", "http://127.0.0.1:1")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
    let with_key = cancel("key", Some("http://127.0.0.1:1")).await.unwrap();
    assert_eq!(with_key.status().as_u16(), 200);
    // The console's own page, and a client that sends no Origin, write.
    let again = t.request(&consumer, BOGOTA, 60).await;
    let own = http
        .delete(format!("{}/sessions/{again}", t.base))
        .header("cookie", format!("lx_session={}", consumer.cookie))
        .header("origin", &origin)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    t.post(
        "/auth/logout",
        Auth::Cookie(consumer.cookie.clone()),
        json!({}),
    )
    .await
    .ok();
}

// ------------------------------------------------------------ the browser

/// Signs for the wallets it holds: `POST {address, message: 0x<hex>}` →
/// `{signature}`. The browser's injected wallet calls it through Node.
async fn spawn_signer(keys: &[&SigningKey]) -> String {
    let keys: HashMap<Address, SigningKey> = keys
        .iter()
        .map(|k| (Address::from_signing_key(k), (*k).clone()))
        .collect();
    async fn sign(
        State(keys): State<Arc<HashMap<Address, SigningKey>>>,
        Json(req): Json<Value>,
    ) -> Result<Json<Value>, (axum::http::StatusCode, String)> {
        let bad = |why: &str| (axum::http::StatusCode::BAD_REQUEST, why.to_owned());
        let address: Address = req["address"]
            .as_str()
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| bad("address"))?;
        let message = req["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("0x"))
            .and_then(|m| hex::decode(m).ok())
            .ok_or_else(|| bad("message: 0x-prefixed hex"))?;
        let key = keys
            .get(&address)
            .ok_or_else(|| bad("not a wallet of this signer"))?;
        Ok(Json(
            json!({"signature": sign_personal(key, &message).to_string()}),
        ))
    }
    let router = axum::Router::new()
        .route("/sign", axum::routing::post(sign))
        .with_state(Arc::new(keys));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/sign", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// The page script, running: progress lines on stdout, `continue` on stdin.
struct Script {
    child: tokio::process::Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: Vec<String>,
}

impl Script {
    /// `script`: a page script in `tests/browser/`.
    fn spawn(script: &str, config: &Value, stderr: &Path) -> Self {
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
        let script = crate::common::manifest_dir()
            .join("tests/browser")
            .join(script);
        let mut child = tokio::process::Command::new("node")
            .arg(&script)
            .arg(config.to_string())
            .env("LX_CHROMIUM", &chromium)
            .env("LX_PLAYWRIGHT_CORE", &playwright)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(stderr).expect("stderr log"))
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdout = child.stdout.take().expect("stdout");
        Self {
            child,
            lines: BufReader::new(stdout).lines(),
            seen: Vec::new(),
        }
    }

    /// The next JSON line; panics with everything seen on an `error` or EOF.
    async fn next(&mut self, within: Duration) -> Value {
        let line = tokio::time::timeout(within, self.lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the page script said nothing for {within:?}: {:?}",
                    self.seen
                )
            })
            .expect("read stdout");
        let Some(line) = line else {
            panic!(
                "the page script ended early (see console.stderr.log in target/test-artifacts/console/<codec>/): {:?}",
                self.seen
            );
        };
        self.seen.push(line.clone());
        let value: Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("not JSON from the page script: {line}"));
        assert!(
            value.get("error").is_none(),
            "the page script failed (stderr in target/test-artifacts/console/<codec>/console.stderr.log): {value}"
        );
        value
    }

    async fn phase(&mut self, name: &str, within: Duration) -> Value {
        let value = self.next(within).await;
        assert_eq!(value["phase"], name, "{value}");
        value
    }

    async fn resume(&mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"continue\n").await.expect("write stdin");
        stdin.flush().await.expect("flush stdin");
    }
}

async fn the_console_publishes_and_plays(codec: &str) {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("console-consumer").await;
    let supplier = t.supplier("console-fleet", BOGOTA, true).await;
    // A second workspace of the same wallet: the console asks which one.
    t.create_workspace(&supplier.key, "console-fleet-buyer", &["CONSUMER"])
        .await;
    let drone = t.enroll(&supplier, "drone-1").await;
    // 300 m north-east of the coverage centre, so the plot's dot is off it.
    let at = (BOGOTA.0 + 0.0019, BOGOTA.1 + 0.0019);
    let fix = drone.sample(None, t.clock_now(), at, 4.0);
    t.post("/operators/heartbeat", drone.auth(), json!({"sample": fix}))
        .await
        .ok();
    // A 500 m geofence: the drone's proven position is inside it, so its
    // seconds are clean.
    let created = t
        .post(
            "/sessions",
            consumer.auth(),
            json!({"lat": BOGOTA.0, "lng": BOGOTA.1, "maxDurationSeconds": 600, "geofenceRadiusMeters": 500}),
        )
        .await
        .expect(201, "");
    let id = created.data()["id"].as_str().unwrap().to_owned();
    let dispatched = t
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(dispatched.data()["state"], "ASSIGNED");
    assert_eq!(
        dispatched.data()["operatorId"],
        drone.operator_id.to_string()
    );

    // The drone keeps heartbeating and proves its position every second, as
    // an agent does, so the devices page shows it connected and the meter
    // counts clean seconds once the session is LIVE.
    let telemetry = {
        let api = t.api.clone();
        let drone = drone.clone();
        let sid = id.parse().unwrap();
        let clock = Arc::clone(&t.app);
        tokio::spawn(async move {
            loop {
                let now = clock.now();
                let fix = drone.sample(None, now, at, 4.0);
                api.post("/operators/heartbeat", drone.auth(), json!({"sample": fix}))
                    .await;
                let sample = drone.sample(Some(sid), now + 1, at, 4.0);
                api.post(format!("/sessions/{sid}/telemetry"), drone.auth(), sample)
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let shots = artifacts().join(codec);
    std::fs::create_dir_all(&shots).unwrap();
    let clip = shots.join("smpte-640x480.y4m");
    std::fs::write(&clip, lx_media::testpattern::smpte_bars_y4m(640, 480, 30)).expect("clip");
    let signer = spawn_signer(&[&supplier.key, &consumer.key]).await;
    let mut script = Script::spawn(
        "console.mjs",
        &json!({
            "origin": origin_of(&t),
            "sessionId": id,
            "signer": signer,
            "operator": {"address": supplier.wallet.to_checksum(), "workspace": "console-fleet"},
            "consumer": {"address": consumer.wallet.to_checksum()},
            "codec": codec,
            "camera": clip,
            "shots": shots,
        }),
        &shots.join("console.stderr.log"),
    );
    let began = std::time::Instant::now();

    // The operator signed in, chose its workspace, opened the session from
    // the list and pressed Publish: the server decodes the browser's camera.
    let published = script.phase("publishing", Duration::from_secs(90)).await;
    assert_eq!(
        published["listed"], true,
        "the session list showed the session: {published}"
    );
    let publishing_after = began.elapsed();
    t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(30))
        .await;
    let live_after = began.elapsed();
    let frame = t.get_frame(&consumer.api_key, &id).await;
    std::fs::write(shots.join("frame.jpg"), &frame).unwrap();
    let image = image::load_from_memory_with_format(&frame, image::ImageFormat::Jpeg)
        .expect("a JPEG")
        .to_rgb8();
    assert_eq!(image.dimensions(), (640, 480));
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 640, 480)
        .expect("the operator's camera, published from the console and decoded by the server");

    // The consumer signed in and its session page plays the stream.
    let played = script.phase("played", Duration::from_secs(90)).await;
    assert!(
        played["framesDecoded"].as_u64().unwrap() > 30,
        "{}",
        played["framesDecoded"]
    );
    assert_eq!(
        (played["width"].as_u64(), played["height"].as_u64()),
        (Some(640), Some(480)),
        "{}",
        played["framesDecoded"]
    );
    let wanted_codec = if codec == "h264" {
        "video/h264"
    } else {
        "video/vp8"
    };
    assert_eq!(
        played["codec"]
            .as_str()
            .map(str::to_ascii_lowercase)
            .as_deref(),
        Some(wanted_codec)
    );
    use base64::Engine;
    let rgb = base64::engine::general_purpose::STANDARD
        .decode(played["rgb"].as_str().expect("the picture"))
        .expect("base64");
    lx_media::testpattern::smpte_bars_match(&rgb, 640, 480)
        .unwrap_or_else(|e| panic!("the picture the consumer's console shows: {e}"));
    assert_eq!(
        played["frameShown"], true,
        "the page shows /frame: {}",
        played["frameShown"]
    );

    let devices = script.phase("devices", Duration::from_secs(30)).await;
    assert_eq!(devices["device"], "drone-1", "{devices}");
    assert_eq!(devices["connected"], "true", "{devices}");
    assert_eq!(devices["coverageRadiusMeters"], "2000", "{devices}");
    let (east, north) = (
        devices["dotOffset"][0].as_f64().unwrap(),
        devices["dotOffset"][1].as_f64().unwrap(),
    );
    assert!(
        east > 0.0 && north > 0.0,
        "the dot is north-east of the centre on screen: {devices}"
    );

    // The frame is checked; now the consumer ends the session in its page.
    script.resume().await;
    let ended = script.phase("ended", Duration::from_secs(60)).await;
    assert_eq!(ended["deleted"], "200", "the publisher hung up: {ended}");
    let session = t.session(&consumer, &id).await;
    assert_eq!(session["state"], "ENDED");
    assert!(
        session["meter"]["cleanSeconds"].as_u64().unwrap() > 0,
        "{session}"
    );
    assert!(ended["settlementState"].is_string(), "{ended}");
    let done = script.phase("done", Duration::from_secs(30)).await;
    assert_eq!(
        done["pageErrors"],
        json!([]),
        "no script errors or CSP violations in the pages"
    );
    eprintln!(
        "console {codec}: publishing {publishing_after:?} and LIVE {live_after:?} after the browser started; \
         the consumer's page decoded {} frames at {}x{}; {} clean seconds; settlement {}",
        played["framesDecoded"],
        played["width"],
        played["height"],
        session["meter"]["cleanSeconds"],
        ended["settlementState"]
    );
    telemetry.abort();
    let status = script.child.wait().await.expect("node exits");
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_publishes_vp8_from_the_operator_page_and_plays_it_to_the_consumer() {
    the_console_publishes_and_plays("vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_publishes_h264_from_the_operator_page_and_plays_it_to_the_consumer() {
    the_console_publishes_and_plays("h264").await;
}

/// A workspace without devices (trust tier 0) publishing from the console:
/// the page sends the browser's position as location heartbeats while it
/// publishes, and those are what its seconds are paid on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_publisher_of_a_workspace_without_devices_is_paid_on_its_browsers_position() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("phone-consumer").await;
    let supplier = t.supplier("console-phone", BOGOTA, true).await;
    t.create_workspace(&supplier.key, "console-phone-buyer", &["CONSUMER"])
        .await;
    let id = t.request(&consumer, BOGOTA, 600).await;
    let dispatched = t
        .post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
    assert_eq!(dispatched.data()["trustTier"], 0);
    assert!(dispatched.data()["operatorId"].is_null());

    let shots = artifacts().join("tier0");
    std::fs::create_dir_all(&shots).unwrap();
    let clip = shots.join("smpte-640x480.y4m");
    std::fs::write(&clip, lx_media::testpattern::smpte_bars_y4m(640, 480, 30)).expect("clip");
    let signer = spawn_signer(&[&supplier.key, &consumer.key]).await;
    let mut script = Script::spawn(
        "console.mjs",
        &json!({
            "origin": origin_of(&t),
            "sessionId": id,
            "signer": signer,
            "operator": {"address": supplier.wallet.to_checksum(), "workspace": "console-phone"},
            "consumer": {"address": consumer.wallet.to_checksum()},
            "codec": "vp8",
            "camera": clip,
            "shots": shots,
            "geolocation": {"latitude": BOGOTA.0, "longitude": BOGOTA.1, "accuracy": 8},
            "devices": false,
        }),
        &shots.join("console.stderr.log"),
    );
    let published = script.phase("publishing", Duration::from_secs(90)).await;
    assert_eq!(published["location"], "sent", "{published}");
    t.wait_for_state_within(&consumer, &id, "LIVE", Duration::from_secs(30))
        .await;
    script.phase("played", Duration::from_secs(90)).await;
    script.phase("devices", Duration::from_secs(30)).await;
    // A few more heartbeats (every 5 s) while LIVE.
    tokio::time::sleep(Duration::from_secs(6)).await;
    script.resume().await;
    script.phase("ended", Duration::from_secs(60)).await;
    let session = t.session(&consumer, &id).await;
    assert_eq!(session["state"], "ENDED");
    assert_eq!(session["trustTier"], 0);
    assert!(
        session["meter"]["cleanSeconds"].as_u64().unwrap() > 0,
        "paid on the browser's position: {session}"
    );
    assert!(
        !session["windows"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["reason"] == "OUTSIDE_GEOFENCE"),
        "{session}"
    );
    let done = script.phase("done", Duration::from_secs(30)).await;
    assert_eq!(done["pageErrors"], json!([]), "{done}");
    let status = script.child.wait().await.expect("node exits");
    assert!(status.success(), "{status}");
}

impl crate::common::Api {
    /// `GET /sessions/{id}/frame` with an API key; the JPEG.
    async fn get_frame(&self, key: &str, id: &str) -> Vec<u8> {
        let resp = self
            .http
            .request(Method::GET, format!("{}/sessions/{id}/frame", self.base))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET frame");
        assert_eq!(resp.status().as_u16(), 200, "GET /frame");
        assert_eq!(resp.headers()["content-type"], "image/jpeg");
        resp.bytes().await.expect("body").to_vec()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_mints_and_revokes_keys_requests_at_a_picked_point_meters_live_and_cancels_assignments()
 {
    // Revoked means refused at once here (the grace a rotating agent gets
    // is tested on its own).
    // The real media plane: the consumer's page plays what a GStreamer
    // publisher sends.
    let t = TestApp::spawn_with_media(|c| c.auth.revoke_grace_seconds = 0).await;
    let consumer = t.consumer("console-buyer").await;
    let supplier = t.supplier("console-seller", BOGOTA, true).await;
    let signer = spawn_signer(&[&consumer.key, &supplier.key]).await;
    let shots = artifacts().join("actions");
    std::fs::create_dir_all(&shots).expect("shots dir");
    let config = json!({
        "origin": origin_of(&t),
        "signer": signer,
        "shots": shots,
        "consumer": {"address": consumer.wallet.to_checksum()},
        "supplier": {"address": supplier.wallet.to_checksum()},
    });
    let mut script = Script::spawn(
        "console_actions.mjs",
        &config,
        &shots.join("console.stderr.log"),
    );
    let long = Duration::from_secs(90);

    // The key the page minted works, with the scopes it was given...
    let minted = script.phase("minted", long).await;
    let secret = minted["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("lxxn_"), "{minted}");
    t.get("/sessions", Auth::Key(secret.clone())).await.ok();
    t.get("/wallet", Auth::Key(secret.clone()))
        .await
        .expect(403, "NOT_AUTHORIZED");
    script.resume().await;
    // ...until the page revokes it.
    script.phase("revoked", long).await;
    t.get("/sessions", Auth::Key(secret))
        .await
        .expect(401, "REVOKED_API_KEY");
    script.resume().await;

    // The session is where the consumer clicked, inside the circle shown.
    let requested = script.phase("requested", long).await;
    let id = requested["sessionId"].as_str().unwrap().to_owned();
    let session = t.session(&consumer, &id).await;
    assert_eq!(session["state"], "ASSIGNED", "{session}");
    assert_eq!(
        session["operatorWorkspaceId"],
        supplier.workspace_id.to_string()
    );
    let picked = (
        requested["picked"]["lat"].as_f64().unwrap(),
        requested["picked"]["lng"].as_f64().unwrap(),
    );
    assert_eq!(
        (
            session["lat"].as_f64().unwrap(),
            session["lng"].as_f64().unwrap()
        ),
        picked
    );
    let from_centre =
        lx_protocol::geo::Point::new(picked.0, picked.1).distance_m(lx_protocol::geo::Point::new(
            requested["covered"]["lat"].as_f64().unwrap(),
            requested["covered"]["lng"].as_f64().unwrap(),
        ));
    assert!(
        (50.0..1000.0).contains(&from_centre),
        "picked {from_centre:.0} m from the circle's centre, where the click was: {requested}"
    );
    // The supplier publishes there and says where it is every second.
    let started = t
        .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
        .await
        .ok();
    let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
    let (publisher, _) = crate::media::publish(&whip, lx_media::Codec::Vp8).await;
    let heartbeats = t.heartbeat_every_second(&supplier, picked);
    script.resume().await;

    // The page shows the meter as it runs, and it is the server's.
    let metering = script.phase("metering", long).await;
    assert!(
        metering["cleanText"].as_str().unwrap().ends_with("so far"),
        "{metering}"
    );
    assert!(
        metering["chargeText"]
            .as_str()
            .unwrap()
            .contains("(running)"),
        "{metering}"
    );
    let now = t.session(&consumer, &id).await;
    let clean = now["meter"]["cleanSeconds"].as_u64().unwrap();
    assert!(
        clean >= metering["clean"].as_u64().unwrap(),
        "the server's {clean} clean seconds, the page's {metering}"
    );
    drop(heartbeats);
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    drop(publisher);
    // Something for the supplier to cancel: a new assignment.
    let waiting = t.request(&consumer, BOGOTA, 60).await;
    t.post(
        format!("/sessions/{waiting}/dispatch"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    assert_eq!(t.session(&consumer, &waiting).await["state"], "ASSIGNED");
    script.resume().await;

    let cancelled = script.phase("cancelled", long).await;
    assert_eq!(cancelled["count"], 1, "{cancelled}");
    assert_eq!(t.session(&consumer, &waiting).await["state"], "CANCELLED");
    let done = script.phase("done", long).await;
    assert_eq!(done["pageErrors"], json!([]), "{done}");
}
