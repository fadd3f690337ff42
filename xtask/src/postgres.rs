//! A throwaway PostgreSQL cluster for `cargo xtask demo --replicas N`:
//! Debian's `initdb` in the demo's directory, the server on a free loopback
//! port, as the package's `postgres` user when xtask runs as root
//! (PostgreSQL refuses root), through util-linux's `setpriv`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// The newest installed PostgreSQL's programs.
fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .context("/usr/lib/postgresql (Debian's postgresql package)")?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program` as the cluster's owner.
pub(crate) fn as_owner(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    if is_root() {
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .env("HOME", "/tmp")
            .env("USER", "postgres");
    }
    command.arg("--").arg(program);
    command
}

/// A cluster initialised in `dir/postgres`; `start` runs it.
pub(crate) struct Cluster {
    pub(crate) port: u16,
    pub(crate) data: PathBuf,
    pub(crate) socket_dir: PathBuf,
    bin: PathBuf,
}

impl Cluster {
    pub(crate) fn init(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let root = dir.join("postgres");
        std::fs::create_dir_all(&root)?;
        if is_root() {
            let status = Command::new("chown")
                .args(["postgres:postgres"])
                .arg(&root)
                .status()?;
            if !status.success() {
                bail!("chown postgres {} failed", root.display());
            }
        }
        let data = root.join("data");
        let out = as_owner(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=lx",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(Self {
            port,
            data,
            socket_dir: root,
            bin,
        })
    }

    /// The command that runs the server (in the foreground).
    pub(crate) fn command(&self) -> Command {
        let mut server = as_owner(&self.bin.join("postgres"));
        server
            .arg("-D")
            .arg(&self.data)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-k")
            .arg(&self.socket_dir);
        server
    }

    /// The URL of its `postgres` database, where the demo's replicas meet.
    pub(crate) fn url(&self) -> String {
        format!("postgres://lx@127.0.0.1:{}/postgres", self.port)
    }

    /// Waits until it listens.
    pub(crate) fn wait_listening(&self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!(
                    "postgres did not listen on 127.0.0.1:{} within 30 s",
                    self.port
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(started.elapsed())
    }
}
