//! Debian's `mosquitto_sub` and `mosquitto_pub` as the fleet link's other
//! party in tests: clients that are not ours.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// A login on the test broker.
#[derive(Debug, Clone)]
pub struct Account {
    pub port: u16,
    pub username: String,
    pub password: String,
}

impl Account {
    pub fn new(port: u16, username: &str, password: &str) -> Self {
        Self {
            port,
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    fn args<'a>(&'a self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.args(["-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-u", &self.username, "-P", &self.password, "-q", "1"])
    }

    /// `mosquitto_pub`; its output, whatever the exit status.
    pub async fn publish(&self, topic: &str, payload: &str) -> std::process::Output {
        let mut cmd = Command::new("mosquitto_pub");
        self.args(&mut cmd)
            .args(["-t", topic, "-m", payload])
            .output()
            .await
            .expect("mosquitto_pub (cargo xtask test installs mosquitto-clients)")
    }

    /// `mosquitto_sub -v` on `topic`, reading lines as they come.
    pub fn subscribe(&self, topic: &str) -> Subscriber {
        let mut cmd = Command::new("mosquitto_sub");
        self.args(&mut cmd)
            .args(["-v", "-t", topic])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .expect("mosquitto_sub (cargo xtask test installs mosquitto-clients)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Subscriber { child, lines: rx }
    }

    /// `mosquitto_sub` with a last will, for a device that then vanishes.
    pub fn connect_with_will(&self, listen: &str, will_topic: &str, will: &str) -> Child {
        let mut cmd = Command::new("mosquitto_sub");
        self.args(&mut cmd)
            .args([
                "-t",
                listen,
                "--will-topic",
                will_topic,
                "--will-payload",
                will,
            ])
            .args(["--will-qos", "1", "--will-retain"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        cmd.spawn().expect("mosquitto_sub")
    }
}

/// A running `mosquitto_sub`.
#[derive(Debug)]
pub struct Subscriber {
    /// Killed when dropped.
    pub child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Subscriber {
    /// The next `topic payload` line within `wait`, if any.
    pub async fn next_within(&mut self, wait: Duration) -> Option<(String, String)> {
        let line = tokio::time::timeout(wait, self.lines.recv()).await.ok()??;
        let (topic, payload) = line.split_once(' ').unwrap_or((&line, ""));
        Some((topic.to_owned(), payload.to_owned()))
    }

    /// Lines until one matches, within `wait`; panics naming `what` if none.
    pub async fn until(
        &mut self,
        what: &str,
        wait: Duration,
        mut matches: impl FnMut(&str, &serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some((topic, payload)) = self.next_within(left).await else {
                panic!("no {what} within {wait:?}; saw {seen:#?}");
            };
            let json = serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null);
            if matches(&topic, &json) {
                return json;
            }
            seen.push(format!("{topic} {payload}"));
        }
    }

    /// Waits for the subscription to be in place: mosquitto_sub gives no
    /// sign, so publish a probe on a topic it hears until it arrives.
    pub async fn ready(&mut self, probe: &Account, topic: &str) {
        for _ in 0..50 {
            probe.publish(topic, "{\"probe\":true}").await;
            if let Some((_, payload)) = self.next_within(Duration::from_millis(200)).await
                && payload.contains("probe")
            {
                return;
            }
        }
        panic!("subscription on {topic} never became ready");
    }
}
