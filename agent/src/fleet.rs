//! The fleet link: the device's MQTT connection (DESIGN.md section 6).
//!
//! It keeps a retained status on the broker (the last will says `offline`),
//! hands offers and commands to the lifecycle, acknowledges each command,
//! and carries telemetry: samples stay in the on-disk queue until the
//! server acknowledges them on `telemetry/ack`, and go out only while the
//! server says it is subscribed. It reconnects with backoff and subscribes
//! again on every connection.
//!
//! [`compose_status`] and [`worth_publishing`] are pure; the
//! tasks around them are the shell.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use lx_protocol::api::{Availability, MqttCredentialsDto, SessionState};
use lx_protocol::mqtt::client::{self, Login};
use lx_protocol::mqtt::{
    BrokerUrl, Command, CommandAck, DeviceHealth, DeviceState, FixStatus, OfferMessage,
    SERVER_STATUS, ServerStatus, StatusMessage, StreamStatus, TelemetryAckMessage, Topic,
    VehicleStatus, parse_command,
};
use lx_protocol::telemetry::SampleJson;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{Mutex, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::battery::Battery;
use crate::config::MqttConfig;
use crate::device_health::HealthReadings;
use crate::position::PositionSource;
use crate::status::LifecycleStats;
use crate::status::TelemetryStats;
use crate::video::VideoStats;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the link knows about itself, for the tasks that use it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkState {
    pub connected: bool,
    /// The server's retained presence says it is subscribed.
    pub server_online: bool,
    /// Counts connections: samples sent on an earlier one may be lost.
    pub generation: u64,
    /// The highest sequence the server said it holds.
    pub acked: u64,
}

impl LinkState {
    /// Telemetry may go over the link.
    pub fn ready(&self) -> bool {
        self.connected && self.server_online
    }
}

/// What arrives for the lifecycle.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    Offer(OfferMessage),
    Command {
        id: String,
        command: Command,
    },
    /// A new connection: what was sent while away is lost, so look again.
    Connected,
}

/// The handle the other tasks hold.
#[derive(Debug, Clone)]
pub struct FleetHandle {
    client: AsyncClient,
    operator: Uuid,
    state: watch::Receiver<LinkState>,
}

impl FleetHandle {
    pub fn state(&self) -> LinkState {
        *self.state.borrow()
    }

    pub fn watch(&self) -> watch::Receiver<LinkState> {
        self.state.clone()
    }

    /// Sends one sample; the server's ack, not this, takes it off the queue.
    pub async fn publish_sample(&self, sample: &SampleJson) -> anyhow::Result<()> {
        let payload = serde_json::to_vec(sample)?;
        self.client
            .publish(
                Topic::Telemetry(self.operator).to_string(),
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .context("queueing a sample for the broker")
    }

    pub fn ack(&self, ack: &CommandAck) {
        publish_ack(&self.client, self.operator, ack);
    }
}

fn publish_ack(client: &AsyncClient, operator: Uuid, ack: &CommandAck) {
    let payload = serde_json::to_vec(ack).unwrap_or_default();
    if let Err(e) = client.try_publish(
        Topic::CommandAck(operator).to_string(),
        QoS::AtLeastOnce,
        false,
        payload,
    ) {
        tracing::warn!(%e, id = %ack.id, "command ack not queued");
    }
}

/// The broker and login of this device: the enrollment's, with the
/// config's URL over it.
pub fn broker(
    config: &MqttConfig,
    enrolled: &MqttCredentialsDto,
    operator: Uuid,
) -> anyhow::Result<(BrokerUrl, Login)> {
    let url = if config.url.is_empty() {
        &enrolled.url
    } else {
        &config.url
    };
    let url: BrokerUrl = url
        .parse()
        .map_err(|e| anyhow::anyhow!("the fleet link's broker: {e}"))?;
    let ca_pem = client::read_ca(&config.ca_file).map_err(anyhow::Error::msg)?;
    let will = serde_json::to_vec(&StatusMessage::offline(crate::VERSION))?;
    Ok((
        url,
        Login {
            client_id: format!("lx-agent-{}", &operator.simple().to_string()[..8]),
            username: enrolled.username.clone(),
            password: enrolled.password.clone(),
            ca_pem,
            keep_alive: Duration::from_secs(u64::from(config.keep_alive_seconds)),
            last_will: Some((Topic::Status(operator).to_string(), will)),
        },
    ))
}

/// Counters for the health endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FleetStats {
    pub connected: bool,
    pub server_online: bool,
    pub connects: u64,
    pub offers: u64,
    pub commands: u64,
    pub bad_commands: u64,
    pub last_error: Option<String>,
}

/// Starts the link. `status` is what the retained status should say.
pub fn start(
    url: &BrokerUrl,
    login: &Login,
    operator: Uuid,
    mut status: watch::Receiver<StatusMessage>,
    inbound: mpsc::Sender<Inbound>,
    stats: Arc<Mutex<FleetStats>>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(FleetHandle, JoinHandle<()>)> {
    let (options, network) = client::options(url, login).map_err(anyhow::Error::msg)?;
    let (client, mut eventloop) = AsyncClient::new(options, 1024);
    eventloop.set_network_options(network);
    let (state_tx, state_rx) = watch::channel(LinkState::default());
    let handle = FleetHandle {
        client: client.clone(),
        operator,
        state: state_rx,
    };
    let broker = format!("{}:{}", url.host, url.port);
    let status_topic = Topic::Status(operator).to_string();
    let publish_status = move |client: &AsyncClient, status: &StatusMessage| {
        let payload = serde_json::to_vec(status).unwrap_or_default();
        if let Err(e) = client.try_publish(status_topic.clone(), QoS::AtLeastOnce, true, payload) {
            tracing::warn!(%e, "status not queued");
        }
    };
    let task = tokio::spawn(async move {
        let mut backoff = MIN_BACKOFF;
        let mut status_open = true;
        loop {
            let event = tokio::select! {
                event = eventloop.poll() => event,
                changed = status.changed(), if status_open => {
                    if changed.is_err() {
                        // The status task is gone (shutdown): stop listening.
                        status_open = false;
                        continue;
                    }
                    if state_tx.borrow().connected {
                        publish_status(&client, &status.borrow_and_update());
                    }
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            match event {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff = MIN_BACKOFF;
                    state_tx.send_modify(|s| {
                        s.connected = true;
                        s.server_online = false;
                        s.generation += 1;
                    });
                    {
                        let mut st = stats.lock().await;
                        st.connected = true;
                        st.connects += 1;
                        st.last_error = None;
                    }
                    tracing::info!(%broker, "fleet link connected");
                    let filters = [
                        Topic::Offers(operator).to_string(),
                        Topic::Commands(operator).to_string(),
                        Topic::TelemetryAck(operator).to_string(),
                        SERVER_STATUS.to_owned(),
                    ];
                    if let Err(e) = client.try_subscribe_many(
                        filters
                            .into_iter()
                            .map(|f| rumqttc::SubscribeFilter::new(f, QoS::AtLeastOnce)),
                    ) {
                        tracing::warn!(%e, "subscriptions not queued");
                    }
                    // Until the first status is composed the watch holds the
                    // will's `offline`: nothing to say yet.
                    if status.borrow().state != DeviceState::Offline {
                        publish_status(&client, &status.borrow());
                    }
                    let _ = inbound.try_send(Inbound::Connected);
                }
                Ok(Event::Incoming(Packet::SubAck(ack))) => {
                    if client::refused(&ack) {
                        tracing::error!(
                            "the broker refused this device's subscriptions: its account does not match its operator id"
                        );
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    on_publish(&p, operator, &inbound, &client, &state_tx, &stats).await;
                }
                Ok(_) => {}
                Err(e) => {
                    state_tx.send_modify(|s| {
                        s.connected = false;
                        s.server_online = false;
                    });
                    {
                        let mut st = stats.lock().await;
                        st.connected = false;
                        st.server_online = false;
                        st.last_error = Some(e.to_string());
                    }
                    tracing::warn!(%broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "fleet link down");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.changed() => break,
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        if state_tx.borrow().connected {
            // The will is not sent on a clean DISCONNECT: say it ourselves.
            publish_status(&client, &StatusMessage::offline(crate::VERSION));
            client::disconnect(&client, &mut eventloop).await;
        }
    });
    Ok((handle, task))
}

async fn on_publish(
    p: &rumqttc::Publish,
    operator: Uuid,
    inbound: &mpsc::Sender<Inbound>,
    client: &AsyncClient,
    state: &watch::Sender<LinkState>,
    stats: &Mutex<FleetStats>,
) {
    if p.topic == SERVER_STATUS {
        let online = serde_json::from_slice::<ServerStatus>(&p.payload).is_ok_and(|s| s.online);
        state.send_modify(|s| s.server_online = online);
        stats.lock().await.server_online = online;
        tracing::info!(online, "server presence");
        return;
    }
    match Topic::parse(&p.topic) {
        Some(Topic::TelemetryAck(id)) if id == operator => {
            match serde_json::from_slice::<TelemetryAckMessage>(&p.payload) {
                Ok(ack) => {
                    if let Some(reason) = &ack.refused {
                        tracing::warn!(sequence = ack.last_sequence, %reason, "server refused a sample");
                    }
                    state.send_modify(|s| s.acked = s.acked.max(ack.last_sequence));
                }
                Err(e) => tracing::warn!(error = %e, "unreadable telemetry ack"),
            }
        }
        Some(Topic::Offers(id)) if id == operator => {
            match serde_json::from_slice::<OfferMessage>(&p.payload) {
                Ok(offer) => {
                    stats.lock().await.offers += 1;
                    let _ = inbound.send(Inbound::Offer(offer)).await;
                }
                Err(e) => tracing::warn!(error = %e, "unreadable offer"),
            }
        }
        Some(Topic::Commands(id)) if id == operator => match parse_command(&p.payload) {
            Ok((id, command)) => {
                stats.lock().await.commands += 1;
                tracing::info!(%id, cmd = command.name(), "fleet command");
                // A closed inbox means the agent is stopping.
                let _ = inbound.send(Inbound::Command { id, command }).await;
            }
            Err(e) => {
                stats.lock().await.bad_commands += 1;
                tracing::warn!(id = %e.id, error = %e.message, "fleet command refused");
                publish_ack(client, operator, &e.ack());
            }
        },
        _ => tracing::debug!(topic = %p.topic, "ignored"),
    }
}

/// What the status is made of.
#[derive(Debug, Clone, Default)]
pub struct StatusInputs {
    pub fix: Option<FixStatus>,
    pub serving: Option<(Uuid, SessionState)>,
    /// The camera is going out over WHIP.
    pub publishing: bool,
    pub taking_offers: bool,
    pub battery_percent: Option<u8>,
    pub vehicle: Option<VehicleStatus>,
    pub health: Option<DeviceHealth>,
    pub stream: Option<StreamStatus>,
    pub queued_samples: u64,
    pub error: Option<String>,
    pub update: Option<lx_protocol::update::UpdateStatus>,
}

/// The status for a person and for the fleet manager.
pub fn compose_status(inputs: &StatusInputs, at: String) -> StatusMessage {
    let state = match (&inputs.error, inputs.serving, &inputs.fix) {
        (Some(_), _, _) => DeviceState::Error,
        (None, Some((_, SessionState::Live | SessionState::Paused)), _) => DeviceState::Live,
        // The server says LIVE on its first decoded frame; the device knows
        // it is publishing before its next poll would tell it so.
        (None, Some(_), _) if inputs.publishing => DeviceState::Live,
        (None, Some(_), _) => DeviceState::Assigned,
        (None, None, None) => DeviceState::NoFix,
        (None, None, Some(_)) => DeviceState::Idle,
    };
    StatusMessage {
        state,
        availability: Some(if inputs.taking_offers {
            Availability::Online
        } else {
            Availability::Offline
        }),
        session_id: inputs.serving.map(|(id, _)| id),
        fix: inputs.fix.clone(),
        battery_percent: inputs.battery_percent,
        vehicle: inputs.vehicle.clone(),
        health: inputs.health.clone(),
        stream: inputs.stream.clone(),
        version: Some(crate::VERSION.to_owned()),
        update: inputs.update.clone(),
        queued_samples: Some(inputs.queued_samples),
        error: inputs.error.clone(),
        at: Some(at),
    }
}

/// Whether `next` differs from the last status published (none yet: it
/// does) in a way a person watching the fleet wants at once, not only in
/// counters moving.
pub fn worth_publishing(last: Option<&StatusMessage>, next: &StatusMessage) -> bool {
    let Some(last) = last else {
        return true;
    };
    last.state != next.state
        || last.session_id != next.session_id
        || last.availability != next.availability
        || last.error != next.error
        || last.battery_percent != next.battery_percent
        || last.vehicle.as_ref().map(|v| v.armed) != next.vehicle.as_ref().map(|v| v.armed)
        || last.update != next.update
}

/// Where the status is read from.
#[derive(Debug, Clone)]
pub struct StatusSources {
    pub position: Arc<PositionSource>,
    pub lifecycle: Arc<Mutex<LifecycleStats>>,
    pub telemetry: Arc<Mutex<TelemetryStats>>,
    pub video: Arc<Mutex<VideoStats>>,
    pub battery: Battery,
    pub health: HealthReadings,
    pub update: watch::Receiver<Option<lx_protocol::update::UpdateStatus>>,
}

/// Recomposes the status every second and hands it on (to the link, the
/// LED) when it changed, or when `refresh` passed since the last one.
pub async fn status_task(
    sources: StatusSources,
    status: watch::Sender<StatusMessage>,
    refresh: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let StatusSources {
        position,
        lifecycle,
        telemetry,
        video,
        battery,
        health,
        update,
    } = sources;
    let mut last_sent: Option<(StatusMessage, Instant)> = None;
    loop {
        let inputs = {
            let fix = position
                .latest(Instant::now(), crate::wall_now_ms())
                .map(|o| FixStatus {
                    lat: o.point.lat,
                    lng: o.point.lng,
                    accuracy_meters: o.accuracy_m,
                    source: o.source,
                });
            let l = lifecycle.lock().await.clone();
            let t = telemetry.lock().await.clone();
            let v = video.lock().await.clone();
            StatusInputs {
                fix,
                serving: l.serving.zip(l.serving_state),
                publishing: v.state == "publishing",
                taking_offers: l.taking_offers,
                battery_percent: battery.percent(),
                vehicle: position.vehicle().and_then(|v| {
                    v.armed.map(|armed| VehicleStatus {
                        armed,
                        altitude_meters: v.altitude_m,
                        relative_altitude_meters: v.relative_altitude_m,
                        satellites: v.satellites,
                    })
                }),
                health: health.latest(),
                stream: (v.state == "publishing").then(|| StreamStatus {
                    encoder: v.encoder.clone(),
                    frames_sent: v.frames_sent,
                    bitrate_kbps: v.bitrate_kbps,
                    reconnects: v.reconnects,
                }),
                queued_samples: t.queued as u64,
                error: None,
                update: update.borrow().clone(),
            }
        };
        let next = compose_status(
            &inputs,
            lx_protocol::time::format_millis(crate::wall_now_ms()),
        );
        let due = worth_publishing(last_sent.as_ref().map(|(last, _)| last), &next)
            || last_sent
                .as_ref()
                .is_some_and(|(_, at)| at.elapsed() >= refresh);
        if due {
            status.send_replace(next.clone());
            last_sent = Some((next, Instant::now()));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fix() -> FixStatus {
        FixStatus {
            lat: 1.0,
            lng: 2.0,
            accuracy_meters: 3.0,
            source: lx_protocol::telemetry::Source::Gps,
        }
    }

    #[test]
    fn the_state_follows_the_fix_and_the_session() {
        let mut inputs = StatusInputs {
            taking_offers: true,
            ..StatusInputs::default()
        };
        let at = || "2026-01-01T00:00:00.000Z".to_owned();
        assert_eq!(compose_status(&inputs, at()).state, DeviceState::NoFix);
        inputs.fix = Some(fix());
        assert_eq!(compose_status(&inputs, at()).state, DeviceState::Idle);
        let s = Uuid::from_u128(4);
        inputs.serving = Some((s, SessionState::Assigned));
        assert_eq!(compose_status(&inputs, at()).state, DeviceState::Assigned);
        inputs.publishing = true;
        assert_eq!(compose_status(&inputs, at()).state, DeviceState::Live);
        inputs.publishing = false;
        inputs.serving = Some((s, SessionState::Live));
        let live = compose_status(&inputs, at());
        assert_eq!(live.state, DeviceState::Live);
        assert_eq!(live.session_id, Some(s));
        inputs.error = Some("camera gone".into());
        assert_eq!(compose_status(&inputs, at()).state, DeviceState::Error);
    }

    #[test]
    fn counters_alone_wait_for_the_refresh() {
        let inputs = StatusInputs {
            fix: Some(fix()),
            taking_offers: true,
            ..StatusInputs::default()
        };
        let a = compose_status(&inputs, "t1".into());
        let mut b = compose_status(&inputs, "t2".into());
        b.queued_samples = Some(7);
        assert!(!worth_publishing(Some(&a), &b));
        b.availability = Some(Availability::Offline);
        assert!(worth_publishing(Some(&a), &b));
        assert!(worth_publishing(None, &a));
    }
}
