//! The server's side of the fleet link (DESIGN.md section 6): a bridge
//! between the broker and the application. It publishes offers to devices
//! and session events to their workspaces, stores the telemetry devices
//! publish through the same verification as `POST /sessions/:id/telemetry`,
//! acknowledges what it stored, and marks a device disconnected when the
//! broker announces its last will.

#[cfg(feature = "test-support")]
pub mod test_broker;

use std::sync::Arc;
use std::time::Duration;

use lx_protocol::ErrorCode;
use lx_protocol::api::{OfferDto, SessionState};
use lx_protocol::mqtt::client::{self, Login};
use lx_protocol::mqtt::{
    ALL_STATUS, ALL_TELEMETRY, BrokerUrl, DeviceState, OfferKind, OfferMessage, SERVER_STATUS,
    ServerStatus, StatusMessage, TelemetryAckMessage, Topic, WorkspaceEvent,
};
use lx_protocol::telemetry::SampleJson;
use lx_protocol::time::format_millis;
use rumqttc::{AsyncClient, Event, Packet, QoS};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::app::App;
use crate::config::MqttConfig;
use crate::error::ApiError;
use crate::store::{Lease, Session};

/// Most publishes taken from the broker in one ingest round.
const INGEST_BATCH: usize = 512;

/// The bridge's connection to the broker.
fn login(config: &MqttConfig) -> anyhow::Result<(BrokerUrl, Login)> {
    let url: BrokerUrl = config
        .url
        .parse()
        .map_err(|e| anyhow::anyhow!("mqtt.url: {e}"))?;
    let ca_pem = client::read_ca(&config.ca_file).map_err(anyhow::Error::msg)?;
    let will = serde_json::to_vec(&ServerStatus { online: false })?;
    Ok((
        url,
        Login {
            client_id: "lx-server".into(),
            username: Some(config.username.clone()),
            password: Some(config.password.clone()),
            ca_pem,
            keep_alive: Duration::from_secs(u64::from(config.keep_alive_seconds)),
            last_will: Some((SERVER_STATUS.to_owned(), will)),
        },
    ))
}

/// Counters, for logs and the benchmark.
#[derive(Debug, Default)]
pub struct BridgeStats {
    pub connects: std::sync::atomic::AtomicU64,
    pub samples_stored: std::sync::atomic::AtomicU64,
}

/// Writes the broker's accounts (when the server manages them) and starts
/// the bridge.
pub async fn start(
    app: &Arc<App>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<BridgeStats>, Vec<JoinHandle<()>>)> {
    if let Some(accounts) = &app.broker_accounts {
        accounts.sync(app.store.as_ref()).await?;
        if accounts.managed() {
            tracing::info!(
                password_file = %app.config.mqtt.mosquitto.password_file.display(),
                acl_file = %app.config.mqtt.mosquitto.acl_file.display(),
                "broker accounts written"
            );
        }
    }
    let stats = Arc::new(BridgeStats::default());
    let tasks = spawn(app, Arc::clone(&stats), shutdown)?;
    tracing::info!(broker = %app.config.mqtt.url, "fleet link started");
    Ok((stats, tasks))
}

/// Starts the bridge: the broker connection, the ingest of what devices
/// publish, and the publishing of session changes. Stops on `shutdown`,
/// after saying so on the server's status topic.
pub fn spawn(
    app: &Arc<App>,
    stats: Arc<BridgeStats>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Vec<JoinHandle<()>>> {
    let (url, login) = login(&app.config.mqtt)?;
    let (options, network) =
        client::options(&url, &login).map_err(|e| anyhow::anyhow!("mqtt.url: {e}"))?;
    let lease = Arc::new(IngestLease::default());
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    eventloop.set_network_options(network);
    let (inbound_tx, inbound_rx) = mpsc::channel::<rumqttc::Publish>(8192);
    let connection = {
        let client = client.clone();
        let lease = Arc::clone(&lease);
        let stats = Arc::clone(&stats);
        let mut shutdown = shutdown.clone();
        let broker = format!("{}:{}", url.host, url.port);
        let username = app.config.mqtt.username.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            let mut subscriptions_pending = 0usize;
            loop {
                let event = tokio::select! {
                    event = eventloop.poll() => event,
                    _ = shutdown.changed() => break,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(250);
                        stats
                            .connects
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::info!(%broker, "fleet link connected");
                        subscriptions_pending = 2;
                        lease
                            .subscribed
                            .store(false, std::sync::atomic::Ordering::SeqCst);
                        for filter in [ALL_TELEMETRY, ALL_STATUS] {
                            if let Err(e) = client.try_subscribe(filter, QoS::AtLeastOnce) {
                                tracing::warn!(%e, filter, "subscribe not queued");
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if client::refused(&ack) {
                            tracing::error!(
                                user = %username,
                                "the broker refused the server's subscriptions: check its ACL for mqtt.username"
                            );
                        }
                        subscriptions_pending = subscriptions_pending.saturating_sub(1);
                        if subscriptions_pending == 0 {
                            lease
                                .subscribed
                                .store(true, std::sync::atomic::Ordering::SeqCst);
                            if lease.held() {
                                // Subscribed: devices may send telemetry now.
                                publish_server_status(&client, true);
                            }
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        if inbound_tx.send(p).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%broker, error = %e, retry_in_ms = backoff.as_millis() as u64, "fleet link down");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.changed() => break,
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
            // The will is not sent on a clean DISCONNECT: say it ourselves,
            // if it was this replica that said it was there.
            if lease.held() {
                publish_server_status(&client, false);
            }
            client::disconnect(&client, &mut eventloop).await;
        })
    };
    let watch_lease = tokio::spawn(watch_ingest_lease(
        Arc::clone(app),
        client.clone(),
        Arc::clone(&lease),
        shutdown.clone(),
    ));
    let ingest = tokio::spawn(ingest_loop(
        Arc::clone(app),
        client.clone(),
        stats,
        inbound_rx,
        lease,
    ));
    let events = tokio::spawn(publish_loop(
        Arc::clone(app),
        client,
        app.events.subscribe(),
        shutdown,
    ));
    Ok(vec![connection, watch_lease, ingest, events])
}

fn publish_server_status(client: &AsyncClient, online: bool) {
    let payload = serde_json::to_vec(&ServerStatus { online }).unwrap_or_default();
    if let Err(e) = client.try_publish(SERVER_STATUS, QoS::AtLeastOnce, true, payload) {
        tracing::warn!(%e, "server status not published");
    }
}

/// Telemetry of one device for one session (or none), in arrival order.
struct Run {
    operator: Uuid,
    session: Option<Uuid>,
    samples: Vec<SampleJson>,
}

/// Whether this replica is the one storing what devices publish (the
/// [`Lease::TelemetryIngest`] holder), asked of the store at most once a
/// second. Every replica receives the devices' messages; the others drop
/// them, and a device sends again what no ack covered, so a handover
/// loses nothing. A store no other replica shares always grants it.
#[derive(Debug, Default)]
struct IngestLease {
    held: std::sync::atomic::AtomicBool,
    /// The link's subscriptions are in place: devices' messages reach us.
    subscribed: std::sync::atomic::AtomicBool,
    checked: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// How long a lease answer is taken as still true.
const LEASE_RECHECK: Duration = Duration::from_secs(1);

impl IngestLease {
    fn held(&self) -> bool {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether this replica holds the lease now; `(held, newly)`.
    async fn check(&self, app: &App) -> (bool, bool) {
        let mut checked = self.checked.lock().await;
        if checked.is_some_and(|at| at.elapsed() < LEASE_RECHECK) {
            return (self.held(), false);
        }
        let held = match app.store.hold_lease(Lease::TelemetryIngest).await {
            Ok(held) => held,
            Err(err) => {
                tracing::warn!(%err, "telemetry lease not checked; this replica stops ingesting");
                false
            }
        };
        *checked = Some(tokio::time::Instant::now());
        let was = self.held.swap(held, std::sync::atomic::Ordering::SeqCst);
        (held, held && !was)
    }
}

/// Keeps the lease answer fresh; the replica that takes the lease says the
/// server is there, and says it again every few seconds (another replica
/// going away may have said otherwise with its last will).
async fn watch_ingest_lease(
    app: Arc<App>,
    client: AsyncClient,
    lease: Arc<IngestLease>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(LEASE_RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beats = 0u32;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (held, newly) = lease.check(&app).await;
        beats = if newly { 0 } else { beats + 1 };
        if newly {
            tracing::info!("this replica ingests the devices' telemetry");
        }
        let subscribed = lease.subscribed.load(std::sync::atomic::Ordering::SeqCst);
        if held && subscribed && (newly || (beats.is_multiple_of(5) && app.store.shared())) {
            publish_server_status(&client, true);
        }
    }
}

async fn ingest_loop(
    app: Arc<App>,
    client: AsyncClient,
    stats: Arc<BridgeStats>,
    mut inbound: mpsc::Receiver<rumqttc::Publish>,
    lease: Arc<IngestLease>,
) {
    let mut batch = Vec::with_capacity(INGEST_BATCH);
    while inbound.recv_many(&mut batch, INGEST_BATCH).await > 0 {
        if !lease.check(&app).await.0 {
            batch.clear();
            continue;
        }
        let mut runs: Vec<Run> = Vec::new();
        for publish in batch.drain(..) {
            match Topic::parse(&publish.topic) {
                Some(Topic::Telemetry(operator)) => {
                    let samples = match parse_samples(&publish.payload) {
                        Ok(samples) => samples,
                        Err(e) => {
                            tracing::info!(%operator, error = %e, "unreadable telemetry over MQTT");
                            continue;
                        }
                    };
                    for sample in samples {
                        // Devices' messages interleave; each device's own
                        // stay in order, in runs of one session each.
                        match runs.iter_mut().rev().find(|r| r.operator == operator) {
                            Some(run) if run.session == sample.session_id => {
                                run.samples.push(sample);
                            }
                            _ => runs.push(Run {
                                operator,
                                session: sample.session_id,
                                samples: vec![sample],
                            }),
                        }
                    }
                }
                Some(Topic::Status(operator)) => {
                    on_status(&app, operator, &publish).await;
                }
                _ => tracing::debug!(topic = %publish.topic, "ignored"),
            }
        }
        // One device's runs in order; devices side by side, so that
        // signatures are checked on every core.
        let mut chains: Vec<(Uuid, Vec<Run>)> = Vec::new();
        for run in runs {
            match chains.iter_mut().find(|(op, _)| *op == run.operator) {
                Some((_, chain)) => chain.push(run),
                None => chains.push((run.operator, vec![run])),
            }
        }
        let mut devices = tokio::task::JoinSet::new();
        for (_, chain) in chains {
            let (app, client, stats) = (Arc::clone(&app), client.clone(), Arc::clone(&stats));
            devices.spawn(async move {
                for run in chain {
                    ingest_run(&app, &client, &stats, run).await;
                }
            });
        }
        while devices.join_next().await.is_some() {}
    }
}

fn parse_samples(payload: &[u8]) -> Result<Vec<SampleJson>, String> {
    if payload.trim_ascii_start().starts_with(b"[") {
        serde_json::from_slice(payload).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(payload)
            .map(|s| vec![s])
            .map_err(|e| e.to_string())
    }
}

/// Stores a run of samples, all at once when all are good, else one by one
/// so that a bad one costs only itself; acknowledges what the server holds.
async fn ingest_run(app: &App, client: &AsyncClient, stats: &BridgeStats, run: Run) {
    let op = match app.store.operator(run.operator).await {
        Ok(Some(op)) => op,
        Ok(None) => {
            tracing::info!(operator = %run.operator, "telemetry of an unknown device");
            return;
        }
        Err(err) => {
            tracing::warn!(%err, "telemetry not stored; the device sends it again");
            return;
        }
    };
    let ack_topic = Topic::TelemetryAck(op.id).to_string();
    let last_of = |samples: &[SampleJson]| samples.iter().map(|s| s.sequence).max().unwrap_or(0);
    let ack = match store(app, stats, &op, run.session, &run.samples).await {
        Ok(ack) => Some(ack),
        Err(_) if run.samples.len() > 1 => {
            let mut ack = None;
            for sample in &run.samples {
                let one = std::slice::from_ref(sample);
                ack = match store(app, stats, &op, run.session, one).await {
                    Ok(stored) => Some(stored),
                    Err(err) => settle_refusal(&err, sample.sequence),
                }
                .or(ack);
            }
            ack
        }
        Err(err) => settle_refusal(&err, last_of(&run.samples)),
    };
    if let Some(ack) = ack {
        let payload = serde_json::to_vec(&ack).unwrap_or_default();
        if let Err(e) = client.try_publish(ack_topic, QoS::AtLeastOnce, false, payload) {
            tracing::warn!(%e, "telemetry ack not published; the device sends again");
        }
    }
}

/// Verifies and stores samples; the acknowledgement of the last of them.
async fn store(
    app: &App,
    stats: &BridgeStats,
    op: &crate::store::Operator,
    session: Option<Uuid>,
    samples: &[SampleJson],
) -> Result<TelemetryAckMessage, ApiError> {
    let last = crate::ingest::device_samples(app, op, session, samples).await?;
    stats
        .samples_stored
        .fetch_add(samples.len() as u64, std::sync::atomic::Ordering::Relaxed);
    let newest = samples.iter().map(|s| s.sequence).max().unwrap_or(0);
    Ok(TelemetryAckMessage {
        last_sequence: last.max(newest),
        refused: None,
    })
}

/// What a refusal means for the device's queue: a replay is acknowledged
/// up to what the server holds; a store failure not at all (the device
/// sends again); anything else is refused for good.
fn settle_refusal(err: &ApiError, sequence: u64) -> Option<TelemetryAckMessage> {
    match err.code {
        ErrorCode::Internal => {
            tracing::warn!(message = %err.message, "telemetry not stored; the device sends it again");
            None
        }
        ErrorCode::ReplayedSequence => {
            let held = err
                .detail
                .as_deref()
                .and_then(lx_protocol::telemetry::replayed_last)
                .unwrap_or(sequence);
            Some(TelemetryAckMessage {
                last_sequence: held.max(sequence),
                refused: None,
            })
        }
        _ => {
            tracing::info!(code = %err.code, message = %err.message, sequence, "telemetry over MQTT refused");
            Some(TelemetryAckMessage {
                last_sequence: sequence,
                refused: Some(format!("{}: {}", err.code, err.message)),
            })
        }
    }
}

async fn on_status(app: &App, operator: Uuid, publish: &rumqttc::Publish) {
    let status: StatusMessage = match serde_json::from_slice(&publish.payload) {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(%operator, error = %e, "unreadable status");
            return;
        }
    };
    let now = app.now();
    let result = if status.state == DeviceState::Offline {
        app.store
            .mark_operator_disconnected(operator, now)
            .await
            .map(|_| ())
    } else if publish.retain {
        // Replayed by the broker on subscribe: says nothing about now.
        Ok(())
    } else {
        app.store
            .touch_operator(
                operator,
                now,
                status.battery_percent,
                None,
                app.late_sample_bound_ms(),
            )
            .await
            .map(|_| ())
    };
    if let Err(err) = result {
        tracing::warn!(%operator, %err, "device status not recorded");
    }
}

/// Publishes every committed session change: offers to the devices that
/// may take them, assignments and withdrawals to the device concerned,
/// and the event to the supplier workspace.
async fn publish_loop(
    app: Arc<App>,
    client: AsyncClient,
    mut changes: broadcast::Receiver<Session>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let session = tokio::select! {
            change = changes.recv() => match change {
                Ok(session) => session,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "fleet link fell behind the session changes; devices catch up by polling");
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.changed() => return,
        };
        for (topic, payload) in messages_for(&app, &session).await {
            if let Err(e) = client.try_publish(topic, QoS::AtLeastOnce, false, payload) {
                tracing::warn!(%e, session = %session.id, "fleet message dropped");
            }
        }
    }
}

fn offer_dto(session: &Session, expires_ms: i64) -> OfferDto {
    OfferDto {
        session_id: session.id,
        lat: session.point.lat,
        lng: session.point.lng,
        geofence_radius_meters: session.geofence_radius_m,
        max_duration_seconds: session.max_duration_seconds,
        rate_per_second_micro_usdc: session.rate_micro_usdc,
        expires_at: format_millis(expires_ms),
    }
}

/// The (topic, payload) pairs one session change makes.
async fn messages_for(app: &App, session: &Session) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let offered = session.offer.is_some_and(|o| o.expires_ms > app.now());
    match (session.state, session.offer, session.operator_id) {
        (SessionState::Requested, Some(offer), _) if offered => {
            match app.store.operators_of(offer.workspace_id).await {
                Ok(devices) => {
                    let message = OfferMessage {
                        kind: OfferKind::Offered,
                        offer: offer_dto(session, offer.expires_ms),
                    };
                    for device in devices {
                        out.push((Topic::Offers(device.id).to_string(), json(&message)));
                    }
                }
                Err(err) => {
                    tracing::warn!(%err, "offer not published; devices see it when they poll")
                }
            }
        }
        (SessionState::Assigned, _, Some(device)) => {
            let message = OfferMessage {
                kind: OfferKind::Assigned,
                offer: offer_dto(session, session.wait_deadline_ms()),
            };
            out.push((Topic::Offers(device).to_string(), json(&message)));
        }
        (state, _, Some(device)) if state.is_terminal() => {
            let message = OfferMessage {
                kind: OfferKind::Withdrawn,
                offer: offer_dto(session, session.ended_ms.unwrap_or_else(|| app.now())),
            };
            out.push((Topic::Offers(device).to_string(), json(&message)));
        }
        _ => {}
    }
    let workspace = session
        .operator_workspace_id
        .or(session.offer.map(|o| o.workspace_id));
    if let Some(workspace) = workspace {
        let event = WorkspaceEvent {
            event: WorkspaceEvent::name(session.state, offered).to_owned(),
            session_id: session.id,
            state: session.state,
            operator_id: session.operator_id,
            at: format_millis(app.now()),
        };
        out.push((Topic::WorkspaceEvents(workspace).to_string(), json(&event)));
    }
    out
}

fn json(value: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}
