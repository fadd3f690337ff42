//! `GET /healthz` on loopback for supervisors and people: the agent's state
//! as JSON. A hand-written responder keeps the device binary small.

use std::sync::Arc;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, watch};

use crate::fleet::FleetStats;
use crate::position::PositionSource;
use crate::status::LifecycleStats;
use crate::status::TelemetryStats;
use crate::video::VideoStats;

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Health {
    status: &'static str,
    version: &'static str,
    operator_id: String,
    has_fix: bool,
    receiver_connected: Option<bool>,
    /// The flight controller, with a MAVLink position source.
    #[serde(skip_serializing_if = "Option::is_none")]
    vehicle: Option<VehicleHealth>,
    /// The board: temperature, throttling, memory, disk, uptime.
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<lx_protocol::mqtt::DeviceHealth>,
    telemetry: TelemetryStats,
    lifecycle: LifecycleStats,
    video: VideoStats,
    fleet: FleetStats,
    /// How the last over-the-air update ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    update: Option<lx_protocol::update::UpdateStatus>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct VehicleHealth {
    link_connected: bool,
    armed: Option<bool>,
    battery_percent: Option<u8>,
    altitude_meters: Option<f64>,
    relative_altitude_meters: Option<f64>,
    fix_type: Option<u8>,
    satellites: Option<u8>,
    link: crate::mavlink::LinkCounters,
    last_error: Option<String>,
}

impl From<crate::mavlink::VehicleState> for VehicleHealth {
    fn from(v: crate::mavlink::VehicleState) -> Self {
        Self {
            link_connected: v.connected,
            armed: v.armed,
            battery_percent: v.battery_percent,
            altitude_meters: v.altitude_m,
            relative_altitude_meters: v.relative_altitude_m,
            fix_type: v.fix_type,
            satellites: v.satellites,
            link: v.counters,
            last_error: v.last_error,
        }
    }
}

pub struct HealthState {
    pub operator_id: uuid::Uuid,
    pub device: crate::device_health::HealthReadings,
    pub position: Arc<PositionSource>,
    pub telemetry: Arc<Mutex<TelemetryStats>>,
    pub lifecycle: Arc<Mutex<LifecycleStats>>,
    pub video: Arc<Mutex<VideoStats>>,
    pub fleet: Arc<Mutex<FleetStats>>,
    pub update: watch::Receiver<Option<lx_protocol::update::UpdateStatus>>,
}

impl HealthState {
    async fn render(&self) -> (u16, String) {
        let has_fix = self
            .position
            .latest(std::time::Instant::now(), crate::wall_now_ms())
            .is_some();
        let telemetry = self.telemetry.lock().await.clone();
        let lifecycle = self.lifecycle.lock().await.clone();
        let video = self.video.lock().await.clone();
        let fleet = self.fleet.lock().await.clone();
        let healthy = has_fix && telemetry.last_error.is_none();
        let body = Health {
            status: if healthy { "ok" } else { "degraded" },
            version: crate::VERSION,
            operator_id: self.operator_id.to_string(),
            has_fix,
            receiver_connected: self.position.receiver().map(|r| r.connected),
            vehicle: self.position.vehicle().map(VehicleHealth::from),
            device: self.device.latest(),
            telemetry,
            lifecycle,
            video,
            fleet,
            update: self.update.borrow().clone(),
        };
        (
            if healthy { 200 } else { 503 },
            serde_json::to_string(&body).unwrap_or_default(),
        )
    }
}

pub async fn serve(
    listener: TcpListener,
    state: Arc<HealthState>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(
                std::time::Duration::from_secs(2),
                stream.read(&mut buf),
            )
            .await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if request.starts_with("GET /healthz ") {
                state.render().await
            } else {
                (404, "{\"status\":\"not found\"}".to_owned())
            };
            let reason = match status {
                200 => "OK",
                503 => "Service Unavailable",
                _ => "Not Found",
            };
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}

/// The session a running agent on this device serves, asked of its
/// `/healthz` at `listen`; `None` when it serves none or no agent answers.
pub async fn serving_now(listen: &str) -> Option<uuid::Uuid> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .ok()?;
    let response = client
        .get(format!("http://{listen}/healthz"))
        .send()
        .await
        .ok()?;
    let body: serde_json::Value = response.json().await.ok()?;
    body["lifecycle"]["serving"].as_str()?.parse().ok()
}
