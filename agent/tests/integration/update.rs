//! Over-the-air updates end to end. Two more builds of the agent are made
//! (a newer version, and one that hangs at start without READY), signed
//! with a fleet update key, served over HTTP and pushed with `update` over
//! Mosquitto to the real `lx-agent`, which runs under a supervisor playing
//! systemd from `systemd/lx-agent.service`'s own lines (ExecStartPre,
//! ExecStart, Environment, Restart=on-failure, RestartForceExitStatus,
//! TimeoutStartSec shortened for the test): systemd itself does not run in
//! this sandbox.

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k256::ecdsa::SigningKey;
use lx_protocol::wallet::Address;
use serde_json::json;
use sha2::Digest;
use uuid::Uuid;

use super::common::BOGOTA;
use super::fleet::{Fleet, WAIT, assert_refused, command, fleet};
use super::{enrollment_token, live_session, operator_of};

/// The test's start timeout: the unit's TimeoutStartSec, shortened.
const START_TIMEOUT: Duration = Duration::from_secs(8);
/// The version the second builds carry: newer than this one.
pub(super) fn next_version() -> String {
    let v = semver::Version::parse(lx_agent::VERSION).unwrap();
    format!("{}.{}.{}-update.test", v.major, v.minor, v.patch + 1)
}

/// The agent's builds the tests push.
#[derive(Debug, Clone, Copy)]
pub(super) enum Build {
    /// The next version.
    Newer,
    /// The next version, hanging at start without READY.
    HangsAtStart,
}

/// Builds lx-agent again as `build` (its version and switches set at
/// compile time) and copies it to `out`. Each build has a target directory
/// of its own beside the test's: the binaries the other tests run are not
/// touched, and the next run finds it built.
pub(super) fn build_agent(build: Build, out: &Path) {
    let version = next_version();
    let (name, env): (&str, Vec<(&str, &str)>) = match build {
        Build::Newer => ("newer", vec![("LX_AGENT_VERSION", &version)]),
        Build::HangsAtStart => (
            "hangs",
            vec![
                ("LX_AGENT_VERSION", &version),
                ("LX_AGENT_TEST_HANG_AT_START", "1"),
            ],
        ),
    };
    let own = PathBuf::from(env!("CARGO_BIN_EXE_lx-agent"));
    let target = own
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("update-test")
        .join(name);
    let manifest = crate::common::manifest_dir();
    let workspace = manifest.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(workspace)
        .args(["build", "-p", "lx-agent", "--bin", "lx-agent"])
        .args(["--no-default-features", "--target-dir"])
        .arg(&target)
        .env_remove("LX_AGENT_TEST_HANG_AT_START")
        .env_remove("LX_AGENT_VERSION")
        .envs(env)
        .status()
        .expect("cargo");
    assert!(status.success(), "building the update test's {name} agent");
    std::fs::copy(target.join("debug/lx-agent"), out).unwrap();
}

/// The unit's lines, with the device's paths moved into the test's.
struct Unit {
    pre: Vec<String>,
    start: Vec<String>,
    environment: Vec<(String, String)>,
    restart_after: Duration,
    force_restart: Vec<i32>,
}

impl Unit {
    fn read(state: &Path, config: &Path) -> Self {
        let text = std::fs::read_to_string(
            crate::common::manifest_dir().join("../systemd/lx-agent.service"),
        )
        .unwrap();
        let moved = |line: &str| {
            line.replace("/var/lib/lx-agent", &state.display().to_string())
                .replace("/etc/lx-agent/agent.toml", &config.display().to_string())
        };
        let mut values: HashMap<String, Vec<String>> = HashMap::new();
        for line in text.lines().map(str::trim) {
            if let Some((key, value)) = line.split_once('=')
                && !line.starts_with('#')
            {
                values.entry(key.to_owned()).or_default().push(moved(value));
            }
        }
        let one = |key: &str| values[key].last().unwrap().clone();
        let words =
            |v: String| -> Vec<String> { v.split_whitespace().map(str::to_owned).collect() };
        assert_eq!(one("Restart"), "on-failure");
        assert!(
            one("TimeoutStartSec").parse::<u64>().unwrap() >= START_TIMEOUT.as_secs(),
            "the test shortens TimeoutStartSec, never lengthens it"
        );
        Self {
            pre: words(one("ExecStartPre")),
            start: words(one("ExecStart")),
            environment: values["Environment"]
                .iter()
                .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
                .collect(),
            restart_after: Duration::from_secs(one("RestartSec").parse().unwrap()),
            force_restart: one("RestartForceExitStatus")
                .split_whitespace()
                .map(|s| s.parse().unwrap())
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Event {
    /// `current` pointed at this build when it was started.
    Started(String),
    Ready,
    /// No READY within the start timeout: killed.
    StartTimedOut,
    Exited(Option<i32>),
}

/// systemd's part for one `Type=notify` unit.
struct Supervisor {
    events: Arc<Mutex<Vec<(Instant, Event)>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Supervisor {
    fn start(unit: Unit, env: Vec<(String, String)>, dir: &Path) -> Self {
        let socket_path = dir.join("notify");
        let socket = UnixDatagram::bind(&socket_path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let events = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, stopping) = (Arc::clone(&events), Arc::clone(&stop));
        let record = move |e: Event| log.lock().unwrap().push((Instant::now(), e));
        let thread = std::thread::spawn(move || {
            let spawn = |argv: &[String], notify: bool| -> Child {
                let mut c = Command::new(if argv[0].starts_with('-') {
                    &argv[0][1..]
                } else {
                    &argv[0]
                });
                c.args(&argv[1..])
                    .envs(unit.environment.iter().cloned())
                    .envs(env.iter().cloned())
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                if notify {
                    c.env("NOTIFY_SOCKET", &socket_path);
                }
                c.spawn().unwrap()
            };
            while !stopping.load(Ordering::SeqCst) {
                // ExecStartPre with `-`: its failure is ignored.
                let _ = spawn(&unit.pre, false).wait();
                let current = std::fs::read_link(&unit.start[0])
                    .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                    .unwrap_or_default();
                record(Event::Started(current));
                let mut child = spawn(&unit.start, true);
                let started = Instant::now();
                let mut ready = false;
                let status = loop {
                    let mut buf = [0u8; 256];
                    if let Ok(n) = socket.recv(&mut buf)
                        && String::from_utf8_lossy(&buf[..n]).contains("READY=1")
                        && !ready
                    {
                        ready = true;
                        record(Event::Ready);
                    }
                    if let Some(status) = child.try_wait().unwrap() {
                        break status;
                    }
                    let timed_out = !ready && started.elapsed() > START_TIMEOUT;
                    if timed_out || stopping.load(Ordering::SeqCst) {
                        if timed_out {
                            record(Event::StartTimedOut);
                        }
                        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                        let deadline = Instant::now() + Duration::from_secs(10);
                        while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        let _ = child.kill();
                        break child.wait().unwrap();
                    }
                };
                record(Event::Exited(status.code()));
                let code = status.code();
                let forced = code.is_some_and(|c| unit.force_restart.contains(&c));
                // Restart=on-failure: not after a clean exit 0.
                if code == Some(0) && !forced {
                    break;
                }
                std::thread::sleep(unit.restart_after);
            }
        });
        Self {
            events,
            stop,
            thread: Some(thread),
        }
    }

    fn events(&self) -> Vec<(Instant, Event)> {
        self.events.lock().unwrap().clone()
    }

    fn starts(&self) -> usize {
        self.events()
            .iter()
            .filter(|(_, e)| matches!(e, Event::Started(_)))
            .count()
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Serves the artefacts: `/<name>` from files, `/endless` streams without
/// a length until the client stops reading.
async fn artefact_server(files: HashMap<String, PathBuf>) -> String {
    use axum::body::Body;
    use axum::extract::Path as UrlPath;
    use axum::response::IntoResponse;
    let files = Arc::new(files);
    let app = axum::Router::new()
        .route(
            "/endless",
            axum::routing::get(|| async {
                let chunk = bytes_of(1 << 20);
                let stream = futures_util::stream::repeat_with(move || {
                    Ok::<_, std::io::Error>(chunk.clone())
                });
                Body::from_stream(stream).into_response()
            }),
        )
        .route(
            "/{name}",
            axum::routing::get(move |UrlPath(name): UrlPath<String>| {
                let files = Arc::clone(&files);
                async move {
                    match files.get(&name) {
                        Some(path) => std::fs::read(path).unwrap().into_response(),
                        None => axum::http::StatusCode::NOT_FOUND.into_response(),
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn bytes_of(n: usize) -> axum::body::Bytes {
    axum::body::Bytes::from(vec![0x5a; n])
}

struct Device {
    state: PathBuf,
    id: Uuid,
}

impl Device {
    fn releases(&self) -> PathBuf {
        self.state.join("releases")
    }

    fn current(&self) -> String {
        std::fs::read_link(self.releases().join("current"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Nothing of a refused update is left, and the same build runs.
    fn untouched(&self, build: &str, supervisor: &Supervisor, starts: usize, why: &str) {
        assert_eq!(self.current(), build, "{why}: current moved");
        for leftover in ["pending.json", "download.part"] {
            assert!(
                !self.releases().join(leftover).exists(),
                "{why}: {leftover} is left"
            );
        }
        assert_eq!(supervisor.starts(), starts, "{why}: the agent restarted");
    }
}

fn update_args(url: &str, sha256: &str, key: &SigningKey) -> serde_json::Value {
    json!({
        "cmd": "update",
        "args": {
            "url": url,
            "sha256": sha256,
            "signature": lx_protocol::update::sign(key, lx_agent::TARGET, sha256).to_string(),
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_build_is_installed_over_the_fleet_link_and_a_broken_one_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let (new_build, hanging_build) = (dir.path().join("new"), dir.path().join("hangs"));
    let version = next_version();
    let builds = {
        let (new_build, hanging_build) = (new_build.clone(), hanging_build.clone());
        tokio::task::spawn_blocking(move || {
            build_agent(Build::Newer, &new_build);
            build_agent(Build::HangsAtStart, &hanging_build);
        })
    };

    let f: Fleet = fleet(true).await;
    let consumer = f.t.consumer("consumer-co").await;
    let update_key = SigningKey::from_slice(&[0x11; 32]).unwrap();
    let stranger_key = SigningKey::from_slice(&[0x22; 32]).unwrap();
    let state = dir.path().join("var-lib-lx-agent");
    let config_file = dir.path().join("agent.toml");
    // The artefacts are ~25 MB debug builds: a cap above them.
    let cap: u64 = 64 << 20;
    std::fs::write(
        &config_file,
        format!(
            "[update]\nsigner = \"{}\"\nmax_bytes = {cap}\nconfirm_within_s = 60\n",
            Address::from_signing_key(&update_key)
        ),
    )
    .unwrap();
    let mut env = super::supervise::agent_env(&super::server_url(&f.t), &state);
    env.extend(
        [
            ("MQTT__ENABLED", "true"),
            ("MQTT__STATUS_INTERVAL_MS", "1000"),
            ("LIFECYCLE__POLL_INTERVAL_MS", "200"),
        ]
        .map(|(k, v)| (format!("LX_AGENT__{k}"), v.to_owned())),
    );
    let config = lx_agent::config::Config::from_layers(
        Some(&std::fs::read_to_string(&config_file).unwrap()),
        env.clone(),
    )
    .unwrap();
    lx_agent::run::enroll(&config, &enrollment_token(&f.t, &f.supplier).await)
        .await
        .unwrap();
    let device = Device {
        id: operator_of(&f.t, &f.supplier).await["id"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        state: state.clone(),
    };
    // What `cargo xtask install-agent` lays out.
    let first = lx_agent::update::Releases::new(&state)
        .install_first(Path::new(env!("CARGO_BIN_EXE_lx-agent")), lx_agent::VERSION)
        .unwrap();

    let mut watch = f
        .manager
        .subscribe(&format!("lx/v1/operators/{}/#", device.id));
    let supervisor = Supervisor::start(Unit::read(&state, &config_file), env, dir.path());
    let status = watch
        .until("the first build's idle status", WAIT * 2, |topic, j| {
            topic.ends_with("/status") && j["state"] == "idle"
        })
        .await;
    assert_eq!(status["version"], lx_agent::VERSION);
    assert_eq!(supervisor.starts(), 1);

    builds.await.unwrap();
    let new_bytes = std::fs::read(&new_build).unwrap();
    let new_sha = sha256_hex(&new_bytes);
    let hanging_sha = sha256_hex(&std::fs::read(&hanging_build).unwrap());
    let url = artefact_server(HashMap::from([
        ("new".to_owned(), new_build.clone()),
        ("hangs".to_owned(), hanging_build.clone()),
    ]))
    .await;

    // Refused, each by name, and nothing changes.
    let refusals = [
        (
            "u-forged",
            update_args(&format!("{url}/new"), &new_sha, &stranger_key),
            "not by the fleet's update key",
        ),
        (
            "u-wrong-hash",
            update_args(&format!("{url}/new"), &hanging_sha, &update_key),
            &format!("SHA-256 is {new_sha}, not the {hanging_sha}") as &str,
        ),
        (
            "u-over-cap",
            update_args(&format!("{url}/endless"), &new_sha, &update_key),
            &format!("passed the cap of {cap} bytes") as &str,
        ),
        (
            "u-missing",
            update_args(&format!("{url}/nothing"), &new_sha, &update_key),
            "HTTP 404",
        ),
    ];
    for (id, body, says) in refusals {
        let ack = command(&f, &mut watch, device.id, id, body).await;
        assert_refused(&ack, says);
        device.untouched(&first, &supervisor, 1, id);
    }

    // Never while a session is served.
    let session = live_session(&f.t, &consumer, BOGOTA, 300).await;
    let ack = command(
        &f,
        &mut watch,
        device.id,
        "u-live",
        update_args(&format!("{url}/new"), &new_sha, &update_key),
    )
    .await;
    assert_refused(&ack, &format!("serves session {session}"));
    device.untouched(&first, &supervisor, 1, "during a LIVE session");
    f.t.post(
        format!("/sessions/{session}/end"),
        consumer.auth(),
        json!({}),
    )
    .await
    .ok();
    watch
        .until("idle again", WAIT, |topic, j| {
            topic.ends_with("/status") && j["state"] == "idle"
        })
        .await;

    // A build that never reports READY: rolled back within the bound.
    let ack = command(
        &f,
        &mut watch,
        device.id,
        "u-hangs",
        update_args(&format!("{url}/hangs"), &hanging_sha, &update_key),
    )
    .await;
    let pushed = Instant::now();
    assert_eq!(ack, json!({"id": "u-hangs", "ok": true}));
    let status = watch
        .until("the rolled-back status", WAIT * 4, |topic, j| {
            topic.ends_with("/status") && j["update"]["outcome"] == "rolled-back"
        })
        .await;
    let took = pushed.elapsed();
    assert_eq!(status["version"], lx_agent::VERSION, "{status}");
    assert_eq!(status["update"]["version"], version.as_str());
    assert!(
        status["update"]["reason"]
            .as_str()
            .unwrap()
            .contains("without being confirmed"),
        "{status}"
    );
    let hanging_name = format!("lx-agent-{version}-{}", &hanging_sha[..8]);
    let events: Vec<Event> = supervisor.events().into_iter().map(|(_, e)| e).collect();
    let tail = &events[events.len() - 6..];
    assert!(
        matches!(
            tail,
            [
                Event::Exited(Some(75)),
                Event::Started(tried),
                Event::StartTimedOut,
                Event::Exited(_),
                Event::Started(back),
                Event::Ready,
            ] if *tried == hanging_name && *back == first
        ),
        "{events:?}"
    );
    // The bound: the start timeout, two restart delays, the old build's start.
    assert!(
        took < START_TIMEOUT + Duration::from_secs(2 * 2 + 15),
        "rolled back after {took:?}"
    );
    assert_eq!(device.current(), first);
    println!("rolled back {took:?} after the ack");

    // The newer build: it runs, is confirmed by its first heartbeat, and
    // says so.
    let ack = command(
        &f,
        &mut watch,
        device.id,
        "u-new",
        update_args(&format!("{url}/new"), &new_sha, &update_key),
    )
    .await;
    assert_eq!(ack, json!({"id": "u-new", "ok": true}));
    let pushed = Instant::now();
    let status = watch
        .until("the new build's confirmed status", WAIT * 4, |topic, j| {
            topic.ends_with("/status") && j["update"]["outcome"] == "installed"
        })
        .await;
    assert_eq!(status["version"], version.as_str(), "{status}");
    assert_eq!(status["update"]["fromVersion"], lx_agent::VERSION);
    println!(
        "the new build was confirmed {:?} after the ack",
        pushed.elapsed()
    );
    let new_name = format!("lx-agent-{version}-{}", &new_sha[..8]);
    assert_eq!(device.current(), new_name);
    assert!(!device.releases().join("pending.json").exists());
    assert_eq!(
        std::fs::read(device.releases().join("current")).unwrap(),
        new_bytes
    );
    // The hanging build is gone; the first stays as `previous`.
    assert!(
        !device
            .releases()
            .join(format!("lx-agent-{version}-{}", &hanging_sha[..8]))
            .exists()
    );
    assert_eq!(
        std::fs::read_link(device.releases().join("previous"))
            .unwrap()
            .to_string_lossy(),
        first
    );
    // And it serves: a session goes LIVE on the new build.
    live_session(&f.t, &consumer, BOGOTA, 300).await;
    drop(supervisor);
}

/// A `/healthz` that says the agent serves `session`.
fn healthz_serving(session: Uuid) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            use std::io::{Read, Write};
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let body = json!({"status": "ok", "lifecycle": {"serving": session}}).to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    address
}

/// An operator on the device runs `lx-agent update FILE`, and the unit's
/// guard (the previous build's `update-guard`) gives the new build one
/// start: all as the real binaries.
#[test]
fn an_operator_installs_a_signed_file_and_the_guard_gives_it_one_start() {
    use lx_protocol::update::UpdateManifest;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let new_build = dir.path().join("lx-agent-new");
    build_agent(Build::Newer, &new_build);
    let releases = lx_agent::update::Releases::new(&state);
    let first = releases
        .install_first(Path::new(env!("CARGO_BIN_EXE_lx-agent")), lx_agent::VERSION)
        .unwrap();
    let key = SigningKey::from_slice(&[0x11; 32]).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[update]\nsigner = \"{}\"\n[health]\nlisten = \"127.0.0.1:1\"\n",
            Address::from_signing_key(&key)
        ),
    )
    .unwrap();
    let bytes = std::fs::read(&new_build).unwrap();
    let sha256 = sha256_hex(&bytes);
    let manifest = |target: &str, signed_by: &SigningKey| UpdateManifest {
        version: next_version(),
        target: target.to_owned(),
        file: "lx-agent-new".into(),
        size: bytes.len() as u64,
        sha256: sha256.clone(),
        signature: lx_protocol::update::sign(signed_by, target, &sha256),
        signer: Address::from_signing_key(signed_by),
    };
    let write_manifest = |name: &str, m: &UpdateManifest| {
        let path = dir.path().join(name);
        std::fs::write(&path, serde_json::to_vec(m).unwrap()).unwrap();
        path
    };
    let agent = |link: &str, args: &[&std::ffi::OsStr], health: Option<&str>| {
        let mut c = Command::new(releases.dir().join(link));
        c.arg("--config")
            .arg(&config)
            .args(args)
            .env(
                "LX_AGENT__DEVICE__STATE_DIR",
                format!("\"{}\"", state.display()),
            )
            .env("RUST_LOG", "info");
        if let Some(health) = health {
            c.env("LX_AGENT__HEALTH__LISTEN", format!("\"{health}\""));
        }
        let out = c.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let update = |file: &Path, manifest: &Path, health: Option<&str>| {
        agent(
            "current",
            &[
                "update".as_ref(),
                file.as_os_str(),
                "--manifest".as_ref(),
                manifest.as_os_str(),
            ],
            health,
        )
    };
    let good = write_manifest("good.json", &manifest(lx_agent::TARGET, &key));
    let tampered = dir.path().join("tampered");
    std::fs::write(&tampered, [&bytes[..], b"!"].concat()).unwrap();
    let stranger = SigningKey::from_slice(&[0x22; 32]).unwrap();
    for (file, manifest, health, says) in [
        (
            &tampered,
            good.clone(),
            None,
            format!("not the {sha256} its manifest names"),
        ),
        (
            &new_build,
            write_manifest("riscv.json", &manifest("riscv64gc-unknown-linux-gnu", &key)),
            None,
            format!(
                "built for riscv64gc-unknown-linux-gnu, this device runs {}",
                lx_agent::TARGET
            ),
        ),
        (
            &new_build,
            write_manifest("stranger.json", &manifest(lx_agent::TARGET, &stranger)),
            None,
            "not by the fleet's update key".to_owned(),
        ),
        (
            &new_build,
            good.clone(),
            Some(healthz_serving(Uuid::from_u128(7))),
            format!("serves session {}", Uuid::from_u128(7)),
        ),
    ] {
        let (ok, said) = update(file, &manifest, health.as_deref());
        assert!(!ok && said.contains(&says), "{says}: {said}");
        assert_eq!(
            std::fs::read_link(releases.dir().join("current"))
                .unwrap()
                .to_string_lossy(),
            first
        );
        assert!(releases.pending().unwrap().is_none());
    }

    let (ok, said) = update(&new_build, &good, None);
    assert!(ok, "{said}");
    assert!(
        said.contains(&format!("installed lx-agent {}", next_version())),
        "{said}"
    );
    let installed = format!("lx-agent-{}-{}", next_version(), &sha256[..8]);
    let link = |name: &str| {
        std::fs::read_link(releases.dir().join(name))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(
        (link("current"), link("previous")),
        (installed.clone(), first.clone())
    );
    let (ok, said) = update(&new_build, &good, None);
    assert!(
        !ok && said.contains("still waiting to be confirmed"),
        "{said}"
    );

    // The unit's ExecStartPre, twice: one start for the new build, then back.
    let guard = || agent("previous", &["update-guard".as_ref()], None);
    let (ok, said) = guard();
    assert!(ok, "{said}");
    assert_eq!(releases.pending().unwrap().unwrap().starts, 1);
    assert_eq!(link("current"), installed);
    let (ok, said) = guard();
    assert!(ok && said.contains("rolled back"), "{said}");
    assert_eq!(link("current"), first);
    let last = releases.last_outcome().unwrap().unwrap();
    assert_eq!(last.outcome, lx_protocol::update::UpdateOutcome::RolledBack);
    assert!(releases.pending().unwrap().is_none());
}
