//! Wiring: enrollment, and the running agent with its tasks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lx_protocol::wallet::Address;
use tokio::sync::{Mutex, mpsc, watch};

use crate::api::ServerApi;
use crate::config::Config;
use crate::health::{self, HealthState};
use crate::lifecycle::{self, Lifecycle};
use crate::position::PositionSource;
use crate::queue::Queue;
use crate::state::{Enrollment, Sequence, StateDir};
use crate::status::Exit;
use crate::telemetry::{Cadence, Telemetry};
use crate::update::Releases;

fn timeout(config: &Config) -> Duration {
    Duration::from_millis(config.server.request_timeout_ms)
}

/// `lx-agent enroll --token …`: registers the device key with the server.
pub async fn enroll(config: &Config, token: &str) -> anyhow::Result<Enrollment> {
    let state = StateDir::open(&config.device.state_dir)?;
    if let Some(existing) = state.enrollment()? {
        bail!(
            "this device is already enrolled as operator {} of workspace {}; delete {} to enroll again",
            existing.operator_id,
            existing.workspace_id,
            state.path("enrollment.json").display()
        );
    }
    let key = state.device_key()?;
    let api = ServerApi::new(&config.server.url, None, timeout(config));
    let registered = api
        .register(&key, token.trim(), &config.device.name, config.device.kind)
        .await
        .with_context(|| format!("enrolling with {}", config.server.url))?;
    let enrollment = Enrollment {
        operator_id: registered.operator_id,
        workspace_id: registered.workspace_id,
        device_token: registered.device_token,
        chain_id: registered.chain_id,
        server_url: config.server.url.clone(),
        mqtt: registered.mqtt,
    };
    state.save_enrollment(&enrollment)?;
    tracing::info!(operator = %enrollment.operator_id, address = %Address::from_signing_key(&key), "enrolled");
    Ok(enrollment)
}

/// Runs the agent until `shutdown` resolves (`None`) or it stops on its
/// own: a new build swapped in, or this new build not confirmed in time.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Option<Exit>> {
    #[cfg(not(feature = "video"))]
    if config.video.enabled {
        bail!("video.enabled = true, but this lx-agent was built without the `video` feature");
    }
    let state = StateDir::open(&config.device.state_dir)?;
    let key = state.device_key()?;
    let enrollment = state.enrollment()?.with_context(|| {
        format!(
            "not enrolled: run `lx-agent enroll --token <token>` first (state in {})",
            config.device.state_dir.display()
        )
    })?;
    let api = ServerApi::new(
        &enrollment.server_url,
        Some(enrollment.device_token.clone()),
        timeout(&config),
    );
    // The battery's charge: the power monitor's, or the flight controller's.
    let battery = crate::battery::Battery::default();
    let position = Arc::new(PositionSource::start(&config, &battery)?);
    let device_health = crate::device_health::HealthReadings::default();
    let queue = Queue::open(&state, config.telemetry.queue_max_samples)?;
    if !queue.is_empty() {
        tracing::info!(
            pending = queue.len(),
            "telemetry from before the restart will be sent first"
        );
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let (session_tx, session_rx) = watch::channel(None);
    let (video_tx, video_rx) = watch::channel(None);
    let (standby_tx, standby_rx) = watch::channel(false);
    let (gone_tx, gone_rx) = tokio::sync::mpsc::channel(4);
    let (exit_tx, mut exit_rx) = mpsc::channel(1);
    let releases = Releases::new(&config.device.state_dir);
    let (update_tx, update_rx) = watch::channel(releases.last_outcome().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the last update's outcome is unreadable");
        None
    }));
    let video_stats = Arc::new(Mutex::new(crate::video::VideoStats::default()));
    let telemetry_stats = Arc::new(Mutex::new(Default::default()));
    let lifecycle_stats = Arc::new(Mutex::new(crate::status::LifecycleStats {
        taking_offers: true,
        auto_accept: config.lifecycle.auto_accept,
        ..Default::default()
    }));

    let fleet_stats = Arc::new(Mutex::new(crate::fleet::FleetStats::default()));
    let mut tasks = Vec::new();
    // The status, for the fleet link and the LED.
    let (status_tx, status_rx) =
        watch::channel(lx_protocol::mqtt::StatusMessage::offline(crate::VERSION));
    tasks.push(tokio::spawn(crate::fleet::status_task(
        crate::fleet::StatusSources {
            position: Arc::clone(&position),
            lifecycle: Arc::clone(&lifecycle_stats),
            telemetry: Arc::clone(&telemetry_stats),
            video: Arc::clone(&video_stats),
            battery: battery.clone(),
            health: device_health.clone(),
            update: update_rx.clone(),
        },
        status_tx,
        Duration::from_millis(config.mqtt.status_interval_ms),
        stop_rx.clone(),
    )));
    let hardware = crate::hardware::start(
        &config.power,
        &config.led,
        battery.clone(),
        status_rx.clone(),
    );
    let fleet = match (&enrollment.mqtt, config.mqtt.enabled) {
        (Some(enrolled), true) => {
            let (url, login) =
                crate::fleet::broker(&config.mqtt, enrolled, enrollment.operator_id)?;
            let (inbound_tx, inbound_rx) = mpsc::channel(256);
            let (handle, link) = crate::fleet::start(
                &url,
                &login,
                enrollment.operator_id,
                status_rx,
                inbound_tx,
                Arc::clone(&fleet_stats),
                stop_rx.clone(),
            )?;
            tasks.push(link);
            tracing::info!(broker = %format!("{}:{}", url.host, url.port), tls = url.tls, "fleet link on");
            Some((inbound_rx, handle))
        }
        (None, true) => {
            tracing::info!(
                "no MQTT account from enrollment: offers and assignments are polled over HTTP"
            );
            None
        }
        (_, false) => None,
    };
    let telemetry = Telemetry {
        api: api.clone(),
        key,
        chain_id: enrollment.chain_id,
        position: Arc::clone(&position),
        queue,
        sequence: Sequence::open(&state)?,
        cadence: Cadence::new(
            Duration::from_millis(config.telemetry.session_interval_ms),
            Duration::from_millis(config.telemetry.idle_interval_ms),
            Instant::now(),
        ),
        batch_max: config.telemetry.batch_max,
        stats: Arc::clone(&telemetry_stats),
        fleet: fleet.as_ref().map(|(_, handle)| handle.clone()),
        resend_after: Duration::from_millis(config.mqtt.resend_after_ms),
        battery: battery.clone(),
        last_signed_ms: None,
    };
    tasks.push(tokio::spawn(telemetry.run(session_rx, stop_rx.clone())));
    tasks.push(tokio::spawn(lifecycle::run(
        lifecycle::Shell {
            api,
            me: enrollment.operator_id,
            position: Arc::clone(&position),
            poll: Duration::from_millis(config.lifecycle.poll_interval_ms),
            fleet_poll: Duration::from_millis(config.mqtt.poll_interval_ms),
            session_tx,
            video_tx,
            stats: Arc::clone(&lifecycle_stats),
            battery: battery.clone(),
            health: device_health.clone(),
            fleet,
            video_gone: Some(gone_rx),
            updates: lifecycle::Updates {
                config: config.update.clone(),
                releases: releases.clone(),
                exit: exit_tx.clone(),
            },
            standby: standby_tx,
        },
        Lifecycle::new(config.lifecycle.auto_accept)
            .with_min_battery(config.lifecycle.min_battery_percent)
            .with_max_temperature(config.lifecycle.max_temperature_c),
        stop_rx.clone(),
    )));
    match config.video.enabled {
        #[cfg(feature = "video")]
        true => {
            tasks.push(tokio::spawn(crate::video::supervise(
                config.video.clone(),
                (config.log.filter.clone(), config.log.format == "json"),
                standby_rx,
                video_rx,
                Arc::clone(&video_stats),
                gone_tx,
                stop_rx.clone(),
            )));
        }
        _ => {
            drop((video_rx, gone_tx, standby_rx));
            tracing::info!("video.enabled = false: telemetry only");
        }
    }
    let listener = tokio::net::TcpListener::bind(&config.health.listen)
        .await
        .with_context(|| format!("binding health.listen {}", config.health.listen))?;
    tasks.push(tokio::spawn(crate::device_health::watch_health(
        config.health.sys_root.clone(),
        config.device.state_dir.clone(),
        device_health.clone(),
        Duration::from_millis(config.health.read_interval_ms),
        stop_rx.clone(),
    )));
    let telemetry_stats_for_update = Arc::clone(&telemetry_stats);
    let health_state = Arc::new(HealthState {
        operator_id: enrollment.operator_id,
        device: device_health,
        position,
        telemetry: telemetry_stats,
        lifecycle: lifecycle_stats,
        video: video_stats,
        fleet: fleet_stats,
        update: update_rx,
    });
    tasks.push(tokio::spawn(health::serve(
        listener,
        health_state,
        stop_rx.clone(),
    )));
    let notifier = crate::notify::Notifier::from_env().map(Arc::new);
    if let Some(n) = &notifier {
        tasks.push(tokio::spawn(crate::notify::watchdog(
            Arc::clone(n),
            stop_rx.clone(),
        )));
        n.send("READY=1");
    }
    if let Some(pending) = releases.pending_for_me() {
        tasks.push(tokio::spawn(crate::update::confirm_when_heard(
            releases.clone(),
            pending,
            Arc::clone(&telemetry_stats_for_update),
            (update_tx, exit_tx),
            stop_rx.clone(),
        )));
    }
    tracing::info!(operator = %enrollment.operator_id, server = %enrollment.server_url, version = crate::VERSION, "lx-agent running");
    let exit = tokio::select! {
        () = shutdown => None,
        Some(exit) = exit_rx.recv() => Some(exit),
    };
    match &exit {
        None => tracing::info!("stopping"),
        Some(Exit::Restart { version }) => tracing::info!(%version, "stopping for the new build"),
        Some(Exit::Unconfirmed(why)) => {
            tracing::error!(%why, "stopping: this build was not confirmed")
        }
    }
    if let Some(n) = &notifier {
        n.send("STOPPING=1");
    }
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    hardware.stop();
    Ok(exit)
}
