//! The contract with third-party clients: Schemathesis (from PyPI, not
//! ours) reads `/api/v1/openapi.json` and fuzzes the live server with
//! every check on, the stateful phase included (it follows the document's
//! links from one operation's answer to the next operation's parameters).
//! A failure is a place where the document and the server disagree.

use std::path::PathBuf;
use std::sync::Arc;

use crate::browser::{root, tool};
use crate::chain_support::deployed;
use crate::common::{BOGOTA, TestApp};

fn schemathesis() -> PathBuf {
    tool(
        "LX_SCHEMATHESIS",
        root().join("tools/python/venv/bin/st"),
        "pip install -r tools/python/requirements.txt into tools/python/venv",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_the_server_true_to_its_openapi_document() {
    let st = schemathesis();
    // Generous limits: the fuzzer is one client making thousands of calls,
    // and 429 is documented but not what this run is about.
    // A real chain: the wallet routes answer from it, as in production.
    let d = deployed().await;
    let t = TestApp::spawn_with_chain_and(Arc::new(d.chain().await), |c| {
        let l = &mut c.rate_limits;
        for limit in [
            &mut l.challenges_per_minute,
            &mut l.sign_in_per_minute,
            &mut l.workspaces_per_minute,
            &mut l.registrations_per_minute,
            &mut l.webhooks_per_minute,
            &mut l.telemetry_per_minute,
            &mut l.media_offers_per_minute,
            &mut l.quotes_per_minute,
            &mut l.auth_failures_per_minute,
        ] {
            *limit = 1_000_000;
        }
    })
    .await;
    let scopes: Vec<&str> = lx_protocol::api::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let actor = t
        .actor("contract", &["CONSUMER", "SUPPLIER"], &scopes)
        .await;
    d.fund(&actor.key, 50_000_000, 20_000_000).await;
    // Something to find: a supplier in range and a session of the actor's.
    let _supplier = t.supplier("contract-supplier", BOGOTA, false).await;
    let _session = t.request(&actor, BOGOTA, 60).await;
    let origin = t.api.base.trim_end_matches("/api/v1").to_owned();
    let report = tempfile::tempdir().expect("report dir");
    let examples = std::env::var("LX_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(root().join("tools/python/schemathesis.toml"))
        .arg("run")
        .arg(format!("{origin}/api/v1/openapi.json"))
        .args(["--url", &origin])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &examples])
        .args(["--seed", "17", "--no-color", "--workers", "1"])
        .args(["--generation-database", "none"])
        .args(["-H", &format!("Authorization: Bearer {}", actor.api_key)])
        .arg("--report-dir")
        .arg(report.path())
        .current_dir(report.path())
        .kill_on_drop(true)
        .output()
        .await
        .expect("schemathesis runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: Vec<&str> = stdout
        .lines()
        .rev()
        .take(40)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    eprintln!("{}", summary.join("\n"));
    assert!(
        out.status.success(),
        "Schemathesis found the server and its document disagreeing:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
