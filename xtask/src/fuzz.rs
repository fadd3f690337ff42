//! `cargo xtask fuzz NAME [--seconds N]`: a libFuzzer target for N seconds
//! (600 by default) with cargo-fuzz, installed if missing.
//!
//! cargo-fuzz passes unstable compiler flags; where no nightly toolchain is
//! installed, stable is told to accept them (`RUSTC_BOOTSTRAP=1`).

use std::process::{Command, Stdio};

use anyhow::bail;

use crate::{cargo, root, stream, stream_ok};

/// Fuzz targets: (name, crate directory holding `fuzz/`, libFuzzer dictionary).
const TARGETS: &[(&str, &str, Option<&str>)] = &[("nmea", "hal", Some("fuzz/nmea.dict"))];

fn works(cmd: &mut Command) -> bool {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(crate) fn run(name: &str, seconds: u64) -> anyhow::Result<()> {
    let Some(&(target, dir, dict)) = TARGETS.iter().find(|(n, _, _)| *n == name) else {
        let known: Vec<&str> = TARGETS.iter().map(|(n, _, _)| *n).collect();
        bail!("unknown fuzz target '{name}'; known: {}", known.join(", "));
    };
    if !works(cargo().args(["fuzz", "--version"])) {
        stream_ok(
            "cargo install cargo-fuzz --locked",
            cargo().args(["install", "cargo-fuzz", "--locked"]),
        )?;
    }
    let nightly = works(Command::new("rustup").args(["run", "nightly", "rustc", "--version"]));
    let mut cmd = if nightly {
        let mut c = Command::new("rustup");
        c.args(["run", "nightly", "cargo"]);
        c
    } else {
        let mut c = cargo();
        c.env("RUSTC_BOOTSTRAP", "1");
        c
    };
    cmd.current_dir(root().join(dir));
    cmd.args(["fuzz", "run", target, "--"]);
    if let Some(dict) = dict {
        cmd.arg(format!("-dict={dict}"));
    }
    cmd.arg(format!("-max_total_time={seconds}"));
    let status = stream(&format!("fuzz {target} for {seconds} s"), &mut cmd)?;
    if !status.success() {
        bail!(
            "fuzzing '{target}' failed ({status}); a crashing input, if one was found, is under {dir}/fuzz/artifacts/{target}/"
        );
    }
    println!("    no crash in {seconds} s");
    Ok(())
}
