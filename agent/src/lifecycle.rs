//! The session lifecycle on the device: take offers by policy, start what
//! was assigned (and, after a restart, what it was serving: the start hands
//! back the WHIP URL), follow the session it serves, and reclaim assignments
//! it can no longer serve after a restart.
//!
//! [`Lifecycle::decide`] is pure: it gets what the server said (offers, this
//! device's open sessions) and whether the device can serve, and answers
//! with the calls to make. [`run`] polls the server and makes them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lx_protocol::api::{
    Availability, HeartbeatRequest, OfferDto, SessionDto, SessionState, Subsystem,
};
use lx_protocol::mqtt::{Command, CommandAck};
use tokio::sync::{Mutex, mpsc, watch};
use uuid::Uuid;

use crate::api::{ApiFailure, ServerApi};
use crate::battery::Battery;
use crate::device_health::HealthReadings;
use crate::fleet::{FleetHandle, Inbound};
use crate::position::PositionSource;
use crate::status::{Exit, LifecycleStats, Serving};
use crate::video::Stream;
use crate::wall_now_ms;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Accept(Uuid),
    Start(Uuid),
    /// Cancel this device's ASSIGNED sessions: it cannot serve them.
    Reclaim,
    /// The session the device now serves (telemetry follows it).
    Serving(Option<Serving>),
}

/// How long a start the server refused for a passing reason waits before
/// it is tried again.
pub const START_RETRY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct View<'a> {
    pub offers: &'a [OfferDto],
    /// This device's sessions in ASSIGNED, LIVE or PAUSED.
    pub mine: &'a [SessionDto],
    /// A fresh fix.
    pub can_serve: bool,
    /// The battery's charge, when the device has a power monitor.
    pub battery_percent: Option<u8>,
    /// The CPU's temperature, when the board reports one.
    pub temperature_c: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    auto_accept: bool,
    /// The fleet's `online`/`offline`: an offline device takes no offers.
    taking_offers: bool,
    min_battery_percent: u8,
    /// Offers are refused above this CPU temperature; 0: no limit.
    max_temperature_c: f64,
    /// Sessions whose start was sent: `None` done, `Some(t)` try again at `t`.
    started: HashMap<Uuid, Option<Instant>>,
    first_look: bool,
    serving: Option<Uuid>,
}

impl Lifecycle {
    pub fn new(auto_accept: bool) -> Self {
        Self {
            auto_accept,
            taking_offers: true,
            min_battery_percent: 0,
            max_temperature_c: 0.0,
            started: HashMap::new(),
            first_look: true,
            serving: None,
        }
    }

    pub fn serving(&self) -> Option<Uuid> {
        self.serving
    }

    pub fn taking_offers(&self) -> bool {
        self.taking_offers
    }

    pub fn set_taking_offers(&mut self, taking: bool) {
        self.taking_offers = taking;
    }

    /// The fleet's `set-config`.
    pub fn apply(&mut self, change: &lx_protocol::mqtt::ConfigChange) {
        if let Some(auto) = change.auto_accept {
            self.auto_accept = auto;
        }
        if let Some(min) = change.min_battery_percent {
            self.min_battery_percent = min;
        }
    }

    pub fn min_battery_percent(&self) -> u8 {
        self.min_battery_percent
    }

    /// Offers are refused below this charge.
    pub fn with_min_battery(mut self, percent: u8) -> Self {
        self.min_battery_percent = percent;
        self
    }

    /// Offers are refused above this CPU temperature (0: no limit).
    pub fn with_max_temperature(mut self, celsius: f64) -> Self {
        self.max_temperature_c = celsius;
        self
    }

    /// Why the device takes no offer now, if it does not: a battery under
    /// the floor or a CPU over its limit. Unknown figures refuse nothing.
    pub fn refusal(
        &self,
        battery_percent: Option<u8>,
        temperature_c: Option<f64>,
    ) -> Option<String> {
        if let Some(b) = battery_percent
            && b < self.min_battery_percent
        {
            return Some(format!(
                "battery at {b} % is under the floor of {} %",
                self.min_battery_percent
            ));
        }
        if let Some(t) = temperature_c
            && self.max_temperature_c > 0.0
            && t > self.max_temperature_c
        {
            return Some(format!(
                "CPU at {t:.1} °C is over the limit of {:.1} °C",
                self.max_temperature_c
            ));
        }
        None
    }

    pub fn decide(&mut self, view: &View<'_>, now: Instant) -> Vec<Step> {
        let mut steps = Vec::new();
        let first_look = std::mem::take(&mut self.first_look);
        if first_look
            && !view.can_serve
            && view.mine.iter().any(|s| s.state == SessionState::Assigned)
        {
            // Restarted without what it takes to serve: free the workspace now
            // rather than at the consumer's wait timeout.
            steps.push(Step::Reclaim);
        }
        let current = view.mine.first().map(|s| s.id);
        // LIVE and PAUSED too: after a restart `start` (idempotent) hands the
        // WHIP URL back, and the video task publishes to it again.
        for s in view.mine.iter().filter(|s| {
            matches!(
                s.state,
                SessionState::Assigned | SessionState::Live | SessionState::Paused
            )
        }) {
            let due = match self.started.get(&s.id) {
                None => true,
                Some(retry_at) => retry_at.is_some_and(|t| now >= t),
            };
            if view.can_serve && due {
                self.started.insert(s.id, None);
                steps.push(Step::Start(s.id));
            }
        }
        let fit = self
            .refusal(view.battery_percent, view.temperature_c)
            .is_none();
        if current.is_none()
            && self.auto_accept
            && self.taking_offers
            && fit
            && view.can_serve
            && let Some(offer) = view.offers.first()
        {
            steps.push(Step::Accept(offer.session_id));
        }
        if current != self.serving {
            self.serving = current;
            let serving = view.mine.first().map(|s| Serving {
                id: s.id,
                assigned_ms: s
                    .assigned_at
                    .as_deref()
                    .and_then(lx_protocol::time::parse_millis)
                    .unwrap_or(0),
            });
            steps.push(Step::Serving(serving));
        }
        steps
    }

    /// A start that did not go through is tried again at `at`.
    pub fn retry_start(&mut self, id: Uuid, at: Instant) {
        self.started.insert(id, Some(at));
    }
}

/// What the lifecycle task works with.
pub struct Shell {
    pub api: ServerApi,
    pub me: Uuid,
    pub position: Arc<PositionSource>,
    /// How often it polls the server without the fleet link.
    pub poll: Duration,
    /// And with it: offers arrive over the link, polls are the safety net.
    pub fleet_poll: Duration,
    pub session_tx: watch::Sender<Option<Serving>>,
    pub video_tx: watch::Sender<Option<Stream>>,
    pub stats: Arc<Mutex<LifecycleStats>>,
    pub battery: Battery,
    pub health: HealthReadings,
    /// Offers and commands from the fleet link, and the link for the acks.
    pub fleet: Option<(mpsc::Receiver<Inbound>, FleetHandle)>,
    /// Sessions whose WHIP endpoint reaches no server (from the video task):
    /// their `start` is asked again at once, for where their media are now.
    pub video_gone: Option<mpsc::Receiver<Uuid>>,
    pub updates: Updates,
    /// Whether the device would take an offer now, or serves one: reachable,
    /// taking offers and fit (a ready video worker waits then).
    pub standby: watch::Sender<bool>,
}

/// What the fleet's `update` needs, and where the lifecycle asks the agent
/// to stop once a new build is swapped in.
pub struct Updates {
    pub config: crate::config::UpdateConfig,
    pub releases: crate::update::Releases,
    pub exit: mpsc::Sender<Exit>,
}

/// Polls the server, takes the fleet's offers and commands, and applies the
/// decisions until `shutdown`.
pub async fn run(shell: Shell, mut core: Lifecycle, mut shutdown: watch::Receiver<bool>) {
    let Shell {
        api,
        me,
        position,
        poll,
        fleet_poll,
        session_tx,
        video_tx,
        stats,
        battery,
        health,
        fleet,
        mut video_gone,
        updates,
        standby,
    } = shell;
    let links = Links {
        session: session_tx,
        video: video_tx,
    };
    let (mut inbox, link) = match fleet {
        Some((inbox, link)) => (Some(inbox), Some(link)),
        None => (None, None),
    };
    loop {
        let result = poll_once(
            &api,
            me,
            &mut core,
            &position,
            (&battery, &health),
            &links,
            &stats,
        )
        .await;
        // Serving a session leaves the device in standby: its worker is the
        // one that publishes.
        let would_take_an_offer = result.is_ok()
            && core.taking_offers()
            && core
                .refusal(battery.percent(), health.temperature_c())
                .is_none();
        standby
            .send_if_modified(|s| std::mem::replace(s, would_take_an_offer) != would_take_an_offer);
        {
            let mut s = stats.lock().await;
            s.polls += 1;
            s.serving = core.serving();
            s.taking_offers = core.taking_offers();
            s.auto_accept = core.auto_accept;
            s.last_error = result.err().map(|e| e.to_string());
        }
        let linked = link.as_ref().is_some_and(|l| l.state().connected);
        let wait = if linked { fleet_poll } else { poll };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            message = next(&mut inbox) => {
                stats.lock().await.fleet_messages += 1;
                if let (Some(Inbound::Command { id, command }), Some(link)) = (message, &link) {
                    let fitness = (battery.percent(), health.temperature_c());
                    // An update's download may take minutes: a stop does not wait for it.
                    let done = tokio::select! {
                        done = execute(&api, me, &mut core, command, (&links, &updates), fitness) => done,
                        _ = shutdown.changed() => return,
                    };
                    let (ack, exit) = match done {
                        Ok(exit) => (CommandAck::ok(id), exit),
                        Err(error) => (CommandAck::failed(id, error), None),
                    };
                    link.ack(&ack);
                    if let Some(exit) = exit {
                        let _ = updates.exit.send(exit).await;
                        return;
                    }
                }
            }
            Some(id) = next_gone(&mut video_gone) => {
                core.retry_start(id, Instant::now());
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The next session the video task found its endpoint gone for; never,
/// without a video task.
async fn next_gone(gone: &mut Option<mpsc::Receiver<Uuid>>) -> Option<Uuid> {
    match gone {
        Some(rx) => match rx.recv().await {
            Some(id) => Some(id),
            None => {
                *gone = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// The next message of the fleet link; never, without one.
async fn next(inbox: &mut Option<mpsc::Receiver<Inbound>>) -> Option<Inbound> {
    match inbox {
        Some(rx) => match rx.recv().await {
            Some(message) => Some(message),
            None => {
                *inbox = None;
                None
            }
        },
        None => std::future::pending().await,
    }
}

/// A controller's `stream` lock on this device holds the fleet's session
/// commands off: the server cannot tell a command relayed by the device
/// from the device's own doing, the device can.
async fn stream_free(api: &ServerApi, me: Uuid) -> Result<(), String> {
    let device = api.operator(me).await.map_err(|e| e.to_string())?;
    let own = format!("device:{me}");
    match device
        .locks
        .iter()
        .find(|lock| lock.subsystem == Subsystem::Stream && lock.holder != own)
    {
        Some(lock) => Err(format!(
            "the stream is locked by {}; the lock is released with POST /operators/{me}/unlock",
            lock.holder
        )),
        None => Ok(()),
    }
}

/// Carries out a fleet command; the error is what the ack says, and an
/// [`Exit`] asks the agent to stop after the ack (a new build waits).
async fn execute(
    api: &ServerApi,
    me: Uuid,
    core: &mut Lifecycle,
    command: Command,
    (links, updates): (&Links, &Updates),
    fitness: (Option<u8>, Option<f64>),
) -> Result<Option<Exit>, String> {
    if let Command::Update(request) = &command {
        if let Some(session) = core.serving() {
            return Err(format!(
                "refused: this device serves session {session}; update it when no session is served"
            ));
        }
        let version = crate::update::update_from_url(
            &updates.config,
            &updates.releases,
            request,
            wall_now_ms(),
        )
        .await?;
        return Ok(Some(Exit::Restart { version }));
    }
    execute_session_command(api, me, core, command, links, fitness)
        .await
        .map(|()| None)
}

async fn execute_session_command(
    api: &ServerApi,
    me: Uuid,
    core: &mut Lifecycle,
    command: Command,
    links: &Links,
    (battery_percent, temperature_c): (Option<u8>, Option<f64>),
) -> Result<(), String> {
    let said = |e: ApiFailure| e.to_string();
    if matches!(
        command,
        Command::Accept(_) | Command::Start(_) | Command::End(_) | Command::Cancel(_)
    ) {
        stream_free(api, me).await?;
    }
    match command {
        Command::Accept(id) => {
            if let Some(why) = core.refusal(battery_percent, temperature_c) {
                return Err(format!("refused: {why}"));
            }
            api.accept(id).await.map(|_| ()).map_err(said)
        }
        Command::Start(id) => {
            let media = api.start(id).await.map_err(said)?;
            core.started.insert(id, None);
            links.video.send_replace(Some(Stream {
                session_id: id,
                whip_url: media.whip_url,
            }));
            Ok(())
        }
        Command::End(id) => api.end(id).await.map(|_| ()).map_err(said),
        Command::Logs(request) => {
            let upload = crate::logs::upload(&request, wall_now_ms());
            api.post_logs(me, &upload).await.map(|_| ()).map_err(said)
        }
        Command::Cancel(id) => {
            let mine = api.operated_sessions().await.map_err(said)?;
            let assigned = mine.iter().any(|s| {
                s.id == id && s.operator_id == Some(me) && s.state == SessionState::Assigned
            });
            if !assigned {
                return Err(format!(
                    "cancel gives back an ASSIGNED session of this device, and {id} is not one (a LIVE one is ended with `end`)"
                ));
            }
            api.cancel_assignments().await.map(|_| ()).map_err(said)
        }
        Command::Online | Command::Offline => {
            let online = command == Command::Online;
            let body = HeartbeatRequest {
                battery_percent: None,
                availability_state: Some(if online {
                    Availability::Online
                } else {
                    Availability::Offline
                }),
                sample: None,
            };
            api.heartbeat(&body).await.map_err(said)?;
            core.set_taking_offers(online);
            Ok(())
        }
        Command::SetConfig(change) => {
            core.apply(&change);
            Ok(())
        }
        Command::Update(_) => Err("update is carried out before session commands".into()),
    }
}

/// An unreachable server is tried again on the next poll.
fn poll_retry() -> Duration {
    Duration::ZERO
}

/// Where the lifecycle tells the other tasks what to serve.
struct Links {
    /// Telemetry follows the session served.
    session: watch::Sender<Option<Serving>>,
    /// Video publishes to the started session's WHIP URL.
    video: watch::Sender<Option<Stream>>,
}

async fn poll_once(
    api: &ServerApi,
    me: Uuid,
    core: &mut Lifecycle,
    position: &PositionSource,
    (battery, health): (&Battery, &HealthReadings),
    links: &Links,
    stats: &Mutex<LifecycleStats>,
) -> Result<(), ApiFailure> {
    let offers = api.offers().await?;
    let mine: Vec<SessionDto> = api
        .operated_sessions()
        .await?
        .into_iter()
        .filter(|s| s.operator_id == Some(me))
        .collect();
    stats.lock().await.serving_state = mine.first().map(|s| s.state);
    let can_serve = position.latest(Instant::now(), wall_now_ms()).is_some();
    let battery_percent = battery.percent();
    let now = Instant::now();
    for step in core.decide(
        &View {
            offers: &offers,
            mine: &mine,
            can_serve,
            battery_percent,
            temperature_c: health.temperature_c(),
        },
        now,
    ) {
        match step {
            Step::Accept(id) => match api.accept(id).await {
                Ok(_) => {
                    tracing::info!(session = %id, "accepted an offer");
                    stats.lock().await.accepted += 1;
                }
                Err(e) => tracing::info!(session = %id, error = %e, "offer not taken"),
            },
            Step::Start(id) => match api.start(id).await {
                Ok(media) => {
                    tracing::info!(session = %id, "session started");
                    links.video.send_replace(Some(Stream {
                        session_id: id,
                        whip_url: media.whip_url,
                    }));
                }
                Err(ApiFailure::Unreachable(e)) => {
                    tracing::warn!(session = %id, error = %e, "start did not reach the server; retrying");
                    core.retry_start(id, now + poll_retry());
                }
                Err(e) if e.retryable() => {
                    tracing::warn!(session = %id, error = %e, "start refused for now; trying again in 30 s");
                    core.retry_start(id, now + START_RETRY);
                }
                Err(e) => tracing::warn!(session = %id, error = %e, "start refused"),
            },
            Step::Reclaim => match api.cancel_assignments().await {
                Ok(r) => tracing::warn!(
                    count = r.count,
                    "reclaimed assignments this device cannot serve"
                ),
                Err(e) => tracing::warn!(error = %e, "reclaim failed"),
            },
            Step::Serving(s) => {
                tracing::info!(session = ?s.map(|s| s.id), "serving");
                let _ = links.session.send(s);
                let streaming = links.video.borrow().as_ref().map(|v| v.session_id);
                if streaming.is_some() && streaming != s.map(|s| s.id) {
                    links.video.send_replace(None);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_session(id: u128, state: SessionState) -> SessionDto {
        serde_json::from_value(serde_json::json!({
            "id": Uuid::from_u128(id), "state": state, "lat": 1.0, "lng": 2.0, "geofenceRadiusMeters": 150,
            "maxDurationSeconds": 60, "waitTimeoutSeconds": 300, "ratePerSecondMicroUsdc": 1000,
            "holdMicroUsdc": 60000, "consumerWorkspaceId": Uuid::nil(), "operatorWorkspaceId": Uuid::nil(),
            "createdAt": "2026-01-01T00:00:00.000Z", "expiresAt": "2026-01-01T00:05:00.000Z",
            "assignedAt": null, "startedAt": null, "endedAt": null, "windows": []
        }))
        .unwrap()
    }

    fn build_offer(id: u128) -> OfferDto {
        OfferDto {
            session_id: Uuid::from_u128(id),
            lat: 1.0,
            lng: 2.0,
            geofence_radius_meters: 150,
            max_duration_seconds: 60,
            rate_per_second_micro_usdc: 1000,
            expires_at: String::new(),
        }
    }

    fn look(
        core: &mut Lifecycle,
        offers: &[OfferDto],
        mine: &[SessionDto],
        can_serve: bool,
        now: Instant,
    ) -> Vec<Step> {
        core.decide(
            &View {
                offers,
                mine,
                can_serve,
                battery_percent: None,
                temperature_c: None,
            },
            now,
        )
    }

    #[test]
    fn an_idle_device_with_a_fix_accepts_the_first_offer() {
        let mut core = Lifecycle::new(true);
        let offers = [build_offer(5), build_offer(6)];
        let now = Instant::now();
        assert_eq!(
            look(&mut core, &offers, &[], true, now),
            vec![Step::Accept(Uuid::from_u128(5))]
        );
        let no_fix = look(&mut core, &offers, &[], false, now);
        assert!(no_fix.is_empty(), "{no_fix:?}");
    }

    #[test]
    fn an_assignment_is_started_once_and_followed() {
        let mut core = Lifecycle::new(true);
        let mut session = build_session(1, SessionState::Assigned);
        session.assigned_at = Some("2026-01-01T00:00:01.000Z".into());
        let mine = [session];
        let now = Instant::now();
        let serving = Serving {
            id: Uuid::from_u128(1),
            assigned_ms: 1_767_225_601_000,
        };
        assert_eq!(
            look(&mut core, &[build_offer(9)], &mine, true, now),
            vec![
                Step::Start(Uuid::from_u128(1)),
                Step::Serving(Some(serving))
            ]
        );
        assert!(look(&mut core, &[], &mine, true, now).is_empty());
        assert_eq!(
            look(&mut core, &[], &[], true, now),
            vec![Step::Serving(None)]
        );
    }

    #[test]
    fn a_refused_start_waits_before_it_is_tried_again() {
        let mut core = Lifecycle::new(true);
        let mine = [build_session(1, SessionState::Assigned)];
        let now = Instant::now();
        look(&mut core, &[], &mine, true, now);
        core.retry_start(Uuid::from_u128(1), now + START_RETRY);
        assert!(look(&mut core, &[], &mine, true, now + Duration::from_secs(29)).is_empty());
        assert_eq!(
            look(&mut core, &[], &mine, true, now + START_RETRY),
            vec![Step::Start(Uuid::from_u128(1))]
        );
    }

    #[test]
    fn after_a_restart_without_a_fix_assignments_are_reclaimed() {
        let mine = [build_session(1, SessionState::Assigned)];
        let now = Instant::now();
        let steps = look(&mut Lifecycle::new(true), &[], &mine, false, now);
        assert_eq!(steps[0], Step::Reclaim);
        let steps = look(&mut Lifecycle::new(true), &[], &mine, true, now);
        assert_eq!(
            steps[0],
            Step::Start(Uuid::from_u128(1)),
            "with a fix it resumes instead"
        );
    }

    #[test]
    fn manual_devices_leave_offers_to_the_fleet_manager() {
        let mut core = Lifecycle::new(false);
        assert!(look(&mut core, &[build_offer(5)], &[], true, Instant::now()).is_empty());
    }

    #[test]
    fn offers_are_refused_below_the_battery_minimum() {
        let mut core = Lifecycle::new(true).with_min_battery(30);
        let offers = [build_offer(5)];
        let view = |battery| View {
            offers: &offers,
            mine: &[],
            can_serve: true,
            battery_percent: battery,
            temperature_c: None,
        };
        let now = Instant::now();
        assert!(core.decide(&view(Some(29)), now).is_empty());
        assert_eq!(
            core.decide(&view(Some(30)), now),
            vec![Step::Accept(Uuid::from_u128(5))]
        );
        assert_eq!(
            core.decide(&view(None), now),
            vec![Step::Accept(Uuid::from_u128(5))],
            "no power monitor: no refusal"
        );
    }

    #[test]
    fn offers_are_refused_over_the_temperature_limit_and_the_reason_says_which() {
        let mut core = Lifecycle::new(true)
            .with_min_battery(20)
            .with_max_temperature(80.0);
        let offers = [build_offer(5)];
        let view = |celsius| View {
            offers: &offers,
            mine: &[],
            can_serve: true,
            battery_percent: Some(90),
            temperature_c: celsius,
        };
        let now = Instant::now();
        assert!(core.decide(&view(Some(85.5)), now).is_empty());
        assert_eq!(
            core.refusal(Some(90), Some(85.5)).as_deref(),
            Some("CPU at 85.5 °C is over the limit of 80.0 °C")
        );
        assert_eq!(
            core.refusal(Some(12), Some(50.0)).as_deref(),
            Some("battery at 12 % is under the floor of 20 %")
        );
        assert_eq!(
            core.decide(&view(Some(79.0)), now),
            vec![Step::Accept(Uuid::from_u128(5))]
        );
        let unlimited = Lifecycle::new(true);
        assert_eq!(unlimited.refusal(None, Some(120.0)), None, "0: no limit");
    }

    #[test]
    fn the_fleet_turns_offers_off_and_auto_accept_on() {
        let mut core = Lifecycle::new(false);
        core.apply(&lx_protocol::mqtt::ConfigChange {
            auto_accept: Some(true),
            min_battery_percent: Some(30),
        });
        assert_eq!(core.min_battery_percent(), 30);
        core.set_taking_offers(false);
        assert!(look(&mut core, &[build_offer(5)], &[], true, Instant::now()).is_empty());
        core.set_taking_offers(true);
        assert_eq!(
            look(&mut core, &[build_offer(5)], &[], true, Instant::now()),
            vec![Step::Accept(Uuid::from_u128(5))]
        );
    }

    #[test]
    fn after_a_restart_a_live_session_is_started_again_for_its_whip_url() {
        let mut core = Lifecycle::new(true);
        let now = Instant::now();
        let mine = [build_session(7, SessionState::Live)];
        let steps = look(&mut core, &[], &mine, true, now);
        assert!(
            steps.contains(&Step::Start(Uuid::from_u128(7))),
            "{steps:?}"
        );
        let again = look(&mut core, &[], &mine, true, now);
        assert!(
            !again.contains(&Step::Start(Uuid::from_u128(7))),
            "once per run: {again:?}"
        );
    }
}
