//! The fleet link over MQTT (DESIGN.md section 6): topic names and the
//! payload of each, and a parser for fleet commands that turns any bad
//! payload into an error for the acknowledgement instead of a panic.
//!
//! | topic | direction |
//! |---|---|
//! | `lx/v1/operators/{id}/status` | device → fleet, retained; the last will says `offline` |
//! | `lx/v1/operators/{id}/telemetry` | device → server: one signed sample |
//! | `lx/v1/operators/{id}/telemetry/ack` | server → device: what the server holds |
//! | `lx/v1/operators/{id}/offers` | server → device |
//! | `lx/v1/operators/{id}/commands` | fleet → device |
//! | `lx/v1/operators/{id}/commands/ack` | device → fleet |
//! | `lx/v1/workspaces/{id}/events` | server → fleet |
//! | `lx/v1/server/status` | server → everyone, retained; the last will says offline |
//!
//! `telemetry/ack` and `server/status` go beyond the table of the design:
//! the broker's PUBACK only says the broker has a sample, so the device
//! keeps each sample in its on-disk queue until the server itself says it
//! stored it, and sends only while the server says it is subscribed.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[cfg(feature = "mqtt-client")]
pub mod client;

use crate::api::{Availability, OfferDto, SessionState};

pub const PREFIX: &str = "lx/v1";

/// A topic of the fleet link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    Status(Uuid),
    Telemetry(Uuid),
    TelemetryAck(Uuid),
    Offers(Uuid),
    Commands(Uuid),
    CommandAck(Uuid),
    WorkspaceEvents(Uuid),
}

impl Topic {
    /// The topic a name denotes; `None` for anything else (another
    /// prefix, a wildcard, a malformed id).
    pub fn parse(name: &str) -> Option<Self> {
        let rest = name.strip_prefix(PREFIX)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let kind = parts.next()?;
        let id: Uuid = parts.next()?.parse().ok()?;
        let tail: Vec<&str> = parts.collect();
        let topic = match (kind, tail.as_slice()) {
            ("operators", ["status"]) => Self::Status(id),
            ("operators", ["telemetry"]) => Self::Telemetry(id),
            ("operators", ["telemetry", "ack"]) => Self::TelemetryAck(id),
            ("operators", ["offers"]) => Self::Offers(id),
            ("operators", ["commands"]) => Self::Commands(id),
            ("operators", ["commands", "ack"]) => Self::CommandAck(id),
            ("workspaces", ["events"]) => Self::WorkspaceEvents(id),
            _ => return None,
        };
        Some(topic)
    }

    /// The operator (device) or workspace the topic belongs to.
    pub fn owner(self) -> Uuid {
        match self {
            Self::Status(id)
            | Self::Telemetry(id)
            | Self::TelemetryAck(id)
            | Self::Offers(id)
            | Self::Commands(id)
            | Self::CommandAck(id)
            | Self::WorkspaceEvents(id) => id,
        }
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, id, tail) = match self {
            Self::Status(id) => ("operators", id, "status"),
            Self::Telemetry(id) => ("operators", id, "telemetry"),
            Self::TelemetryAck(id) => ("operators", id, "telemetry/ack"),
            Self::Offers(id) => ("operators", id, "offers"),
            Self::Commands(id) => ("operators", id, "commands"),
            Self::CommandAck(id) => ("operators", id, "commands/ack"),
            Self::WorkspaceEvents(id) => ("workspaces", id, "events"),
        };
        write!(f, "{PREFIX}/{kind}/{id}/{tail}")
    }
}

/// A broker address: `mqtt://host[:1883]` or `mqtts://host[:8883]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for BrokerUrl {
    type Err = String;

    fn from_str(url: &str) -> Result<Self, String> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(format!(
                "'{url}' is not a broker URL (mqtt://host:port or mqtts://host:port)"
            ));
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|&p| p > 0)
                    .ok_or_else(|| format!("'{url}': the port must be 1 to 65535"))?;
                (host, port)
            }
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(format!("'{url}': needs a host, and nothing after the port"));
        }
        Ok(Self {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// Subscription filters the server's bridge takes.
pub const ALL_TELEMETRY: &str = "lx/v1/operators/+/telemetry";
pub const ALL_STATUS: &str = "lx/v1/operators/+/status";

/// The server's presence, retained, with a last will: devices publish
/// telemetry only while it says `online`, so no sample reaches the broker
/// while nobody who would store it is subscribed (after a broker restart
/// without persistence, say). Readable by every account.
pub const SERVER_STATUS: &str = "lx/v1/server/status";

/// The payload of [`SERVER_STATUS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStatus {
    pub online: bool,
}

/// What a device is doing, as its status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum DeviceState {
    /// Disconnected: the last will, or a clean shutdown.
    Offline,
    /// Running, without a position it may sign.
    NoFix,
    /// Ready for offers.
    Idle,
    Assigned,
    Live,
    /// Something needs a person (see `error`).
    Error,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::NoFix => "no-fix",
            Self::Idle => "idle",
            Self::Assigned => "assigned",
            Self::Live => "live",
            Self::Error => "error",
        }
    }
}

/// The position part of a status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FixStatus {
    pub lat: f64,
    pub lng: f64,
    pub accuracy_meters: f64,
    pub source: crate::telemetry::Source,
}

/// The vehicle part of a status, from its flight controller (MAVLink).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct VehicleStatus {
    pub armed: bool,
    /// Above mean sea level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub altitude_meters: Option<f64>,
    /// Above the home position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relative_altitude_meters: Option<f64>,
    /// GNSS satellites in view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satellites: Option<u8>,
}

/// How the device itself is doing, where the board reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceHealth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_temperature_c: Option<f64>,
    /// Under-voltage, frequency capped or throttled now (Raspberry Pi firmware).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_total_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_available_mb: Option<u64>,
    /// Free where the agent keeps its queue and keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_free_mb: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
}

/// The stream part of a status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StreamStatus {
    pub encoder: Option<String>,
    pub frames_sent: u64,
    pub bitrate_kbps: u64,
    pub reconnects: u64,
}

/// `lx/v1/operators/{id}/status`, retained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusMessage {
    pub state: DeviceState,
    /// ONLINE takes offers, OFFLINE does not (the fleet's `online`/`offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<Availability>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_percent: Option<u8>,
    /// A drone's flight controller: armed, altitude.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vehicle: Option<VehicleStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<DeviceHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<StreamStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// How the device's last over-the-air update ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<crate::update::UpdateStatus>,
    /// Telemetry samples waiting in the device's queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_samples: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the device composed it, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
}

impl StatusMessage {
    /// The last will: what the broker publishes when the device vanishes.
    pub fn offline(version: &str) -> Self {
        Self {
            state: DeviceState::Offline,
            availability: None,
            session_id: None,
            fix: None,
            battery_percent: None,
            vehicle: None,
            health: None,
            stream: None,
            version: Some(version.to_owned()),
            update: None,
            queued_samples: None,
            error: None,
            at: None,
        }
    }

    /// One line for a person watching the fleet.
    pub fn summary(&self) -> String {
        let mut line = self.state.as_str().to_owned();
        if let Some(s) = self.session_id {
            line.push_str(&format!(" session {s}"));
        }
        if let Some(f) = &self.fix {
            line.push_str(&format!(
                " at {:.5},{:.5} ±{:.1} m",
                f.lat, f.lng, f.accuracy_meters
            ));
        }
        if let Some(b) = self.battery_percent {
            line.push_str(&format!(" battery {b}%"));
        }
        if let Some(s) = &self.stream {
            line.push_str(&format!(
                " stream {} kbit/s, {} frames",
                s.bitrate_kbps, s.frames_sent
            ));
        }
        if let Some(q) = self.queued_samples.filter(|&q| q > 0) {
            line.push_str(&format!(" ({q} samples queued)"));
        }
        if let Some(e) = &self.error {
            line.push_str(&format!(" error: {e}"));
        }
        line
    }
}

/// Whether an offer is a question or a done deal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OfferKind {
    /// Offered to the device's workspace: accept it to take it.
    Offered,
    /// The workspace auto-accepts and the server picked this device: start it.
    Assigned,
    /// No longer this device's to serve: ended, cancelled, expired, or taken
    /// by another device.
    Withdrawn,
}

/// `lx/v1/operators/{id}/offers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfferMessage {
    pub kind: OfferKind,
    #[serde(flatten)]
    pub offer: OfferDto,
}

/// `lx/v1/operators/{id}/telemetry/ack`: the server stored every sample of
/// the device up to `lastSequence` (or refused it for good: `refused`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TelemetryAckMessage {
    pub last_sequence: u64,
    /// Why the samples up to `lastSequence` were refused, when they were:
    /// the device drops them all the same, since resending cannot help.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// `lx/v1/workspaces/{id}/events`: a session of the workspace changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceEvent {
    /// `session.offered`, `session.assigned`, `session.live`, `session.paused`,
    /// `session.ended`, `session.cancelled`, `session.expired`.
    pub event: String,
    pub session_id: Uuid,
    pub state: SessionState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<Uuid>,
    pub at: String,
}

impl WorkspaceEvent {
    /// The event name of a session that reached `state`.
    pub fn name(state: SessionState, offered: bool) -> &'static str {
        match state {
            SessionState::Requested if offered => "session.offered",
            SessionState::Requested => "session.requested",
            SessionState::Assigned => "session.assigned",
            SessionState::Live => "session.live",
            SessionState::Paused => "session.paused",
            SessionState::Ended => "session.ended",
            SessionState::Cancelled => "session.cancelled",
            SessionState::Expired => "session.expired",
        }
    }
}

/// A fleet command, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Take an offer of the device's workspace.
    Accept(Uuid),
    /// Start an assigned session (publish video, go LIVE).
    Start(Uuid),
    End(Uuid),
    /// Give an assigned session back.
    Cancel(Uuid),
    /// Take offers again.
    Online,
    /// Take no offers.
    Offline,
    SetConfig(ConfigChange),
    /// Post the agent's recent log lines to the server.
    Logs(LogRequest),
    /// Install a signed build of the agent and restart into it.
    Update(crate::update::UpdateRequest),
}

/// Which log lines `logs` asks for: the last `lines` (200 by default, at
/// most [`MAX_LOG_LINES`]) of the last `minutes` (at most a day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogRequest {
    #[serde(default)]
    pub lines: Option<u32>,
    #[serde(default)]
    pub minutes: Option<u32>,
}

/// The most lines one `logs` command brings.
pub const MAX_LOG_LINES: u32 = 5000;
/// The furthest back one `logs` command looks, minutes.
pub const MAX_LOG_MINUTES: u32 = 1440;

impl Command {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accept(_) => "accept",
            Self::Start(_) => "start",
            Self::End(_) => "end",
            Self::Cancel(_) => "cancel",
            Self::Online => "online",
            Self::Offline => "offline",
            Self::SetConfig(_) => "set-config",
            Self::Logs(_) => "logs",
            Self::Update(_) => "update",
        }
    }
}

/// What `set-config` may change while the agent runs; every field optional,
/// at least one given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConfigChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_accept: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_battery_percent: Option<u8>,
}

/// `lx/v1/operators/{id}/commands` as sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandMessage {
    pub id: String,
    pub cmd: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub args: serde_json::Value,
}

/// `lx/v1/operators/{id}/commands/ack`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandAck {
    /// The command's id; empty when the payload had none that could be read.
    pub id: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommandAck {
    pub fn ok(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ok: true,
            error: None,
        }
    }

    pub fn failed(id: impl Into<String>, error: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            ok: false,
            error: Some(error.into()),
        }
    }
}

/// A command that cannot be carried out as sent; `id` is what could be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub id: String,
    pub message: String,
}

impl CommandError {
    pub fn ack(&self) -> CommandAck {
        CommandAck::failed(self.id.clone(), self.message.clone())
    }
}

/// The longest command id echoed back.
const MAX_ID_LEN: usize = 128;

/// Parses a command payload. Anything wrong (not JSON, no id, an unknown
/// command, a missing or malformed argument) is an error that names it.
pub fn parse_command(payload: &[u8]) -> Result<(String, Command), CommandError> {
    let value: serde_json::Value = serde_json::from_slice(payload).map_err(|e| CommandError {
        id: String::new(),
        message: format!("payload is not JSON: {e}"),
    })?;
    let fail = |id: &str, message: String| CommandError {
        id: id.to_owned(),
        message,
    };
    let Some(object) = value.as_object() else {
        return Err(fail("", "payload must be a JSON object".into()));
    };
    let id = match object.get("id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() && s.len() <= MAX_ID_LEN => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => {
            return Err(fail(
                "",
                format!("id must be a string of 1 to {MAX_ID_LEN} characters"),
            ));
        }
        None => return Err(fail("", "id is missing".into())),
    };
    for key in object.keys() {
        if !matches!(key.as_str(), "id" | "cmd" | "args") {
            return Err(fail(&id, format!("unknown field '{key}'")));
        }
    }
    let cmd = match object.get("cmd") {
        Some(serde_json::Value::String(s)) => s.as_str(),
        Some(_) => return Err(fail(&id, "cmd must be a string".into())),
        None => return Err(fail(&id, "cmd is missing".into())),
    };
    let args = object.get("args").unwrap_or(&serde_json::Value::Null);
    let session = || -> Result<Uuid, CommandError> {
        let raw = args
            .get("sessionId")
            .ok_or_else(|| fail(&id, format!("{cmd} needs args.sessionId")))?;
        raw.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| fail(&id, "args.sessionId must be a session UUID".into()))
    };
    let no_args = || -> Result<(), CommandError> {
        match args {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(m) if m.is_empty() => Ok(()),
            _ => Err(fail(&id, format!("{cmd} takes no args"))),
        }
    };
    let command = match cmd {
        "accept" => Command::Accept(session()?),
        "start" => Command::Start(session()?),
        "end" => Command::End(session()?),
        "cancel" => Command::Cancel(session()?),
        "online" => {
            no_args()?;
            Command::Online
        }
        "offline" => {
            no_args()?;
            Command::Offline
        }
        "set-config" => {
            let change: ConfigChange = serde_json::from_value(args.clone())
                .map_err(|e| fail(&id, format!("set-config args: {e}")))?;
            if change == ConfigChange::default() {
                return Err(fail(
                    &id,
                    "set-config needs autoAccept or minBatteryPercent".into(),
                ));
            }
            if change.min_battery_percent.is_some_and(|b| b > 100) {
                return Err(fail(&id, "args.minBatteryPercent must be 0 to 100".into()));
            }
            Command::SetConfig(change)
        }
        "logs" => {
            let request: LogRequest = if args.is_null() {
                LogRequest::default()
            } else {
                serde_json::from_value(args.clone())
                    .map_err(|e| fail(&id, format!("logs args: {e}")))?
            };
            if request.lines.is_some_and(|n| n == 0 || n > MAX_LOG_LINES) {
                return Err(fail(
                    &id,
                    format!("args.lines must be 1 to {MAX_LOG_LINES}"),
                ));
            }
            if request
                .minutes
                .is_some_and(|m| m == 0 || m > MAX_LOG_MINUTES)
            {
                return Err(fail(
                    &id,
                    format!("args.minutes must be 1 to {MAX_LOG_MINUTES} (a day)"),
                ));
            }
            Command::Logs(request)
        }
        "update" => {
            let request: crate::update::UpdateRequest = serde_json::from_value(args.clone())
                .map_err(|e| fail(&id, format!("update args: {e}")))?;
            Command::Update(request.validate().map_err(|e| fail(&id, e))?)
        }
        other => {
            return Err(fail(
                &id,
                format!(
                    "unknown cmd '{other}' (accept, start, end, cancel, online, offline, set-config, logs, update)"
                ),
            ));
        }
    };
    Ok((id, command))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls_parse_with_default_ports() {
        let url: BrokerUrl = "mqtt://127.0.0.1:18830".parse().unwrap();
        assert_eq!(
            (url.tls, url.host.as_str(), url.port),
            (false, "127.0.0.1", 18830)
        );
        let url: BrokerUrl = "mqtts://broker.example.com".parse().unwrap();
        assert_eq!((url.tls, url.port), (true, 8883));
        assert_eq!(
            "mqtt://[::1]:1884".parse::<BrokerUrl>().unwrap().host,
            "::1"
        );
        for bad in [
            "http://x",
            "mqtt://",
            "mqtt://h:0",
            "mqtt://h:99999",
            "mqtt://u@h",
            "mqtt://h:1/x",
        ] {
            assert!(bad.parse::<BrokerUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_topic_prints_and_parses_back() {
        let id = Uuid::from_u128(0xabc);
        for topic in [
            Topic::Status(id),
            Topic::Telemetry(id),
            Topic::TelemetryAck(id),
            Topic::Offers(id),
            Topic::Commands(id),
            Topic::CommandAck(id),
            Topic::WorkspaceEvents(id),
        ] {
            let name = topic.to_string();
            assert!(name.starts_with("lx/v1/"), "{name}");
            assert_eq!(Topic::parse(&name), Some(topic), "{name}");
            assert_eq!(topic.owner(), id);
        }
        assert_eq!(
            Topic::Status(id).to_string(),
            "lx/v1/operators/00000000-0000-0000-0000-000000000abc/status"
        );
    }

    #[test]
    fn foreign_and_malformed_topics_are_not_ours() {
        for name in [
            "",
            "lx/v1",
            "lx/v2/operators/00000000-0000-0000-0000-000000000abc/status",
            "lx/v1/operators/not-a-uuid/status",
            "lx/v1/operators/+/status",
            "lx/v1/operators/00000000-0000-0000-0000-000000000abc/status/extra",
            "lx/v1/workspaces/00000000-0000-0000-0000-000000000abc/status",
            "lx/v1/operators/00000000-0000-0000-0000-000000000abc/events",
        ] {
            assert_eq!(Topic::parse(name), None, "{name}");
        }
    }

    fn parsed(json: &serde_json::Value) -> Result<(String, Command), CommandError> {
        parse_command(json.to_string().as_bytes())
    }

    #[test]
    fn commands_parse_with_their_arguments() {
        let s = Uuid::from_u128(7);
        assert_eq!(
            parsed(&serde_json::json!({"id": "c1", "cmd": "accept", "args": {"sessionId": s}})),
            Ok(("c1".into(), Command::Accept(s)))
        );
        assert_eq!(
            parsed(&serde_json::json!({"id": 42, "cmd": "end", "args": {"sessionId": s}})),
            Ok(("42".into(), Command::End(s)))
        );
        assert_eq!(
            parsed(&serde_json::json!({"id": "c2", "cmd": "offline"})),
            Ok(("c2".into(), Command::Offline))
        );
        assert_eq!(
            parsed(
                &serde_json::json!({"id": "c3", "cmd": "set-config", "args": {"autoAccept": false}})
            ),
            Ok((
                "c3".into(),
                Command::SetConfig(ConfigChange {
                    auto_accept: Some(false),
                    min_battery_percent: None
                })
            ))
        );
    }

    #[test]
    fn a_bad_command_names_what_is_wrong_and_keeps_the_id() {
        let cases = [
            (serde_json::json!({"cmd": "online"}), "", "id is missing"),
            (serde_json::json!({"id": "x"}), "x", "cmd is missing"),
            (
                serde_json::json!({"id": "x", "cmd": "fly"}),
                "x",
                "unknown cmd 'fly'",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "start"}),
                "x",
                "needs args.sessionId",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "start", "args": {"sessionId": "nope"}}),
                "x",
                "must be a session UUID",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "online", "args": {"a": 1}}),
                "x",
                "takes no args",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "set-config", "args": {"speed": 3}}),
                "x",
                "unknown field `speed`",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "set-config", "args": {}}),
                "x",
                "needs autoAccept",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "set-config", "args": {"minBatteryPercent": 101}}),
                "x",
                "0 to 100",
            ),
            (
                serde_json::json!({"id": "x", "cmd": "online", "extra": true}),
                "x",
                "unknown field 'extra'",
            ),
            (serde_json::json!([1, 2]), "", "must be a JSON object"),
        ];
        for (json, id, needle) in cases {
            let err = parsed(&json).unwrap_err();
            assert_eq!(err.id, id, "{json}");
            assert!(err.message.contains(needle), "{json}: {}", err.message);
            let ack = err.ack();
            assert!(!ack.ok);
        }
        let err = parse_command(b"{not json").unwrap_err();
        assert!(err.message.starts_with("payload is not JSON"));
    }

    #[test]
    fn payloads_keep_their_wire_names() {
        let status = StatusMessage::offline("0.1.0");
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({"state": "offline", "version": "0.1.0"})
        );
        let offer = OfferMessage {
            kind: OfferKind::Assigned,
            offer: OfferDto {
                session_id: Uuid::from_u128(1),
                lat: 1.5,
                lng: 2.5,
                geofence_radius_meters: 150,
                max_duration_seconds: 60,
                rate_per_second_micro_usdc: 1000,
                expires_at: "2026-01-01T00:00:00.000Z".into(),
            },
        };
        let json = serde_json::to_value(&offer).unwrap();
        assert_eq!(json["kind"], "ASSIGNED");
        assert_eq!(json["sessionId"], Uuid::from_u128(1).to_string());
        assert_eq!(serde_json::from_value::<OfferMessage>(json).unwrap(), offer);
        assert_eq!(
            serde_json::to_value(TelemetryAckMessage {
                last_sequence: 9,
                refused: None
            })
            .unwrap(),
            serde_json::json!({"lastSequence": 9})
        );
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        #[test]
        fn no_payload_makes_the_parser_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_command(&bytes);
        }

        #[test]
        fn no_json_object_makes_the_parser_panic(
            id in proptest::option::of("[a-z0-9]{0,8}"),
            cmd in proptest::option::of("(accept|start|end|cancel|online|offline|set-config|x)"),
            key in "[a-zA-Z]{1,12}",
            value in proptest::prop_oneof![
                proptest::strategy::Just(serde_json::Value::Null),
                proptest::num::i64::ANY.prop_map(serde_json::Value::from),
                "[ -~]{0,40}".prop_map(serde_json::Value::from),
            ],
        ) {
            let mut object = serde_json::Map::new();
            if let Some(id) = id { object.insert("id".into(), id.into()); }
            if let Some(cmd) = cmd { object.insert("cmd".into(), cmd.into()); }
            object.insert("args".into(), serde_json::json!({ key: value }));
            let bytes = serde_json::Value::Object(object).to_string();
            match parse_command(bytes.as_bytes()) {
                Ok((id, _)) => proptest::prop_assert!(!id.is_empty()),
                Err(e) => proptest::prop_assert!(!e.message.is_empty()),
            }
        }
    }
}
