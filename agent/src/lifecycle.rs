//! The session lifecycle on the device: take offers by policy, start what
//! was assigned, follow the session it serves, and reclaim assignments it
//! can no longer serve after a restart.
//!
//! [`Lifecycle::decide`] is pure: it gets what the server said (offers, this
//! device's open sessions) and whether the device can serve, and answers
//! with the calls to make. [`run`] polls the server and makes them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lx_protocol::api::{OfferDto, SessionDto, SessionState};
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

use crate::api::{ApiFailure, ServerApi};
use crate::position::PositionSource;
use crate::wall_now_ms;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Accept(Uuid),
    Start(Uuid),
    /// Cancel this device's ASSIGNED sessions: it cannot serve them.
    Reclaim,
    /// The session the device now serves (telemetry follows it).
    Serving(Option<Uuid>),
}

#[derive(Debug, Clone)]
pub struct View<'a> {
    pub offers: &'a [OfferDto],
    /// This device's sessions in ASSIGNED, LIVE or PAUSED.
    pub mine: &'a [SessionDto],
    /// A fresh fix and enough battery.
    pub can_serve: bool,
}

#[derive(Debug, Clone)]
pub struct Lifecycle {
    auto_accept: bool,
    started: HashSet<Uuid>,
    first_look: bool,
    serving: Option<Uuid>,
}

impl Lifecycle {
    pub fn new(auto_accept: bool) -> Self {
        Self {
            auto_accept,
            started: HashSet::new(),
            first_look: true,
            serving: None,
        }
    }

    pub fn serving(&self) -> Option<Uuid> {
        self.serving
    }

    pub fn decide(&mut self, view: &View<'_>) -> Vec<Step> {
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
        for s in view
            .mine
            .iter()
            .filter(|s| s.state == SessionState::Assigned)
        {
            if view.can_serve && self.started.insert(s.id) {
                steps.push(Step::Start(s.id));
            }
        }
        if current.is_none()
            && self.auto_accept
            && view.can_serve
            && let Some(offer) = view.offers.first()
        {
            steps.push(Step::Accept(offer.session_id));
        }
        if current != self.serving {
            self.serving = current;
            steps.push(Step::Serving(current));
        }
        steps
    }

    /// A start that could not reach the server is tried again next time.
    pub fn start_failed(&mut self, id: Uuid) {
        self.started.remove(&id);
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecycleStats {
    pub serving: Option<Uuid>,
    pub accepted: u64,
    pub polls: u64,
    pub last_error: Option<String>,
}

/// Polls the server and applies the decisions until `shutdown`.
#[allow(clippy::too_many_arguments)] // the shell wires its parts; a struct would only rename them
pub async fn run(
    api: ServerApi,
    me: Uuid,
    mut core: Lifecycle,
    position: Arc<PositionSource>,
    poll: Duration,
    session_tx: watch::Sender<Option<Uuid>>,
    stats: Arc<Mutex<LifecycleStats>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let result = poll_once(&api, me, &mut core, &position, &session_tx, &stats).await;
        {
            let mut s = stats.lock().await;
            s.polls += 1;
            s.serving = core.serving();
            s.last_error = result.err().map(|e| e.to_string());
        }
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn poll_once(
    api: &ServerApi,
    me: Uuid,
    core: &mut Lifecycle,
    position: &PositionSource,
    session_tx: &watch::Sender<Option<Uuid>>,
    stats: &Mutex<LifecycleStats>,
) -> Result<(), ApiFailure> {
    let offers = api.offers().await?;
    let mine: Vec<SessionDto> = api
        .operated_sessions()
        .await?
        .into_iter()
        .filter(|s| s.operator_id == Some(me))
        .collect();
    let can_serve = position.latest(Instant::now(), wall_now_ms()).is_some();
    for step in core.decide(&View {
        offers: &offers,
        mine: &mine,
        can_serve,
    }) {
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
                    tracing::info!(session = %id, whip = %media.whip_url, "session started")
                }
                Err(ApiFailure::Unreachable(e)) => {
                    tracing::warn!(session = %id, error = %e, "start did not reach the server; retrying");
                    core.start_failed(id);
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
                tracing::info!(session = ?s, "serving");
                let _ = session_tx.send(s);
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

    #[test]
    fn an_idle_device_with_a_fix_accepts_the_first_offer() {
        let mut core = Lifecycle::new(true);
        let offers = [build_offer(5), build_offer(6)];
        let steps = core.decide(&View {
            offers: &offers,
            mine: &[],
            can_serve: true,
        });
        assert_eq!(steps, vec![Step::Accept(Uuid::from_u128(5))]);
        let no_fix = core.decide(&View {
            offers: &offers,
            mine: &[],
            can_serve: false,
        });
        assert!(no_fix.is_empty(), "{no_fix:?}");
    }

    #[test]
    fn an_assignment_is_started_once_and_followed() {
        let mut core = Lifecycle::new(true);
        let mine = [build_session(1, SessionState::Assigned)];
        let steps = core.decide(&View {
            offers: &[build_offer(9)],
            mine: &mine,
            can_serve: true,
        });
        assert_eq!(
            steps,
            vec![
                Step::Start(Uuid::from_u128(1)),
                Step::Serving(Some(Uuid::from_u128(1)))
            ]
        );
        assert!(
            core.decide(&View {
                offers: &[],
                mine: &mine,
                can_serve: true
            })
            .is_empty()
        );
        let ended = core.decide(&View {
            offers: &[],
            mine: &[],
            can_serve: true,
        });
        assert_eq!(ended, vec![Step::Serving(None)]);
    }

    #[test]
    fn after_a_restart_without_a_fix_assignments_are_reclaimed() {
        let mut core = Lifecycle::new(true);
        let mine = [build_session(1, SessionState::Assigned)];
        let steps = core.decide(&View {
            offers: &[],
            mine: &mine,
            can_serve: false,
        });
        assert_eq!(steps[0], Step::Reclaim);
        let mut resumed = Lifecycle::new(true);
        let steps = resumed.decide(&View {
            offers: &[],
            mine: &mine,
            can_serve: true,
        });
        assert_eq!(
            steps[0],
            Step::Start(Uuid::from_u128(1)),
            "with a fix it resumes instead"
        );
    }

    #[test]
    fn manual_devices_leave_offers_to_the_fleet_manager() {
        let mut core = Lifecycle::new(false);
        assert!(
            core.decide(&View {
                offers: &[build_offer(5)],
                mine: &[],
                can_serve: true
            })
            .is_empty()
        );
    }
}
