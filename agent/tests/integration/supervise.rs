//! The real `lx-agent` binary under a supervisor speaking systemd's
//! notification protocol (`NOTIFY_SOCKET`, `WATCHDOG_USEC`), as
//! `systemd/lx-agent.service` runs it: READY once running, watchdog pings,
//! and a restart when it hangs. systemd itself does not run in this
//! sandbox, so the test plays its part; the unit files are checked with
//! `systemd-analyze verify`.

use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::common::{BOGOTA, TestApp};
use super::{enrollment_token, hovering_at};

/// The environment that configures the binary like `agent_config` does.
pub(super) fn agent_env(server: &str, state: &std::path::Path) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("SERVER__URL".into(), format!("\"{server}\"")),
        (
            "DEVICE__STATE_DIR".into(),
            format!("\"{}\"", state.display()),
        ),
        ("VIDEO__ENABLED".into(), "false".into()),
        ("MQTT__ENABLED".into(), "false".into()),
        ("HEALTH__LISTEN".into(), "\"127.0.0.1:0\"".into()),
        ("TELEMETRY__IDLE_INTERVAL_MS".into(), "500".into()),
    ];
    env.extend(
        hovering_at(BOGOTA)
            .into_iter()
            .map(|(k, v)| (format!("GPS__{k}"), v)),
    );
    env.into_iter()
        .map(|(k, v)| (format!("LX_AGENT__{k}"), v))
        .collect()
}

fn spawn(env: &[(String, String)], socket: &std::path::Path, watchdog: Duration) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lx-agent"))
        .arg("run")
        .envs(env.iter().cloned())
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", watchdog.as_micros().to_string())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the lx-agent binary")
}

/// The next notification within `wait`.
fn next(socket: &UnixDatagram, wait: Duration) -> Option<String> {
    socket.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 256];
    let n = socket.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn wait_for(socket: &UnixDatagram, what: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if next(socket, deadline - Instant::now()).is_some_and(|m| m.contains(what)) {
            return;
        }
    }
    panic!("no {what} within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_agent_misses_its_watchdog_and_is_restarted() {
    let t = TestApp::spawn_realtime().await;
    let supplier = t.supplier("fleet-co", BOGOTA, true).await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let env = agent_env(&super::server_url(&t), &state);
    let config = lx_agent::config::Config::from_layers(None, env.clone()).unwrap();
    lx_agent::run::enroll(&config, &enrollment_token(&t, &supplier).await)
        .await
        .unwrap();
    let path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let watchdog = Duration::from_secs(1);

    let first = tokio::task::spawn_blocking(move || {
        let mut child = spawn(&env, &path, watchdog);
        wait_for(&socket, "READY=1", Duration::from_secs(30));
        let mut pings = 0;
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if next(&socket, Duration::from_millis(900)).is_some_and(|m| m == "WATCHDOG=1") {
                pings += 1;
            }
        }
        assert!(pings >= 3, "{pings} watchdog pings in 2 s at WatchdogSec=1");

        // It hangs.
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
        // The supervisor waits WatchdogSec for a ping, as systemd does.
        assert_eq!(
            next(&socket, watchdog + Duration::from_millis(200)),
            None,
            "a stopped agent pings"
        );
        // Then aborts it and, Restart=on-failure, starts it again.
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGABRT).unwrap();
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success());
        let mut again = spawn(&env, &path, watchdog);
        wait_for(&socket, "READY=1", Duration::from_secs(30));
        wait_for(&socket, "WATCHDOG=1", Duration::from_secs(2));
        assert_ne!(again.id(), child.id());

        // A clean stop says so before it goes.
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(again.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        wait_for(&socket, "STOPPING=1", Duration::from_secs(10));
        assert!(
            again.wait().unwrap().success(),
            "SIGTERM ends it with exit 0"
        );
    });
    first.await.unwrap();
}

/// The shipped units, with their ExecStart pointed at an executable that
/// exists here: `systemd-analyze verify` has nothing to say about them.
#[test]
fn systemd_accepts_both_units() {
    let dir = tempfile::tempdir().unwrap();
    let root = crate::common::manifest_dir().join("../systemd");
    let mut units = Vec::new();
    for (name, binaries) in [
        (
            "lx-agent.service",
            &[
                "/var/lib/lx-agent/releases/previous",
                "/var/lib/lx-agent/releases/current",
            ][..],
        ),
        ("lx-server.service", &["/usr/local/bin/lx-server"][..]),
    ] {
        let mut text = std::fs::read_to_string(root.join(name)).unwrap();
        for binary in binaries {
            assert!(text.contains(&format!("{binary} ")), "{name}: {binary}");
            text = text.replace(binary, "/bin/true");
        }
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .output()
        .expect("systemd-analyze (cargo xtask test installs systemd)");
    let said =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.trim().is_empty(), "{said}");
    let agent = std::fs::read_to_string(root.join("lx-agent.service")).unwrap();
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "SupplementaryGroups=dialout video",
        "StateDirectory=lx-agent",
        "TimeoutStartSec=",
        "RestartForceExitStatus=75",
    ] {
        assert!(agent.contains(key), "lx-agent.service lacks {key}");
    }
}
