//! Telemetry: a signed sample every second while the device serves a
//! session, every five seconds otherwise (the heartbeat); each goes into the
//! on-disk queue first and leaves it only when the server has it.
//!
//! [`Cadence`] (when to sample) and [`judge`] (what a server answer means
//! for the queue) are pure; [`run`] is the shell around them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lx_protocol::ErrorCode;
use lx_protocol::api::HeartbeatRequest;
use lx_protocol::telemetry::{Sample, SampleJson};
use tokio::sync::{Mutex, watch};
use uuid::Uuid;

use crate::api::{ApiFailure, ServerApi};
use crate::fleet::{FleetHandle, LinkState};
use crate::position::PositionSource;
use crate::queue::Queue;
use crate::state::Sequence;
use crate::status::{Serving, TelemetryStats};
use crate::wall_now_ms;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// When the next sample is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cadence {
    session_every: Duration,
    idle_every: Duration,
    session: Option<Uuid>,
    next: Instant,
}

impl Cadence {
    pub fn new(session_every: Duration, idle_every: Duration, now: Instant) -> Self {
        Self {
            session_every,
            idle_every,
            session: None,
            next: now,
        }
    }

    /// A new session (or its end) takes a sample at once and changes the pace.
    pub fn set_session(&mut self, session: Option<Uuid>, now: Instant) {
        if session != self.session {
            self.session = session;
            self.next = now;
        }
    }

    pub fn deadline(&self) -> Instant {
        self.next
    }

    /// `Some(session)` when a sample is due at `now`.
    pub fn due(&mut self, now: Instant) -> Option<Option<Uuid>> {
        if now < self.next {
            return None;
        }
        let every = if self.session.is_some() {
            self.session_every
        } else {
            self.idle_every
        };
        self.next += every;
        if self.next <= now {
            // Fell behind (a suspended process): no burst, resume the pace.
            self.next = now + every;
        }
        Some(self.session)
    }
}

/// What to do with the head of the queue after the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The server has these samples: drop them from the queue.
    Ack(usize),
    /// Not reached: keep everything, try again after a pause.
    Retry,
}

/// Decides the fate of a batch of `sent` samples (sequences `sequences`).
pub fn judge(result: &Result<(), ApiFailure>, sequences: &[u64]) -> Verdict {
    let all = sequences.len();
    match result {
        Ok(()) => Verdict::Ack(all),
        Err(ApiFailure::Unreachable(_)) => Verdict::Retry,
        Err(ApiFailure::Refused {
            code: ErrorCode::ReplayedSequence,
            detail,
            ..
        }) => {
            // The server already holds everything up to `last`: those are done.
            let last = detail
                .as_deref()
                .and_then(lx_protocol::telemetry::replayed_last);
            match last {
                Some(last) => {
                    Verdict::Ack(sequences.iter().take_while(|&&s| s <= last).count().max(1))
                }
                None => Verdict::Ack(1),
            }
        }
        Err(ApiFailure::Refused {
            code: ErrorCode::NotAuthenticated | ErrorCode::RateLimited,
            ..
        }) => Verdict::Retry,
        // Refused for good (the session is over, the sample is malformed…):
        // keeping it would block everything behind it.
        Err(ApiFailure::Refused { .. }) => Verdict::Ack(all),
    }
}

pub struct Telemetry {
    pub api: ServerApi,
    pub key: k256::ecdsa::SigningKey,
    pub chain_id: u64,
    pub position: Arc<PositionSource>,
    pub queue: Queue,
    pub sequence: Sequence,
    pub cadence: Cadence,
    pub batch_max: usize,
    pub stats: Arc<Mutex<TelemetryStats>>,
    /// The fleet link: samples go over it while it is ready, over HTTP
    /// otherwise.
    pub fleet: Option<FleetHandle>,
    /// Sent over the link and not acknowledged within this: sent again.
    pub resend_after: Duration,
    /// Reported with each heartbeat.
    pub battery: crate::battery::Battery,
    /// The capture time of the last sample signed: the server refuses a
    /// higher sequence captured at or before it.
    pub last_signed_ms: Option<i64>,
}

/// Whether an observation is new enough to sign: capture times must grow
/// with the sequence, so the same fix read twice (or one whose computed
/// time moved back a millisecond) is not signed again.
pub fn newer_than(observed_ms: i64, last_signed_ms: Option<i64>) -> bool {
    last_signed_ms.is_none_or(|last| observed_ms > last)
}

/// How far the fleet link got with the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkProgress {
    /// The connection the samples after `acked` were sent on.
    pub generation: u64,
    /// The highest sequence sent on it.
    pub sent: u64,
    /// The server's acknowledgement when `sent` last moved, and when.
    pub acked: u64,
    pub since: Instant,
}

impl LinkProgress {
    pub fn new(now: Instant) -> Self {
        Self {
            generation: 0,
            sent: 0,
            acked: 0,
            since: now,
        }
    }

    /// Where to send from, given the link's state: after what the server
    /// holds when the connection changed or acknowledgements stalled for
    /// `resend_after` (what was sent may be lost), else after what was sent.
    pub fn resume_after(&mut self, link: LinkState, now: Instant, resend_after: Duration) -> u64 {
        if link.generation != self.generation {
            self.generation = link.generation;
            self.sent = link.acked;
            self.since = now;
        }
        if link.acked != self.acked {
            self.acked = link.acked;
            self.since = now;
        }
        self.sent = self.sent.max(link.acked);
        if self.sent > link.acked && now.duration_since(self.since) >= resend_after {
            self.sent = link.acked;
            self.since = now;
        }
        self.sent
    }
}

impl Telemetry {
    /// Signs and queues the current position; false when there is none to
    /// sign (no fresh fix, or one observed before the session was assigned,
    /// which the server would refuse).
    fn sign_now(&mut self, session: Option<Uuid>, not_before_ms: i64) -> anyhow::Result<bool> {
        let Some(obs) = self.position.latest(Instant::now(), wall_now_ms()) else {
            return Ok(false);
        };
        if obs.observed_ms < not_before_ms || !newer_than(obs.observed_ms, self.last_signed_ms) {
            return Ok(false);
        }
        let sample = Sample::from_position(
            session,
            self.sequence.take()?,
            u64::try_from(obs.observed_ms).unwrap_or(0),
            obs.point,
            obs.accuracy_m,
            obs.source,
        )?;
        self.queue.push(SampleJson::encode(
            &sample,
            sample.sign(&self.key, self.chain_id),
        ))?;
        self.last_signed_ms = Some(obs.observed_ms);
        Ok(true)
    }

    /// Sends what the queue holds, oldest first, until it is empty or the
    /// server cannot be reached. Returns false on the latter.
    async fn flush(&mut self) -> bool {
        loop {
            let batch = self.queue.head(self.batch_max);
            let Some(first) = batch.first() else {
                return true;
            };
            let sequences: Vec<u64> = batch.iter().map(|s| s.sequence).collect();
            let result = match first.session_id {
                Some(session) => self.api.telemetry(session, &batch).await.map(|_| ()),
                None => {
                    // Outside a session only the newest position matters.
                    let newest = batch.last().cloned();
                    let body = HeartbeatRequest {
                        battery_percent: self.battery.percent(),
                        availability_state: None,
                        sample: newest,
                    };
                    self.api.heartbeat(&body).await.map(|_| ())
                }
            };
            let verdict = match (first.session_id, judge(&result, &sequences)) {
                (None, Verdict::Ack(_)) => Verdict::Ack(batch.len()),
                (_, v) => v,
            };
            let mut stats = self.stats.lock().await;
            if let Err(e) = &result {
                stats.last_error = Some(e.to_string());
                if matches!(e, ApiFailure::Refused { .. }) {
                    stats.refused += 1;
                    tracing::warn!(error = %e, samples = batch.len(), "server refused telemetry");
                }
            } else {
                stats.sent += batch.len() as u64;
                stats.last_error = None;
            }
            match verdict {
                Verdict::Ack(n) => {
                    if let Err(e) = self.queue.ack(n) {
                        tracing::error!(error = %e, "could not record sent samples");
                    }
                    stats.queued = self.queue.len();
                }
                Verdict::Retry => {
                    stats.queued = self.queue.len();
                    return false;
                }
            }
        }
    }

    /// Sends over the fleet link what the server has not acknowledged, at
    /// most `batch_max` in flight; drops from the queue what it holds.
    /// Returns false when the link cannot take samples now.
    async fn flush_link(&mut self, link: &FleetHandle, progress: &mut LinkProgress) -> bool {
        let state = link.state();
        let held = self.queue.count_through(state.acked);
        if held > 0 {
            if let Err(e) = self.queue.ack(held) {
                tracing::error!(error = %e, "could not record sent samples");
            }
            let mut stats = self.stats.lock().await;
            stats.sent += held as u64;
            stats.sent_over_link += held as u64;
            stats.queued = self.queue.len();
            stats.last_error = None;
        }
        if !state.ready() {
            return false;
        }
        if let Err(e) = self.queue.drop_stale_idle() {
            tracing::error!(error = %e, "could not drop stale idle samples");
        }
        let after = progress.resume_after(state, Instant::now(), self.resend_after);
        let in_flight = self.queue.count_through(after);
        let room = self.batch_max.saturating_sub(in_flight);
        let batch = self.queue.after(after, room);
        if in_flight == 0 && !batch.is_empty() {
            // The acknowledgement of these is awaited from now.
            progress.since = Instant::now();
        }
        for sample in batch {
            if let Err(e) = link.publish_sample(&sample).await {
                self.stats.lock().await.last_error = Some(format!("{e:#}"));
                return false;
            }
            progress.sent = sample.sequence;
        }
        true
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(
        mut self,
        mut session: watch::Receiver<Option<Serving>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut link_state = self.fleet.as_ref().map(FleetHandle::watch);
        let mut progress = LinkProgress::new(Instant::now());
        // Short backoff: late samples count only within the server's settle
        // delay (15 s by default), so a reconnect must be noticed quickly.
        let mut backoff = MIN_BACKOFF;
        let mut retry_at: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let serving = *session.borrow();
            self.cadence.set_session(serving.map(|s| s.id), now);
            if let Some(for_session) = self.cadence.due(now) {
                let not_before = serving
                    .filter(|s| Some(s.id) == for_session)
                    .map_or(0, |s| s.assigned_ms);
                match self.sign_now(for_session, not_before) {
                    Ok(true) => self.stats.lock().await.signed += 1,
                    Ok(false) => self.stats.lock().await.skipped += 1,
                    Err(e) => tracing::error!(error = %e, "could not sign or queue a sample"),
                }
                self.stats.lock().await.dropped = self.queue.dropped();
            }
            let linked = match self.fleet.clone() {
                Some(link) => self.flush_link(&link, &mut progress).await,
                None => false,
            };
            if !linked && retry_at.is_none_or(|t| Instant::now() >= t) {
                if self.flush().await {
                    retry_at = None;
                    backoff = MIN_BACKOFF;
                } else {
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            let mut wake = match retry_at {
                Some(t) if !linked => t.min(self.cadence.deadline()),
                _ => self.cadence.deadline(),
            };
            if linked && progress.sent > progress.acked {
                // Wake to send again if the acknowledgement does not come.
                wake = wake.min(progress.since + self.resend_after);
            }
            tokio::select! {
                _ = tokio::time::sleep_until(wake.into()) => {}
                changed = session.changed() => if changed.is_err() { return },
                _ = link_changed(&mut link_state) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Resolves when the fleet link's state changes; never without a link.
async fn link_changed(link: &mut Option<watch::Receiver<LinkState>>) {
    match link {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *link = None;
            }
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fix_is_signed_once_and_never_with_an_earlier_time() {
        assert!(newer_than(1_000, None));
        assert!(newer_than(1_001, Some(1_000)));
        assert!(!newer_than(1_000, Some(1_000)), "the same fix read again");
        assert!(
            !newer_than(999, Some(1_000)),
            "its age measured a hair later"
        );
    }

    #[test]
    fn the_link_resends_after_a_new_connection_or_a_stalled_ack() {
        let t0 = Instant::now();
        let resend = Duration::from_secs(5);
        let mut p = LinkProgress::new(t0);
        let link = |generation, acked| LinkState {
            connected: true,
            server_online: true,
            generation,
            acked,
        };
        assert_eq!(p.resume_after(link(1, 10), t0, resend), 10);
        p.sent = 15;
        assert_eq!(
            p.resume_after(link(1, 12), t0 + Duration::from_secs(1), resend),
            15,
            "acks move: keep going"
        );
        assert_eq!(
            p.resume_after(link(1, 12), t0 + Duration::from_secs(5), resend),
            15,
            "4 s since the last ack"
        );
        assert_eq!(
            p.resume_after(link(1, 12), t0 + Duration::from_secs(6), resend),
            12,
            "stalled 5 s: from what the server holds"
        );
        p.sent = 20;
        assert_eq!(
            p.resume_after(link(2, 13), t0 + Duration::from_secs(7), resend),
            13,
            "a new connection"
        );
    }

    #[test]
    fn the_pace_is_one_second_in_a_session_and_five_outside() {
        let t0 = Instant::now();
        let mut c = Cadence::new(Duration::from_secs(1), Duration::from_secs(5), t0);
        assert_eq!(c.due(t0), Some(None));
        assert_eq!(c.due(t0 + Duration::from_secs(4)), None);
        assert_eq!(c.due(t0 + Duration::from_secs(5)), Some(None));
        let s = Some(Uuid::from_u128(1));
        c.set_session(s, t0 + Duration::from_secs(6));
        assert_eq!(
            c.due(t0 + Duration::from_secs(6)),
            Some(s),
            "a new session samples at once"
        );
        assert_eq!(c.deadline(), t0 + Duration::from_secs(7));
    }

    #[test]
    fn after_a_stall_the_pace_resumes_without_a_burst() {
        let t0 = Instant::now();
        let mut c = Cadence::new(Duration::from_secs(1), Duration::from_secs(5), t0);
        c.set_session(Some(Uuid::from_u128(1)), t0);
        c.due(t0);
        let late = t0 + Duration::from_secs(30);
        assert!(c.due(late).is_some());
        assert!(c.due(late).is_none());
        assert_eq!(c.deadline(), late + Duration::from_secs(1));
    }

    fn refused(code: ErrorCode, detail: Option<&str>) -> Result<(), ApiFailure> {
        Err(ApiFailure::Refused {
            status: 409,
            code,
            message: String::new(),
            detail: detail.map(str::to_owned),
        })
    }

    #[test]
    fn the_server_answer_decides_what_leaves_the_queue() {
        let seqs = [10, 11, 12, 13];
        assert_eq!(judge(&Ok(()), &seqs), Verdict::Ack(4));
        assert_eq!(
            judge(&Err(ApiFailure::Unreachable("down".into())), &seqs),
            Verdict::Retry
        );
        assert_eq!(
            judge(
                &refused(ErrorCode::ReplayedSequence, Some("telemetry:replayed:11")),
                &seqs
            ),
            Verdict::Ack(2)
        );
        assert_eq!(
            judge(&refused(ErrorCode::InvalidState, None), &seqs),
            Verdict::Ack(4)
        );
        assert_eq!(
            judge(&refused(ErrorCode::NotAuthenticated, None), &seqs),
            Verdict::Retry
        );
    }
}
