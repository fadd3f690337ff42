//! The webhook events a committed session change makes: decided by the
//! store, which queues them in the transaction that makes the change.

use lx_protocol::api::{SessionState, WebhookEventType};
use lx_protocol::time::UnixMillis;

use super::Session;

/// The event a committed session change is, if any, and when it happened.
/// `before` is the state the change was made from. Resuming from PAUSED is
/// not `session.live`: that event means the first frame arrived.
pub fn session_event(
    before: SessionState,
    after: &Session,
) -> Option<(WebhookEventType, UnixMillis)> {
    use SessionState::{Assigned, Cancelled, Ended, Expired, Live};
    if before == after.state {
        return None;
    }
    // The lifecycle stamps each of these instants with the transition; the
    // creation time only stands in for a transition made without one.
    let at = |t: Option<UnixMillis>| t.unwrap_or(after.created_ms);
    match (before, after.state) {
        (_, Assigned) => Some((WebhookEventType::SessionAssigned, at(after.assigned_ms))),
        (Assigned, Live) => Some((WebhookEventType::SessionLive, at(after.started_ms))),
        (_, Ended) => Some((WebhookEventType::SessionEnded, at(after.ended_ms))),
        (_, Expired) => Some((WebhookEventType::SessionExpired, at(after.ended_ms))),
        (_, Cancelled) => Some((WebhookEventType::SessionCancelled, at(after.ended_ms))),
        _ => None,
    }
}
