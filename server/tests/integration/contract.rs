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
            &mut l.media_patches_per_minute,
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
    // More examples or another seed, for a longer hunt by hand.
    let examples = std::env::var("LX_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "20".into());
    let seed = std::env::var("LX_SCHEMATHESIS_SEED").unwrap_or_else(|_| "17".into());
    let out = tokio::process::Command::new(&st)
        .arg("--config-file")
        .arg(root().join("tools/python/schemathesis.toml"))
        .arg("run")
        .arg(format!("{origin}/api/v1/openapi.json"))
        .args(["--url", &origin])
        .args(["--checks", "all"])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &examples])
        .args(["--seed", &seed, "--no-color", "--workers", "1"])
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

/// `LX_NPM_MODULES`-style lookup of a package xtask installed in tools/npm.
fn npm_package(var: &str, package: &str) -> PathBuf {
    tool(
        var,
        root().join("tools/npm/node_modules").join(package),
        "npm install in tools/npm",
    )
}

async fn node(args: &[&std::ffi::OsStr], dir: &std::path::Path) -> (bool, String, String) {
    let out = tokio::process::Command::new("node")
        .args(args)
        .current_dir(dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_typescript_client_generated_from_the_document_drives_a_session_end_to_end() {
    let generator = npm_package("LX_OPENAPI_TYPESCRIPT", "openapi-typescript");
    let fetch = npm_package("LX_OPENAPI_FETCH", "openapi-fetch");
    let typescript = npm_package("LX_TYPESCRIPT", "typescript");
    let t = TestApp::spawn_realtime().await;
    let consumer = t.consumer("ts-consumer").await;
    let supplier = t.supplier("ts-supplier", BOGOTA, true).await;
    // The media plane is scripted: a session it provisions sends its first
    // frame at once, as a publisher would.
    let media = t.media.clone();
    let clock = t.clock.clone();
    let publisher = tokio::spawn(async move {
        let mut seen = std::collections::HashSet::new();
        loop {
            let fresh: Vec<uuid::Uuid> = media
                .provisioned
                .lock()
                .unwrap()
                .iter()
                .filter(|id| !seen.contains(*id))
                .copied()
                .collect();
            for id in fresh {
                seen.insert(id);
                media
                    .first_frame(id, lx_server::clock::Clock::now_ms(&*clock))
                    .await;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });

    let dir = tempfile::tempdir().expect("dir");
    let origin = t.api.base.trim_end_matches("/api/v1").to_owned();
    let modules = fetch.parent().expect("node_modules");
    std::os::unix::fs::symlink(modules, dir.path().join("node_modules")).expect("link");
    std::fs::copy(
        crate::common::manifest_dir().join("tests/contract/session.ts"),
        dir.path().join("session.ts"),
    )
    .expect("copy");
    std::fs::write(dir.path().join("package.json"), r#"{"type": "module"}"#).expect("package");
    std::fs::write(
        dir.path().join("tsconfig.json"),
        r#"{"compilerOptions": {"strict": true, "target": "es2022", "module": "nodenext",
            "moduleResolution": "nodenext", "outDir": "out", "skipLibCheck": true,
            "noUncheckedIndexedAccess": true}, "files": ["session.ts"]}"#,
    )
    .expect("tsconfig");

    let document = format!("{origin}/api/v1/openapi.json");
    let (ok, _, err) = node(
        &[
            generator.join("bin/cli.js").as_os_str(),
            document.as_ref(),
            "-o".as_ref(),
            "lx-api.ts".as_ref(),
        ],
        dir.path(),
    )
    .await;
    assert!(ok, "openapi-typescript: {err}");
    let types = std::fs::read_to_string(dir.path().join("lx-api.ts")).expect("types");
    assert!(
        types.contains("\"/api/v1/sessions/{id}/dispatch\""),
        "generated paths"
    );

    let (ok, out, err) = node(
        &[
            typescript.join("bin/tsc").as_os_str(),
            "-p".as_ref(),
            ".".as_ref(),
        ],
        dir.path(),
    )
    .await;
    assert!(ok, "tsc --strict refuses the client:\n{out}{err}");

    let compiled = dir.path().join("out/session.js");
    let (ok, out, err) = node(
        &[
            compiled.as_os_str(),
            origin.as_ref(),
            consumer.api_key.as_ref(),
            supplier.api_key.as_ref(),
        ],
        dir.path(),
    )
    .await;
    publisher.abort();
    assert!(ok, "the generated client failed:\n{out}{err}");
    let result: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("its JSON line");
    assert_eq!(result["state"], "ENDED", "{result}");
    assert_eq!(
        result["token"], true,
        "a write's consistency token: {result}"
    );
    assert!(
        result["whip"]
            .as_str()
            .is_some_and(|u| u.starts_with("http")),
        "the supplier's WHIP URL: {result}"
    );
    assert_eq!(result["refusal"]["status"], 409, "{result}");
    assert_eq!(result["refusal"]["code"], "INVALID_STATE", "{result}");
    let id: uuid::Uuid = result["id"].as_str().unwrap().parse().unwrap();
    let stored = t.app.store.session(id).await.unwrap().unwrap();
    assert_eq!(
        result["chargedMicroUsdc"],
        stored.meter.unwrap().charged_micro_usdc,
        "{result}"
    );
}
