//! `cargo xtask cross`: `lx-agent` for the ARM boards, on a plain Debian
//! machine without containers: Debian's cross gcc, the target's `:arm64`
//! or `:armhf` dev packages through multiarch, and pkg-config pointed at
//! the target. `--test` also runs the agent's own tests under qemu-user.
//! (`cross.toml` does the same for users with Docker or Podman.)

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::bail;

use crate::{cargo, header, stream_ok};

/// One board family.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Target {
    pub(crate) triple: &'static str,
    /// Debian's architecture name.
    arch: &'static str,
    /// The GNU triplet of Debian's cross tools.
    gnu: &'static str,
    /// The qemu-user binary that runs it.
    qemu: &'static str,
}

pub(crate) const AARCH64: Target = Target {
    triple: "aarch64-unknown-linux-gnu",
    arch: "arm64",
    gnu: "aarch64-linux-gnu",
    qemu: "qemu-aarch64-static",
};

pub(crate) const ARMV7: Target = Target {
    triple: "armv7-unknown-linux-gnueabihf",
    arch: "armhf",
    gnu: "arm-linux-gnueabihf",
    qemu: "qemu-arm-static",
};

/// The target's libraries the video worker links: GStreamer. (TLS is
/// rustls, built from source.)
const TARGET_LIBS: &[&str] = &[
    "libgstreamer1.0-dev",
    "libgstreamer-plugins-base1.0-dev",
    "libgstreamer-plugins-bad1.0-dev",
];

impl Target {
    pub(crate) fn by_name(name: &str) -> anyhow::Result<Vec<Self>> {
        Ok(match name {
            "aarch64" | "arm64" => vec![AARCH64],
            "armv7" | "armhf" => vec![ARMV7],
            "all" => vec![AARCH64, ARMV7],
            other => bail!("unknown target '{other}' (aarch64, armv7 or all)"),
        })
    }

    fn env_key(self) -> String {
        self.triple.replace('-', "_")
    }

    /// Installs the cross toolchain and the target's dev packages.
    fn ensure_tools(self) -> anyhow::Result<()> {
        if !crate::debian::foreign_architectures()
            .iter()
            .any(|a| a == self.arch)
        {
            if !crate::debian::is_root() {
                bail!(
                    "the {} packages need multiarch: run `sudo dpkg --add-architecture {} && sudo apt-get update`, then this again",
                    self.arch,
                    self.arch
                );
            }
            stream_ok(
                &format!("dpkg --add-architecture {}", self.arch),
                Command::new("dpkg").args(["--add-architecture", self.arch]),
            )?;
            crate::debian::refresh_index_for_new_sources()?;
            if !crate::debian::foreign_architectures()
                .iter()
                .any(|a| a == self.arch)
            {
                bail!(
                    "the Debian mirror's package index for {} cannot be fetched (see apt-get's error above), so its \
                     libraries cannot be installed; the architecture was removed again and apt works as before",
                    self.arch
                );
            }
        }
        let gcc = format!("gcc-{}", self.gnu);
        let libc = format!("libc6-dev-{}-cross", self.arch);
        let binutils = format!("binutils-{}", self.gnu);
        let qemu = "qemu-user-static".to_owned();
        let libs: Vec<String> = TARGET_LIBS
            .iter()
            .map(|p| format!("{p}:{}", self.arch))
            .collect();
        let mut packages: Vec<&str> = vec![&gcc, &libc, &binutils, &qemu, "pkg-config"];
        packages.extend(libs.iter().map(String::as_str));
        crate::debian::ensure(&format!("the {} cross toolchain", self.arch), &packages)?;
        stream_ok(
            &format!("rustup target add {}", self.triple),
            Command::new("rustup").args(["target", "add", self.triple]),
        )
    }

    /// A cargo command set up for the target.
    fn cargo(self) -> Command {
        let mut cmd = cargo();
        let key = self.env_key();
        cmd.env(
            format!("CARGO_TARGET_{}_LINKER", key.to_uppercase()),
            format!("{}-gcc", self.gnu),
        )
        .env(format!("CC_{key}"), format!("{}-gcc", self.gnu))
        .env(format!("AR_{key}"), format!("{}-ar", self.gnu))
        // Debian's pkg-config finds the target's .pc files in its
        // multiarch directory; the sysroot is the host's.
        .env(format!("PKG_CONFIG_{key}"), "pkg-config")
        .env(
            format!("PKG_CONFIG_PATH_{key}"),
            format!("/usr/lib/{}/pkgconfig:/usr/share/pkgconfig", self.gnu),
        )
        .env(format!("PKG_CONFIG_ALLOW_CROSS_{key}"), "1")
        // The target's libc comes with its multiarch packages, where its
        // binaries look for it: no -L.
        .env(
            format!("CARGO_TARGET_{}_RUNNER", key.to_uppercase()),
            self.qemu,
        )
        // qemu-user runs GStreamer's plugin scanner badly in a fork.
        .env("GST_REGISTRY_FORK", "no");
        cmd
    }

    /// The release binary, built; returns its path.
    pub(crate) fn build_agent(self) -> anyhow::Result<PathBuf> {
        self.ensure_tools()?;
        stream_ok(
            &format!("cargo build --release -p lx-agent --target {}", self.triple),
            self.cargo().args([
                "build",
                "--release",
                "-p",
                "lx-agent",
                "--target",
                self.triple,
            ]),
        )?;
        let binary = crate::target_dir()?.join(self.triple).join("release");
        for program in ["lx-agent", "lx-agent-video"] {
            if !binary.join(program).exists() {
                bail!("the build left no {}", binary.join(program).display());
            }
        }
        Ok(binary)
    }

    /// The release file of the build in `dir` ([`release_file`]), with the
    /// target's strip.
    pub(crate) fn release_file(self, dir: &Path) -> anyhow::Result<Release> {
        release_file(dir, &format!("{}-strip", self.gnu))
    }

    /// The agent's own tests under qemu-user: its library's, and its
    /// integration tests against a server built for the same target (the
    /// broker is the host's Mosquitto). Left out: what opens a serial port
    /// (qemu-user has no termios2), what publishes video (the target's
    /// GStreamer plugins are not installed here), what execs the agent's
    /// binary (no binfmt handler for the target), and the 60 s outage.
    fn test_agent(self) -> anyhow::Result<()> {
        stream_ok(
            &format!(
                "cargo test -p lx-agent --lib --test integration --target {} (under {})",
                self.triple, self.qemu
            ),
            self.cargo().args([
                "test",
                "-p",
                "lx-agent",
                "--lib",
                "--test",
                "integration",
                "--target",
                self.triple,
                "--",
                "--skip",
                "replayed_into_a_pty",
                "--skip",
                "the_agent_publishes",
                "--skip",
                "a_killed_agent",
                "--skip",
                "a_hung_agent",
                "--skip",
                "60_second_outage",
            ]),
        )
    }
}

pub(crate) fn run(target: &str, test: bool) -> anyhow::Result<()> {
    let built = build_all(target, test);
    // Also after a failure: the host must build as before.
    let restored = restore_host();
    built.and(restored)
}

/// Builds every target it can; says which it could not, and why.
fn build_all(target: &str, test: bool) -> anyhow::Result<()> {
    each_target(target, "cross builds", |t| build_one(t, test).map(|_| ()))
}

/// Runs `work` for every target `name` covers, going on past a failure;
/// says which targets it did and which it could not, and why.
pub(crate) fn each_target(
    name: &str,
    what: &str,
    mut work: impl FnMut(Target) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    let mut done = Vec::new();
    for t in Target::by_name(name)? {
        match work(t) {
            Ok(()) => done.push(t.triple),
            Err(e) => {
                eprintln!("\n{}: not built: {e:#}", t.triple);
                failed.push(format!("{}: {e:#}", t.triple));
            }
        }
    }
    header(&format!(
        "{what}: built {}; not built {}",
        if done.is_empty() {
            "none".to_owned()
        } else {
            done.join(", ")
        },
        if failed.is_empty() {
            "none".to_owned()
        } else {
            failed.len().to_string()
        }
    ));
    if failed.is_empty() {
        Ok(())
    } else {
        bail!("could not build: {}", failed.join("; "))
    }
}

/// What a device installs: `lx-agent` stripped, with `lx-agent-video`
/// stripped and appended ([`lx_protocol::update::bundle`]).
pub(crate) struct Release {
    pub(crate) file: PathBuf,
    /// The stripped agent alone, what every device maps all day.
    pub(crate) agent_bytes: u64,
    pub(crate) worker_bytes: u64,
}

impl Release {
    pub(crate) fn bytes(&self) -> u64 {
        std::fs::metadata(&self.file).map_or(0, |m| m.len())
    }
}

/// Strips the two programs a build left in `dir` with `strip_tool` and
/// bundles them into `dir/lx-agent.release`.
pub(crate) fn release_file(dir: &Path, strip_tool: &str) -> anyhow::Result<Release> {
    let strip = |program: &str| -> anyhow::Result<Vec<u8>> {
        let stripped = dir.join(format!("{program}.stripped"));
        stream_ok(
            &format!("{strip_tool} {program}"),
            Command::new(strip_tool)
                .arg("-o")
                .arg(&stripped)
                .arg(dir.join(program)),
        )?;
        Ok(std::fs::read(&stripped)?)
    };
    let agent = strip("lx-agent")?;
    let worker = strip("lx-agent-video")?;
    let (agent_bytes, worker_bytes) = (agent.len() as u64, worker.len() as u64);
    let file = dir.join("lx-agent.release");
    std::fs::write(&file, lx_protocol::update::bundle(agent, &worker))?;
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(Release {
        file,
        agent_bytes,
        worker_bytes,
    })
}

/// Builds, strips and describes one target's agent; returns its release
/// file.
pub(crate) fn build_one(t: Target, test: bool) -> anyhow::Result<PathBuf> {
    let dir = t.build_agent()?;
    let release = t.release_file(&dir)?;
    let file = Command::new("file")
        .arg(dir.join("lx-agent.stripped"))
        .output();
    header(&format!("{}: {}", t.triple, release.file.display()));
    println!(
        "    {:.1} MB: lx-agent {:.1} MB and lx-agent-video {:.1} MB, stripped ({:.1} MB as built){}",
        release.bytes() as f64 / 1e6,
        release.agent_bytes as f64 / 1e6,
        release.worker_bytes as f64 / 1e6,
        std::fs::metadata(dir.join("lx-agent"))?.len() as f64 / 1e6,
        file.ok()
            .map(|o| format!("\n    {}", String::from_utf8_lossy(&o.stdout).trim()))
            .unwrap_or_default()
    );
    if test {
        t.test_agent()?;
    }
    Ok(release.file)
}

/// Debian 12 cannot always hold a target's GStreamer dev packages beside
/// the host's (the -bad ones drag in OpenCV's, which conflict across
/// architectures), so apt may have removed the host's: put them back, so
/// that the host builds after a cross build as before it. The target's
/// may go in exchange; the next cross build reinstalls them.
pub(crate) fn restore_host() -> anyhow::Result<()> {
    crate::debian::ensure(
        "GStreamer (media plane), for this machine",
        crate::debian::GSTREAMER,
    )
}
