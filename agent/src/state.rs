//! The agent's state directory: the device key (generated on first run,
//! never leaving the device), the enrollment, and the telemetry sequence.
//! Secrets are written 0600 inside a 0700 directory.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use k256::ecdsa::SigningKey;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// What enrollment gave this device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enrollment {
    pub operator_id: Uuid,
    pub workspace_id: Uuid,
    pub device_token: String,
    pub chain_id: u64,
    pub server_url: String,
    /// The fleet link's broker and this device's account; absent when the
    /// server ran without MQTT at enrollment (or enrolled before it had it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<lx_protocol::api::MqttCredentialsDto>,
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    lx_protocol::private_file::write(path, bytes)
        .with_context(|| format!("writing {}", path.display()))
}

impl StateDir {
    pub fn open(root: &Path) -> anyhow::Result<Self> {
        fs::create_dir_all(root)
            .with_context(|| format!("creating state directory {}", root.display()))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("restricting {}", root.display()))?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The device key, created on first use.
    pub fn device_key(&self) -> anyhow::Result<SigningKey> {
        let path = self.path("device.key");
        match fs::read_to_string(&path) {
            Ok(text) => {
                let mode = fs::metadata(&path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    bail!(
                        "{} is readable by others (mode {mode:o}); chmod 600 it",
                        path.display()
                    );
                }
                let bytes = hex::decode(text.trim())
                    .with_context(|| format!("{} is not hex", path.display()))?;
                SigningKey::from_slice(&bytes)
                    .with_context(|| format!("{} is not a secp256k1 key", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::random(&mut rand::thread_rng());
                write_private(&path, hex::encode(key.to_bytes()).as_bytes())?;
                tracing::info!(path = %path.display(), "generated the device key");
                Ok(key)
            }
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn enrollment(&self) -> anyhow::Result<Option<Enrollment>> {
        let path = self.path("enrollment.json");
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save_enrollment(&self, enrollment: &Enrollment) -> anyhow::Result<()> {
        write_private(
            &self.path("enrollment.json"),
            &serde_json::to_vec_pretty(enrollment)?,
        )
    }
}

/// Telemetry sequence numbers that only grow, across restarts and crashes:
/// a block is reserved on disk before any number in it is used, so a crash
/// skips the rest of the block instead of reusing numbers.
#[derive(Debug)]
pub struct Sequence {
    path: PathBuf,
    next: u64,
    reserved_until: u64,
}

const BLOCK: u64 = 1000;

impl Sequence {
    pub fn open(state: &StateDir) -> anyhow::Result<Self> {
        let path = state.path("sequence");
        let start = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{} is not a number", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Self {
            path,
            next: start,
            reserved_until: start,
        })
    }

    pub fn take(&mut self) -> anyhow::Result<u64> {
        if self.next >= self.reserved_until {
            let until = self.next + BLOCK;
            write_private(&self.path, until.to_string().as_bytes())?;
            self.reserved_until = until;
        }
        let n = self.next;
        self.next += 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(&dir.path().join("state")).unwrap();
        let a = state.device_key().unwrap();
        let b = state.device_key().unwrap();
        assert_eq!(a.to_bytes(), b.to_bytes());
        let mode = fs::metadata(state.path("device.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(state.path("device.key"), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            state.device_key().is_err(),
            "a key readable by others is refused"
        );
    }

    #[test]
    fn sequences_keep_growing_across_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut seq = Sequence::open(&state).unwrap();
        let first: Vec<u64> = (0..5).map(|_| seq.take().unwrap()).collect();
        assert_eq!(first, vec![1, 2, 3, 4, 5]);
        drop(seq); // a crash: nothing but the reservation was written
        let mut again = Sequence::open(&state).unwrap();
        assert!(again.take().unwrap() > 5);
    }
}
