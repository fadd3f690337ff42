//! The external media backend (scale-out): sessions get their WHIP and WHEP
//! URLs from an external edge (Cloudflare Stream's live inputs API, as the
//! reference does: `POST {api}/live_inputs`, `DELETE {api}/live_inputs/{uid}`),
//! and a frame grabber subscribes to each session's WHEP URL so that LIVE,
//! `/frame` and the NETWORK_ERROR windows work as with the built-in plane.
//!
//! The grabber subscribes when the session is started and keeps trying
//! (the edge has nothing to play before the device publishes), and again
//! whenever its subscription fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lx_media::receive::{Receiver, ReceiverConfig};
use serde::Deserialize;
use tokio::sync::{mpsc, watch};
use uuid::Uuid;

use super::builtin::{BuiltinConfig, check_gstreamer};
use super::feed::{Feed, FeedMap, from_media, lock};
use super::{Frame, MediaBackend, MediaError, MediaEvent};
use crate::clock::Clock;
use crate::store::MediaEndpoints;

const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How often the grabber looks whether its subscription still stands.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

#[derive(Debug, Clone)]
pub struct ExternalConfig {
    /// The live-inputs API base, e.g.
    /// `https://api.cloudflare.com/client/v4/accounts/<account>/stream`.
    pub api_url: String,
    pub api_token: String,
    /// The grabber's WHEP subscription and the frame settings.
    pub local: BuiltinConfig,
}

impl ExternalConfig {
    pub fn from_config(config: &crate::config::Config) -> Result<Self, MediaError> {
        Ok(Self {
            api_url: config
                .media
                .external
                .api_url
                .trim_end_matches('/')
                .to_string(),
            api_token: config.media.external.api_token.clone(),
            local: BuiltinConfig::from_config(config)?,
        })
    }
}

pub struct ExternalMedia {
    config: ExternalConfig,
    http: reqwest::Client,
    feeds: Arc<FeedMap>,
    grabbers: Mutex<HashMap<Uuid, watch::Sender<bool>>>,
}

impl std::fmt::Debug for ExternalMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalMedia")
            .field("api_url", &self.config.api_url)
            .field("feeds", &self.feeds.len())
            .finish()
    }
}

/// The parts of a live input we read (Cloudflare's field names).
#[derive(Debug, Deserialize)]
struct Envelope {
    success: bool,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
    result: Option<LiveInputDto>,
}

#[derive(Debug, Deserialize)]
struct LiveInputDto {
    uid: String,
    #[serde(rename = "webRTC")]
    web_rtc: UrlDto,
    #[serde(rename = "webRTCPlayback")]
    web_rtc_playback: UrlDto,
}

#[derive(Debug, Deserialize)]
struct UrlDto {
    url: String,
}

impl ExternalMedia {
    pub fn new(
        config: ExternalConfig,
        clock: Arc<dyn Clock>,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        check_gstreamer()?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| MediaError::Unavailable(format!("HTTP client: {e}")))?;
        let feeds = FeedMap::start(config.local.feed_settings(), clock, events);
        Ok(Self {
            config,
            http,
            feeds,
            grabbers: Mutex::new(HashMap::new()),
        })
    }

    fn unavailable(what: &str, detail: impl std::fmt::Display) -> MediaError {
        MediaError::Unavailable(format!("the media edge {what}: {detail}"))
    }

    async fn create_input(&self, session_id: Uuid) -> Result<LiveInputDto, MediaError> {
        let resp = self
            .http
            .post(format!("{}/live_inputs", self.config.api_url))
            .bearer_auth(&self.config.api_token)
            .json(&serde_json::json!({
                "meta": { "name": format!("lx session {session_id}") },
                "recording": { "mode": "off" },
            }))
            .send()
            .await
            .map_err(|e| Self::unavailable("is unreachable", e))?;
        let status = resp.status();
        let body: Envelope = resp
            .json()
            .await
            .map_err(|e| Self::unavailable("answered something else than a live input", e))?;
        match body {
            Envelope {
                success: true,
                result: Some(input),
                ..
            } if status.is_success() => Ok(input),
            Envelope { errors, .. } => Err(Self::unavailable(
                "refused the live input",
                format!("{status} {errors:?}"),
            )),
        }
    }

    async fn delete_input(&self, uid: &str) -> Result<(), MediaError> {
        let resp = self
            .http
            .delete(format!("{}/live_inputs/{uid}", self.config.api_url))
            .bearer_auth(&self.config.api_token)
            .send()
            .await
            .map_err(|e| Self::unavailable("is unreachable", e))?;
        if resp.status().is_success() || resp.status() == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(Self::unavailable("refused the delete", resp.status()))
        }
    }

    fn start_grabber(&self, session_id: Uuid, whep_url: String) {
        let (stop, stopped) = watch::channel(false);
        if let Some(old) = lock(&self.grabbers).insert(session_id, stop) {
            let _ = old.send(true);
        }
        let feed = self.feeds.feed(session_id);
        let http = self.http.clone();
        let receiver = self.config.local.receiver.clone();
        tokio::spawn(grab(feed, http, receiver, whep_url, stopped));
    }
}

/// Keeps a WHEP subscription to the edge feeding the session's feed.
async fn grab(
    feed: Arc<Feed>,
    http: reqwest::Client,
    config: ReceiverConfig,
    whep_url: String,
    mut stopped: watch::Receiver<bool>,
) {
    let mut retry = RETRY_MIN;
    loop {
        let wait = if feed.has_source() {
            WATCH_PERIOD
        } else {
            match subscribe(&feed, &http, &config, &whep_url).await {
                Ok(()) => {
                    tracing::info!(session = %feed.session_id, "frame grabber subscribed to the edge");
                    retry = RETRY_MIN;
                    WATCH_PERIOD
                }
                Err(err) => {
                    tracing::debug!(session = %feed.session_id, %err, "frame grabber: not yet");
                    let wait = retry;
                    retry = (retry * 2).min(RETRY_MAX);
                    wait
                }
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
    }
}

async fn subscribe(
    feed: &Arc<Feed>,
    http: &reqwest::Client,
    config: &ReceiverConfig,
    whep_url: &str,
) -> Result<(), MediaError> {
    let sink = feed.sink();
    let (mut receiver, offer) = Receiver::offer(config, sink.clone())
        .await
        .map_err(from_media)?;
    let resp = http
        .post(whep_url)
        .header(reqwest::header::CONTENT_TYPE, "application/sdp")
        .body(offer)
        .send()
        .await
        .map_err(|e| MediaError::Unavailable(format!("WHEP POST: {e}")))?;
    let status = resp.status();
    let location = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let answer = resp.text().await.unwrap_or_default();
    if status != reqwest::StatusCode::CREATED {
        super::feed::dispose(receiver);
        return Err(MediaError::Unavailable(format!(
            "WHEP POST answered {status}"
        )));
    }
    receiver.accept_answer(&answer).await.map_err(from_media)?;
    feed.install(sink, receiver, location, String::new())
}

#[async_trait]
impl MediaBackend for ExternalMedia {
    fn name(&self) -> &'static str {
        "external"
    }

    async fn provision(&self, session_id: Uuid) -> Result<MediaEndpoints, MediaError> {
        let input = self.create_input(session_id).await?;
        self.start_grabber(session_id, input.web_rtc_playback.url.clone());
        Ok(MediaEndpoints {
            backend_ref: input.uid,
            whip_url: input.web_rtc.url,
            whep_url: input.web_rtc_playback.url,
        })
    }

    async fn release(
        &self,
        session_id: Uuid,
        endpoints: &MediaEndpoints,
    ) -> Result<(), MediaError> {
        if let Some(stop) = lock(&self.grabbers).remove(&session_id) {
            let _ = stop.send(true);
        }
        self.feeds.remove(session_id);
        self.delete_input(&endpoints.backend_ref).await
    }

    fn adopt(&self, session_id: Uuid, endpoints: &MediaEndpoints, live: bool) {
        if live {
            let feed = self.feeds.feed(session_id);
            feed.assume_media_at(self.feeds.clock.now_ms());
        }
        self.start_grabber(session_id, endpoints.whep_url.clone());
    }

    fn latest_frame(&self, session_id: Uuid) -> Option<Frame> {
        self.feeds.get(session_id)?.latest()
    }
}
