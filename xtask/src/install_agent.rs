//! `cargo xtask install-agent`: lays out a device — the release file
//! (`lx-agent` with its video worker appended; native, or cross-built for
//! `--target`), its config, the systemd unit,
//! the `lx-agent` user and its state directory — under `--root` (`/` on the
//! device itself; a staging directory for an image). An existing config is
//! kept: reinstalling updates the binary and the unit only.
//!
//! The build goes where over-the-air updates swap it (docs/agent.md,
//! "Updates"): `/var/lib/lx-agent/releases/lx-agent-<version>`, with the
//! `current` and `previous` links the unit starts and judges updates with,
//! and `/usr/local/bin/lx-agent` a link to `current`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::{cargo, header, stream_ok};

pub(crate) struct Options {
    pub(crate) root: PathBuf,
    /// configs/agent-<profile>.toml: drone, rpi-camera or fixed-ptz.
    pub(crate) profile: String,
    /// aarch64 or armv7: cross-build with `cargo xtask cross`'s toolchain.
    pub(crate) target: Option<String>,
}

fn copy(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = to.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, to).with_context(|| format!("installing {}", to.display()))
}

/// Points `releases/<name>` at `target` by renaming a fresh link over it.
fn link(releases: &Path, name: &str, target: &Path) -> anyhow::Result<()> {
    let fresh = releases.join(format!(".{name}.new"));
    let _ = std::fs::remove_file(&fresh);
    std::os::unix::fs::symlink(target, &fresh)?;
    std::fs::rename(&fresh, releases.join(name))
        .with_context(|| format!("linking {}", releases.join(name).display()))
}

pub(crate) fn run(options: &Options) -> anyhow::Result<()> {
    let source_config = crate::root()
        .join("configs")
        .join(format!("agent-{}.toml", options.profile));
    if !source_config.exists() {
        bail!(
            "no configs/agent-{}.toml (profiles: drone, rpi-camera, fixed-ptz)",
            options.profile
        );
    }
    let binary = match &options.target {
        Some(name) => {
            let [target] = crate::cross::Target::by_name(name)?[..] else {
                bail!("--target takes one board family: aarch64 or armv7");
            };
            let release = target.release_file(&target.build_agent()?)?;
            crate::cross::restore_host()?;
            release.file
        }
        None => {
            crate::debian::ensure("GStreamer (media plane)", crate::debian::GSTREAMER)?;
            stream_ok(
                "cargo build --release -p lx-agent",
                cargo().args(["build", "--release", "-p", "lx-agent"]),
            )?;
            crate::cross::release_file(&crate::target_dir()?.join("release"), "strip")?.file
        }
    };
    let root = &options.root;
    let at = |p: &str| root.join(p.trim_start_matches('/'));
    header(&format!("installing lx-agent under {}", root.display()));
    let releases = at("/var/lib/lx-agent/releases");
    let name = format!("lx-agent-{}", env!("CARGO_PKG_VERSION"));
    copy(&binary, &releases.join(&name), 0o755)?;
    let current = releases.join("current");
    let before = std::fs::read_link(&current).ok();
    link(
        &releases,
        "previous",
        before.as_deref().unwrap_or(Path::new(&name)),
    )?;
    link(&releases, "current", Path::new(&name))?;
    println!("    /var/lib/lx-agent/releases/{name} (current)");
    let bin = at("/usr/local/bin/lx-agent");
    if let Some(dir) = bin.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(&bin);
    std::os::unix::fs::symlink("/var/lib/lx-agent/releases/current", &bin)
        .with_context(|| format!("linking {}", bin.display()))?;
    println!("    /usr/local/bin/lx-agent -> /var/lib/lx-agent/releases/current");
    let config = at("/etc/lx-agent/agent.toml");
    if config.exists() {
        println!("    /etc/lx-agent/agent.toml kept (it exists)");
    } else {
        copy(&source_config, &config, 0o644)?;
        println!(
            "    /etc/lx-agent/agent.toml from configs/agent-{}.toml",
            options.profile
        );
    }
    copy(
        &crate::root().join("systemd/lx-agent.service"),
        &at("/etc/systemd/system/lx-agent.service"),
        0o644,
    )?;
    println!("    /etc/systemd/system/lx-agent.service");
    let state = at("/var/lib/lx-agent");
    std::fs::create_dir_all(&state)?;
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700))?;
    let live = root == Path::new("/");
    let user_cmd = "useradd --system --no-create-home --home-dir /var/lib/lx-agent --shell /usr/sbin/nologin --groups dialout,video lx-agent";
    let enroll = "sudo -u lx-agent /usr/local/bin/lx-agent --config /etc/lx-agent/agent.toml enroll --token <token>";
    if live && crate::debian::is_root() {
        let exists = Command::new("id")
            .arg("lx-agent")
            .output()?
            .status
            .success();
        if !exists {
            stream_ok(
                "useradd lx-agent",
                Command::new("sh").args(["-c", user_cmd]),
            )?;
        }
        stream_ok(
            "chown lx-agent /var/lib/lx-agent",
            Command::new("chown").args(["-R", "lx-agent:lx-agent", "/var/lib/lx-agent"]),
        )?;
        let _ = Command::new("systemctl").arg("daemon-reload").status();
        header("next");
        println!("    edit /etc/lx-agent/agent.toml (server.url, device.name, gps.port, video)");
        println!("    {enroll}");
        println!("    systemctl enable --now lx-agent && journalctl -fu lx-agent");
    } else {
        header("next, on the device as root");
        println!("    {user_cmd}");
        println!("    chown -R lx-agent:lx-agent /var/lib/lx-agent");
        println!("    edit /etc/lx-agent/agent.toml (server.url, device.name, gps.port, video)");
        println!("    {enroll}");
        println!("    systemctl daemon-reload && systemctl enable --now lx-agent");
    }
    Ok(())
}
