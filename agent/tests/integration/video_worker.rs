//! The video worker as a program of its own: the real `lx-agent` binary,
//! bundled with `lx-agent-video` as a release is, with `video.ready =
//! false` maps no GStreamer while idle, before or after a session; the
//! worker that publishes runs from the bundle, is started for the session,
//! replaced when it dies, and gone once the session ends.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;

use super::common::{BOGOTA, TestApp};
use super::mavlink::{free_port, healthz};
use super::supervise::agent_env;
use super::{dispatched_until_live, enrollment_token, frame_status, test_camera, wait_until};

/// The GStreamer plugins a process has mapped (its registry loads them
/// from `…/gstreamer-1.0/`).
fn gstreamer_plugins(pid: u32) -> Vec<String> {
    mapped(pid, |path| path.contains("/gstreamer-1.0/"))
}

/// GStreamer's and GLib's own libraries a process has mapped.
fn gstreamer_libraries(pid: u32) -> Vec<String> {
    mapped(pid, |path| {
        let name = path.rsplit('/').next().unwrap_or(path);
        name.starts_with("libgst") || name.starts_with("libglib") || name.starts_with("libgobject")
    })
}

fn mapped(pid: u32, which: impl Fn(&str) -> bool) -> Vec<String> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mut paths: Vec<String> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|path| which(path))
        .map(str::to_owned)
        .collect();
    paths.dedup();
    paths
}

/// A release's file: the agent with its worker appended.
fn bundled_agent(dir: &std::path::Path) -> std::path::PathBuf {
    let bundle = lx_protocol::update::bundle(
        std::fs::read(env!("CARGO_BIN_EXE_lx-agent")).unwrap(),
        &std::fs::read(env!("CARGO_BIN_EXE_lx-agent-video")).unwrap(),
    );
    let path = dir.join("lx-agent-bundled");
    std::fs::write(&path, bundle).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
}

fn worker_pid(health: &serde_json::Value) -> Option<u32> {
    health["video"]["workerPid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_agent_holds_no_gstreamer_and_a_killed_worker_is_replaced_mid_session() {
    let t = TestApp::spawn_with_media(|_| {}).await;
    let consumer = t.consumer("worker-viewer").await;
    let supplier = t.supplier("worker-fleet", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let mut env = agent_env(&super::server_url(&t), &dir.path().join("state"));
    env.retain(|(k, _)| k != "LX_AGENT__VIDEO__ENABLED");
    env.extend(
        test_camera("h264")
            .into_iter()
            .map(|(k, v)| (format!("LX_AGENT__VIDEO__{k}"), v)),
    );
    // Without a ready worker: nothing of the media waits while idle.
    env.push(("LX_AGENT__VIDEO__READY".into(), "false".into()));
    let port = free_port(false);
    env.retain(|(k, _)| k != "LX_AGENT__HEALTH__LISTEN");
    env.push((
        "LX_AGENT__HEALTH__LISTEN".into(),
        format!("\"127.0.0.1:{port}\""),
    ));
    let config = lx_agent::config::Config::from_layers(None, env.clone()).unwrap();
    lx_agent::run::enroll(&config, &enrollment_token(&t, &supplier).await)
        .await
        .unwrap();
    // Nothing named lx-agent-video beside it: the worker can only come
    // from the bundle.
    let binary = bundled_agent(dir.path());
    let mut agent = Command::new(&binary)
        .arg("run")
        .envs(env)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let agent_pid = agent.id();

    wait_until("the agent's /healthz", 30, || async {
        healthz(port).await["video"]["state"] == "idle"
    })
    .await;
    let idle = healthz(port).await;
    assert_eq!(worker_pid(&idle), None, "{idle}");
    assert_eq!(gstreamer_plugins(agent_pid), Vec::<String>::new());
    assert_eq!(gstreamer_libraries(agent_pid), Vec::<String>::new());

    let id = dispatched_until_live(&t, &consumer, Duration::from_secs(30)).await;
    let first = worker_pid(&healthz(port).await).expect("a worker publishes");
    assert_ne!(first, agent_pid);
    assert!(
        gstreamer_plugins(first)
            .iter()
            .any(|p| p.contains("libgstwebrtc")),
        "the worker holds the media: {:?}",
        gstreamer_plugins(first)
    );
    let worker_exe = std::fs::read_link(format!("/proc/{first}/exe")).unwrap();
    assert!(
        worker_exe
            .to_string_lossy()
            .starts_with("/memfd:lx-agent-video"),
        "the worker runs from the bundle: {}",
        worker_exe.display()
    );
    assert_eq!(gstreamer_plugins(agent_pid), Vec::<String>::new());
    assert_eq!(gstreamer_libraries(agent_pid), Vec::<String>::new());

    // The worker dies; another takes the session over.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first).unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("a second worker publishing", 30, || async {
        let h = healthz(port).await;
        worker_pid(&h).is_some_and(|p| p != first) && h["video"]["state"] == "publishing"
    })
    .await;
    let second = worker_pid(&healthz(port).await).unwrap();
    let decoded_at = || async {
        reqwest::Client::new()
            .get(format!("{}/sessions/{id}/frame", t.base))
            .bearer_auth(&consumer.api_key)
            .send()
            .await
            .unwrap()
            .headers()
            .get("x-lx-frame-decoded-at")
            .map(|v| v.to_str().unwrap().to_owned())
    };
    let before = decoded_at().await;
    wait_until("frames from the second worker", 15, || async {
        decoded_at().await != before
    })
    .await;
    assert_eq!(frame_status(&t, &consumer, &id).await.0, 200);
    let reconnects = healthz(port).await["video"]["reconnects"].clone();
    assert!(reconnects.is_u64(), "{reconnects}");

    // The session ends: the worker hangs up and goes; the agent holds none.
    t.post(format!("/sessions/{id}/end"), consumer.auth(), json!({}))
        .await
        .ok();
    wait_until("the worker gone", 30, || async {
        worker_pid(&healthz(port).await).is_none() && !alive(second)
    })
    .await;
    assert!(!alive(first), "the killed worker was reaped");
    assert_eq!(healthz(port).await["video"]["state"], "idle");
    assert_eq!(gstreamer_plugins(agent_pid), Vec::<String>::new());

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(agent_pid).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || agent.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}

/// A worker whose agent is gone (its report pipe closed) stops quietly:
/// with status 0 and no error, not a failure in the journal each time an
/// agent restarts.
#[test]
fn a_worker_whose_agent_is_gone_exits_cleanly() {
    use std::io::Write;

    let mut video = lx_agent::config::Config::defaults().video;
    video.enabled = true;
    video.source = lx_agent::config::CameraSource::Test;
    (video.width, video.height) = (320, 240);
    let order = lx_agent::video::worker::Order {
        video,
        go: None,
        log_filter: "info".into(),
        log_json: false,
    };
    let mut worker = Command::new(env!("CARGO_BIN_EXE_lx-agent-video"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = worker.stdin.take().unwrap();
    writeln!(stdin, "{}", serde_json::to_string(&order).unwrap()).unwrap();
    // The agent's end of the report pipe closes before the worker's first
    // report ("ready", once the pipeline is built).
    drop(worker.stdout.take());
    let output = worker.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}: {stderr}", output.status);
    assert!(!stderr.contains("Error"), "{stderr}");
    assert!(stderr.contains("the agent hung up"), "{stderr}");
    drop(stdin);
}
