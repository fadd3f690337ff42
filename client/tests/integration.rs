//! The `lx` binary against a real server on loopback with the real media
//! plane: a GStreamer publisher on the supplier's side, and on the
//! consumer's side the official MCP inspector's CLI (an MCP client that is
//! not ours) over stdio (`lx mcp`) and over streamable HTTP (`/mcp`), and
//! the `lx` command line itself.

// Tests fail by panicking, helpers included.
#![allow(clippy::unwrap_used)]

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use common::{Actor, BOGOTA, TestApp};
use lx_media::Codec;
use lx_media::publish::{Publisher, PublisherConfig, VideoSource};
use serde_json::{Value, json};

const TOOLS: [&str; 13] = [
    "cancel_session",
    "end_session",
    "get_coverage",
    "get_frame",
    "get_pricing_quote",
    "get_session",
    "get_settlement",
    "get_stream_url",
    "get_wallet",
    "list_sessions",
    "request_live_view",
    "verify_session",
    "wait_for_live",
];

fn root() -> PathBuf {
    common::manifest_dir()
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn inspector() -> PathBuf {
    let package = std::env::var_os("LX_MCP_INSPECTOR").map_or_else(
        || root().join("tools/npm/node_modules/@modelcontextprotocol/inspector"),
        PathBuf::from,
    );
    let cli = package.join("clients/launcher/build/index.js");
    assert!(
        cli.exists(),
        "the MCP inspector is missing ({}); `cargo xtask test` installs it into tools/npm",
        cli.display()
    );
    cli
}

/// Runs the inspector's CLI; returns its first JSON value (the method's
/// result) and whether it exited successfully.
async fn inspect(target: &[&str], args: &[&str], env: &[(&str, &str)]) -> (Value, bool) {
    let out = tokio::process::Command::new("node")
        .arg(inspector())
        .arg("--cli")
        .args(target)
        .args(args)
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs the inspector");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let first = serde_json::Deserializer::from_str(&stdout)
        .into_iter::<Value>()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            panic!(
                "the inspector printed no JSON.\nstdout:\n{stdout}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (first, out.status.success())
}

/// The JSON a tool answered with (its first text content).
fn tool_json(result: &Value) -> Value {
    let text = result["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text content: {result}"));
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn camera() -> PublisherConfig {
    PublisherConfig {
        source: VideoSource::TestPattern {
            pattern: "smpte".into(),
        },
        codec: Codec::Vp8,
        width: 320,
        height: 240,
        fps: 30,
        bitrate_kbps: 600,
        keyframe_interval_frames: 30,
        ice: lx_media::IceConfig {
            local_addresses: vec!["127.0.0.1".into()],
            ..lx_media::IceConfig::default()
        },
        ..PublisherConfig::default()
    }
}

/// The supplier's side: starts each session assigned to it and publishes
/// a camera (SMPTE bars) to its WHIP URL, for as long as the task lives.
fn supply(t: &TestApp, supplier: &Actor) -> tokio::task::JoinHandle<()> {
    let api = t.api.clone();
    let supplier = supplier.clone();
    tokio::spawn(async move {
        let mut publishers = Vec::new();
        let mut served = std::collections::HashSet::new();
        loop {
            let assigned = api
                .get("/sessions?state=ASSIGNED&side=OPERATOR", supplier.auth())
                .await
                .ok();
            for session in assigned.data().as_array().cloned().unwrap_or_default() {
                let id = session["id"].as_str().unwrap().to_owned();
                if !served.insert(id.clone()) {
                    continue;
                }
                let started = api
                    .post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
                    .await
                    .ok();
                let whip = started.data()["whipUrl"].as_str().unwrap().to_owned();
                let publisher = Publisher::start(&camera()).expect("publisher");
                let offer = publisher.offer().await.expect("offer");
                let answer = reqwest::Client::new()
                    .post(&whip)
                    .header("content-type", "application/sdp")
                    .body(offer)
                    .send()
                    .await
                    .expect("WHIP POST");
                assert_eq!(answer.status().as_u16(), 201);
                let sdp = answer.text().await.unwrap();
                publisher.accept_answer(&sdp).await.expect("answer");
                publishers.push(publisher);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

fn assert_smpte_jpeg(jpeg: &[u8]) {
    let image = image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .expect("a JPEG")
        .to_rgb8();
    assert_eq!(image.dimensions(), (320, 240));
    lx_media::testpattern::smpte_bars_match(image.as_raw(), 320, 240)
        .expect("the publisher's SMPTE bars, decoded by the server");
}

/// Lists the tools, requests a live view, gets its frame as an image and
/// ends it, all through the inspector over `transport`.
async fn live_view_through_inspector(
    t: &TestApp,
    consumer: &Actor,
    target_for: impl Fn(&str) -> Vec<String>,
) {
    let owned = target_for(&consumer.api_key);
    let target: Vec<&str> = owned.iter().map(String::as_str).collect();
    let target = target.as_slice();
    let env: &[(&str, &str)] = &[];
    let (listed, ok) = inspect(target, &["--method", "tools/list"], env).await;
    assert!(ok, "{listed}");
    let mut names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, TOOLS);
    let request = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "request_live_view")
        .unwrap();
    let required: Vec<&str> = request["inputSchema"]["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["lat", "lng", "durationSeconds"]);

    let (lat, lng) = (BOGOTA.0.to_string(), BOGOTA.1.to_string());
    let (viewed, ok) = inspect(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "request_live_view",
            "--tool-arg",
            &format!("lat={lat}"),
            &format!("lng={lng}"),
            "durationSeconds=120",
            "waitSeconds=40",
        ],
        env,
    )
    .await;
    assert!(ok && viewed["isError"] != true, "{viewed}");
    let view = tool_json(&viewed);
    assert_eq!(view["state"], "LIVE", "{view}");
    assert!(
        view["whepUrl"].as_str().unwrap().contains("/media/whep/"),
        "{view}"
    );
    let id = view["sessionId"].as_str().unwrap().to_owned();

    let (framed, ok) = inspect(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get_frame",
            "--tool-arg",
            &format!("sessionId={id}"),
        ],
        env,
    )
    .await;
    assert!(ok, "{framed}");
    let image = &framed["content"][0];
    assert_eq!(image["type"], "image", "{framed}");
    assert_eq!(image["mimeType"], "image/jpeg");
    let jpeg = base64::engine::general_purpose::STANDARD
        .decode(image["data"].as_str().unwrap())
        .unwrap();
    assert_smpte_jpeg(&jpeg);

    let (ended, ok) = inspect(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "end_session",
            "--tool-arg",
            &format!("sessionId={id}"),
        ],
        env,
    )
    .await;
    assert!(ok, "{ended}");
    let ended = tool_json(&ended);
    assert_eq!(ended["state"], "ENDED");

    // The consumer's agent checks the charge without trusting the server.
    let (verified, ok) = inspect(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "verify_session",
            "--tool-arg",
            &format!("sessionId={id}"),
        ],
        env,
    )
    .await;
    assert!(ok && verified["isError"] != true, "{verified}");
    let verdict = tool_json(&verified);
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(
        verdict["recomputed"]["cleanSeconds"], ended["meter"]["cleanSeconds"],
        "{verdict}"
    );

    // Asking for signed telemetry (tier 1) where only a workspace without
    // devices supplies: the server's NO_COVERAGE, with the session it made.
    let (signed, _) = inspect(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "request_live_view",
            "--tool-arg",
            &format!("lat={lat}"),
            &format!("lng={lng}"),
            "durationSeconds=60",
            "minTrustTier=1",
            "waitSeconds=5",
        ],
        env,
    )
    .await;
    assert_eq!(signed["isError"], true, "{signed}");
    let error = tool_json(&signed);
    assert_eq!(error["code"], "NO_COVERAGE", "{error}");
    assert!(error["sessionId"].is_string(), "{error}");

    // A bad argument is a tool error the model can read, naming the field.
    let (bad, _) = inspect(
        target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get_session",
            "--tool-arg",
            "sessionId=yesterday",
        ],
        env,
    )
    .await;
    assert_eq!(bad["isError"], true, "{bad}");
    let error = tool_json(&bad);
    assert_eq!(error["code"], "INVALID_INPUT");
    assert_eq!(error["detail"], "sessionId");
    assert_eq!(error["retryable"], false);

    // The server's own refusal keeps its code: another consumer's session
    // is not found, and the key is the one of this HTTP request or process.
    let stranger = t.consumer(&format!("mcp-stranger-{}", target.len())).await;
    let stranger_owned = target_for(&stranger.api_key);
    let stranger_target: Vec<&str> = stranger_owned.iter().map(String::as_str).collect();
    let (foreign, _) = inspect(
        &stranger_target,
        &[
            "--method",
            "tools/call",
            "--tool-name",
            "get_session",
            "--tool-arg",
            &format!("sessionId={id}"),
        ],
        env,
    )
    .await;
    assert_eq!(foreign["isError"], true, "{foreign}");
    let error = tool_json(&foreign);
    assert_eq!(error["code"], "SESSION_NOT_FOUND", "{error}");
    assert_eq!(error["sessionId"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_gets_a_live_frame_over_stdio() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("mcp-stdio-consumer").await;
    let supplier = t.supplier("mcp-stdio-supplier", BOGOTA, true).await;
    let supplying = supply(&t, &supplier);
    // The inspector hands its stdio server only the environment it is told (-e).
    let server = t.base.clone();
    live_view_through_inspector(&t, &consumer, |key| {
        [
            "-e",
            &format!("LX_SERVER={server}"),
            "-e",
            &format!("LX_API_KEY={key}"),
            env!("CARGO_BIN_EXE_lx"),
            "mcp",
        ]
        .map(str::to_owned)
        .to_vec()
    })
    .await;
    supplying.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mcp_inspector_gets_a_live_frame_over_streamable_http() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("mcp-http-consumer").await;
    let supplier = t.supplier("mcp-http-supplier", BOGOTA, true).await;
    let supplying = supply(&t, &supplier);
    let endpoint = format!("{}/mcp", t.base.trim_end_matches("/api/v1"));
    live_view_through_inspector(&t, &consumer, |key| {
        [
            &endpoint,
            "--transport",
            "http",
            "--header",
            &format!("Authorization: Bearer {key}"),
        ]
        .map(str::to_owned)
        .to_vec()
    })
    .await;
    supplying.abort();

    // Without a key the tools answer as the API does.
    let (anonymous, _) = inspect(
        &[endpoint.as_str(), "--transport", "http"],
        &["--method", "tools/call", "--tool-name", "list_sessions"],
        &[],
    )
    .await;
    assert_eq!(anonymous["isError"], true, "{anonymous}");
    let error = tool_json(&anonymous);
    assert_eq!(error["code"], "NOT_AUTHENTICATED", "{error}");
    assert_eq!(error["status"], 401);
}

#[tokio::test]
async fn mcp_over_http_refuses_a_host_it_does_not_serve() {
    let t = TestApp::spawn().await;
    let endpoint = format!("{}/mcp", t.base.trim_end_matches("/api/v1"));
    let initialize = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "probe", "version": "0"}},
    });
    let post = |host: Option<&'static str>| {
        let mut request = reqwest::Client::new()
            .post(&endpoint)
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    assert_eq!(post(None).await.unwrap().status().as_u16(), 200);
    assert_eq!(
        post(Some("evil.example")).await.unwrap().status().as_u16(),
        403,
        "a rebinding host is refused"
    );
}

/// Runs `lx` with the consumer's key; returns (success, stdout, stderr).
async fn lx(t: &TestApp, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lx"))
        .args(args)
        .env("LX_SERVER", t.base.trim_end_matches("/api/v1"))
        .env("LX_API_KEY", key)
        .kill_on_drop(true)
        .output()
        .await
        .expect("lx runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lx_command_line_requests_waits_saves_a_frame_and_ends() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("cli-consumer").await;
    let supplier = t.supplier("cli-supplier", BOGOTA, true).await;
    let supplying = supply(&t, &supplier);
    let key = consumer.api_key.clone();
    let (lat, lng) = (BOGOTA.0.to_string(), BOGOTA.1.to_string());
    let (ok, out, err) = lx(
        &t,
        &key,
        &[
            "--json",
            "session",
            "request",
            "--lat",
            &lat,
            "--lng",
            &lng,
            "--duration",
            "60",
            "--wait",
            "--wait-seconds",
            "40",
        ],
    )
    .await;
    assert!(ok, "{err}");
    let session: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(session["state"], "LIVE");
    assert!(
        err.contains("→ LIVE ("),
        "progress shown while waiting: {err}"
    );
    let id = session["id"].as_str().unwrap().to_owned();

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("frame.jpg");
    let (ok, _, err) = lx(&t, &key, &["frame", &id, "-o", file.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert_smpte_jpeg(&std::fs::read(&file).unwrap());

    let (ok, _, err) = lx(&t, &key, &["frame", &id, "-o", "/nonexistent-dir/f.jpg"]).await;
    assert!(!ok);
    assert!(err.contains("/nonexistent-dir/f.jpg"), "{err}");

    let (ok, out, err) = lx(&t, &key, &["session", "end", &id]).await;
    assert!(ok, "{err}");
    assert!(out.contains(&format!("session {id} ENDED")), "{out}");
    supplying.abort();

    // Errors name the server's code and leave a failing exit status.
    let (ok, _, err) = lx(&t, &key, &["session", "end", &id]).await;
    assert!(!ok);
    assert!(err.contains("INVALID_STATE"), "{err}");
    let (ok, _, err) = lx(&t, "lxxn_test_000000_nope", &["session", "list"]).await;
    assert!(!ok);
    assert!(err.contains("NOT_AUTHENTICATED"), "{err}");
    let (ok, _, err) = lx(
        &t,
        &key,
        &["quote", "--lat", "95", "--lng", "0", "--duration", "60"],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("invalid argument lat"), "{err}");

    // Only an enrolled device signing its telemetry, please: the one
    // supplier is a workspace without devices (tier 0), so nobody qualifies.
    let request = |tier: &'static str| {
        [
            "session",
            "request",
            "--lat",
            &lat,
            "--lng",
            &lng,
            "--duration",
            "60",
            "--min-trust-tier",
            tier,
        ]
        .map(str::to_owned)
    };
    let args = request("1");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = lx(&t, &key, &args).await;
    assert!(!ok);
    assert!(err.contains("NO_COVERAGE"), "{err}");
    let args = request("2");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, _, err) = lx(&t, &key, &args).await;
    assert!(!ok);
    assert!(err.contains("--min-trust-tier"), "{err}");
}

/// A drone's session of `seconds` signed samples, ended and made final.
async fn a_signed_session(t: &TestApp, consumer: &Actor, seconds: i64) -> String {
    let (_, drone) = t.fleet("verify-supplier", BOGOTA).await;
    let (id, sid, started) = t.live_device_session(consumer, &drone).await;
    for i in 0..seconds {
        let at = started + i * 1000 + 100;
        t.clock.set_ms(at);
        t.post(
            format!("/sessions/{id}/telemetry"),
            drone.auth(),
            drone.sample(Some(sid), at, BOGOTA, 3.0),
        )
        .await
        .ok();
    }
    t.clock.set_ms(started + seconds * 1000);
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    t.clock
        .set_ms(started + seconds * 1000 + t.app.settle_delay_ms() + 1);
    t.app.sweep(t.clock_now()).await;
    id
}

#[tokio::test]
async fn lx_verify_checks_a_session_offline_and_names_an_altered_or_dropped_sample() {
    let t = TestApp::spawn().await;
    let consumer = t.consumer("verify-consumer").await;
    let key = consumer.api_key.clone();
    let id = a_signed_session(&t, &consumer, 12).await;

    let (ok, out, err) = lx(&t, &key, &["verify", &id]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("12 samples, 12 signed by the device"), "{out}");
    assert!(out.contains("12 clean s, 0 failed s"), "{out}");
    assert!(out.contains("VERIFIED"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("proof.json");
    let (ok, _, err) = lx(&t, &key, &["proof", &id, "-o", saved.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(err.contains("12 samples, meter final"), "{err}");
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    // The saved bundle verifies with no server at all.
    let offline = tokio::process::Command::new(env!("CARGO_BIN_EXE_lx"))
        .args(["--server", "http://127.0.0.1:9", "verify"])
        .arg(&saved)
        .output()
        .await
        .unwrap();
    assert!(
        offline.status.success(),
        "offline: {}",
        String::from_utf8_lossy(&offline.stdout)
    );

    let tamper = |name: &str, change: &dyn Fn(&mut Value)| {
        let mut altered = bundle.clone();
        change(&mut altered);
        let path = dir.path().join(name);
        std::fs::write(&path, altered.to_string()).unwrap();
        path
    };
    let fifth = bundle["track"][4]["signed"]["sequence"].as_u64().unwrap();
    let moved = tamper("moved.json", &|b| {
        let lat = b["track"][4]["signed"]["latE7"].as_i64().unwrap();
        b["track"][4]["signed"]["latE7"] = json!(lat + 10);
    });
    let (ok, out, _) = lx(&t, &key, &["verify", moved.to_str().unwrap()]).await;
    assert!(!ok, "an altered coordinate must fail: {out}");
    assert!(
        out.contains(&format!(
            "FAIL: sample {fifth} (track[4]): the signature recovers"
        )),
        "{out}"
    );
    assert!(out.contains("NOT VERIFIED"), "{out}");

    let seventh = bundle["track"][6]["signed"]["sequence"].as_u64().unwrap();
    let dropped = tamper("dropped.json", &|b| {
        b["track"].as_array_mut().unwrap().remove(6);
    });
    let (ok, out, _) = lx(&t, &key, &["--json", "verify", dropped.to_str().unwrap()]).await;
    assert!(!ok, "a dropped sample must fail: {out}");
    let verdict: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(verdict["ok"], false);
    assert_eq!(
        verdict["findings"][0]["message"],
        format!(
            "sample {seventh} is missing between {} and {}",
            seventh - 1,
            seventh + 1
        )
    );

    let (ok, _, err) = lx(&t, &key, &["verify", "no-such-file.json"]).await;
    assert!(!ok);
    assert!(
        err.contains("neither a session id nor a readable bundle file"),
        "{err}"
    );
}
