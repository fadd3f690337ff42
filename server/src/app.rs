//! The application: shared state of every handler and background task, and
//! the operations that touch more than one part (the store, the dispatch
//! index, the media plane) so that each happens in exactly one place.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lx_protocol::api::SessionState;
use lx_protocol::time::UnixMillis;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::Config;
use crate::credit::CreditSource;
use crate::dispatch::Dispatcher;
use crate::media::{MediaBackend, MediaEvent};
use crate::session::evidence;
use crate::session::lifecycle::{self, Action, Evidence, LifecycleError};
use crate::session::meter::{Fix, TelemetryRules};
use crate::store::{ApplyError, Session, Store, StoreError, Transition};

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub credit: Arc<dyn CreditSource>,
    pub media: Arc<dyn MediaBackend>,
    /// The settlement chain, when one is configured.
    pub chain: Option<Arc<dyn crate::chain::ChainReader>>,
    pub dispatcher: Dispatcher,
    pub cookie_key: [u8; 32],
    /// Every committed session change, for the fleet link (and any other
    /// listener); a listener that falls behind misses changes, not commits.
    pub events: broadcast::Sender<Session>,
    /// The broker accounts the server issues, when the fleet link is on.
    pub broker_accounts: Option<Arc<crate::broker::BrokerAccounts>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("store", &self.store.backend_name())
            .field("media", &self.media.name())
            .field("suppliers_indexed", &self.dispatcher.len())
            .finish()
    }
}

/// The outcome of choosing a device within a supplier workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevicePick {
    /// The workspace has no enrolled devices: it serves sessions itself.
    NoDevices,
    Device(Uuid),
    /// It has devices, but none is connected, ONLINE and located.
    NoneFree,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    #[error("no supplier covers the point")]
    NoCoverage,
    #[error("session is {0}")]
    State(SessionState),
    #[error("session not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many stale candidates one dispatch skips before it gives up.
const MAX_DISPATCH_TRIES: usize = 32;

impl App {
    pub async fn new(
        config: Arc<Config>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        credit: Arc<dyn CreditSource>,
        media: Arc<dyn MediaBackend>,
        chain: Option<Arc<dyn crate::chain::ChainReader>>,
        cookie_key: [u8; 32],
    ) -> Result<Arc<Self>, StoreError> {
        let suppliers = store.online_suppliers().await?;
        let dispatcher =
            Dispatcher::from_suppliers(&suppliers, config.dispatch.max_coverage_radius_meters);
        tracing::info!(suppliers = dispatcher.len(), "dispatch index loaded");
        let broker_accounts =
            crate::broker::BrokerAccounts::from_config(&config.mqtt).map(Arc::new);
        Ok(Arc::new(Self {
            config,
            store,
            clock,
            credit,
            media,
            chain,
            dispatcher,
            cookie_key,
            events: broadcast::channel(4096).0,
            broker_accounts,
        }))
    }

    pub fn now(&self) -> UnixMillis {
        self.clock.now_ms()
    }

    pub fn fee_bps(&self) -> u32 {
        self.config.pricing.platform_fee_bps
    }

    /// Applies a planned transition and keeps the dispatch index and the
    /// media plane in line with what was committed.
    pub async fn apply(&self, transition: Transition) -> Result<Session, ApplyError> {
        let claim = transition.claim;
        // A freed or cooled-down supplier is indexed again as stored.
        let resync = transition
            .release
            .map(|(ws, _)| ws)
            .or(transition.cool_down.map(|c| c.workspace));
        let teardown = transition.release_media.clone();
        let session = self.store.apply(transition).await;
        if let (Some(ws), Err(ApplyError::SupplierUnavailable)) = (claim, &session) {
            self.dispatcher.remove(ws);
        }
        let session = session?;
        if let Some(ws) = claim {
            self.dispatcher.remove(ws);
        }
        if let Some(ws) = resync {
            match self.store.workspace(ws).await {
                Ok(Some(ws)) => self.dispatcher.sync(&ws),
                Ok(None) => self.dispatcher.remove(ws),
                Err(err) => tracing::warn!(%err, "supplier not re-indexed after release"),
            }
        }
        if let (true, Some(media)) = (session.state.is_terminal(), &session.media)
            && let Err(err) = self.media.release(session.id, media).await
        {
            tracing::warn!(session = %session.id, %err, "media teardown failed");
        }
        if let Some(media) = &teardown
            && let Err(err) = self.media.release(session.id, media).await
        {
            tracing::warn!(session = %session.id, %err, "media teardown failed");
        }
        // No listener is not an error: the fleet link may be off.
        let _ = self.events.send(session.clone());
        Ok(session)
    }

    /// Plans `action` on the session as stored and applies it. Actions that
    /// run the meter see the positions the supplier proved: a device's
    /// signed samples (late ones only inside a recorded outage), or a
    /// workspace's location heartbeats when no device serves the session.
    pub async fn act(&self, session: &Session, action: Action) -> Result<Session, ActError> {
        let metered = matches!(
            action,
            Action::End { .. }
                | Action::ExpireMaxDuration { .. }
                | Action::CreditExhausted { .. }
                | Action::FinalizeMeter { .. }
        );
        let transition = if metered {
            let (fixes, rules) = self.meter_evidence(session).await?;
            // A long session's meter is seconds of CPU work at worst: off
            // the async workers, like every other costly step.
            let session = session.clone();
            tokio::task::spawn_blocking(move || {
                let evidence = Evidence {
                    fixes: &fixes,
                    rules: Some(rules),
                };
                lifecycle::plan_with(&session, action, evidence)
            })
            .await
            .map_err(|err| ApplyError::Store(StoreError::Backend(format!("meter task: {err}"))))??
        } else {
            lifecycle::plan(session, action)?
        };
        Ok(self.apply(transition).await?)
    }

    /// The fixes the meter judges the session by, and the rules it judges
    /// them with. A session without any supplier evidence gets no fixes:
    /// its seconds are STALE_TELEMETRY, never clean by default.
    async fn meter_evidence(
        &self,
        session: &Session,
    ) -> Result<(Vec<Fix>, TelemetryRules), ActError> {
        let t = &self.config.telemetry;
        let started = session.started_ms.unwrap_or(session.created_ms);
        let until = session.ended_ms.unwrap_or(UnixMillis::MAX);
        match (session.operator_id, session.operator_workspace_id) {
            (Some(device), _) => {
                let samples = self
                    .store
                    .session_stored_samples(session.id)
                    .await
                    .map_err(ApplyError::from)?;
                let since = session.assigned_ms.unwrap_or(session.created_ms);
                let device_outages = self
                    .store
                    .operator_outages(device, since, until)
                    .await
                    .map_err(ApplyError::from)?;
                let outages = evidence::outages(&device_outages, &session.windows);
                let fixes = evidence::device_fixes(&samples, &outages, self.late_sample_bound_ms());
                Ok((fixes, self.telemetry_rules(session, t.fresh_seconds)))
            }
            (None, Some(workspace)) => {
                let rules = self.telemetry_rules(session, t.heartbeat_fresh_seconds);
                let locations = self
                    .store
                    .workspace_locations(workspace, started - rules.fresh_ms, until)
                    .await
                    .map_err(ApplyError::from)?;
                Ok((evidence::heartbeat_fixes(&locations), rules))
            }
            (None, None) => Ok((Vec::new(), self.telemetry_rules(session, t.fresh_seconds))),
        }
    }

    /// The meter of a LIVE or PAUSED session as far as `now`: what its end
    /// would charge, judged by the evidence so far. None in any other state
    /// (before LIVE there is nothing to meter; after, the stored meter says).
    pub async fn running_meter(
        &self,
        session: &Session,
        now: UnixMillis,
    ) -> Result<Option<crate::store::Meter>, ActError> {
        let (Some(started), SessionState::Live | SessionState::Paused) =
            (session.started_ms, session.state)
        else {
            return Ok(None);
        };
        let (fixes, rules) = self.meter_evidence(session).await?;
        let evidence = Evidence {
            fixes: &fixes,
            rules: Some(rules),
        };
        let out = lifecycle::measure(session, started, now.max(started), self.fee_bps(), evidence);
        Ok(Some(out.meter))
    }

    pub fn telemetry_rules(&self, session: &Session, fresh_seconds: u32) -> TelemetryRules {
        let t = &self.config.telemetry;
        TelemetryRules {
            requested: session.point,
            geofence_radius_m: f64::from(session.geofence_radius_m),
            fresh_ms: i64::from(fresh_seconds) * 1000,
            max_accuracy_cm: t.max_accuracy_meters.saturating_mul(100),
        }
    }

    /// A sample received later than this after its capture is late.
    pub fn late_sample_bound_ms(&self) -> i64 {
        i64::from(self.config.telemetry.late_sample_bound_seconds) * 1000
    }

    pub fn settle_delay_ms(&self) -> i64 {
        i64::from(self.config.telemetry.settle_delay_seconds) * 1000
    }

    /// How long an assigned supplier has to go LIVE; 0: unbounded.
    pub fn live_timeout_ms(&self) -> i64 {
        i64::from(self.config.dispatch.assigned_live_timeout_seconds) * 1000
    }

    /// Which enrolled device of `ws` serves a session at `point`: the
    /// connected, ONLINE device nearest to it by its last verified position,
    /// among those not cooling down.
    pub async fn pick_device(
        &self,
        ws: Uuid,
        point: lx_protocol::geo::Point,
    ) -> Result<DevicePick, StoreError> {
        let devices = self.store.operators_of(ws).await?;
        if devices.is_empty() {
            return Ok(DevicePick::NoDevices);
        }
        let now = self.now();
        let connected_after =
            now - i64::from(self.config.operators.connected_within_seconds) * 1000;
        let best = devices
            .iter()
            .filter(|d| d.availability == lx_protocol::api::Availability::Online)
            .filter(|d| d.connected(connected_after))
            .filter(|d| !d.cooling_down(now))
            .filter_map(|d| d.fix.map(|f| (f.point().distance_m(point), d.id)))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(best.map_or(DevicePick::NoneFree, |(_, id)| DevicePick::Device(id)))
    }

    /// Gives a REQUESTED session to the best supplier: assigned at once if it
    /// auto-accepts, else offered to it. `fresh` also reconsiders suppliers
    /// that were offered it before.
    pub async fn dispatch(&self, session_id: Uuid, fresh: bool) -> Result<Session, DispatchError> {
        let session = self
            .store
            .session(session_id)
            .await?
            .ok_or(DispatchError::NotFound)?;
        if session.state != SessionState::Requested {
            return Err(DispatchError::State(session.state));
        }
        let now = self.now();
        if session.offer.is_some_and(|o| o.expires_ms > now) {
            return Ok(session);
        }
        // An explicit dispatch reconsiders every candidate; the sweeper's
        // re-dispatch after an unanswered offer skips those already asked.
        let mut skip: HashSet<Uuid> = if fresh {
            HashSet::new()
        } else {
            let asked = self.store.attempted_workspaces(session_id).await?;
            asked.into_iter().collect()
        };
        let mut session = session;
        let min_tier = session.min_trust_tier;
        for _ in 0..MAX_DISPATCH_TRIES {
            let Some(candidate) =
                self.dispatcher
                    .pick_eligible(session.point, min_tier, now, |id| skip.contains(&id))
            else {
                return Err(DispatchError::NoCoverage);
            };
            skip.insert(candidate);
            let Some(ws) = self.store.workspace(candidate).await? else {
                self.dispatcher.remove(candidate);
                continue;
            };
            let now = self.now();
            if ws.cooling_down(now) {
                self.dispatcher.sync(&ws);
                continue;
            }
            let device = match self.pick_device(ws.id, session.point).await? {
                // The index thought it had devices: it has none any more.
                DevicePick::NoDevices if min_tier > lx_protocol::api::TRUST_TIER_WORKSPACE => {
                    self.dispatcher.sync(&ws);
                    continue;
                }
                DevicePick::NoDevices => None,
                DevicePick::Device(id) => Some(id),
                DevicePick::NoneFree => continue,
            };
            let action = if ws.auto_accept {
                Action::Assign {
                    workspace: ws.id,
                    device,
                    now,
                }
            } else {
                let timeout = if ws.offer_timeout_seconds > 0 {
                    ws.offer_timeout_seconds
                } else {
                    self.config.dispatch.default_offer_timeout_seconds
                };
                Action::Offer {
                    workspace: ws.id,
                    expires_ms: now + i64::from(timeout) * 1000,
                }
            };
            match self.act(&session, action).await {
                Ok(done) => return Ok(done),
                Err(ActError::Apply(ApplyError::SupplierUnavailable)) => {
                    // Someone else took this supplier (or device) since it was
                    // read; a fleet may still have other devices next time.
                    if device.is_none() {
                        self.dispatcher.remove(ws.id);
                    }
                }
                Err(ActError::Apply(ApplyError::State(state))) => {
                    return Err(DispatchError::State(state));
                }
                Err(ActError::Apply(ApplyError::SessionNotFound)) => {
                    return Err(DispatchError::NotFound);
                }
                Err(ActError::Apply(ApplyError::Store(e))) => return Err(e.into()),
                Err(ActError::Lifecycle(_)) => {
                    session = self
                        .store
                        .session(session_id)
                        .await?
                        .ok_or(DispatchError::NotFound)?;
                    if session.state != SessionState::Requested {
                        return Err(DispatchError::State(session.state));
                    }
                }
            }
        }
        Err(DispatchError::NoCoverage)
    }

    /// Hands the media plane the sessions that carried media before a
    /// restart: their frames and media gaps are watched again.
    pub async fn adopt_media(&self) -> Result<usize, StoreError> {
        let mut sessions = self.store.media_sessions().await?;
        // Another replica's sessions are its own to watch.
        sessions.retain(|s| s.media.as_ref().is_none_or(|m| self.carries_media(m)));
        for s in &sessions {
            if let Some(endpoints) = &s.media {
                let live = matches!(s.state, SessionState::Live | SessionState::Paused);
                self.media.adopt(s.id, endpoints, live);
            }
        }
        Ok(sessions.len())
    }

    /// Whether this replica carries these media: always, but for the
    /// built-in media plane of another replica sharing the store (its WHIP
    /// URL names that replica's `http.public_url`).
    pub fn carries_media(&self, media: &crate::store::MediaEndpoints) -> bool {
        use crate::media::origin;
        self.media.name() != "builtin"
            || !self.store.shared()
            || origin(&media.whip_url) == origin(&self.config.http.public_url)
    }

    pub async fn on_media_event(&self, event: MediaEvent) {
        let (session_id, action) = match event {
            MediaEvent::FirstFrame { session_id, at_ms } => {
                (session_id, Action::FirstFrame { at: at_ms })
            }
            MediaEvent::MediaLost { session_id, at_ms } => {
                (session_id, Action::MediaLost { at: at_ms })
            }
            MediaEvent::MediaResumed { session_id, at_ms } => {
                (session_id, Action::MediaResumed { at: at_ms })
            }
        };
        let session = match self.store.session(session_id).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(err) => {
                tracing::error!(%err, ?event, "media event for an unreadable session");
                return;
            }
        };
        match self.act(&session, action).await {
            Ok(_) => match action {
                Action::FirstFrame { .. } => {
                    tracing::info!(session = %session_id, "session is LIVE")
                }
                _ => tracing::info!(session = %session_id, action = action.name(), "media window"),
            },
            // Media events race the session's own transitions: a frame after
            // the end, a loss before LIVE. Those change nothing.
            Err(ActError::Lifecycle(_)) | Err(ActError::Apply(ApplyError::State(_))) => {}
            Err(err) => {
                tracing::error!(session = %session_id, %err, ?event, "media event not applied")
            }
        }
    }

    /// One pass of the sweeper: expiries and offer timeouts due at `now`.
    /// Returns how many sessions it changed.
    pub async fn sweep(&self, now: UnixMillis) -> usize {
        let due = match self
            .store
            .due_sessions(now, self.settle_delay_ms(), self.live_timeout_ms(), 256)
            .await
        {
            Ok(due) => due,
            Err(err) => {
                tracing::error!(%err, "sweeper could not read due sessions");
                return 0;
            }
        };
        let mut changed = 0;
        for session in due {
            let action = match session.state {
                SessionState::Requested | SessionState::Assigned
                    if now >= session.wait_deadline_ms() =>
                {
                    Action::ExpireWait { now }
                }
                SessionState::Live | SessionState::Paused => Action::ExpireMaxDuration {
                    now,
                    fee_bps: self.fee_bps(),
                },
                SessionState::Requested => Action::OfferTimedOut { now },
                SessionState::Assigned => Action::LiveTimedOut {
                    now,
                    timeout_ms: self.live_timeout_ms(),
                    cooldown_ms: i64::from(self.config.dispatch.cooldown_seconds) * 1000,
                },
                SessionState::Ended | SessionState::Expired => Action::FinalizeMeter {
                    fee_bps: self.fee_bps(),
                },
                _ => continue,
            };
            match self.act(&session, action).await {
                Ok(after) => {
                    changed += 1;
                    if let Action::LiveTimedOut { .. } = action {
                        tracing::info!(
                            session = %after.id,
                            workspace = ?session.operator_workspace_id,
                            device = ?session.operator_id,
                            "the supplier did not go LIVE in time: cooled down, session dispatched again"
                        );
                    }
                    if matches!(
                        action,
                        Action::OfferTimedOut { .. } | Action::LiveTimedOut { .. }
                    ) {
                        match self.dispatch(after.id, false).await {
                            Ok(_)
                            | Err(DispatchError::NoCoverage)
                            | Err(DispatchError::State(_)) => {}
                            Err(err) => {
                                tracing::warn!(session = %after.id, %err, "re-dispatch failed")
                            }
                        }
                    } else {
                        tracing::info!(session = %after.id, state = %after.state, "sweeper expired session");
                    }
                }
                Err(ActError::Apply(ApplyError::State(_))) | Err(ActError::Lifecycle(_)) => {}
                Err(err) => tracing::warn!(session = %session.id, %err, "sweeper step failed"),
            }
        }
        changed
    }

    /// Starts the sweeper and the media event loop, the core's own
    /// background work; each stops when `shutdown` turns true. The services
    /// around the core (webhook deliveries, the relayer, the fleet link, the
    /// credit watch, retention) are started by `serve`.
    pub fn spawn_background(
        self: &Arc<Self>,
        mut media_events: mpsc::Receiver<MediaEvent>,
        shutdown: watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        let sweeper = {
            let app = Arc::clone(self);
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let period = Duration::from_millis(app.config.sessions.sweep_interval_ms.max(10));
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => { app.sweep(app.now()).await; }
                        _ = shutdown.changed() => break,
                    }
                }
            })
        };
        let media = {
            let app = Arc::clone(self);
            let mut shutdown = shutdown;
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        event = media_events.recv() => match event {
                            Some(event) => app.on_media_event(event).await,
                            None => break,
                        },
                        _ = shutdown.changed() => break,
                    }
                }
            })
        };
        vec![sweeper, media]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}
