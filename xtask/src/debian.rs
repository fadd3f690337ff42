//! Debian packages the workspace needs, installed when missing.
//!
//! Checked with `dpkg-query`, installed with `apt-get install -y
//! --no-install-recommends` after one `apt-get update` per run. Both need
//! root: when not root, this prints the exact command and fails.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::bail;

use crate::{header, stream_ok};

/// GStreamer 1.22 for `lx-media`: headers for the Rust bindings, plus the
/// plugins the publisher, the ingest and the decoder use (webrtcbin in
/// -bad, libnice's ICE in -nice, VP8 and RTP in -good, x264 in -ugly,
/// H.264 decoding in -libav).
pub(crate) const GSTREAMER: &[&str] = &[
    "pkg-config",
    "libgstreamer1.0-dev",
    "libgstreamer-plugins-base1.0-dev",
    "libgstreamer-plugins-bad1.0-dev",
    "gstreamer1.0-plugins-base",
    "gstreamer1.0-plugins-good",
    "gstreamer1.0-plugins-bad",
    "gstreamer1.0-plugins-ugly",
    "gstreamer1.0-nice",
    "gstreamer1.0-libav",
    "gstreamer1.0-tools",
];

/// Debian's Chromium, which the browser tests drive with playwright-core.
pub(crate) const CHROMIUM: &[&str] = &["chromium"];
/// Where Debian's package puts it.
pub(crate) const CHROMIUM_BINARY: &str = "/usr/bin/chromium";

/// The cameras the tests meet: an IP camera for the agent's RTSP tests
/// (GStreamer's RTSP server through Debian's Python and PyGObject,
/// `agent/tests/rtsp/camera.py`), and libcamera's source element, whose
/// pipeline is built and negotiated without a camera (`media/tests/cameras.rs`).
pub(crate) const CAMERAS: &[&str] = &[
    "python3",
    "python3-gi",
    "gir1.2-gst-rtsp-server-1.0",
    "gstreamer1.0-libcamera",
];

/// The MQTT broker the fleet link uses by default, and its command-line
/// clients (the interop tests and the demo's fleet view use them).
pub(crate) const MOSQUITTO: &[&str] = &["mosquitto", "mosquitto-clients"];

/// PostgreSQL (15 on bookworm), the store several lx-server replicas share:
/// the tests start throwaway clusters of it on loopback (`initdb`, run as
/// the package's `postgres` user through util-linux's `setpriv`).
pub(crate) const POSTGRESQL: &[&str] = &["postgresql"];

/// OpenSSL's headers: the agent's MQTT over TLS links the system's OpenSSL;
/// the `openssl` command makes the TLS tests' certificates.
pub(crate) const OPENSSL: &[&str] = &["pkg-config", "libssl-dev", "openssl"];

/// `systemd-analyze`, which checks the shipped units.
pub(crate) const SYSTEMD: &[&str] = &["systemd"];

/// This machine's dpkg architecture, asked once per run.
fn native_arch() -> &'static str {
    static NATIVE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NATIVE.get_or_init(|| {
        Command::new("dpkg")
            .arg("--print-architecture")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    })
}

static INDEX_FRESH: AtomicBool = AtomicBool::new(false);

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Installed for this machine: `pkg:arch` as named, a bare name in the
/// native architecture (or `all`). A cross build's `pkg:armhf` does not
/// count for the host, and installing it may have removed the host's.
fn installed(package: &str) -> bool {
    let (name, arch) = match package.split_once(':') {
        Some((name, arch)) => (name, arch),
        None => (package, native_arch()),
    };
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status} ${Architecture}\n", name])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout).lines().any(|line| {
                line.starts_with("install ok installed")
                    && line
                        .rsplit(' ')
                        .next()
                        .is_some_and(|a| a == arch || a == "all")
            })
        })
}

/// `apt-get update`, at most once per xtask run.
pub(crate) fn refresh_index() -> anyhow::Result<()> {
    if INDEX_FRESH.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    stream_ok("apt-get update", Command::new("apt-get").arg("update"))
}

/// `apt-get update` even if this run did one already: the sources changed
/// since, and the earlier index does not know the new ones.
pub(crate) fn refresh_index_for_new_sources() -> anyhow::Result<()> {
    INDEX_FRESH.store(true, Ordering::SeqCst);
    stream_ok("apt-get update", Command::new("apt-get").arg("update"))
}

/// Installs whichever of `packages` is missing; `what` names them in messages.
pub(crate) fn ensure(what: &str, packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("    {what}: present");
        return Ok(());
    }
    let command = format!(
        "apt-get install -y --no-install-recommends {}",
        missing.join(" ")
    );
    if !is_root() {
        eprintln!(
            "\n{what} needs Debian packages that are missing. Run:\n\n    sudo apt-get update && sudo {command}\n\nthen run this again."
        );
        bail!("{what}: missing {}", missing.join(", "));
    }
    header(&format!("installing {what}: {}", missing.join(" ")));
    refresh_index()?;
    stream_ok(
        &command,
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}
