//! lx-agent: runs on the device (a drone's payload computer, a Raspberry Pi
//! camera, a fixed PTZ). It reads its position, signs a sample every second
//! with the device key, and serves the sessions its fleet takes.

pub mod api;
pub mod battery;
pub mod config;
pub mod device_health;
pub mod fleet;
pub mod hardware;
pub mod health;
pub mod lifecycle;
pub mod logs;
pub mod mavlink;
pub mod notify;
pub mod position;
pub mod queue;
pub mod run;
pub mod state;
pub mod status;
pub mod telemetry;
pub mod update;
pub mod video;
pub mod whip;

/// This build's version: the crate's, or `LX_AGENT_VERSION` when the build
/// set one (a release numbered by its pipeline, the update test's second
/// build).
pub const VERSION: &str = match option_env!("LX_AGENT_VERSION") {
    Some(version) => version,
    None => env!("CARGO_PKG_VERSION"),
};

/// The target triple this build runs on; updates are signed for one.
pub const TARGET: &str = env!("LX_AGENT_TARGET");

/// The wall clock as Unix milliseconds; read at the edges only.
pub fn wall_now_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
