//! The Solidity side: forge's own tests of contracts/ (every revert, every
//! event, replay, the bound under fuzzing, batch against singles) and the
//! committed gas snapshot, compiled offline with solcjs.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    crate::common::manifest_dir()
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// forge: `LX_FORGE`, else where `cargo xtask test` installs it.
fn forge() -> PathBuf {
    let path = std::env::var_os("LX_FORGE").map_or_else(
        || root().join("tools/npm/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "{} is missing; run `cargo xtask test`, which installs forge from the npm registry",
        path.display()
    );
    path
}

fn run(args: &[&str]) -> String {
    let out = Command::new(forge())
        .args(args)
        .current_dir(root().join("contracts"))
        .env("FOUNDRY_OFFLINE", "true")
        .output()
        .expect("forge runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "forge {}:\n{text}", args.join(" "));
    text
}

#[test]
fn forge_tests_pass_and_the_gas_snapshot_holds() {
    let tested = run(&["test"]);
    let passed = tested
        .lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("): ")?;
            rest.split_whitespace().next()?.parse::<u32>().ok()
        })
        .unwrap_or(0);
    assert!(passed >= 21, "forge ran {passed} tests:\n{tested}");
    run(&["snapshot", "--check"]);
}
