//! Tools from the npm registry, pinned in `tools/npm/package.json` and its
//! lock file and installed into `tools/npm/node_modules` (DESIGN section 9).
//!
//! `npm install`, not `npm ci`: the lock file records only this platform's
//! optional per-platform package, and `npm ci` trips over that. Foundry's
//! npm packages ship their binaries in `@foundry-rs/<tool>-<platform>/bin/`;
//! `tools/npm/.npmrc` turns install scripts off (foundry's only fetches that
//! binary again when npm skipped the per-platform package).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, bail};

use crate::{root, stream_ok};

/// Each foundry tool we install: (environment variable the tests read, tool).
/// Adding one is a line here and a pinned dependency in `package.json`.
const FOUNDRY_TOOLS: &[(&str, &str)] = &[
    ("LX_CAST", "cast"),
    ("LX_FORGE", "forge"),
    ("LX_ANVIL", "anvil"),
];

/// Node packages the tests load by path: (environment variable, package).
const NODE_PACKAGES: &[(&str, &str)] = &[
    ("LX_PLAYWRIGHT_CORE", "playwright-core"),
    ("LX_MCP_INSPECTOR", "@modelcontextprotocol/inspector"),
    ("LX_VIEM", "viem"),
    ("LX_OPENAPI_TYPESCRIPT", "openapi-typescript"),
    ("LX_OPENAPI_FETCH", "openapi-fetch"),
    ("LX_TYPESCRIPT", "typescript"),
];

/// The installed npm tools, as environment variables for the test run.
#[derive(Debug)]
pub(crate) struct NpmTools {
    /// `(variable, path)` for each of [`FOUNDRY_TOOLS`] and [`NODE_PACKAGES`].
    pub(crate) binaries: Vec<(&'static str, PathBuf)>,
}

impl NpmTools {
    /// Sets each tool's variable (`LX_CAST=…`) on `cmd`.
    pub(crate) fn apply<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        for (var, path) in &self.binaries {
            cmd.env(var, path);
        }
        cmd
    }
}

/// The folder holding `package.json`.
fn dir() -> PathBuf {
    root().join("tools/npm")
}

/// Runs `npm install` in `tools/npm` unless `node_modules` is newer than
/// `package.json` and `package-lock.json`, then returns the binaries.
pub(crate) fn ensure_npm_tools() -> anyhow::Result<NpmTools> {
    let dir = dir();
    let modules = dir.join("node_modules");
    let stale = [dir.join("package.json"), dir.join("package-lock.json")]
        .iter()
        .any(|f| newer(f, &modules));
    let mut binaries = binaries(&modules)?;
    binaries.extend(
        NODE_PACKAGES
            .iter()
            .map(|&(var, package)| (var, modules.join(package))),
    );
    let missing = binaries.iter().any(|(_, p)| !p.exists());
    if stale || missing {
        ensure_node()?;
        println!(
            "    npm tools: {}, installing",
            if missing { "missing" } else { "out of date" }
        );
        stream_ok(
            "npm install (tools/npm)",
            Command::new("npm")
                .args(["install", "--no-audit", "--no-fund"])
                .current_dir(&dir),
        )?;
        // npm leaves node_modules' mtime alone when nothing changed.
        touch(&modules)?;
    }
    for (var, path) in &binaries {
        if !path.exists() {
            bail!(
                "`npm install` in {} did not install {}",
                dir.display(),
                path.display()
            );
        }
        println!("    {var}={}", path.display());
    }
    Ok(NpmTools { binaries })
}

/// Where each foundry tool's binary lives for this platform.
fn binaries(modules: &Path) -> anyhow::Result<Vec<(&'static str, PathBuf)>> {
    let platform = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux-amd64",
        ("linux", "aarch64") => "linux-arm64",
        ("macos", "x86_64") => "darwin-amd64",
        ("macos", "aarch64") => "darwin-arm64",
        (os, arch) => bail!("foundry's npm packages have no binaries for {os}/{arch}"),
    };
    Ok(FOUNDRY_TOOLS
        .iter()
        .map(|&(var, tool)| {
            let bin = modules
                .join("@foundry-rs")
                .join(format!("{tool}-{platform}"))
                .join("bin")
                .join(tool);
            (var, bin)
        })
        .collect())
}

/// Whether `file` was modified after `than` (true when `than` is missing).
fn newer(file: &Path, than: &Path) -> bool {
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (modified(file), modified(than)) {
        (Some(f), Some(t)) => f > t,
        (_, None) => true,
        (None, Some(_)) => false,
    }
}

fn touch(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .with_context(|| format!("could not touch {}", path.display()))
}

/// Node and npm are on the PATH, or installed with apt-get when we are root.
fn ensure_node() -> anyhow::Result<()> {
    if works("node") && works("npm") {
        return Ok(());
    }
    let root_user = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !root_user || !works("apt-get") {
        bail!(
            "node and npm are needed to install foundry's cast from the npm registry; \
             on Debian/Ubuntu install them with `sudo apt-get install nodejs npm`, then run `cargo xtask test` again"
        );
    }
    stream_ok("apt-get update", Command::new("apt-get").arg("update"))?;
    stream_ok(
        "apt-get install -y nodejs npm",
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "nodejs", "npm"])
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )?;
    if !(works("node") && works("npm")) {
        bail!("apt-get installed nodejs and npm, but `node`/`npm` still do not run");
    }
    Ok(())
}

fn works(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
