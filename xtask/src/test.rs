//! `cargo xtask test`: install what is missing, then every test.

use std::process::Command;

use anyhow::bail;

use crate::{cargo, header, stream};

/// What `ensure_tools` found or installed.
#[derive(Debug)]
pub(crate) struct Tools {
    /// `cargo nextest` works.
    pub(crate) nextest: bool,
    pub(crate) npm: crate::npm::NpmTools,
    pub(crate) python: crate::python::PythonTools,
}

/// Installs what the tests need and is missing: GStreamer's Debian
/// packages, the npm tools, the Python tools, the test runner, gpsd's
/// receiver logs.
pub(crate) fn ensure_tools() -> anyhow::Result<Tools> {
    header("checking tools");
    crate::debian::ensure("GStreamer (media plane)", crate::debian::GSTREAMER)?;
    crate::debian::ensure("Mosquitto (MQTT broker)", crate::debian::MOSQUITTO)?;
    crate::debian::ensure("PostgreSQL (shared store)", crate::debian::POSTGRESQL)?;
    crate::debian::ensure(
        "the openssl command (TLS certificates)",
        crate::debian::OPENSSL_TOOL,
    )?;
    crate::debian::ensure("Chromium (browser tests)", crate::debian::CHROMIUM)?;
    crate::debian::ensure("cameras (RTSP server, libcamera)", crate::debian::CAMERAS)?;
    crate::debian::ensure("systemd-analyze (unit checks)", crate::debian::SYSTEMD)?;
    let mut tools = Tools {
        nextest: succeeds(cargo().args(["nextest", "--version"])),
        npm: crate::npm::ensure_npm_tools()?,
        python: crate::python::ensure_python_tools()?,
    };
    if tools.nextest {
        println!("    cargo-nextest: present");
    } else {
        println!("    cargo-nextest: missing, installing");
        let status = stream(
            "cargo install cargo-nextest --locked",
            cargo().args(["install", "cargo-nextest", "--locked"]),
        )?;
        tools.nextest = status.success() && succeeds(cargo().args(["nextest", "--version"]));
        if !tools.nextest {
            println!("    cargo-nextest could not be installed; falling back to `cargo test`");
        }
    }
    crate::fixtures::ensure_gpsd_logs()?;
    Ok(tools)
}

fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn run() -> anyhow::Result<()> {
    let tools = ensure_tools()?;
    let args: &[&str] = if tools.nextest {
        &[
            "nextest",
            "run",
            "--workspace",
            "--all-features",
            "--no-fail-fast",
        ]
    } else {
        &["test", "--workspace", "--all-features", "--no-fail-fast"]
    };
    let status = stream(
        &format!("cargo {}", args.join(" ")),
        tools
            .python
            .apply(tools.npm.apply(cargo().args(args)))
            .env("LX_CHROMIUM", crate::debian::CHROMIUM_BINARY),
    )?;
    if !status.success() {
        bail!("tests failed ({status})");
    }
    header("all tests passed");
    Ok(())
}
