//! Mosquitto run beside the server: its password file and ACL, written from
//! the store's broker accounts, and a SIGHUP to make it read them again.
//!
//! Devices log in with their operator id as the username, so one set of
//! `pattern` lines gives every device its own topics and nothing else; a
//! fleet manager's account lists the topics of each device of its workspace.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use base64::Engine as _;
use lx_protocol::mqtt::{SERVER_STATUS, Topic};
use uuid::Uuid;

use crate::store::MqttAccount;

/// PBKDF2-SHA512 rounds of the hashes written. Passwords are 32 random
/// bytes, so the rounds matter less than the broker's cost per CONNECT.
pub const HASH_ROUNDS: u32 = 1000;
const SALT_LEN: usize = 12;

/// Mosquitto's `$7$` hash (PBKDF2-SHA512, as `mosquitto_passwd` writes it).
pub fn hash_password(password: &str, salt: &[u8], rounds: u32) -> String {
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), salt, rounds, &mut hash);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("$7${rounds}${}${}", b64.encode(salt), b64.encode(hash))
}

/// A fresh hash with a random salt.
pub fn new_hash(password: &str) -> String {
    let salt: [u8; SALT_LEN] = rand::random();
    hash_password(password, &salt, HASH_ROUNDS)
}

/// The parts of a `$7$` hash: rounds and salt, to check a password against.
pub fn parse_hash(hash: &str) -> Option<(u32, Vec<u8>)> {
    let mut parts = hash.strip_prefix("$7$")?.split('$');
    let rounds = parts.next()?.parse().ok()?;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(parts.next()?)
        .ok()?;
    parts.next()?;
    Some((rounds, salt))
}

/// The username of a workspace's fleet manager.
pub fn fleet_username(workspace_id: Uuid) -> String {
    format!("fleet-{workspace_id}")
}

/// The password file: `username:hash` per line.
pub fn password_file(server: (&str, &str), accounts: &[MqttAccount]) -> String {
    let mut out = format!("{}:{}\n", server.0, server.1);
    for a in accounts {
        let _ = writeln!(out, "{}:{}", a.username, a.password_hash);
    }
    out
}

/// The ACL: devices reach their own topics through the patterns, the
/// server everything under `lx/v1/`, a fleet manager its workspace's
/// events and its devices' status, telemetry and commands.
pub fn acl_file(server_user: &str, accounts: &[MqttAccount]) -> String {
    let me = Uuid::nil();
    let pattern = |topic: Topic| topic.to_string().replace(&me.to_string(), "%u");
    let mut out = String::from(
        "# Written by lx-server from its store; edits here are overwritten.\n\
         # Each device logs in with its operator id and reaches its own topics only.\n",
    );
    let _ = writeln!(out, "pattern read {SERVER_STATUS}");
    for (access, topic) in [
        ("write", Topic::Status(me)),
        ("write", Topic::Telemetry(me)),
        ("write", Topic::CommandAck(me)),
        ("read", Topic::Offers(me)),
        ("read", Topic::Commands(me)),
        ("read", Topic::TelemetryAck(me)),
    ] {
        let _ = writeln!(out, "pattern {access} {}", pattern(topic));
    }
    let _ = write!(out, "\nuser {server_user}\ntopic readwrite lx/v1/#\n");
    for fleet in accounts.iter().filter(|a| a.operator_id.is_none()) {
        let _ = write!(
            out,
            "\nuser {}\ntopic read {}\n",
            fleet.username,
            Topic::WorkspaceEvents(fleet.workspace_id)
        );
        let devices = accounts
            .iter()
            .filter(|a| a.workspace_id == fleet.workspace_id)
            .filter_map(|a| a.operator_id);
        for device in devices {
            for (access, topic) in [
                ("read", Topic::Status(device)),
                ("read", Topic::Telemetry(device)),
                ("read", Topic::CommandAck(device)),
                ("write", Topic::Commands(device)),
            ] {
                let _ = writeln!(out, "topic {access} {topic}");
            }
        }
    }
    out
}

/// A `mosquitto.conf` that serves `listen` with the files the server
/// writes (for `lx-server mosquitto-config`, the demo and the tests).
/// `run_as`: Mosquitto started as root drops to this user, who must be able
/// to read the files (they are 0600, owned by the server's user).
pub fn broker_config(
    listen: std::net::SocketAddr,
    files: &MosquittoFiles,
    persistence_dir: &Path,
    run_as: Option<&str>,
) -> String {
    let mut out = String::from(
        "# Written by lx-server (`lx-server mosquitto-config`): the fleet link's broker.\n\
         per_listener_settings false\n\
         # Every client logs in with an account the server issued.\n\
         allow_anonymous false\n",
    );
    let _ = writeln!(out, "password_file {}", files.password_file.display());
    let _ = writeln!(out, "acl_file {}", files.acl_file.display());
    if let Some(pid) = &files.pid_file {
        let _ = writeln!(
            out,
            "# lx-server sends SIGHUP here when an account changes."
        );
        let _ = writeln!(out, "pid_file {}", pid.display());
    }
    if let Some(user) = run_as {
        let _ = writeln!(out, "user {user}");
    }
    let _ = writeln!(out, "listener {} {}", listen.port(), listen.ip());
    out.push_str(
        "# Without it, QoS 1 round trips stall ~40 ms on Nagle and delayed ACKs.\n\
         set_tcp_nodelay true\n\
         # Retained statuses and the server's queued messages survive a restart.\n\
         persistence true\n",
    );
    let _ = writeln!(out, "persistence_location {}/", persistence_dir.display());
    out.push_str(
        "autosave_interval 30\n\
         max_queued_messages 100000\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n",
    );
    out
}

/// Where the broker's files live, and how to have it reload them.
#[derive(Debug, Clone)]
pub struct MosquittoFiles {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    /// Mosquitto's `pid_file`; without one the files are written but the
    /// broker reads them only at its next start or SIGHUP.
    pub pid_file: Option<PathBuf>,
}

impl MosquittoFiles {
    /// Writes both files (through a rename, 0600) and signals the broker.
    pub fn write(&self, server: (&str, &str), accounts: &[MqttAccount]) -> anyhow::Result<()> {
        write_private(&self.password_file, &password_file(server, accounts))?;
        write_private(&self.acl_file, &acl_file(server.0, accounts))?;
        if let Some(pid_file) = &self.pid_file {
            reload(pid_file)?;
        }
        Ok(())
    }
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    lx_protocol::private_file::write(path, text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// SIGHUP to the broker of `pid_file`: Mosquitto reads its password file
/// and ACL again. A missing pid file means no broker runs yet: it reads
/// the files when it starts. So does a stale one, left by a broker that
/// died: its pid names no process, or (reused) one that is not Mosquitto,
/// which must not get the signal.
fn reload(pid_file: &Path) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", pid_file.display())),
    };
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .with_context(|| format!("{} does not hold a pid", pid_file.display()))?;
    if !is_mosquitto(pid) {
        tracing::info!(pid, pid_file = %pid_file.display(), "stale broker pid file: no broker to reload");
        return Ok(());
    }
    match nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGHUP,
    ) {
        // It died between the look and the signal.
        Err(nix::errno::Errno::ESRCH) => Ok(()),
        other => other,
    }
    .with_context(|| {
        format!(
            "signalling the broker (pid {pid} from {})",
            pid_file.display()
        )
    })
}

/// Whether `pid` is a running Mosquitto, by its command name.
fn is_mosquitto(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| comm.trim_end().starts_with("mosquitto"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(ws: u128, id: u128) -> MqttAccount {
        MqttAccount {
            username: Uuid::from_u128(id).to_string(),
            password_hash: "$7$1000$c2FsdA==$aGFzaA==".into(),
            workspace_id: Uuid::from_u128(ws),
            operator_id: Some(Uuid::from_u128(id)),
            created_ms: 0,
        }
    }

    #[test]
    fn a_hash_is_pbkdf2_sha512_in_mosquittos_format() {
        // RFC 6070-style vector for PBKDF2-HMAC-SHA512, "password"/"salt", 1 round.
        let hash = hash_password("password", b"salt", 1);
        let expected = "867f70cf1ade02cff3752599a3a53dc4af34c7a669815ae5d513554e1c8cf252c02d470a285a0501bad999bfe943c08f050235d7d68b1da55e63f73b60a57fce";
        let b64 = base64::engine::general_purpose::STANDARD;
        let encoded = hash.rsplit('$').next().unwrap();
        assert_eq!(hex::encode(b64.decode(encoded).unwrap()), expected);
        assert!(hash.starts_with("$7$1$c2FsdA==$"), "{hash}");
        assert_eq!(parse_hash(&hash), Some((1, b"salt".to_vec())));
        assert_ne!(new_hash("x"), new_hash("x"), "salted");
    }

    #[test]
    fn the_acl_gives_devices_their_own_topics_and_fleets_their_devices() {
        let fleet = MqttAccount {
            username: fleet_username(Uuid::from_u128(1)),
            operator_id: None,
            ..device(1, 0)
        };
        let accounts = [device(1, 10), device(1, 11), device(2, 20), fleet];
        let acl = acl_file("lx-server", &accounts);
        assert!(acl.contains("pattern write lx/v1/operators/%u/telemetry\n"));
        assert!(acl.contains("pattern read lx/v1/operators/%u/commands\n"));
        assert!(!acl.contains("pattern write lx/v1/operators/%u/commands\n"));
        assert!(acl.contains("user lx-server\ntopic readwrite lx/v1/#\n"));
        let fleet_part = acl.split("user fleet-").nth(1).unwrap();
        for id in [10u128, 11] {
            let id = Uuid::from_u128(id);
            assert!(fleet_part.contains(&format!("topic write lx/v1/operators/{id}/commands\n")));
            assert!(fleet_part.contains(&format!("topic read lx/v1/operators/{id}/status\n")));
        }
        assert!(
            !fleet_part.contains(&Uuid::from_u128(20).to_string()),
            "another workspace's device"
        );
        let passwords = password_file(("lx-server", "$7$h"), &accounts);
        assert_eq!(passwords.lines().count(), 5);
        assert!(passwords.starts_with("lx-server:$7$h\n"));
    }

    #[test]
    fn a_stale_pid_file_is_no_broker_and_its_pid_gets_no_signal() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("mosquitto.pid");
        // A broker that died: its pid names no process any more.
        let mut dead = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = dead.id();
        dead.wait().unwrap();
        std::fs::write(&pid_file, format!("{dead_pid}\n")).unwrap();
        reload(&pid_file).expect("a dead broker's pid file is no broker");
        // Its pid reused by another program: that one must not get SIGHUP.
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        std::fs::write(&pid_file, format!("{}\n", other.id())).unwrap();
        reload(&pid_file).expect("a pid that is not Mosquitto is no broker");
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            other.try_wait().unwrap().is_none(),
            "the other program still runs"
        );
        other.kill().unwrap();
        other.wait().unwrap();
        // A file that holds no pid is a configuration error, named.
        std::fs::write(&pid_file, "not a pid").unwrap();
        let err = reload(&pid_file).unwrap_err();
        assert!(
            format!("{err:#}").contains("does not hold a pid"),
            "{err:#}"
        );
        std::fs::write(&pid_file, "0").unwrap();
        assert!(
            reload(&pid_file).is_err(),
            "pid 0 would signal our own group"
        );
    }
}
