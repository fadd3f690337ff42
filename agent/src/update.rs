//! Over-the-air updates: a build signed by the fleet's update key is
//! downloaded with a size cap, checked, swapped in by a rename, and rolled
//! back by the build before it when the new one does not come up
//! (docs/agent.md, "Updates").
//!
//! The layout, under `<state_dir>/releases/`:
//! - `lx-agent-<version>-<sha8>`: the installed builds;
//! - `current` → the build systemd starts (`ExecStart`);
//! - `previous` → the build before it: `ExecStartPre` runs its
//!   `update-guard`, so a new build is judged by the one known to work;
//! - `pending.json`: an update swapped in and not yet confirmed;
//! - `last-update.json`: how the last one ended, for the status.
//!
//! [`judge`] is pure; the rest is the file system, the network and the
//! new build's `--version`.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lx_protocol::update::{UpdateOutcome, UpdateRequest, UpdateStatus};
use lx_protocol::wallet::{Address, Signature65};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::UpdateConfig;

const CURRENT: &str = "current";
const PREVIOUS: &str = "previous";
const PENDING: &str = "pending.json";
const LAST: &str = "last-update.json";
const DOWNLOAD: &str = "download.part";
/// How long a new build may take to print its version.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// An update swapped in and not yet confirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    pub version: String,
    pub from_version: String,
    /// File names in the releases directory.
    pub from: String,
    pub to: String,
    pub swapped_at_ms: i64,
    pub deadline_ms: i64,
    /// How often the new build was started (the guard counts).
    pub starts: u32,
}

/// What the guard does before systemd starts `current`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No update waits: start what is there.
    Start,
    /// The new build's first start.
    TryNew,
    /// The new build had its chance: go back, and say why.
    RollBack(String),
}

/// The guard's decision. A new build gets one start before `deadline_ms`:
/// a second start means the first ended (a crash, systemd's start timeout
/// without READY, its watchdog, or its own deadline) before it was
/// confirmed.
pub fn judge(pending: Option<&Pending>, now_ms: i64) -> Verdict {
    let Some(p) = pending else {
        return Verdict::Start;
    };
    let after_s = (now_ms - p.swapped_at_ms).max(0) / 1000;
    if now_ms > p.deadline_ms {
        let bound_s = (p.deadline_ms - p.swapped_at_ms) / 1000;
        return Verdict::RollBack(format!(
            "{} was not confirmed (READY and a first heartbeat) within {bound_s} s",
            p.version
        ));
    }
    if p.starts > 0 {
        return Verdict::RollBack(format!(
            "{} stopped {after_s} s after the swap without being confirmed (READY and a first heartbeat)",
            p.version
        ));
    }
    Verdict::TryNew
}

/// Why an update was refused; the fleet's ack carries it.
pub type Refusal = String;

/// The releases directory of a device.
#[derive(Debug, Clone)]
pub struct Releases {
    dir: PathBuf,
}

impl Releases {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.join("releases"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn pending(&self) -> anyhow::Result<Option<Pending>> {
        read_json(&self.path(PENDING))
    }

    pub fn last_outcome(&self) -> anyhow::Result<Option<UpdateStatus>> {
        read_json(&self.path(LAST))
    }

    /// The build a link points at (its file name in the directory).
    fn target_of(&self, link: &str) -> Option<String> {
        let target = std::fs::read_link(self.path(link)).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Points `link` at `file` by renaming a fresh link over it: a reader
    /// sees the old target or the new one, never none.
    fn point(&self, link: &str, file: &str) -> anyhow::Result<()> {
        let fresh = self.path(&format!(".{link}.new"));
        let _ = std::fs::remove_file(&fresh);
        std::os::unix::fs::symlink(file, &fresh)?;
        std::fs::rename(&fresh, self.path(link))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Lays out a first build: it becomes `current` and `previous`.
    pub fn install_first(&self, binary: &Path, version: &str) -> anyhow::Result<String> {
        std::fs::create_dir_all(&self.dir)?;
        let name = format!("lx-agent-{version}");
        let to = self.path(&name);
        std::fs::copy(binary, &to)?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
        self.point(CURRENT, &name)?;
        self.point(PREVIOUS, &name)?;
        Ok(name)
    }

    /// Whether this process is the build `current` names: an update swaps
    /// `current`, so an agent started from anywhere else would never run it.
    fn check_running_from_current(&self) -> Result<(), Refusal> {
        let exe = std::env::current_exe().map_err(|e| format!("this agent's path: {e}"))?;
        let current = std::fs::canonicalize(self.path(CURRENT)).ok();
        let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
        if current.as_deref() != Some(exe.as_path()) {
            return Err(format!(
                "this agent runs from {}, not from {}: updates need the layout `cargo xtask install-agent` makes (docs/agent.md, \"Updates\")",
                exe.display(),
                self.path(CURRENT).display()
            ));
        }
        Ok(())
    }

    /// Installs a downloaded, hash-checked build that `signature` covers:
    /// asks it its version, refuses anything not newer than this one, and
    /// swaps it in. The caller restarts.
    pub async fn install(
        &self,
        staged: &Path,
        sha256: &str,
        confirm_within: Duration,
        now_ms: i64,
    ) -> Result<String, Refusal> {
        let result = self
            .install_checked(staged, sha256, confirm_within, now_ms)
            .await;
        let _ = std::fs::remove_file(staged);
        result
    }

    async fn install_checked(
        &self,
        staged: &Path,
        sha256: &str,
        confirm_within: Duration,
        now_ms: i64,
    ) -> Result<String, Refusal> {
        let failed = |what: &str, e: &dyn std::fmt::Display| format!("{what}: {e}");
        std::fs::set_permissions(staged, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| failed("making the artefact executable", &e))?;
        let version = probe_version(staged).await?;
        newer_than_running(&version)?;
        let from = self
            .target_of(CURRENT)
            .ok_or_else(|| format!("{} is not a link", self.path(CURRENT).display()))?;
        let name = format!("lx-agent-{version}-{}", &sha256[..8]);
        std::fs::rename(staged, self.path(&name))
            .map_err(|e| failed("keeping the artefact", &e))?;
        let pending = Pending {
            version: version.clone(),
            from_version: crate::VERSION.to_owned(),
            from: from.clone(),
            to: name.clone(),
            swapped_at_ms: now_ms,
            deadline_ms: now_ms + i64::try_from(confirm_within.as_millis()).unwrap_or(i64::MAX),
            starts: 0,
        };
        write_json(&self.path(PENDING), &pending)
            .map_err(|e| failed("recording the update", &e))?;
        self.point(PREVIOUS, &from)
            .and_then(|()| self.point(CURRENT, &name))
            .map_err(|e| {
                let _ = std::fs::remove_file(self.path(PENDING));
                failed("swapping the build", &e)
            })?;
        tracing::info!(from = crate::VERSION, to = %version, "update swapped in; restarting into it");
        Ok(version)
    }

    /// `update-guard`, before every start: a new build's first start is
    /// counted, a second one (or one past the deadline) swaps the build
    /// before it back in. Returns what it did.
    pub fn guard(&self, now_ms: i64) -> anyhow::Result<Verdict> {
        let pending = self.pending()?;
        let verdict = judge(pending.as_ref(), now_ms);
        match (&verdict, pending) {
            (Verdict::TryNew, Some(mut p)) => {
                p.starts += 1;
                write_json(&self.path(PENDING), &p)?;
            }
            (Verdict::RollBack(reason), Some(p)) => {
                self.point(CURRENT, &p.from)?;
                write_json(
                    &self.path(LAST),
                    &UpdateStatus {
                        version: p.version.clone(),
                        from_version: p.from_version.clone(),
                        outcome: UpdateOutcome::RolledBack,
                        reason: Some(reason.clone()),
                        at: lx_protocol::time::format_millis(now_ms),
                    },
                )?;
                std::fs::remove_file(self.path(PENDING))?;
                sync_dir(&self.dir);
            }
            _ => {}
        }
        Ok(verdict)
    }

    /// The update this build is the new side of, if any.
    pub fn pending_for_me(&self) -> Option<Pending> {
        let pending = self.pending().ok().flatten()?;
        let exe = std::env::current_exe().ok()?;
        let exe = std::fs::canonicalize(&exe).unwrap_or(exe);
        let to = std::fs::canonicalize(self.path(&pending.to)).ok()?;
        (exe == to).then_some(pending)
    }

    /// The new build came up: the update is installed. Builds other than
    /// `current` and `previous` are removed.
    pub fn confirm(&self, pending: &Pending, now_ms: i64) -> anyhow::Result<UpdateStatus> {
        let confirmed = UpdateStatus {
            version: pending.version.clone(),
            from_version: pending.from_version.clone(),
            outcome: UpdateOutcome::Installed,
            reason: None,
            at: lx_protocol::time::format_millis(now_ms),
        };
        write_json(&self.path(LAST), &confirmed)?;
        std::fs::remove_file(self.path(PENDING))?;
        sync_dir(&self.dir);
        let keep = [self.target_of(CURRENT), self.target_of(PREVIOUS)];
        for entry in std::fs::read_dir(&self.dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with("lx-agent-") && !keep.iter().flatten().any(|k| *k == name) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(confirmed)
    }
}

/// The new build's side: once READY went out, the first heartbeat or
/// sample the server accepts confirms the update. Past the deadline it asks
/// the agent to exit failed, so that the guard swaps the old build back.
pub async fn confirm_when_heard(
    releases: Releases,
    pending: Pending,
    telemetry: std::sync::Arc<tokio::sync::Mutex<crate::status::TelemetryStats>>,
    (outcome, exit): (
        tokio::sync::watch::Sender<Option<UpdateStatus>>,
        tokio::sync::mpsc::Sender<crate::status::Exit>,
    ),
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tracing::info!(from = %pending.from_version, "this build is on trial until its first heartbeat is accepted");
    loop {
        let now_ms = crate::wall_now_ms();
        if telemetry.lock().await.sent > 0 {
            match releases.confirm(&pending, now_ms) {
                Ok(confirmed) => {
                    tracing::info!(version = %pending.version, "update confirmed");
                    outcome.send_replace(Some(confirmed));
                }
                Err(e) => tracing::error!(error = %e, "the update could not be confirmed"),
            }
            return;
        }
        if now_ms > pending.deadline_ms {
            let why = format!(
                "no heartbeat was accepted within {} s of the update",
                (pending.deadline_ms - pending.swapped_at_ms) / 1000
            );
            let _ = exit.send(crate::status::Exit::Unconfirmed(why)).await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Applies the fleet's `update`: the signature first (nothing is fetched
/// for a request the update key did not sign), then the download under the
/// cap, the hash, the build's own version, the swap.
pub async fn update_from_url(
    config: &UpdateConfig,
    releases: &Releases,
    request: &UpdateRequest,
    now_ms: i64,
) -> Result<String, Refusal> {
    check_signature(config, &request.sha256, &request.signature)?;
    check_ready(releases)?;
    let fetched = download(&request.url, config, &releases.path(DOWNLOAD)).await;
    install_fetched(releases, config, fetched, &request.sha256, now_ms, |got| {
        format!(
            "the artefact's SHA-256 is {got}, not the {} the command names",
            request.sha256
        )
    })
    .await
}

/// The end both ways in share: what `fetched` left in `download.part`
/// must hash to `sha256`; then it is installed. Nothing is left behind
/// when it is not.
async fn install_fetched(
    releases: &Releases,
    config: &UpdateConfig,
    fetched: Result<String, Refusal>,
    sha256: &str,
    now_ms: i64,
    mismatch: impl FnOnce(&str) -> String,
) -> Result<String, Refusal> {
    let staged = releases.path(DOWNLOAD);
    let got = match fetched {
        Ok(got) if got == sha256 => got,
        Ok(got) => {
            let _ = std::fs::remove_file(&staged);
            return Err(mismatch(&got));
        }
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e);
        }
    };
    releases
        .install(
            &staged,
            &got,
            Duration::from_secs(config.confirm_within_s),
            now_ms,
        )
        .await
}

/// `lx-agent update FILE`: the same checks on a file the manifest beside it
/// describes.
pub async fn update_from_file(
    config: &UpdateConfig,
    releases: &Releases,
    file: &Path,
    manifest: &lx_protocol::update::UpdateManifest,
    now_ms: i64,
) -> Result<String, Refusal> {
    if manifest.target != crate::TARGET {
        return Err(format!(
            "the artefact is built for {}, this device runs {}",
            manifest.target,
            crate::TARGET
        ));
    }
    let sha256 = lx_protocol::update::parse_sha256(&manifest.sha256)
        .map_err(|e| format!("the manifest's sha256 {e}"))?;
    check_signature(config, &sha256, &manifest.signature)?;
    check_ready(releases)?;
    let fetched = copy_hashing(file, &releases.path(DOWNLOAD), config.max_bytes);
    install_fetched(releases, config, fetched, &sha256, now_ms, |got| {
        format!(
            "{}'s SHA-256 is {got}, not the {sha256} its manifest names",
            file.display()
        )
    })
    .await
}

fn check_signature(
    config: &UpdateConfig,
    sha256: &str,
    signature: &Signature65,
) -> Result<Address, Refusal> {
    let key = config.signer()?;
    let by = lx_protocol::update::signer(crate::TARGET, sha256, signature)
        .map_err(|e| format!("the signature: {e}"))?;
    if by != key {
        return Err(format!(
            "the signature over this artefact for {} is by {by}, not by the fleet's update key {key}",
            crate::TARGET
        ));
    }
    Ok(by)
}

fn check_ready(releases: &Releases) -> Result<(), Refusal> {
    releases.check_running_from_current()?;
    if let Ok(Some(p)) = releases.pending() {
        return Err(format!(
            "the update to {} is still waiting to be confirmed",
            p.version
        ));
    }
    Ok(())
}

/// Fetches `url` into `to`, refusing past `max_bytes` (announced or
/// counted); returns the SHA-256 of what arrived.
async fn download(url: &str, config: &UpdateConfig, to: &Path) -> Result<String, Refusal> {
    let cap = config.max_bytes;
    let said = lx_protocol::redact::url_credentials(url);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.download_timeout_s))
        .build()
        .map_err(|e| format!("the download client: {e}"))?;
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("downloading {said}: {}", without_url(&e)))?;
    if !response.status().is_success() {
        return Err(format!("downloading {said}: HTTP {}", response.status()));
    }
    if let Some(length) = response.content_length().filter(|&n| n > cap) {
        return Err(format!(
            "the artefact is {length} bytes, over the cap of {cap} (update.max_bytes)"
        ));
    }
    let mut file = create_private(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut hash = Sha256::new();
    let mut total: u64 = 0;
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("downloading {said}: {}", without_url(&e)))?
    {
        total += chunk.len() as u64;
        if total > cap {
            return Err(format!(
                "the artefact passed the cap of {cap} bytes (update.max_bytes) while downloading"
            ));
        }
        hash.update(&chunk);
        file.write_all(&chunk)
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(hex::encode(hash.finalize()))
}

/// A transfer error without the URL (it may carry credentials; the
/// message names it redacted already).
fn without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(url) => text.replace(url.as_str(), "the artefact URL"),
        None => text,
    }
}

fn copy_hashing(from: &Path, to: &Path, cap: u64) -> Result<String, Refusal> {
    use std::io::Read;
    let mut source = std::fs::File::open(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let length = source.metadata().map(|m| m.len()).unwrap_or(0);
    if length > cap {
        return Err(format!(
            "{} is {length} bytes, over the cap of {cap} (update.max_bytes)",
            from.display()
        ));
    }
    let mut file = create_private(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = source
            .read(&mut buf)
            .map_err(|e| format!("{}: {e}", from.display()))?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    file.sync_all()
        .map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(hex::encode(hash.finalize()))
}

fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o700)
        .open(path)
}

/// What the new build says it is (`lx-agent X.Y.Z`): it runs here, and its
/// version is the one inside the signed bytes.
async fn probe_version(binary: &Path) -> Result<String, Refusal> {
    let run = tokio::process::Command::new(binary)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(PROBE_TIMEOUT, run)
        .await
        .map_err(|_| {
            format!(
                "the new build did not print its version within {} s",
                PROBE_TIMEOUT.as_secs()
            )
        })?
        .map_err(|e| format!("the new build does not run on this device: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.trim().strip_prefix("lx-agent ") {
        Some(version) if out.status.success() && !version.is_empty() => {
            Ok(version.trim().to_owned())
        }
        _ => Err(format!(
            "the new build's --version said {:?} ({}), not `lx-agent <version>`",
            text.trim().chars().take(80).collect::<String>(),
            out.status
        )),
    }
}

/// Only forward: an older signed build cannot be pushed back onto a device.
fn newer_than_running(version: &str) -> Result<(), Refusal> {
    let new = semver::Version::parse(version)
        .map_err(|e| format!("the new build's version '{version}' is not semver: {e}"))?;
    let running = semver::Version::parse(crate::VERSION)
        .map_err(|e| format!("this build's version '{}': {e}", crate::VERSION))?;
    if new <= running {
        return Err(format!(
            "the artefact is version {new}, not newer than the running {running} (a fleet goes back by releasing a newer version)"
        ));
    }
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).map_err(|e| {
            anyhow::anyhow!("{} is not what it should be: {e}", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
}

/// Written beside, synced, renamed over: a power cut leaves the old file
/// or the new one.
fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let fresh = path.with_extension("json.new");
    let mut file = std::fs::File::create(&fresh)?;
    file.write_all(&serde_json::to_vec_pretty(value)?)?;
    file.sync_all()?;
    std::fs::rename(&fresh, path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir);
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(starts: u32) -> Pending {
        Pending {
            version: "0.2.0".into(),
            from_version: "0.1.0".into(),
            from: "lx-agent-0.1.0".into(),
            to: "lx-agent-0.2.0-abcdef01".into(),
            swapped_at_ms: 1_000_000,
            deadline_ms: 1_180_000,
            starts,
        }
    }

    #[test]
    fn a_new_build_gets_one_start_before_its_deadline() {
        assert_eq!(judge(None, 5), Verdict::Start);
        assert_eq!(judge(Some(&pending(0)), 1_001_000), Verdict::TryNew);
        match judge(Some(&pending(1)), 1_095_000) {
            Verdict::RollBack(why) => assert!(why.contains("stopped 95 s after"), "{why}"),
            other => panic!("{other:?}"),
        }
        match judge(Some(&pending(0)), 1_180_001) {
            Verdict::RollBack(why) => assert!(why.contains("within 180 s"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_newer_builds_are_taken() {
        let running = semver::Version::parse(crate::VERSION).unwrap();
        let next = semver::Version::new(running.major, running.minor, running.patch + 1);
        assert!(newer_than_running(&next.to_string()).is_ok());
        let error = newer_than_running(crate::VERSION).unwrap_err();
        assert!(error.contains("not newer"), "{error}");
        assert!(newer_than_running("0.0.1").is_err());
        assert!(newer_than_running("latest").unwrap_err().contains("semver"));
    }

    #[test]
    fn the_guard_rolls_back_and_records_why() {
        let dir = tempfile::tempdir().unwrap();
        let releases = Releases::new(dir.path());
        let binary = dir.path().join("built");
        std::fs::write(&binary, b"old").unwrap();
        let old = releases.install_first(&binary, "0.1.0").unwrap();
        std::fs::write(releases.path("lx-agent-0.2.0-abcdef01"), b"new").unwrap();
        releases.point(CURRENT, "lx-agent-0.2.0-abcdef01").unwrap();
        write_json(&releases.path(PENDING), &pending(0)).unwrap();

        assert_eq!(releases.guard(1_001_000).unwrap(), Verdict::TryNew);
        assert_eq!(releases.pending().unwrap().unwrap().starts, 1);
        assert_eq!(
            releases.target_of(CURRENT).unwrap(),
            "lx-agent-0.2.0-abcdef01"
        );
        assert!(matches!(
            releases.guard(1_030_000).unwrap(),
            Verdict::RollBack(_)
        ));
        assert_eq!(releases.target_of(CURRENT).unwrap(), old);
        assert_eq!(std::fs::read(releases.path(CURRENT)).unwrap(), b"old");
        assert!(releases.pending().unwrap().is_none());
        let last = releases.last_outcome().unwrap().unwrap();
        assert_eq!(last.outcome, UpdateOutcome::RolledBack);
        assert_eq!(
            (last.version.as_str(), last.from_version.as_str()),
            ("0.2.0", "0.1.0")
        );
        assert_eq!(releases.guard(1_040_000).unwrap(), Verdict::Start);
    }

    #[tokio::test]
    async fn a_new_build_is_confirmed_by_its_first_heartbeat_or_exits_failed_at_the_deadline() {
        use std::sync::Arc;
        use tokio::sync::{Mutex, mpsc, watch};
        let dir = tempfile::tempdir().unwrap();
        let releases = Releases::new(dir.path());
        std::fs::create_dir_all(releases.dir()).unwrap();
        let now = crate::wall_now_ms();
        let run = |deadline_ms: i64, sent: u64| {
            let mut p = pending(1);
            p.swapped_at_ms = now - 1000;
            p.deadline_ms = deadline_ms;
            write_json(&releases.path(PENDING), &p).unwrap();
            let stats = Arc::new(Mutex::new(crate::status::TelemetryStats {
                sent,
                ..Default::default()
            }));
            let (outcome_tx, outcome_rx) = watch::channel(None);
            let (exit_tx, mut exit_rx) = mpsc::channel(1);
            let (_stop_tx, stop_rx) = watch::channel(false);
            let task =
                confirm_when_heard(releases.clone(), p, stats, (outcome_tx, exit_tx), stop_rx);
            async move {
                task.await;
                (
                    outcome_rx.borrow().clone(),
                    exit_rx.try_recv().ok(),
                    _stop_tx,
                )
            }
        };
        let (outcome, exit, _) = run(now + 60_000, 1).await;
        assert_eq!(outcome.unwrap().outcome, UpdateOutcome::Installed);
        assert_eq!(exit, None);
        assert!(releases.pending().unwrap().is_none());
        assert_eq!(
            releases.last_outcome().unwrap().unwrap().outcome,
            UpdateOutcome::Installed
        );

        let (outcome, exit, _) = run(now - 1, 0).await;
        assert_eq!(outcome, None);
        match exit {
            Some(crate::status::Exit::Unconfirmed(why)) => {
                assert!(why.contains("no heartbeat was accepted"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            releases.pending().unwrap().is_some(),
            "the guard, not the new build, rolls back"
        );
    }
}
