//! Rate limits per client address and per credential on what a stranger can
//! call cheaply and make the server work for: challenges and sign-in,
//! workspace creation, device registration, webhook creation, telemetry,
//! WHIP/WHEP offers, quotes and `/mcp`. Each class has two GCRA limiters
//! (`[rate_limits]`, requests per minute, the same number as burst): one
//! keyed by the client's IP, one by the credential the request presents (its
//! bearer token, its sign-in cookie, or the token of a WHIP/WHEP URL), so a
//! key shared across many addresses is held to the same pace as one address.
//! Past either the answer is `429 RATE_LIMITED` with `Retry-After`, and
//! nothing behind it runs. The address comes from the connection (the edge
//! puts it on every request); behind a proxy that is the proxy's.
//! An address whose presented credentials are refused (401) more than
//! `auth_failures_per_minute` times a minute is shut out of every route for
//! a while; 127.0.0.1 and ::1 never are (this host: the server's own `/mcp`
//! tools, or a reverse proxy).
//! Credentials are only hashed here (with a per-process key), never judged:
//! a forged one is limited like a real one, and refused later. A refusal is
//! answered after `refusal_delay_ms`, so a client that does not wait as told
//! is slowed down rather than answered as fast as it can ask.

use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use lx_protocol::ErrorCode;

use crate::config::RateLimitsConfig;
use crate::error::ApiError;

type Limiter = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, DefaultClock>;
/// Keyed by a keyed hash of the credential.
type CredentialLimiter = RateLimiter<u64, DefaultKeyedStateStore<u64>, DefaultClock>;

/// What a request costs, as the limits see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Challenge,
    SignIn,
    WorkspaceCreate,
    Register,
    Webhook,
    Telemetry,
    MediaOffer,
    MediaPatch,
    Quote,
    Mcp,
}

/// The class of a request, if it has one.
pub fn classify(method: &Method, path: &str) -> Option<Class> {
    let api = path.strip_prefix("/api/v1");
    match (method, api) {
        (&Method::POST, Some("/auth/wallet/challenge" | "/workspaces/challenge")) => {
            Some(Class::Challenge)
        }
        (&Method::POST, Some("/auth/wallet/login" | "/auth/workspace/select")) => {
            Some(Class::SignIn)
        }
        (&Method::POST, Some("/workspaces")) => Some(Class::WorkspaceCreate),
        (&Method::POST, Some("/operators/register")) => Some(Class::Register),
        (&Method::POST, Some("/webhooks")) => Some(Class::Webhook),
        (&Method::POST, Some(p)) if p.starts_with("/sessions/") && p.ends_with("/telemetry") => {
            Some(Class::Telemetry)
        }
        (&Method::GET, Some("/pricing/quote")) => Some(Class::Quote),
        (&Method::POST, None)
            if (path.starts_with("/media/whip/") || path.starts_with("/media/whep/"))
                && path.matches('/').count() == 3 =>
        {
            Some(Class::MediaOffer)
        }
        (&Method::PATCH, None)
            if (path.starts_with("/media/whip/") || path.starts_with("/media/whep/"))
                && path.matches('/').count() == 4 =>
        {
            Some(Class::MediaPatch)
        }
        (_, None) if path == "/mcp" || path.starts_with("/mcp/") => Some(Class::Mcp),
        _ => None,
    }
}

pub struct RateLimits {
    limiters: Vec<(Class, Limiter, CredentialLimiter)>,
    hasher: std::collections::hash_map::RandomState,
    refusal_delay: Duration,
    /// 401s per address; an address past its budget is `shut_out` until
    /// the instant the limiter names.
    auth_failures: Limiter,
    shut_out: std::sync::Mutex<std::collections::HashMap<IpAddr, std::time::Instant>>,
}

impl std::fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits").finish_non_exhaustive()
    }
}

impl RateLimits {
    pub fn from_config(c: &RateLimitsConfig) -> Self {
        let quota = |per_minute: u32| {
            Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
        };
        let limiters = [
            (Class::Challenge, c.challenges_per_minute),
            (Class::SignIn, c.sign_in_per_minute),
            (Class::WorkspaceCreate, c.workspaces_per_minute),
            (Class::Register, c.registrations_per_minute),
            (Class::Webhook, c.webhooks_per_minute),
            (Class::Telemetry, c.telemetry_per_minute),
            (Class::MediaOffer, c.media_offers_per_minute),
            (Class::MediaPatch, c.media_patches_per_minute),
            (Class::Quote, c.quotes_per_minute),
            (Class::Mcp, c.mcp_per_minute),
        ]
        .into_iter()
        .map(|(class, n)| {
            (
                class,
                RateLimiter::keyed(quota(n)),
                RateLimiter::keyed(quota(n)),
            )
        })
        .collect();
        Self {
            limiters,
            hasher: std::collections::hash_map::RandomState::new(),
            refusal_delay: Duration::from_millis(u64::from(c.refusal_delay_ms)),
            auth_failures: RateLimiter::keyed(quota(c.auth_failures_per_minute)),
            shut_out: std::sync::Mutex::default(),
        }
    }

    /// `Ok` if `ip`, presenting `credential` (if any), may make one more
    /// request of `class` now, else how long until it may.
    pub fn check(
        &self,
        class: Class,
        ip: IpAddr,
        credential: Option<&str>,
    ) -> Result<(), Duration> {
        let Some((_, by_address, by_credential)) =
            self.limiters.iter().find(|(c, _, _)| *c == class)
        else {
            return Ok(());
        };
        let wait = |not_until: governor::NotUntil<_>| {
            not_until.wait_time_from(DefaultClock::default().now())
        };
        by_address.check_key(&ip).map_err(wait)?;
        if let Some(credential) = credential {
            by_credential
                .check_key(&self.hasher.hash_one(credential))
                .map_err(wait)?;
        }
        Ok(())
    }

    /// How long `ip` is still shut out for its failed credentials, if it is.
    pub fn shut_out_for(&self, ip: IpAddr) -> Option<Duration> {
        let mut shut_out = self
            .shut_out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = *shut_out.get(&ip)?;
        let left = until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            shut_out.remove(&ip);
            return None;
        }
        Some(left)
    }

    /// Counts a request of `ip` refused for its credential; past the budget
    /// the address is shut out.
    pub fn note_auth_failure(&self, ip: IpAddr) {
        if let Err(not_until) = self.auth_failures.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.shut_out
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(ip, std::time::Instant::now() + wait);
        }
    }

    /// Forgets addresses and credentials whose limits are full again: the
    /// maps stay small.
    pub fn forget_idle(&self) {
        self.auth_failures.retain_recent();
        self.auth_failures.shrink_to_fit();
        let now = std::time::Instant::now();
        self.shut_out
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|_, until| *until > now);
        for (_, by_address, by_credential) in &self.limiters {
            by_address.retain_recent();
            by_address.shrink_to_fit();
            by_credential.retain_recent();
            by_credential.shrink_to_fit();
        }
    }
}

/// The credential a request presents: its bearer token, else its sign-in
/// cookie, else the token in a WHIP/WHEP URL.
fn credential_of(request: &Request) -> Option<String> {
    let headers = request.headers();
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(lx_protocol::bearer::token)
    {
        return Some(token.to_owned());
    }
    if let Some(cookie) = crate::auth::cookie_value(headers, crate::auth::COOKIE_NAME) {
        return Some(cookie);
    }
    let path = request.uri().path();
    path.strip_prefix("/media/whip/")
        .or_else(|| path.strip_prefix("/media/whep/"))
        .and_then(|rest| rest.split('/').next())
        .map(str::to_owned)
}

/// The middleware: refuses a request over its class's limit, and every
/// request of an address shut out for its failed credentials; counts the
/// 401s it lets through.
pub async fn enforce(limits: Arc<RateLimits>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(ip) = peer else {
        return next.run(request).await;
    };
    if let Some(wait) = limits.shut_out_for(ip) {
        return refuse(
            &limits,
            wait,
            format!("too many requests with bad credentials from {ip}"),
            "rateLimit:AuthFailures".to_owned(),
        )
        .await;
    }
    let class = classify(request.method(), request.uri().path());
    let credential = credential_of(&request);
    if let Some(class) = class
        && let Err(wait) = limits.check(class, ip, credential.as_deref())
    {
        return refuse(
            &limits,
            wait,
            format!("too many requests of this kind from {ip} or with this credential"),
            format!("rateLimit:{class:?}"),
        )
        .await;
    }
    let response = next.run(request).await;
    // Only a credential that was presented and refused counts: a page
    // asking `/me` before sign-in is not guessing.
    if response.status() == axum::http::StatusCode::UNAUTHORIZED
        && credential.is_some()
        && !is_this_host(ip)
    {
        limits.note_auth_failure(ip);
    }
    response
}

/// 127.0.0.1 and ::1 are this host: the server's own `/mcp` tools calling
/// its API for every client, or a reverse proxy in front of it. Shutting
/// them out for bad credentials would shut out everyone.
fn is_this_host(ip: IpAddr) -> bool {
    ip == IpAddr::from([127, 0, 0, 1]) || ip == IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
}

/// `429 RATE_LIMITED` with `Retry-After`, answered after the refusal delay:
/// a sleeping future costs nothing, and a client answered at once would be
/// back at once, thousands of times a second.
async fn refuse(limits: &RateLimits, wait: Duration, why: String, detail: String) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError::new(
        ErrorCode::RateLimited,
        format!("{why}; retry in {seconds} s"),
    )
    .with_detail(detail)
    .into_response();
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    tokio::time::sleep(limits.refusal_delay).await;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every class at `per_minute`, refusals at once, 401s as many.
    fn every_limit(per_minute: u32) -> RateLimitsConfig {
        RateLimitsConfig {
            challenges_per_minute: per_minute,
            sign_in_per_minute: per_minute,
            workspaces_per_minute: per_minute,
            registrations_per_minute: per_minute,
            webhooks_per_minute: per_minute,
            telemetry_per_minute: per_minute,
            media_offers_per_minute: per_minute,
            media_patches_per_minute: per_minute,
            quotes_per_minute: per_minute,
            mcp_per_minute: per_minute,
            refusal_delay_ms: 0,
            auth_failures_per_minute: per_minute,
        }
    }

    #[test]
    fn the_costly_calls_have_a_class_and_the_rest_none() {
        let post = Method::POST;
        assert_eq!(
            classify(&post, "/api/v1/auth/wallet/challenge"),
            Some(Class::Challenge)
        );
        assert_eq!(
            classify(&post, "/api/v1/workspaces/challenge"),
            Some(Class::Challenge)
        );
        assert_eq!(
            classify(&post, "/api/v1/operators/register"),
            Some(Class::Register)
        );
        assert_eq!(
            classify(&post, "/api/v1/sessions/x/telemetry"),
            Some(Class::Telemetry)
        );
        assert_eq!(classify(&post, "/media/whep/abc"), Some(Class::MediaOffer));
        assert_eq!(
            classify(&Method::PATCH, "/media/whip/abc/r1"),
            Some(Class::MediaPatch)
        );
        assert_eq!(
            classify(&Method::DELETE, "/media/whep/abc/r1"),
            None,
            "hanging up is free"
        );
        assert_eq!(
            classify(&Method::GET, "/api/v1/pricing/quote"),
            Some(Class::Quote)
        );
        assert_eq!(classify(&post, "/mcp"), Some(Class::Mcp));
        assert_eq!(classify(&Method::GET, "/api/v1/sessions"), None);
        assert_eq!(classify(&Method::GET, "/api/v1/health"), None);
    }

    #[test]
    fn an_address_past_its_burst_waits_and_another_does_not() {
        let config = every_limit(3);
        let limits = RateLimits::from_config(&config);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check(Class::Challenge, a, None).is_ok());
        }
        let wait = limits.check(Class::Challenge, a, None).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        assert!(
            limits.check(Class::Challenge, b, None).is_ok(),
            "another address"
        );
        assert!(limits.check(Class::Quote, a, None).is_ok(), "another class");
    }

    #[test]
    fn one_key_from_many_addresses_is_held_to_the_pace_of_one() {
        let config = RateLimitsConfig {
            quotes_per_minute: 3,
            ..every_limit(1000)
        };
        let limits = RateLimits::from_config(&config);
        let address = |n: u8| IpAddr::from([127, 0, 0, n]);
        for n in 1..=3 {
            assert!(
                limits
                    .check(Class::Quote, address(n), Some("lxxn_k1"))
                    .is_ok()
            );
        }
        assert!(
            limits
                .check(Class::Quote, address(4), Some("lxxn_k1"))
                .is_err(),
            "a fourth address with the same key"
        );
        assert!(
            limits
                .check(Class::Quote, address(5), Some("lxxn_k2"))
                .is_ok(),
            "another key"
        );
    }

    #[test]
    fn an_address_past_its_bad_credentials_budget_is_shut_out_and_another_is_not() {
        let config = RateLimitsConfig {
            auth_failures_per_minute: 2,
            ..every_limit(1000)
        };
        let limits = RateLimits::from_config(&config);
        let guesser = IpAddr::from([127, 0, 0, 9]);
        limits.note_auth_failure(guesser);
        limits.note_auth_failure(guesser);
        assert_eq!(limits.shut_out_for(guesser), None, "within the budget");
        limits.note_auth_failure(guesser);
        let left = limits.shut_out_for(guesser).expect("shut out");
        assert!(left <= Duration::from_secs(30), "{left:?}");
        assert_eq!(limits.shut_out_for(IpAddr::from([127, 0, 0, 10])), None);
    }
}
