//! `cargo xtask …`: the developer tasks of the lx workspace.
//!
//! - `cargo xtask demo`  — build `lx-server`, start it on a free port and walk
//!   one session through the API (workspaces, keys, quote, dispatch).
//! - `cargo xtask test`  — install what is missing, then run every test.
//! - `cargo xtask bench NAME` — run one benchmark (`BENCH name.metric=value` lines).
//! - `cargo xtask fuzz NAME` — run a fuzz target for ten minutes.
//! - `cargo xtask cross` — `lx-agent` for aarch64 and armv7 (`--test`: its
//!   tests under qemu-user).
//! - `cargo xtask install-agent` — lay out a device (binary, config, unit).
//! - `cargo xtask release-agent` — signed update artefacts for the ARM boards.

mod bench;
mod cross;
mod debian;
mod demo;
mod fixtures;
mod fuzz;
mod install_agent;
mod npm;
mod postgres;
mod python;
mod release_agent;
mod test;

use std::path::PathBuf;
use std::process::{Command, ExitStatus};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

/// Developer tasks for the lx workspace.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Install what is missing, then run every test of the workspace.
    Test,
    /// Build lx-server, start it, and walk a session through the API.
    Demo {
        /// Leave the server running at the end and print its URL.
        #[arg(long)]
        keep: bool,
        /// Run this many replicas of lx-server on one PostgreSQL (1-3); the
        /// walk's API calls alternate between them.
        #[arg(long, default_value_t = 1)]
        replicas: usize,
    },
    /// Run a fuzz target (known: nmea) for a while.
    Fuzz {
        name: String,
        /// How long to fuzz.
        #[arg(long, default_value_t = 600)]
        seconds: u64,
    },
    /// Run one benchmark by name (known: dispatch, telemetry, agent, live, media, settle, mqtt, abuse).
    Bench {
        /// The benchmark to run.
        name: String,
        /// dispatch and telemetry: `postgres` also runs them on PostgreSQL
        /// (a throwaway cluster), their figures prefixed `pg_`.
        #[arg(long)]
        store: Option<String>,
    },
    /// Build lx-agent for the ARM boards with Debian's cross toolchains.
    Cross {
        /// aarch64 (Pi 4/5, Jetson, drone computers), armv7 (Pi 2/3/Zero 2) or all.
        #[arg(long, default_value = "all")]
        target: String,
        /// Also run the agent's own tests under qemu-user.
        #[arg(long)]
        test: bool,
    },
    /// Lay out a device: lx-agent, its config, the systemd unit, its user.
    InstallAgent {
        /// The device's root: `/` on the device, a directory to stage an image.
        #[arg(long, default_value = "/")]
        root: PathBuf,
        /// The config to start from: drone, rpi-camera or fixed-ptz.
        #[arg(long, default_value = "drone")]
        profile: String,
        /// Cross-build for this board family (aarch64, armv7) instead of this machine.
        #[arg(long)]
        target: Option<String>,
    },
    /// Build lx-agent for the ARM boards and sign each build with the
    /// fleet's update key, for the `update` command.
    ReleaseAgent {
        /// The update key (64 hex digits); created, owner-only, when missing.
        #[arg(long, default_value = ".lx/update.key")]
        key: PathBuf,
        /// aarch64, armv7 or all.
        #[arg(long, default_value = "all")]
        target: String,
        /// Where the artefacts and their manifests go.
        #[arg(long, default_value = "dist")]
        out: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Test => test::run(),
        Task::Demo { keep, replicas } => demo::run(keep, replicas),
        Task::Bench { name, store } => bench::run(&name, store.as_deref()),
        Task::Fuzz { name, seconds } => fuzz::run(&name, seconds),
        Task::Cross { target, test } => cross::run(&target, test),
        Task::InstallAgent {
            root,
            profile,
            target,
        } => install_agent::run(&install_agent::Options {
            root,
            profile,
            target,
        }),
        Task::ReleaseAgent { key, target, out } => release_agent::run(&release_agent::Options {
            key: root().join(key),
            target,
            out: root().join(out),
        }),
    };
    if let Err(err) = result {
        eprintln!("\nxtask: error: {err:#}");
        std::process::exit(1);
    }
}

/// Cargo's target directory (honours CARGO_TARGET_DIR and config).
pub(crate) fn target_dir() -> anyhow::Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    meta.get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .context("cargo metadata names no target_directory")
}

/// The workspace root (the directory above this crate). Read from the
/// environment `cargo run` gives us before the path compiled in: clones that
/// share one target directory share one xtask binary, and cargo does not
/// rebuild it for a clone at another path, so the compiled-in path can name
/// another clone (or one since deleted).
pub(crate) fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest.parent().unwrap_or(&manifest).to_path_buf()
}

/// The cargo that runs us (so a pinned toolchain stays pinned), else `cargo`.
pub(crate) fn cargo() -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(root());
    cmd
}

/// Prints a step header.
pub(crate) fn header(text: &str) {
    println!("\n==> {text}");
}

/// Runs `cmd` with inherited stdio under a header; returns its status.
pub(crate) fn stream(title: &str, cmd: &mut Command) -> anyhow::Result<ExitStatus> {
    header(title);
    cmd.status()
        .with_context(|| format!("could not start `{}`", display(cmd)))
}

/// Runs `cmd` streaming its output, failing unless it succeeds.
pub(crate) fn stream_ok(title: &str, cmd: &mut Command) -> anyhow::Result<()> {
    let status = stream(title, cmd)?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

/// `program arg arg …` for messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}
