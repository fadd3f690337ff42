//! `cargo xtask bench NAME`: one benchmark, its output passed through.

use anyhow::bail;

use crate::{cargo, stream};

/// Benchmarks this workspace has: (name, package, required features).
const BENCHES: &[(&str, &str, &str)] = &[
    ("dispatch", "lx-server", "test-support"),
    ("telemetry", "lx-server", "test-support"),
    ("agent", "lx-agent", ""),
    ("live", "lx-agent", ""),
    ("media", "lx-server", "test-support"),
    ("settle", "lx-server", "test-support"),
    ("mqtt", "lx-server", "test-support"),
    ("abuse", "lx-server", "test-support"),
];

/// Benchmarks that also run on PostgreSQL when asked (`--store postgres`).
const ON_POSTGRES: &[&str] = &["dispatch", "telemetry"];

pub(crate) fn run(name: &str, store: Option<&str>) -> anyhow::Result<()> {
    let Some(&(bench, package, features)) = BENCHES.iter().find(|(n, _, _)| *n == name) else {
        let known: Vec<&str> = BENCHES.iter().map(|(n, _, _)| *n).collect();
        bail!(
            "unknown benchmark '{name}'; known benchmarks: {}",
            known.join(", ")
        );
    };
    match store {
        None | Some("sqlite") => {}
        Some("postgres") if ON_POSTGRES.contains(&name) => {
            crate::debian::ensure("PostgreSQL (shared store)", crate::debian::POSTGRESQL)?;
        }
        Some("postgres") => bail!(
            "benchmark '{name}' has no PostgreSQL run; these have: {}",
            ON_POSTGRES.join(", ")
        ),
        Some(other) => bail!("--store takes sqlite or postgres, not '{other}'"),
    }
    let mut cmd = cargo();
    cmd.args(["bench", "-p", package, "--bench", bench]);
    if name == "agent" {
        // The drone's flight controller stand-in (pymavlink).
        crate::python::ensure_python_tools()?.apply(&mut cmd);
    }
    if !features.is_empty() {
        cmd.args(["--features", features]);
    }
    if let Some(store) = store {
        cmd.args(["--", "--store", store]);
    }
    let status = stream(
        &format!("cargo bench -p {package} --bench {bench} --features {features}"),
        &mut cmd,
    )?;
    if !status.success() {
        bail!("benchmark '{name}' failed ({status})");
    }
    if name == "agent" {
        // What a Pi or a drone computer gets: the release build for
        // aarch64, stripped; the agent alone is what it maps all day.
        let target = crate::cross::AARCH64;
        let release = target.release_file(&target.build_agent()?)?;
        println!(
            "lx-agent for {}, stripped: {:.2} MB; with its video worker appended: {:.2} MB ({})",
            target.triple,
            release.agent_bytes as f64 / 1e6,
            release.bytes() as f64 / 1e6,
            release.file.display()
        );
        println!(
            "BENCH agent.aarch64_stripped_mb={:.2}",
            release.agent_bytes as f64 / 1e6
        );
        println!(
            "BENCH agent.aarch64_release_mb={:.2}",
            release.bytes() as f64 / 1e6
        );
        crate::cross::restore_host()?;
    }
    Ok(())
}
