//! Signed agent updates: what the fleet's update key signs for one
//! artefact, the `update` command's arguments, and the manifest
//! `cargo xtask release-agent` writes beside each artefact.
//!
//! The key signs an EIP-191 message naming the artefact's SHA-256 and the
//! target it was built for, so a build for one board cannot be pushed to
//! another. The version is not signed separately: it is inside the signed
//! bytes, and the agent asks the verified binary for it (`--version`)
//! before it refuses a downgrade.

use serde::{Deserialize, Serialize};

use crate::wallet::{self, Address, Signature65, WalletError};

/// The longest artefact URL an `update` takes.
pub const MAX_URL_LEN: usize = 2048;

/// `update`'s arguments: where the artefact is, its SHA-256 (64 hex
/// digits) and the fleet update key's signature over [`signed_message`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRequest {
    pub url: String,
    pub sha256: String,
    pub signature: Signature65,
}

impl UpdateRequest {
    /// The checks that need nothing but the request; the error names the
    /// argument.
    pub fn validate(mut self) -> Result<Self, String> {
        if self.url.len() > MAX_URL_LEN {
            return Err(format!("args.url is longer than {MAX_URL_LEN} characters"));
        }
        let rest = self
            .url
            .strip_prefix("https://")
            .or_else(|| self.url.strip_prefix("http://"))
            .ok_or("args.url must be an http:// or https:// URL")?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err("args.url names no host".into());
        }
        self.sha256 = parse_sha256(&self.sha256)
            .map_err(|e| format!("args.sha256 {e}"))?
            .to_owned();
        Ok(self)
    }
}

/// A SHA-256 as 64 hex digits, lowercased.
pub fn parse_sha256(text: &str) -> Result<String, String> {
    if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "must be 64 hex digits, got {} characters",
            text.chars().count()
        ));
    }
    Ok(text.to_ascii_lowercase())
}

/// The text the fleet's update key signs (EIP-191 `personal_sign`).
pub fn signed_message(target: &str, sha256: &str) -> String {
    format!(
        "lx-agent update\ntarget: {target}\nsha256: {}",
        sha256.to_ascii_lowercase()
    )
}

/// Signs an artefact for `target` (the release task's side).
pub fn sign(key: &k256::ecdsa::SigningKey, target: &str, sha256: &str) -> Signature65 {
    wallet::sign_personal(key, signed_message(target, sha256).as_bytes())
}

/// The address whose key made `signature` over this artefact and target.
pub fn signer(target: &str, sha256: &str, signature: &Signature65) -> Result<Address, WalletError> {
    wallet::recover_personal(signed_message(target, sha256).as_bytes(), signature)
}

/// `lx-agent-<version>-<target>.json`, beside the artefact: what a fleet
/// manager needs for the `update` command, and what `lx-agent update FILE`
/// reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateManifest {
    pub version: String,
    pub target: String,
    /// The artefact's file name, beside this manifest.
    pub file: String,
    pub size: u64,
    pub sha256: String,
    pub signature: Signature65,
    /// The update key's address, for the reader to compare with its own.
    pub signer: Address,
}

/// How the last update of a device ended, in its status and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpdateStatus {
    /// The build the update brought.
    pub version: String,
    /// The build it replaced.
    pub from_version: String,
    pub outcome: UpdateOutcome,
    /// Why it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it was confirmed or rolled back, RFC 3339.
    pub at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOutcome {
    /// The new build reported READY and its first heartbeat was accepted.
    Installed,
    /// The new build did not come up in time; the one before it runs again.
    RolledBack,
}

/// The last bytes of a release artefact that carries its video worker:
/// the worker's length (u64, little-endian), then this magic.
pub const BUNDLE_MAGIC: [u8; 8] = *b"LXVIDEO1";
/// The length of that trailer.
pub const BUNDLE_TRAILER_LEN: u64 = 16;

/// A release artefact: the agent's (stripped) binary with its video
/// worker's appended behind it. One file keeps one hash and one signature
/// over both, and the agent's ELF still runs as it is (the loader maps
/// only what its program headers name), so `--version`, the update's swap
/// and its rollback treat it as before. Stripping the artefact again would
/// drop the worker.
pub fn bundle(mut agent: Vec<u8>, worker: &[u8]) -> Vec<u8> {
    agent.extend_from_slice(worker);
    agent.extend_from_slice(&(worker.len() as u64).to_le_bytes());
    agent.extend_from_slice(&BUNDLE_MAGIC);
    agent
}

/// Where a bundled worker sits in a file of `len` bytes that ends in
/// `trailer`: its offset and length, or `None` when the file carries none
/// (a development build) or the trailer does not fit the file.
pub fn bundled_worker(len: u64, trailer: &[u8; BUNDLE_TRAILER_LEN as usize]) -> Option<(u64, u64)> {
    let (size, magic) = trailer.split_at(8);
    if magic != BUNDLE_MAGIC {
        return None;
    }
    let size = u64::from_le_bytes(size.try_into().ok()?);
    let offset = len.checked_sub(BUNDLE_TRAILER_LEN)?.checked_sub(size)?;
    (size > 0 && offset > 0).then_some((offset, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    const HASH: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn the_signature_binds_the_hash_and_the_target() {
        let signature = sign(&key(), "aarch64-unknown-linux-gnu", HASH);
        let me = Address::from_signing_key(&key());
        assert_eq!(
            signer("aarch64-unknown-linux-gnu", HASH, &signature).unwrap(),
            me
        );
        assert_ne!(
            signer("armv7-unknown-linux-gnueabihf", HASH, &signature).unwrap(),
            me,
            "the same artefact signed for another board"
        );
        let other = HASH.replace('9', "8");
        assert_ne!(
            signer("aarch64-unknown-linux-gnu", &other, &signature).unwrap(),
            me
        );
        assert_eq!(
            signer(
                "aarch64-unknown-linux-gnu",
                &HASH.to_ascii_uppercase(),
                &signature
            )
            .unwrap(),
            me,
            "the hash's case does not matter"
        );
    }

    #[test]
    fn requests_are_checked_by_argument() {
        let request = |url: &str, sha256: &str| UpdateRequest {
            url: url.into(),
            sha256: sha256.into(),
            signature: sign(&key(), "t", HASH),
        };
        let ok = request("https://fleet.example/lx-agent", &HASH.to_ascii_uppercase())
            .validate()
            .unwrap();
        assert_eq!(ok.sha256, HASH);
        for (url, sha256, says) in [
            ("ftp://fleet.example/a", HASH, "http:// or https://"),
            ("https:///a", HASH, "no host"),
            ("file:///etc/passwd", HASH, "http:// or https://"),
            (
                "https://fleet.example/a",
                "abc",
                "args.sha256 must be 64 hex",
            ),
            (
                "https://fleet.example/a",
                &HASH.replace('9', "z"),
                "args.sha256",
            ),
        ] {
            let error = request(url, sha256).validate().unwrap_err();
            assert!(error.contains(says), "{url} {sha256}: {error}");
        }
        let long = format!("https://fleet.example/{}", "a".repeat(MAX_URL_LEN));
        assert!(
            request(&long, HASH)
                .validate()
                .unwrap_err()
                .contains("longer")
        );
    }

    #[test]
    fn a_bundle_gives_back_its_worker_and_a_plain_binary_gives_none() {
        let agent = b"\x7fELF agent".to_vec();
        let worker = b"\x7fELF worker, longer".to_vec();
        let bundled = bundle(agent.clone(), &worker);
        let len = bundled.len() as u64;
        let trailer: [u8; 16] = bundled[bundled.len() - 16..].try_into().unwrap();
        let (offset, size) = bundled_worker(len, &trailer).unwrap();
        assert_eq!(
            &bundled[offset as usize..(offset + size) as usize],
            &worker[..]
        );
        assert_eq!(
            &bundled[..offset as usize],
            &agent[..],
            "the agent comes first, unchanged"
        );
        let plain: [u8; 16] = *b"0123456789abcdef";
        assert_eq!(bundled_worker(len, &plain), None, "no magic");
        let mut lying = trailer;
        lying[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            bundled_worker(len, &lying),
            None,
            "a length past the file's start"
        );
        let mut empty = trailer;
        empty[..8].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(bundled_worker(len, &empty), None, "no worker");
        assert_eq!(
            bundled_worker(10, &trailer),
            None,
            "a file shorter than its trailer"
        );
    }
}
