//! What the agent's tasks tell each other and the fleet: the session the
//! lifecycle serves (telemetry follows it) and each task's counters (the
//! fleet link's status and the health endpoint show them). Plain data, below
//! every task, so that no task imports another for it.

use lx_protocol::api::SessionState;
use uuid::Uuid;

/// The session the device serves, as telemetry needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serving {
    pub id: Uuid,
    /// Samples observed before this are refused by the server.
    pub assigned_ms: i64,
}

/// The lifecycle task's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleStats {
    pub serving: Option<Uuid>,
    pub serving_state: Option<SessionState>,
    pub taking_offers: bool,
    pub auto_accept: bool,
    /// Offers and commands from the fleet link.
    pub fleet_messages: u64,
    pub accepted: u64,
    pub polls: u64,
    pub last_error: Option<String>,
}

/// Counters for the health endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryStats {
    pub signed: u64,
    pub sent: u64,
    pub refused: u64,
    pub queued: usize,
    /// Of `sent`, those the fleet link carried.
    pub sent_over_link: u64,
    pub dropped: u64,
    /// Ticks with nothing to sign: no fresh fix, or a fix older than the assignment.
    pub skipped: u64,
    pub last_error: Option<String>,
}

/// Why the agent stops on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// A new build was swapped in: the service manager starts it.
    Restart { version: String },
    /// This new build was not confirmed in time: it exits failed, and the
    /// build before it is swapped back in.
    Unconfirmed(String),
}
