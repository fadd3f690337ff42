//! A throwaway PostgreSQL cluster for tests and benchmarks, as Debian's
//! `postgresql` package installs it (`cargo xtask test` does): `initdb` in a
//! directory of its own, the server on a free loopback port with fsync off,
//! killed with the process that started it. One cluster per process; each
//! test takes a fresh database of it.
//!
//! PostgreSQL refuses to run as root, so as root the cluster runs as the
//! package's `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

pub struct TestCluster {
    port: u16,
    dir: PathBuf,
    child: Mutex<Child>,
}

/// The cluster of this process, started on first use. It is started from
/// a thread that lives as long as the process: the parent-death signal
/// follows the thread that spawned the server, and a test's thread ends
/// with the test.
pub fn shared() -> &'static TestCluster {
    static SHARED: OnceLock<TestCluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(TestCluster::start());
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .map_err(anyhow::Error::from)
            .and_then(|started| started)
            .unwrap_or_else(|e| {
                panic!(
                    "a PostgreSQL cluster for the tests: {e:#} (cargo xtask test installs \
                     Debian's postgresql package)"
                )
            })
    })
}

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

/// `program` run through util-linux's `setpriv`: as `postgres` when this
/// process is root (PostgreSQL refuses root), and killed when this process
/// dies, so no cluster outlives its tests.
fn as_cluster_owner(program: &Path) -> Command {
    let mut command = Command::new("setpriv");
    if nix::unistd::geteuid().is_root() {
        command
            .args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .env("HOME", "/tmp")
            .env("USER", "postgres");
    }
    command.args(["--pdeathsig=KILL", "--"]).arg(program);
    command
}

/// Directories of clusters whose process is gone.
fn remove_stale(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("lx-pg-"))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

impl TestCluster {
    pub fn start() -> anyhow::Result<Self> {
        let bin = bin_dir()?;
        let root = std::env::temp_dir();
        remove_stale(&root);
        let dir = root.join(format!(
            "lx-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name("postgres")?.context("no postgres user")?;
            std::os::unix::fs::chown(&dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()))?;
        }
        let data = dir.join("data");
        let mut initdb = as_cluster_owner(&bin.join("initdb"));
        initdb
            .args([
                "--auth=trust",
                "--username=lx",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .arg("-D")
            .arg(&data)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = initdb.output().context("initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut server = as_cluster_owner(&bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .arg("-k")
            .arg(&dir)
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=300",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = server.spawn().context("postgres")?;
        let cluster = Self {
            port,
            dir,
            child: Mutex::new(child),
        };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("postgres did not listen on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(cluster)
    }

    /// The URL of database `name` of this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://lx@127.0.0.1:{}/{name}", self.port)
    }

    /// A new, empty database; its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let admin = self.url("postgres");
        let started = Instant::now();
        loop {
            match tokio_postgres::connect(&admin, tokio_postgres::NoTls).await {
                Ok((client, connection)) => {
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("CREATE DATABASE {name}"))
                        .await
                        .expect("CREATE DATABASE");
                    return self.url(&name);
                }
                // The server listens before it accepts connections.
                Err(_) if started.elapsed() < Duration::from_secs(30) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("connecting to the test cluster: {e}"),
            }
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Ok(mut child) = self.child.lock() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
