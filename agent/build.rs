//! The target triple this build runs on: an update is signed for one
//! target, and the agent checks the signature against its own.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_default();
    println!("cargo:rustc-env=LX_AGENT_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
