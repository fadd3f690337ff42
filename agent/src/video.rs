//! The video task: while the device serves a started session, publish the
//! camera to the session's WHIP URL. The WHIP core ([`crate::whip`]) decides;
//! the shell builds the GStreamer publisher (`lx-media`), sends the HTTP
//! requests with reqwest, and keeps the stats shown in `/healthz`.
//!
//! The shell runs in a worker process of its own (the `lx-agent-video`
//! program, supervised by [`worker`]), started for a session and gone after
//! it: the agent itself neither links nor loads GStreamer, so an idle
//! device holds none of its libraries, registry, plugins or threads.
//!
//! Any failure (the server unreachable, a refused offer, media or ICE
//! failing) tears the pipeline down and, after the core's backoff, POSTs a
//! fresh offer to the same URL. A session that ends or changes gets its
//! resource DELETEd.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "video")]
mod program;
#[cfg(feature = "video")]
pub mod worker;
#[cfg(feature = "video")]
pub use worker::supervise;

/// What the video task should publish to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    pub session_id: Uuid,
    pub whip_url: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VideoStats {
    /// idle, starting (the worker process), connecting, publishing or
    /// retrying.
    pub state: String,
    /// The worker process publishing now, if any: while none runs, the
    /// agent holds no media state.
    #[serde(default)]
    pub worker_pid: Option<u32>,
    pub session_id: Option<Uuid>,
    pub codec: String,
    pub encoder: Option<String>,
    pub frames_sent: u64,
    pub bitrate_kbps: u64,
    /// Publishes after the first one, for any reason.
    pub reconnects: u64,
    pub last_error: Option<String>,
}
