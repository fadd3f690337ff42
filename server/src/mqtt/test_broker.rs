//! A real Mosquitto on loopback for tests and benchmarks, configured the way
//! `lx-server mosquitto-config` writes it: the server's password file and
//! ACL, a pid file for reloads, persistence in its own directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::broker::mosquitto::{MosquittoFiles, broker_config};
use crate::config::Config;

/// The password the server's own account gets in tests.
pub const SERVER_PASSWORD: &str = "server-secret";

#[derive(Debug)]
pub struct TestBroker {
    pub dir: PathBuf,
    pub port: u16,
    pub files: MosquittoFiles,
    conf: PathBuf,
    child: Option<Child>,
}

impl TestBroker {
    /// Writes a config for a free loopback port under `dir`; the broker
    /// starts with [`TestBroker::start`], once the server wrote the accounts.
    pub fn configure(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let files = MosquittoFiles {
            password_file: dir.join("passwords"),
            acl_file: dir.join("acl"),
            pid_file: Some(dir.join("mosquitto.pid")),
        };
        let user = current_user();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            broker_config(([127, 0, 0, 1], port).into(), &files, dir, user.as_deref()),
        )?;
        Ok(Self {
            dir: dir.to_owned(),
            port,
            files,
            conf,
            child: None,
        })
    }

    /// Adds a TLS listener with a certificate for 127.0.0.1 signed by a CA
    /// of its own (made with the `openssl` command); returns its
    /// `mqtts://` URL and the CA's PEM file. Call before [`TestBroker::start`].
    pub fn add_tls_listener(&mut self) -> anyhow::Result<(String, PathBuf)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let d = &self.dir;
        let openssl = |args: &[&str]| -> anyhow::Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(d)
                .output()
                .context("running openssl (cargo xtask test installs it)")?;
            if !out.status.success() {
                bail!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            Ok(())
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lx test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(d.join("san.ext"), "subjectAltName = IP:127.0.0.1\n")?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.pem",
        ])?;
        let mut conf = std::fs::read_to_string(&self.conf)?;
        conf.push_str(&format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            d.join("ca.pem").display(),
            d.join("server.pem").display(),
            d.join("server.key").display()
        ));
        std::fs::write(&self.conf, conf)?;
        Ok((format!("mqtts://127.0.0.1:{port}"), d.join("ca.pem")))
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Points a server configuration at this broker, managing its files.
    pub fn apply(&self, config: &mut Config) {
        config.mqtt.url = self.url();
        config.mqtt.password = SERVER_PASSWORD.into();
        config.mqtt.mosquitto.password_file = self.files.password_file.clone();
        config.mqtt.mosquitto.acl_file = self.files.acl_file.clone();
        config.mqtt.mosquitto.pid_file = self.files.pid_file.clone().unwrap_or_default();
    }

    /// Starts Mosquitto and waits until it accepts connections.
    pub fn start(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        if !self.files.password_file.exists() {
            bail!("start the server first: Mosquitto needs the password file it writes");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("mosquitto.log"))?;
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting mosquitto (cargo xtask test installs it)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                bail!("mosquitto exited ({status}): {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("mosquitto did not listen on {} within 10 s", self.port)
    }

    /// Stops it the way a service manager does (SIGTERM: it saves its
    /// persistence file), and waits.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            let _ = child.wait();
        }
    }

    /// Kills it outright: nothing is saved.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

fn current_user() -> Option<String> {
    let out = Command::new("id").arg("-un").output().ok()?;
    let name = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!name.is_empty()).then_some(name)
}
