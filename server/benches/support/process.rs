//! A real `lx-server` process for the benchmarks that measure it from the
//! outside: its own config in a temporary directory, on a free loopback
//! port, killed when dropped.

// Each benchmark uses a different part.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct LxServer {
    pub(crate) child: Child,
    /// `http://127.0.0.1:<port>`.
    pub(crate) base: String,
    /// The SQLite database.
    pub(crate) db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl LxServer {
    /// Starts the server on the built-in media plane (ICE on 127.0.0.1)
    /// with `extra` appended to its config (whole sections), and waits
    /// until it answers.
    pub(crate) async fn spawn(extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let db = dir.path().join("lx.db");
        let config = dir.path().join("server.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"{base}\"\n\
                 [store]\npath = \"{}\"\n[credit]\ndefault_micro_usdc = 100000000000\n\
                 [media]\nbackend = \"builtin\"\n[media.ice]\nlocal_addresses = [\"127.0.0.1\"]\n\
                 {extra}",
                db.display()
            ),
        )
        .expect("config");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lx-server"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("lx-server starts");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http
                .get(format!("{base}/api/v1/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Self {
                    child,
                    base,
                    db,
                    _dir: dir,
                };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("lx-server did not come up");
    }
}

impl Drop for LxServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
