//! The device of the agent benchmarks: the release `lx-agent` binary as its
//! own process, enrolled with a server in the bench's process, and what
//! /proc says about it.

// Each benchmark uses a different part.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use super::common::{Actor, TestApp};

/// Linux's USER_HZ: the unit of utime and stime in /proc/<pid>/stat.
const TICKS_PER_SECOND: f64 = 100.0;

pub(crate) struct Agent {
    child: Child,
    pub(crate) name: String,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Agent {
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (MB) and CPU (% of one core) over `span`,
    /// sampled every second, of the agent and its video worker together
    /// (what the device pays), and the most processes seen at once.
    pub(crate) async fn footprint(&self, span: Duration) -> (f64, f64, usize) {
        let pid = self.pid();
        let ticks = |pids: &[u32]| -> std::collections::HashMap<u32, u64> {
            pids.iter()
                .filter_map(|&p| Some((p, cpu_ticks(p)?)))
                .collect()
        };
        let start = ticks(&family(pid));
        let t0 = Instant::now();
        let mut peak_kb = 0;
        let mut most = 0;
        let mut seen: std::collections::HashMap<u32, u64> = start.clone();
        while t0.elapsed() < span {
            let now = family(pid);
            most = most.max(now.len());
            peak_kb = peak_kb.max(now.iter().filter_map(|&p| rss_kb(p)).sum::<u64>());
            seen.extend(ticks(&now));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        seen.extend(ticks(&family(pid)));
        let used: u64 = seen
            .iter()
            .map(|(p, end)| end.saturating_sub(start.get(p).copied().unwrap_or(0)))
            .sum();
        let wall = t0.elapsed().as_secs_f64();
        (
            peak_kb as f64 / 1024.0,
            used as f64 / TICKS_PER_SECOND / wall * 100.0,
            most,
        )
    }
}

/// `pid` and its children (the video worker), which any of its threads
/// may have started.
fn family(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten();
    for thread in threads.flatten() {
        let children = std::fs::read_to_string(thread.path().join("children")).unwrap_or_default();
        pids.extend(
            children
                .split_whitespace()
                .filter_map(|c| c.parse::<u32>().ok()),
        );
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the parenthesised command name utime and stime are the 12th and 13th fields.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The test camera at `codec` and `width`x`height`/30, ICE on loopback.
pub(crate) fn test_camera(codec: &str, width: u32, height: u32) -> Vec<(&'static str, String)> {
    vec![
        ("VIDEO__ENABLED", "true".into()),
        ("VIDEO__SOURCE", "\"test\"".into()),
        ("VIDEO__CODEC", format!("\"{codec}\"")),
        ("VIDEO__WIDTH", width.to_string()),
        ("VIDEO__HEIGHT", height.to_string()),
        ("VIDEO__FPS", "30".into()),
        ("VIDEO__ICE__LOCAL_ADDRESSES", "[\"127.0.0.1\"]".into()),
    ]
}

/// Hovering at `at`, as the simulated receiver.
pub(crate) fn hovering_at(at: (f64, f64)) -> Vec<(&'static str, String)> {
    vec![
        ("GPS__SOURCE", "\"simulated\"".into()),
        ("GPS__SIMULATED__KIND", "\"hover\"".into()),
        ("GPS__SIMULATED__LAT", at.0.to_string()),
        ("GPS__SIMULATED__LNG", at.1.to_string()),
    ]
}

/// Enrolls a device named `name` in `supplier`'s workspace with `settings`
/// (`SECTION__KEY`, TOML values) over the bench's own, starts it, and waits
/// until the server sees it connected with a position.
pub(crate) async fn start_agent(
    t: &TestApp,
    supplier: &Actor,
    name: &str,
    state: &std::path::Path,
    settings: &[(&str, String)],
) -> Agent {
    let binary = env!("CARGO_BIN_EXE_lx-agent");
    let mut envs: Vec<(String, String)> = [
        (
            "SERVER__URL",
            format!("\"{}\"", t.base.trim_end_matches("/api/v1")),
        ),
        ("DEVICE__STATE_DIR", format!("\"{}\"", state.display())),
        ("DEVICE__NAME", format!("\"{name}\"")),
        ("HEALTH__LISTEN", "\"127.0.0.1:0\"".into()),
        ("LOG__FILTER", "\"warn\"".into()),
    ]
    .into_iter()
    .chain(settings.iter().map(|(k, v)| (*k, v.clone())))
    .map(|(k, v)| (format!("LX_AGENT__{k}"), v))
    .collect();
    envs.push(("RUST_LOG".into(), "warn".into()));
    let token = t
        .post(
            format!("/workspaces/{}/enrollment-tokens", supplier.workspace_id),
            supplier.auth(),
            json!({}),
        )
        .await
        .ok()
        .data()["token"]
        .as_str()
        .expect("an enrollment token")
        .to_owned();
    let enrolled = Command::new(binary)
        .args(["enroll", "--token", &token])
        .envs(envs.clone())
        .stdout(Stdio::null())
        .status()
        .expect("lx-agent enroll");
    assert!(enrolled.success(), "lx-agent enroll failed");
    let agent = Agent {
        child: Command::new(binary)
            .arg("run")
            .envs(envs)
            .stdout(Stdio::null())
            .spawn()
            .expect("lx-agent run"),
        name: name.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !connected(t, supplier, name).await {
        assert!(
            Instant::now() < deadline,
            "{name} did not connect with a position within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    agent
}

async fn connected(t: &TestApp, supplier: &Actor, name: &str) -> bool {
    let list = t
        .get(
            format!("/workspaces/{}/operators", supplier.workspace_id),
            supplier.auth(),
        )
        .await
        .ok();
    list.data().as_array().is_some_and(|ops| {
        ops.iter()
            .any(|op| op["name"] == name && op["connected"] == true && op["position"].is_object())
    })
}
