//! The application: shared state of every handler and background task, and
//! the operations that touch more than one part (the store, the dispatch
//! index, the media plane) so that each happens in exactly one place.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use lx_protocol::api::SessionState;
use lx_protocol::time::UnixMillis;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::clock::Clock;
use crate::config::Config;
use crate::credit::CreditSource;
use crate::dispatch::Dispatcher;
use crate::media::{MediaBackend, MediaEvent};
use crate::session::lifecycle::{self, Action, LifecycleError};
use crate::store::{ApplyError, Session, Store, StoreError, Transition};

pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub credit: Arc<dyn CreditSource>,
    pub media: Arc<dyn MediaBackend>,
    pub dispatcher: Dispatcher,
    pub cookie_key: [u8; 32],
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
        cookie_key: [u8; 32],
    ) -> Result<Arc<Self>, StoreError> {
        let suppliers = store.online_suppliers().await?;
        let dispatcher = Dispatcher::from_suppliers(&suppliers);
        tracing::info!(suppliers = dispatcher.len(), "dispatch index loaded");
        Ok(Arc::new(Self {
            config,
            store,
            clock,
            credit,
            media,
            dispatcher,
            cookie_key,
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
        let release = transition.release.map(|(ws, _)| ws);
        let session = self.store.apply(transition).await;
        if let (Some(ws), Err(ApplyError::SupplierUnavailable)) = (claim, &session) {
            self.dispatcher.remove(ws);
        }
        let session = session?;
        if let Some(ws) = claim {
            self.dispatcher.remove(ws);
        }
        if let Some(ws) = release {
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
        Ok(session)
    }

    /// Plans `action` on the session as stored and applies it.
    pub async fn act(&self, session: &Session, action: Action) -> Result<Session, ActError> {
        let transition = lifecycle::plan(session, action)?;
        Ok(self.apply(transition).await?)
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
        for _ in 0..MAX_DISPATCH_TRIES {
            let Some(candidate) = self.dispatcher.pick(session.point, |id| skip.contains(&id))
            else {
                return Err(DispatchError::NoCoverage);
            };
            skip.insert(candidate);
            let Some(ws) = self.store.workspace(candidate).await? else {
                self.dispatcher.remove(candidate);
                continue;
            };
            let now = self.now();
            let action = if ws.auto_accept {
                Action::Assign {
                    workspace: ws.id,
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
                    // Someone else took this supplier since the index was read.
                    self.dispatcher.sync(&ws);
                    self.dispatcher.remove(ws.id);
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

    pub async fn on_media_event(&self, event: MediaEvent) {
        match event {
            MediaEvent::FirstFrame { session_id, at_ms } => {
                let session = match self.store.session(session_id).await {
                    Ok(Some(s)) => s,
                    Ok(None) => return,
                    Err(err) => {
                        tracing::error!(%err, "first frame of an unreadable session");
                        return;
                    }
                };
                match self.act(&session, Action::FirstFrame { at: at_ms }).await {
                    Ok(_) => tracing::info!(session = %session_id, "session is LIVE"),
                    Err(ActError::Lifecycle(_)) | Err(ActError::Apply(ApplyError::State(_))) => {}
                    Err(err) => tracing::error!(session = %session_id, %err, "could not go LIVE"),
                }
            }
        }
    }

    /// One pass of the sweeper: expiries and offer timeouts due at `now`.
    /// Returns how many sessions it changed.
    pub async fn sweep(&self, now: UnixMillis) -> usize {
        let due = match self.store.due_sessions(now, 256).await {
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
                _ => continue,
            };
            match self.act(&session, action).await {
                Ok(after) => {
                    changed += 1;
                    if matches!(action, Action::OfferTimedOut { .. }) {
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

    /// Starts the sweeper and the media event loop; both stop when
    /// `shutdown` turns true.
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
