//! What the two SQL stores share: the column lists their row readers expect,
//! in order, and how enums, lists of enums and wallets are written as text.
//! The PostgreSQL schema is the SQLite schema column for column (a test holds
//! them together), so one list serves both.

use lx_protocol::time::UnixMillis;
use lx_protocol::wallet::Address;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub const OPEN_STATES: &str = "('REQUESTED','ASSIGNED','LIVE','PAUSED')";

pub const SESSION_COLUMNS: &str = "id, state, lat, lng, geofence_m, max_duration_s, wait_timeout_s, \
    rate, consumer_ws, consumer_wallet, operator_ws, quote_id, offer_ws, offer_expires_ms, \
    created_ms, assigned_ms, started_ms, ended_ms, expiry_reason, media_ref, whip_url, whep_url, \
    clean_s, failed_s, charged, fee, earned, fee_bps, operator_id, meter_final, min_trust_tier, trust_tier";

pub const WORKSPACE_COLUMNS: &str = "id, slug, name, wallet, roles, availability, coverage_lat, \
    coverage_lng, coverage_radius_m, device_kind, auto_accept, offer_timeout_s, idle_since_ms, \
    created_ms";

/// What a workspace row is read with: its columns, then its cool-down and
/// its trust tier (derived: whether it has an enrolled device).
pub const WORKSPACE_SELECT: &str = "id, slug, name, wallet, roles, availability, coverage_lat, \
    coverage_lng, coverage_radius_m, device_kind, auto_accept, offer_timeout_s, idle_since_ms, \
    created_ms, cooling_down_until_ms, \
    EXISTS (SELECT 1 FROM operators o WHERE o.workspace_id = workspaces.id)";

pub const SETTLEMENT_COLUMNS: &str = "session_id, consumer, operator, sequence, rate, seconds, to_amount, \
    fee_amount, state, tx_hash, nonce, block, attempts, last_error, next_attempt_ms, queued_ms, updated_ms, \
    verify_onchain";

pub const API_KEY_COLUMNS: &str =
    "id, workspace_id, hash, prefix, label, environment, scopes, created_ms, revoked_ms";

pub const QUOTE_COLUMNS: &str = "id, workspace_id, lat, lng, duration_s, rate, supply_bps, \
    demand_bps, corridor_bps, created_ms, expires_ms, used_ms";

pub const OPERATOR_COLUMNS: &str = "id, workspace_id, name, device_kind, address, public_key, availability, \
    battery_pct, last_seen_ms, last_sequence, fix_lat_e7, fix_lng_e7, fix_acc_cm, fix_ms, created_ms, disconnected_ms, \
    cooling_down_until_ms";

pub const MQTT_ACCOUNT_COLUMNS: &str =
    "username, password_hash, workspace_id, operator_id, created_ms";

pub const WEBHOOK_COLUMNS: &str =
    "id, workspace_id, url, events, secret, created_ms, failed_in_a_row, disabled_ms";

/// A delivery joined with its event (`d` and `e`).
pub const DELIVERY_COLUMNS: &str = "d.seq, d.webhook_id, d.event_id, e.type, e.session_id, e.created_ms, \
    d.state, d.attempts, d.last_status, d.last_error, d.next_attempt_ms, d.delivered_ms, d.updated_ms";

/// A stored sample, then its signature and when it was received.
pub const SAMPLE_COLUMNS: &str = "session_id, sequence, captured_ms, lat_e7, lng_e7, accuracy_cm, \
    operator_id, source, signature, received_ms";

/// Heartbeat samples past retention where no session is NULL (PostgreSQL).
pub const HEARTBEAT_SAMPLES_NULL: &str =
    "DELETE FROM telemetry WHERE session_id IS NULL AND received_ms < $1";
/// Heartbeat samples past retention where no session is the nil id, 16 zero
/// bytes (SQLite, whose telemetry is keyed by session).
pub const HEARTBEAT_SAMPLES_NIL: &str =
    "DELETE FROM telemetry WHERE session_id = zeroblob(16) AND received_ms < $1";

/// What a retention pass deletes, in order: each statement with the cutoff
/// it binds as `$1` (both SQLite and PostgreSQL read `$1`).
/// `heartbeat_samples` is the store's own statement for the samples of no
/// session: the two stores write "no session" differently (see
/// [`HEARTBEAT_SAMPLES_NULL`], [`HEARTBEAT_SAMPLES_NIL`]).
pub fn prune_statements(
    b: &super::PruneBefore,
    heartbeat_samples: &'static str,
) -> [(&'static str, UnixMillis); 10] {
    [
        ("DELETE FROM challenges WHERE expires_ms < $1", b.challenges_ms),
        // A used quote is the record of a session's rate: it stays.
        (
            "DELETE FROM quotes WHERE used_ms IS NULL AND expires_ms < $1
               AND NOT EXISTS (SELECT 1 FROM sessions s WHERE s.quote_id = quotes.id)",
            b.quotes_ms,
        ),
        (heartbeat_samples, b.heartbeat_samples_ms),
        (
            "DELETE FROM workspace_locations WHERE received_ms < $1",
            b.locations_ms,
        ),
        (
            "DELETE FROM dispatch_attempts WHERE session_id IN (SELECT id FROM sessions
               WHERE state IN ('ENDED', 'EXPIRED', 'CANCELLED') AND ended_ms < $1)",
            b.dispatch_attempts_ms,
        ),
        (
            "DELETE FROM enrollment_tokens WHERE COALESCE(used_ms, expires_ms) < $1",
            b.enrollment_tokens_ms,
        ),
        (
            "DELETE FROM webhook_deliveries WHERE state IN ('DELIVERED', 'FAILED') AND updated_ms < $1",
            b.webhook_rows_ms,
        ),
        (
            "DELETE FROM webhook_events WHERE created_ms < $1
               AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = webhook_events.id)",
            b.webhook_rows_ms,
        ),
        (
            "DELETE FROM operator_outages WHERE closed_ms IS NOT NULL AND closed_ms < $1",
            b.outages_ms,
        ),
        ("DELETE FROM revoked_cookies WHERE expires_ms < $1", b.cookies_ms),
    ]
}

/// An enum as its wire name (`"ONLINE"`).
pub fn enum_text<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

pub fn enum_parse<T: DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_value(serde_json::Value::String(text.to_owned()))
}

/// A list of enums as their wire names joined by commas.
pub fn list_text<T: Serialize>(items: &[T]) -> String {
    items.iter().map(enum_text).collect::<Vec<_>>().join(",")
}

pub fn list_parse<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, serde_json::Error> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(enum_parse)
        .collect()
}

/// Wallets are compared as text: always lower-case hex.
pub fn wallet_text(wallet: &Address) -> String {
    wallet.to_lower_hex()
}
