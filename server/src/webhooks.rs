//! Outbound webhooks: which session changes are events, how a delivery is
//! signed and retried, and the worker that sends them.
//!
//! Contract:
//! - An event is written to the store's outbox in the transaction that
//!   commits the change behind it (`Store::apply` for `session.*`,
//!   `Store::save_settlements` for `settlement.confirmed`), one row per
//!   subscribed webhook, unique per (webhook, event). A crash or a restart
//!   loses none, and none is queued twice.
//! - Delivery is at least once: an attempt whose answer is lost (a crash
//!   mid-request) is made again. Every attempt of an event carries the same
//!   `id`, so receivers drop the ones they have seen.
//! - A webhook's events arrive in the order they happened: only its oldest
//!   PENDING delivery is tried; the next waits until it is DELIVERED or FAILED.
//! - Success is any 2xx. Otherwise the attempt is retried after
//!   [`backoff_ms`], until `max_attempts`, then FAILED and logged.
//!
//! The decisions ([`crate::store::events::session_event`], [`backoff_ms`], [`after_attempt`],
//! [`signature`]) are pure and take `now`; [`run`] is the shell that reads
//! the app clock, talks HTTP and writes the outcome back.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use lx_protocol::api::{DeliveryState, WebhookEvent};
use lx_protocol::time::{UnixMillis, format_millis};
use sha2::Sha256;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::watch;
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::app::App;
use crate::config::WebhooksConfig;
use crate::store::{Delivery, DueDelivery};

/// The event's id, the same in every attempt.
pub const ID_HEADER: &str = "x-lx-webhook-id";
/// Unix seconds at the attempt; signed with the body.
pub const TIMESTAMP_HEADER: &str = "x-lx-webhook-timestamp";
/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub const SIGNATURE_HEADER: &str = "x-lx-webhook-signature";
pub const SECRET_PREFIX: &str = "whsec_";
const MAX_URL_LEN: usize = 2048;
/// Due deliveries taken per pass; the rest wait for the next one.
const PASS_LIMIT: u32 = 64;
/// Attempts in flight at once, across webhooks (one per webhook at most).
const MAX_IN_FLIGHT: usize = 64;

type HmacSha256 = Hmac<Sha256>;

/// `[webhooks]` in the form the worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    pub max_attempts: u32,
    /// Failed events in a row that disable a webhook.
    pub disable_after: u32,
    /// Deliveries in flight for one workspace.
    pub max_in_flight_per_workspace: usize,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub timeout: Duration,
    pub poll_interval: Duration,
}

impl DeliveryPolicy {
    pub fn from_config(c: &WebhooksConfig) -> Self {
        Self {
            max_attempts: c.max_attempts.max(1),
            disable_after: c.disable_after_failed_events.max(1),
            max_in_flight_per_workspace: c.max_in_flight_per_workspace.max(1) as usize,
            backoff_initial_ms: c.backoff_initial_ms.max(1),
            backoff_max_ms: c.backoff_max_ms.max(c.backoff_initial_ms.max(1)),
            timeout: Duration::from_millis(c.timeout_ms.max(100)),
            poll_interval: Duration::from_millis(c.poll_interval_ms.max(10)),
        }
    }
}

/// The wait after the `failed`-th failed attempt in a row:
/// `initial × 2^(failed−1)`, at most `max`.
pub fn backoff_ms(policy: &DeliveryPolicy, failed: u32) -> i64 {
    let doublings = failed.saturating_sub(1).min(62);
    let wait = policy
        .backoff_initial_ms
        .saturating_mul(1u64 << doublings)
        .min(policy.backoff_max_ms);
    i64::try_from(wait).unwrap_or(i64::MAX)
}

/// Why an attempt got no answer, as the delivery log shows it: a coarse
/// class, never the network's own words (they name addresses and ports of
/// the server's side, which the log would otherwise hand to its reader).
/// The full error goes to the server's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The target is an address webhooks may not reach.
    Forbidden,
    Unresolved,
    Refused,
    TimedOut,
    Tls,
    Connection,
    /// The payload could not be built.
    Payload,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Forbidden => {
                "target not allowed (a loopback, private, link-local or other inner address)"
            }
            Self::Unresolved => "the host does not resolve",
            Self::Refused => "connection refused",
            Self::TimedOut => "timed out",
            Self::Tls => "TLS handshake failed",
            Self::Connection => "connection failed",
            Self::Payload => "payload unreadable",
        }
    }
}

/// How one attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this HTTP status.
    Answered(u16),
    /// No answer: refused, reset, timed out, a DNS failure.
    Unreachable(Failure),
    /// The request could not be made at all, and never will be: FAILED now.
    Unsendable(Failure),
}

/// The delivery after one more attempt at `now`.
pub fn after_attempt(
    mut delivery: Delivery,
    attempt: &Attempt,
    policy: &DeliveryPolicy,
    now: UnixMillis,
) -> Delivery {
    delivery.attempts = delivery.attempts.saturating_add(1);
    delivery.updated_ms = now;
    match attempt {
        Attempt::Answered(status) if (200..300).contains(status) => {
            delivery.state = DeliveryState::Delivered;
            delivery.last_status = Some(*status);
            delivery.last_error = None;
            delivery.delivered_ms = Some(now);
            return delivery;
        }
        Attempt::Answered(status) => {
            delivery.last_status = Some(*status);
            delivery.last_error = Some(format!("answered HTTP {status}"));
        }
        Attempt::Unreachable(class) => {
            delivery.last_status = None;
            delivery.last_error = Some(class.as_str().to_owned());
        }
        Attempt::Unsendable(class) => {
            delivery.state = DeliveryState::Failed;
            delivery.last_status = None;
            delivery.last_error = Some(class.as_str().to_owned());
            return delivery;
        }
    }
    if delivery.attempts >= policy.max_attempts {
        delivery.state = DeliveryState::Failed;
    } else {
        delivery.next_attempt_ms = now.saturating_add(backoff_ms(policy, delivery.attempts));
    }
    delivery
}

/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`: what
/// `x-lx-webhook-signature` carries.
pub fn signature(secret: &str, timestamp_s: i64, body: &[u8]) -> String {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of every attempt of a delivery: `{id, type, createdAt, data}`.
pub fn event_body(due: &DueDelivery) -> Result<Vec<u8>, serde_json::Error> {
    let event = WebhookEvent {
        id: due.delivery.event_id,
        event_type: due.delivery.event_type,
        created_at: format_millis(due.delivery.event_ms),
        data: serde_json::from_str(&due.payload)?,
    };
    serde_json::to_vec(&event)
}

/// The URL a webhook may be registered with, normalised; the problem if not.
pub fn check_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.len() > MAX_URL_LEN {
        return Err(format!("must be at most {MAX_URL_LEN} characters"));
    }
    let url = reqwest::Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http:// or https:// URL, not {}:",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not carry a user or password; the signature tells the receiver it is us"
                .to_owned(),
        );
    }
    Ok(url.to_string())
}

/// A reqwest error with its causes ("error sending request: … Connection
/// refused"), for the server's log, and its class, for the delivery log.
fn classify(err: &reqwest::Error) -> (Failure, String) {
    let mut text = err.to_string();
    let mut class = if err.is_timeout() {
        Failure::TimedOut
    } else {
        Failure::Connection
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        if let Some(target) = cause.downcast_ref::<crate::egress::TargetError>() {
            class = match target {
                crate::egress::TargetError::Forbidden { .. } => Failure::Forbidden,
                crate::egress::TargetError::Unresolved(_) => Failure::Unresolved,
            };
        } else if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
            && class == Failure::Connection
        {
            class = Failure::Refused;
        }
        source = cause.source();
    }
    if class == Failure::Connection {
        let lower = text.to_ascii_lowercase();
        if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
            class = Failure::Tls;
        } else if lower.contains("connection refused") {
            class = Failure::Refused;
        }
    }
    (class, text)
}

/// The policy `webhooks.allowed_targets` makes (validated when the config
/// was loaded).
pub fn target_policy(config: &WebhooksConfig) -> crate::egress::TargetPolicy {
    crate::egress::TargetPolicy::from_config(&config.allowed_targets).unwrap_or_default()
}

/// Refuses a URL whose host is, or resolves to, an address webhooks may not
/// reach: the check at registration. A name that does not resolve now is
/// taken (its receiver may not be up yet): every connection is judged
/// again anyway.
pub async fn check_target(policy: &crate::egress::TargetPolicy, url: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("is not a URL ({e})"))?;
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(80);
    match policy.resolve(host, port).await {
        Ok(_) | Err(crate::egress::TargetError::Unresolved(_)) => Ok(()),
        Err(forbidden) => Err(forbidden.to_string()),
    }
}

/// Makes one attempt at a due delivery and writes its outcome; returns the
/// webhook, free for its next delivery.
async fn deliver(
    app: Arc<App>,
    client: reqwest::Client,
    policy: DeliveryPolicy,
    targets: Arc<crate::egress::TargetPolicy>,
    due: DueDelivery,
) -> Uuid {
    let webhook = due.delivery.webhook_id;
    // A name goes through the pinned resolver; an address written in the
    // URL reaches no resolver, so it is judged here.
    let literal = reqwest::Url::parse(&due.url).ok().and_then(|u| {
        let host = u.host_str()?;
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
    });
    let refused = literal.and_then(|ip| targets.refuses(ip));
    let attempt = match event_body(&due) {
        _ if refused.is_some() => {
            tracing::warn!(%webhook, url = %due.url, why = refused.unwrap_or_default(),
                "webhook delivery refused: the target address is not allowed");
            Attempt::Unsendable(Failure::Forbidden)
        }
        Ok(body) => {
            let timestamp = app.now().div_euclid(1000);
            let sent = client
                .post(&due.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(ID_HEADER, due.delivery.event_id.to_string())
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, signature(&due.secret, timestamp, &body))
                .body(body)
                .send()
                .await;
            match sent {
                Ok(response) => Attempt::Answered(response.status().as_u16()),
                Err(err) => {
                    let (class, text) = classify(&err);
                    tracing::info!(%webhook, event = %due.delivery.event_id, error = %text, "webhook attempt failed");
                    if class == Failure::Forbidden {
                        Attempt::Unsendable(class)
                    } else {
                        Attempt::Unreachable(class)
                    }
                }
            }
        }
        // The payload was written by this server; one that does not parse
        // will not parse on the next attempt either.
        Err(err) => {
            tracing::error!(event = %due.delivery.event_id, %err, "webhook payload unreadable");
            Attempt::Unsendable(Failure::Payload)
        }
    };
    let updated = after_attempt(due.delivery, &attempt, &policy, app.now());
    match updated.state {
        DeliveryState::Delivered => tracing::debug!(
            %webhook, event = %updated.event_id, attempts = updated.attempts, "webhook delivered"
        ),
        DeliveryState::Failed => tracing::warn!(
            %webhook, event = %updated.event_id, r#type = %updated.event_type,
            attempts = updated.attempts, error = ?updated.last_error,
            "webhook delivery FAILED: no more attempts"
        ),
        DeliveryState::Pending => tracing::debug!(
            %webhook, event = %updated.event_id, attempts = updated.attempts,
            error = ?updated.last_error, "webhook delivery retried later"
        ),
    }
    if let Err(err) = app.store.save_delivery(updated, policy.disable_after).await {
        // The delivery stays PENDING as stored and is attempted again.
        tracing::warn!(%webhook, %err, "webhook delivery outcome not saved");
    }
    webhook
}

/// How long a claimed delivery is kept from other workers: its attempt's
/// timeout and then some, so that only a worker that died with it is
/// relieved.
fn claim_lease_ms(policy: &DeliveryPolicy) -> i64 {
    i64::try_from(policy.timeout.as_millis()).unwrap_or(i64::MAX / 2) + 30_000
}

/// The deliveries in flight: at most one per webhook, which keeps each
/// webhook's events in order while a slow receiver holds up no other, and
/// at most `max_in_flight_per_workspace` per workspace, so that one tenant's
/// dead receivers cannot hold every slot.
#[derive(Debug, Default)]
struct InFlight {
    tasks: JoinSet<Uuid>,
    webhooks: HashSet<Uuid>,
    per_workspace: HashMap<Uuid, usize>,
    by_task: HashMap<tokio::task::Id, (Uuid, Uuid)>,
    /// `webhooks.allowed_targets`, parsed once for every delivery.
    targets: Arc<crate::egress::TargetPolicy>,
}

impl InFlight {
    async fn start_due(
        &mut self,
        app: &Arc<App>,
        client: &reqwest::Client,
        policy: DeliveryPolicy,
    ) {
        let due = match app.store.due_deliveries(app.now(), PASS_LIMIT).await {
            Ok(due) => due,
            Err(err) => {
                tracing::warn!(%err, "due webhook deliveries not read; next pass retries");
                return;
            }
        };
        for d in due {
            if self.tasks.len() >= MAX_IN_FLIGHT {
                break;
            }
            let webhook = d.delivery.webhook_id;
            let workspace = d.workspace_id;
            let busy = self.per_workspace.get(&workspace).copied().unwrap_or(0);
            if busy >= policy.max_in_flight_per_workspace || self.webhooks.contains(&webhook) {
                continue;
            }
            // Another replica's worker may have read it too: one takes it.
            let lease_until = app.now() + claim_lease_ms(&policy);
            match app
                .store
                .claim_delivery(d.delivery.seq, d.delivery.next_attempt_ms, lease_until)
                .await
            {
                Ok(true) => {}
                Ok(false) => continue,
                Err(err) => {
                    tracing::warn!(%err, "webhook delivery not claimed; next pass retries");
                    continue;
                }
            }
            self.webhooks.insert(webhook);
            *self.per_workspace.entry(workspace).or_default() += 1;
            let task = self.tasks.spawn(deliver(
                Arc::clone(app),
                client.clone(),
                policy,
                Arc::clone(&self.targets),
                d,
            ));
            self.by_task.insert(task.id(), (webhook, workspace));
        }
    }

    fn finished(&mut self, done: &Result<(tokio::task::Id, Uuid), tokio::task::JoinError>) {
        let task = match done {
            Ok((task, _)) => *task,
            Err(err) => {
                tracing::error!(%err, "webhook delivery task failed");
                err.id()
            }
        };
        if let Some((webhook, workspace)) = self.by_task.remove(&task) {
            self.webhooks.remove(&webhook);
            if let Some(busy) = self.per_workspace.get_mut(&workspace) {
                *busy = busy.saturating_sub(1);
                if *busy == 0 {
                    self.per_workspace.remove(&workspace);
                }
            }
        }
    }
}

/// Sends due deliveries until `shutdown` turns true, then lets the attempts
/// in flight finish (each is bounded by the request timeout).
///
/// It looks for due deliveries every `poll_interval` (retries come due with
/// time), when a delivery finishes (the webhook's next event may be waiting)
/// and when `App::events` reports a session change (a new event may be
/// queued). That broadcast is only a wake-up: the events themselves are in
/// the store, so a lagging receiver (`Lagged`) loses nothing but a little
/// latency, and is logged.
pub async fn run(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let policy = DeliveryPolicy::from_config(&app.config.webhooks);
    let targets = Arc::new(target_policy(&app.config.webhooks));
    let client = match reqwest::Client::builder()
        .timeout(policy.timeout)
        // A redirect is not a 2xx; following one would let a receiver point
        // our signed requests elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        // Names resolve only to addresses the target policy allows, and the
        // connection uses exactly those.
        .dns_resolver(Arc::new(crate::egress::PinnedResolver(Arc::clone(
            &targets,
        ))))
        .user_agent(concat!("lx-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(%err, "webhook deliveries are off: no HTTP client");
            return;
        }
    };
    let mut changes = app.events.subscribe();
    let mut changes_open = true;
    let mut tick = tokio::time::interval(policy.poll_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight = InFlight {
        targets,
        ..InFlight::default()
    };
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            change = changes.recv(), if changes_open => {
                let mut lagged = matches!(change, Err(RecvError::Lagged(_)));
                changes_open = !matches!(change, Err(RecvError::Closed));
                // One pass covers every change already announced.
                loop {
                    match changes.try_recv() {
                        Ok(_) => {}
                        Err(TryRecvError::Lagged(_)) => lagged = true,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => {
                            changes_open = false;
                            break;
                        }
                    }
                }
                if lagged {
                    tracing::debug!("webhook worker fell behind the session changes; the outbox has them all");
                }
            }
            Some(done) = in_flight.tasks.join_next_with_id(), if !in_flight.tasks.is_empty() => {
                in_flight.finished(&done);
            }
            _ = shutdown.changed() => break,
        }
        in_flight.start_due(&app, &client, policy).await;
    }
    while let Some(done) = in_flight.tasks.join_next_with_id().await {
        in_flight.finished(&done);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Delivery;
    use crate::store::events::session_event;
    use lx_protocol::api::{SessionState, WebhookEventType};

    fn build_policy() -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: 4,
            disable_after: 3,
            max_in_flight_per_workspace: 8,
            backoff_initial_ms: 1_000,
            backoff_max_ms: 5_000,
            timeout: Duration::from_secs(10),
            poll_interval: Duration::from_millis(500),
        }
    }

    fn build_delivery() -> Delivery {
        Delivery {
            seq: 1,
            webhook_id: Uuid::nil(),
            event_id: Uuid::from_u128(7),
            event_type: WebhookEventType::SessionLive,
            session_id: Uuid::from_u128(9),
            event_ms: 1_000,
            state: DeliveryState::Pending,
            attempts: 0,
            last_status: None,
            last_error: None,
            next_attempt_ms: 1_000,
            delivered_ms: None,
            updated_ms: 1_000,
        }
    }
    #[test]
    fn backoff_doubles_from_the_initial_wait_up_to_the_cap() {
        let p = build_policy();
        let waits: Vec<i64> = (1..=6).map(|n| backoff_ms(&p, n)).collect();
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 5_000, 5_000, 5_000]);
        assert_eq!(backoff_ms(&p, u32::MAX), 5_000, "no overflow");
    }

    #[test]
    fn a_2xx_delivers_and_keeps_the_status() {
        let d = after_attempt(
            build_delivery(),
            &Attempt::Answered(204),
            &build_policy(),
            5_000,
        );
        assert_eq!(d.state, DeliveryState::Delivered);
        assert_eq!(
            (d.attempts, d.last_status, d.delivered_ms),
            (1, Some(204), Some(5_000))
        );
        assert_eq!(d.last_error, None);
    }

    #[test]
    fn a_refusal_is_retried_after_the_backoff_then_fails_at_max_attempts() {
        let p = build_policy();
        let mut d = build_delivery();
        let mut now = 10_000;
        for expected_wait in [1_000, 2_000, 4_000] {
            d = after_attempt(d, &Attempt::Unreachable(Failure::Refused), &p, now);
            assert_eq!(d.state, DeliveryState::Pending);
            assert_eq!(d.next_attempt_ms, now + expected_wait);
            now = d.next_attempt_ms;
        }
        d = after_attempt(d, &Attempt::Answered(500), &p, now);
        assert_eq!(d.state, DeliveryState::Failed);
        assert_eq!((d.attempts, d.last_status), (4, Some(500)));
        assert_eq!(d.last_error.as_deref(), Some("answered HTTP 500"));
    }

    #[test]
    fn an_unsendable_delivery_fails_at_once() {
        let d = after_attempt(
            build_delivery(),
            &Attempt::Unsendable(Failure::Payload),
            &build_policy(),
            7,
        );
        assert_eq!((d.state, d.attempts), (DeliveryState::Failed, 1));
    }

    #[test]
    fn a_redirect_is_not_a_success() {
        let d = after_attempt(
            build_delivery(),
            &Attempt::Answered(302),
            &build_policy(),
            1,
        );
        assert_eq!(d.state, DeliveryState::Pending);
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently with Python's hmac module, as the docs'
        // verification snippet does.
        let expected = "v1=a252a4340d8bbbdbac8643a2812cc7d628ad79bfba544bff054ac2fa10f795a2";
        assert_eq!(signature("whsec_k", 1_700_000_000, br#"{"a":1}"#), expected);
        assert_ne!(signature("whsec_k", 1_700_000_001, br#"{"a":1}"#), expected);
        assert_ne!(signature("whsec_j", 1_700_000_000, br#"{"a":1}"#), expected);
    }

    #[test]
    fn only_http_urls_with_a_host_are_accepted() {
        assert_eq!(
            check_url(" https://example.com/hook ").as_deref(),
            Ok("https://example.com/hook")
        );
        assert!(check_url("http://127.0.0.1:8080/x?y=1").is_ok());
        for bad in [
            "ftp://example.com",
            "example.com/hook",
            "http://",
            "https://u:p@x.test/",
            "",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
        assert!(check_url(&format!("https://x.test/{}", "a".repeat(3000))).is_err());
    }

    #[test]
    fn each_state_is_an_event_once_and_resuming_is_not_live() {
        let mut s = crate::session::lifecycle::tests::build_session(SessionState::Assigned);
        s.assigned_ms = Some(50);
        assert_eq!(
            session_event(SessionState::Requested, &s),
            Some((WebhookEventType::SessionAssigned, 50))
        );
        s.state = SessionState::Live;
        s.started_ms = Some(70);
        assert_eq!(
            session_event(SessionState::Assigned, &s),
            Some((WebhookEventType::SessionLive, 70))
        );
        assert_eq!(session_event(SessionState::Paused, &s), None);
        assert_eq!(
            session_event(SessionState::Live, &s),
            None,
            "a window, not a state change"
        );
        s.state = SessionState::Expired;
        s.ended_ms = Some(90);
        assert_eq!(
            session_event(SessionState::Live, &s),
            Some((WebhookEventType::SessionExpired, 90))
        );
        s.state = SessionState::Paused;
        assert_eq!(session_event(SessionState::Live, &s), None);
    }
}
