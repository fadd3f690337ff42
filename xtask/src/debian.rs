//! Debian packages the workspace needs, installed when missing.
//!
//! Checked with `dpkg-query`, installed with `apt-get install -y
//! --no-install-recommends` after one `apt-get update` per run. Both need
//! root: when not root, this prints the exact command and fails.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};

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

/// The `openssl` command, which makes the TLS tests' and the demo's
/// certificates (no crate links OpenSSL: TLS is rustls throughout).
pub(crate) const OPENSSL_TOOL: &[&str] = &["openssl"];

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
    apt_update()
}

/// `apt-get update` even if this run did one already: the sources changed
/// since, and the earlier index does not know the new ones.
pub(crate) fn refresh_index_for_new_sources() -> anyhow::Result<()> {
    INDEX_FRESH.store(true, Ordering::SeqCst);
    apt_update()
}

/// The architectures `dpkg --add-architecture` added beside the native one.
pub(crate) fn foreign_architectures() -> Vec<String> {
    Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Whether any package of `arch` is installed (or half-installed).
fn has_packages_of(arch: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Architecture}\n"])
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|a| a == arch)
        })
}

/// The foreign architectures whose index `apt-get update` (its output
/// `text`) could not fetch and of which nothing is installed.
fn unfetchable(text: &str, foreign: &[String], installed: impl Fn(&str) -> bool) -> Vec<String> {
    foreign
        .iter()
        .filter(|arch| {
            text.lines().any(|l| {
                (l.starts_with("E:") || l.starts_with("W:") || l.starts_with("Err:"))
                    && l.contains(&format!("binary-{arch}"))
            }) && !installed(arch)
        })
        .cloned()
        .collect()
}

/// `apt-get update`. A mirror can serve one architecture's index broken for
/// good ("File has unexpected size … Mirror sync in progress?"); then every
/// later update fails, and every install with it, for the host too. A
/// foreign architecture whose index failed and of which nothing is
/// installed is removed again and the update retried, so that one bad
/// index costs that architecture only; the caller learns it from
/// [`foreign_architectures`].
fn apt_update() -> anyhow::Result<()> {
    header("apt-get update");
    let out = Command::new("apt-get")
        .arg("update")
        .output()
        .context("could not start apt-get")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    print!("{text}");
    if out.status.success() && !text.contains("\nE: ") {
        return Ok(());
    }
    let broken = unfetchable(&text, &foreign_architectures(), has_packages_of);
    if broken.is_empty() {
        let last = text
            .lines()
            .filter(|l| l.starts_with("E:"))
            .collect::<Vec<_>>()
            .join("; ");
        bail!("apt-get update failed: {last}");
    }
    for arch in &broken {
        println!(
            "    the mirror's index for {arch} cannot be fetched and nothing of {arch} is installed: \
             removing the architecture again, so that apt keeps working for this machine"
        );
        stream_ok(
            &format!("dpkg --remove-architecture {arch}"),
            Command::new("dpkg").args(["--remove-architecture", arch]),
        )?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_architecture_whose_index_is_broken_for_good_is_named_unless_something_of_it_is_installed()
    {
        let text = "Hit:1 http://deb.debian.org/debian bookworm InRelease\n\
            Get:5 http://deb.debian.org/debian-security bookworm-security/main armhf Packages [250 kB]\n\
            Err:5 http://deb.debian.org/debian-security bookworm-security/main armhf Packages\n\
            E: Failed to fetch http://deb.debian.org/debian-security/dists/bookworm-security/main/binary-armhf/Packages.xz  \
            File has unexpected size (250000 != 251234). Mirror sync in progress? [IP: 1.2.3.4 80]\n\
            E: Some index files failed to download. They have been ignored, or old ones used instead.\n";
        let foreign = vec!["armhf".to_owned(), "arm64".to_owned()];
        assert_eq!(
            unfetchable(text, &foreign, |_| false),
            vec!["armhf".to_owned()]
        );
        assert!(
            unfetchable(text, &foreign, |a| a == "armhf").is_empty(),
            "armhf packages installed: keep it"
        );
        assert!(
            unfetchable("Hit:1 ok\nReading package lists...\n", &foreign, |_| false).is_empty()
        );
    }
}
