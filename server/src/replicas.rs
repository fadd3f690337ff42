//! Keeping one replica in line with the others sharing its store: the
//! dispatch index follows the suppliers other replicas change. A stale index
//! costs a retry, never a wrong assignment (the store's compare-and-swap
//! decides), but an index that never learns of a supplier gone ONLINE
//! elsewhere would answer NO_COVERAGE for it.

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use crate::app::App;
use crate::media::origin;
use crate::store::WorkspaceChange;

/// Follows the store's workspace changes until `shutdown`; returns at once
/// for a store no other replica shares.
pub async fn follow(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let Some(mut changes) = app.store.workspace_changes() else {
        return;
    };
    loop {
        let change = tokio::select! {
            change = changes.recv() => change,
            _ = shutdown.changed() => return,
        };
        match change {
            Ok(WorkspaceChange::Changed(id)) => match app.store.workspace(id).await {
                Ok(Some(ws)) => app.dispatcher.sync(&ws),
                Ok(None) => app.dispatcher.remove(id),
                Err(err) => tracing::warn!(workspace = %id, %err, "supplier not re-read"),
            },
            Ok(WorkspaceChange::Missed) | Err(RecvError::Lagged(_)) => {
                match app.store.online_suppliers().await {
                    Ok(suppliers) => {
                        app.dispatcher.reload(&suppliers);
                        tracing::debug!(suppliers = suppliers.len(), "dispatch index reloaded");
                    }
                    Err(err) => tracing::warn!(%err, "dispatch index not reloaded"),
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// How often a replica says it is alive.
const ALIVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The client replicas ask each other with: no redirects (a replica answers
/// for itself), a timeout per request.
fn peer_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

/// Says, every second until `shutdown`, that this replica is alive; returns
/// at once for a store no other replica shares.
pub async fn say_alive(app: Arc<App>, mut shutdown: watch::Receiver<bool>) {
    let Some(me) = origin(&app.config.http.public_url).filter(|_| app.store.shared()) else {
        return;
    };
    let mut tick = tokio::time::interval(ALIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(err) = app.store.replica_alive(&me, app.now()).await {
                    tracing::warn!(%err, "could not say this replica is alive");
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Marks a request one replica forwards to another: the receiver answers it
/// itself and forwards nothing further.
pub const FORWARDED_HEADER: &str = "x-lx-forwarded-by";

/// How long a replica waits for the owner of a session's media.
const FORWARD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The replica carrying the session's media, when it is another one: the
/// origin of its WHIP URL, which the built-in media plane makes from its
/// replica's `http.public_url`.
pub fn media_owner(app: &App, media: &crate::store::MediaEndpoints) -> Option<String> {
    if app.carries_media(media) {
        return None;
    }
    origin(&media.whip_url)
}

/// What the owner answers for the session's latest frame, asked with the
/// caller's own credentials (the owner authorizes the caller again).
pub async fn frame_from_owner(
    owner: &str,
    session: uuid::Uuid,
    headers: &axum::http::HeaderMap,
    by: &str,
) -> Result<axum::response::Response, String> {
    use axum::http::header;
    let mut request = peer_client()
        .get(format!("{owner}/api/v1/sessions/{session}/frame"))
        .timeout(FORWARD_TIMEOUT)
        .header(FORWARDED_HEADER, by);
    for name in [header::AUTHORIZATION, header::COOKIE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    let answer = request.send().await.map_err(|e| e.to_string())?;
    let mut response = axum::response::Response::builder().status(answer.status().as_u16());
    for name in [
        header::CONTENT_TYPE,
        header::CACHE_CONTROL,
        header::HeaderName::from_static("x-lx-frame-decoded-at"),
    ] {
        if let Some(value) = answer.headers().get(name.as_str()) {
            response = response.header(name, value.as_bytes());
        }
    }
    let body = answer.bytes().await.map_err(|e| e.to_string())?;
    response
        .body(axum::body::Body::from(body))
        .map_err(|e| e.to_string())
}

/// Whether the replica at `owner` answers at all.
pub async fn answers(owner: &str) -> bool {
    peer_client()
        .get(format!("{owner}/api/v1/health"))
        .timeout(std::time::Duration::from_secs(1))
        .send()
        .await
        .is_ok()
}

/// Moves the session's media here from `gone`, the endpoints of a replica
/// that no longer answers: a device that asks `start` again after its WHIP
/// connection failed publishes to this replica next. Media are counted as
/// lost since the gone replica last said it was alive, so the gap becomes a
/// NETWORK_ERROR window that the first frame here closes.
pub async fn take_over_media(
    app: &App,
    session: crate::store::Session,
    gone: &crate::store::MediaEndpoints,
) -> Result<crate::store::Session, TakeOverError> {
    let media = app
        .media
        .provision(session.id)
        .await
        .map_err(TakeOverError::Media)?;
    let stored = app
        .store
        .replace_media(session.id, &gone.backend_ref, media.clone())
        .await
        .map_err(TakeOverError::Store)?;
    if stored.media.as_ref() != Some(&media) {
        // Another replica moved them first.
        let _ = app.media.release(session.id, &media).await;
        return Ok(stored);
    }
    tracing::warn!(session = %session.id, gone = %gone.whip_url, "the session's media replica is gone: its media move here");
    if matches!(
        stored.state,
        lx_protocol::api::SessionState::Live | lx_protocol::api::SessionState::Paused
    ) {
        // Silent since the gone replica last said it was alive (at most a
        // second before it died), or one media timeout ago if it never did.
        let timeout = i64::from(app.config.media.media_timeout_ms);
        let seen = match origin(&gone.whip_url) {
            Some(owner) => app.store.replica_seen(&owner).await.ok().flatten(),
            None => None,
        };
        let silent_since = seen.map_or(app.now() - timeout, |seen| seen.min(app.now()));
        app.media.take_over(session.id, &media, silent_since);
    }
    Ok(stored)
}

#[derive(Debug, thiserror::Error)]
pub enum TakeOverError {
    #[error("media: {0}")]
    Media(crate::media::MediaError),
    #[error(transparent)]
    Store(crate::store::ApplyError),
}
