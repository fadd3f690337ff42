//! Agent footprint benchmark (`cargo xtask bench agent`).
//!
//! Runs the release `lx-agent` binary as its own process against a server
//! in this process, serving one session (a signed sample every second, the
//! lifecycle polling every second), and samples its resident memory and CPU
//! time from /proc over 60 s. Prints `BENCH agent.rss_mb=…` and
//! `BENCH agent.cpu_pct=…` (percent of one core).
//!
//! With `LX_PYTHON` (set by `cargo xtask bench agent`) the device is a
//! drone: its position comes from a flight controller over MAVLink, the
//! pymavlink stand-in of the tests streaming at 10 Hz over UDP (heartbeat,
//! GPS_RAW_INT, GLOBAL_POSITION_INT: 30 messages a second); else from a
//! fixed position.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lx_protocol::api::Role;
use lx_server::app::App;
use lx_server::auth::{generate_token, hash_key};
use lx_server::clock::{SystemClock, wall_now_ms};
use lx_server::config::Config;
use lx_server::credit::StaticCredit;
use lx_server::media::{self, ScriptedMedia};
use lx_server::store::EnrollmentToken;
use lx_server::store::sqlite::SqliteStore;
use lx_server::store::suite::build_workspace;
use uuid::Uuid;

const MEASURE: Duration = Duration::from_secs(60);
/// Linux's USER_HZ: the unit of utime and stime in /proc/<pid>/stat.
const TICKS_PER_SECOND: f64 = 100.0;

fn proc_cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th of those.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("dir");
        let mut config = Config::defaults();
        config.store.path = dir.path().join("lx.db");
        let config = Arc::new(config);
        let (tx, rx) = media::channel();
        let media = Arc::new(ScriptedMedia::new(tx));
        let app = App::new(
            Arc::clone(&config),
            Arc::new(SqliteStore::open(&config.store.path).expect("store")),
            Arc::new(SystemClock),
            Arc::new(StaticCredit::new(u64::MAX / 4)),
            media.clone(),
            None,
            [1; 32],
        )
        .await
        .expect("app");
        let (_stop, stop_rx) = tokio::sync::watch::channel(false);
        app.spawn_background(rx, stop_rx);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(axum::serve(listener, lx_server::routes::router(Arc::clone(&app))).into_future());

        let now = wall_now_ms();
        let supplier = app.store.insert_workspace(build_workspace("bench-fleet", &[Role::Supplier], Some(lx_protocol::geo::Point::new(4.711, -74.072)))).await.expect("supplier");
        app.dispatcher.sync(&supplier);
        let consumer = app.store.insert_workspace(build_workspace("bench-consumer", &[Role::Consumer], None)).await.expect("consumer");
        let token = generate_token("lxen_");
        app.store
            .insert_enrollment_token(EnrollmentToken { hash: hash_key(&token), workspace_id: supplier.id, created_ms: now, expires_ms: now + 600_000 })
            .await
            .expect("token");

        let binary = env!("CARGO_BIN_EXE_lx-agent");
        let state = dir.path().join("agent");
        let health = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr");
        let mut envs = vec![
            ("LX_AGENT__SERVER__URL", url.clone()),
            ("LX_AGENT__DEVICE__STATE_DIR", state.display().to_string()),
            ("LX_AGENT__HEALTH__LISTEN", health.to_string()),
            ("LX_AGENT__LOG__FILTER", "warn".to_owned()),
            // The target is for telemetry only; video costs what its encoder costs.
            ("LX_AGENT__VIDEO__ENABLED", "false".to_owned()),
        ];
        let _flight = match std::env::var_os("LX_PYTHON") {
            Some(python) => {
                let port = std::net::UdpSocket::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
                envs.push(("LX_AGENT__GPS__SOURCE", "mavlink".to_owned()));
                envs.push(("LX_AGENT__GPS__MAVLINK__ENDPOINT", format!("udpin:127.0.0.1:{port}")));
                let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mavlink/flight_controller.py");
                let seconds = (MEASURE.as_secs() + 30).to_string();
                let log = dir.path().join("flown.json");
                println!("position source: a MAVLink flight controller at 10 Hz over UDP (pymavlink)");
                Some(Agent(
                    Command::new(python)
                        .arg(script)
                        .args(["--out", &format!("udp:127.0.0.1:{port}"), "--seconds", &seconds])
                        .arg("--log")
                        .arg(log)
                        .spawn()
                        .expect("the flight controller stand-in runs"),
                ))
            }
            None => {
                println!("position source: fixed (set LX_PYTHON for a MAVLink flight controller)");
                envs.push(("LX_AGENT__GPS__SOURCE", "fixed".to_owned()));
                None
            }
        };
        let enrolled = Command::new(binary).arg("enroll").arg("--token").arg(&token).envs(envs.clone()).status().expect("enroll");
        assert!(enrolled.success(), "lx-agent enroll failed");
        let agent = Agent(Command::new(binary).arg("run").envs(envs).stdout(Stdio::null()).spawn().expect("run"));
        let pid = agent.0.id();

        // A session for the device, so it signs every second, once it
        // knows where it is (a flight controller stand-in takes a moment).
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let located = app
                .store
                .operators_of(supplier.id)
                .await
                .expect("operators")
                .iter()
                .any(|op| op.fix.is_some());
            if located {
                break;
            }
            assert!(Instant::now() < deadline, "the device reported no position within 30 s");
        }
        let new = lx_server::store::NewSession {
            id: Uuid::new_v4(),
            point: lx_protocol::geo::Point::new(4.711, -74.072),
            geofence_radius_m: 150,
            max_duration_seconds: 3600,
            wait_timeout_seconds: 3600,
            rate_micro_usdc: 1000,
            consumer_workspace_id: consumer.id,
            consumer_wallet: consumer.wallet,
            quote_id: None,
            created_ms: wall_now_ms(),
            min_trust_tier: 0,
        };
        let session = app.store.create_session(new, u64::MAX / 4, wall_now_ms()).await.expect("session");
        app.dispatch(session.id, true).await.expect("dispatch to the device");
        tokio::time::sleep(Duration::from_secs(3)).await;
        media.first_frame(session.id, wall_now_ms()).await;
        tokio::time::sleep(Duration::from_secs(2)).await;

        let cpu0 = proc_cpu_ticks(pid).expect("agent stat");
        let t0 = Instant::now();
        let mut peak_rss_kb = 0;
        while t0.elapsed() < MEASURE {
            peak_rss_kb = peak_rss_kb.max(proc_rss_kb(pid).expect("agent status"));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let cpu1 = proc_cpu_ticks(pid).expect("agent stat");
        let wall = t0.elapsed().as_secs_f64();
        let cpu_pct = (cpu1 - cpu0) as f64 / TICKS_PER_SECOND / wall * 100.0;
        let samples = app.store.session_samples(session.id).await.expect("samples").len();
        let rss_mb = peak_rss_kb as f64 / 1024.0;
        println!("agent (pid {pid}) over {wall:.0} s serving a session: peak RSS {rss_mb:.1} MB, CPU {cpu_pct:.2} % of one core, {samples} samples stored");
        assert!(samples as f64 >= wall, "the agent did not sign every second ({samples} samples)");
        println!("BENCH agent.rss_mb={rss_mb:.1}");
        println!("BENCH agent.cpu_pct={cpu_pct:.2}");
    });
}
