//! `cargo xtask release-agent`: the agent's update artefacts for the ARM
//! boards, each signed with the fleet's update key. Per target it writes
//! `lx-agent-<version>-<triple>` (the stripped release build, its video
//! worker appended: `lx_protocol::update::bundle`) and
//! `lx-agent-<version>-<triple>.json` (its manifest: size, SHA-256, the
//! signature, the signer), which is what a fleet manager puts in the
//! `update` command and what `lx-agent update FILE` reads.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use k256::ecdsa::SigningKey;
use lx_protocol::update::UpdateManifest;
use lx_protocol::wallet::Address;
use sha2::Digest;

use crate::cross::{Target, each_target};
use crate::header;

pub(crate) struct Options {
    /// The update key: 64 hex digits in a file, created when missing.
    pub(crate) key: PathBuf,
    pub(crate) target: String,
    pub(crate) out: PathBuf,
}

/// The version the agent build carries (it reads the same variable).
fn version() -> String {
    std::env::var("LX_AGENT_VERSION").unwrap_or_else(|_| env!("CARGO_PKG_VERSION").to_owned())
}

/// Reads the update key, or makes one (owner-only) and says what to do
/// with its address.
fn update_key(path: &Path) -> anyhow::Result<SigningKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                bail!(
                    "{} is readable by others (mode {mode:o}): chmod 600 it first",
                    path.display()
                );
            }
            let digits = text.trim().trim_start_matches("0x");
            let bytes = hex::decode(digits)
                .ok()
                .filter(|b| b.len() == 32)
                .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
            SigningKey::from_slice(&bytes)
                .with_context(|| format!("{} is not a secp256k1 key", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::random(&mut rand::thread_rng());
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            std::fs::write(path, format!("{}\n", hex::encode(key.to_bytes())))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            header(&format!("created the update key {}", path.display()));
            println!(
                "    its address {} goes in every device's update.signer; keep the file secret",
                Address::from_signing_key(&key)
            );
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Signs `binary` for `target` and writes it and its manifest to `out`.
pub(crate) fn publish(
    binary: &Path,
    target: &str,
    key: &SigningKey,
    out: &Path,
) -> anyhow::Result<UpdateManifest> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let version = version();
    let file = format!("lx-agent-{version}-{target}");
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join(&file), &bytes)?;
    std::fs::set_permissions(out.join(&file), std::fs::Permissions::from_mode(0o755))?;
    let manifest = UpdateManifest {
        version,
        target: target.to_owned(),
        size: bytes.len() as u64,
        signature: lx_protocol::update::sign(key, target, &sha256),
        sha256,
        signer: Address::from_signing_key(key),
        file: file.clone(),
    };
    std::fs::write(
        out.join(format!("{file}.json")),
        serde_json::to_vec_pretty(&manifest)?,
    )?;
    Ok(manifest)
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    let key = update_key(&options.key)?;
    let released = each_target(&options.target, "release", |t: Target| {
        let stripped = crate::cross::build_one(t, false)?;
        let manifest = publish(&stripped, t.triple, &key, &options.out)?;
        println!(
            "    {} ({:.1} MB, sha256 {}) signed by {}",
            options.out.join(&manifest.file).display(),
            manifest.size as f64 / 1e6,
            manifest.sha256,
            manifest.signer
        );
        Ok(())
    });
    // Also after a failure: the host must build as before.
    let restored = crate::cross::restore_host();
    released.and(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_artefact_verifies_against_its_manifest() {
        let dir = std::env::temp_dir().join(format!("lx-release-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let binary = dir.join("built");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&binary, b"\x7fELF pretend").unwrap();
        let key_path = dir.join("keys/update.key");
        let key = update_key(&key_path).unwrap();
        let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            update_key(&key_path).unwrap().to_bytes(),
            key.to_bytes(),
            "read back"
        );
        let manifest = publish(
            &binary,
            "aarch64-unknown-linux-gnu",
            &key,
            &dir.join("dist"),
        )
        .unwrap();
        let written: UpdateManifest = serde_json::from_slice(
            &std::fs::read(dir.join("dist").join(format!("{}.json", manifest.file))).unwrap(),
        )
        .unwrap();
        assert_eq!(written, manifest);
        assert_eq!(
            std::fs::read(dir.join("dist").join(&manifest.file)).unwrap(),
            b"\x7fELF pretend"
        );
        assert_eq!(
            lx_protocol::update::signer(&manifest.target, &manifest.sha256, &manifest.signature)
                .unwrap(),
            Address::from_signing_key(&key)
        );
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(
            update_key(&key_path)
                .unwrap_err()
                .to_string()
                .contains("readable by others")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
