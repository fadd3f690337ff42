//! The built-in media backend (the embedded default): the server itself
//! answers WHIP publishers and WHEP viewers over GStreamer (`lx-media`).
//!
//! Per session a [`Feed`]: at most one publisher (a new POST to the same URL
//! replaces it), the flow monitor, the key-frame decoder and the viewers.
//!
//! It can also be the edge of another server's external backend: with
//! `media.edge_api_token` set it makes live inputs (WHIP and WHEP URLs not
//! tied to a session of its own) through the same API shape as Cloudflare
//! Stream's live inputs. Those live in memory only.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lx_media::receive::{Receiver, ReceiverConfig};
use lx_media::viewer::Viewer;
use lx_media::{Codec, IceConfig};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::feed::{FeedMap, FeedSettings, from_media, lock, random_resource};
use super::token::TokenKey;
use super::{
    Endpoint, Frame, IcePatch, LiveInput, MediaBackend, MediaError, MediaEvent, Negotiated,
    Trickled,
};
use crate::clock::Clock;
use crate::store::MediaEndpoints;

#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    /// Base of the WHIP and WHEP URLs (`http.public_url`).
    pub public_url: String,
    pub receiver: ReceiverConfig,
    pub frame_interval_ms: i64,
    pub jpeg_quality: u8,
    pub media_timeout_ms: i64,
    pub max_viewers: usize,
    pub viewer_connect_timeout_ms: i64,
}

impl BuiltinConfig {
    /// From the server's `[media]` section (validated when it was loaded).
    pub fn from_config(config: &crate::config::Config) -> Result<Self, MediaError> {
        let m = &config.media;
        let codecs = m
            .codecs
            .iter()
            .map(|c| c.parse::<Codec>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| MediaError::Unavailable(format!("media.codecs: {e}")))?;
        Ok(Self {
            public_url: config.http.public_url.clone(),
            receiver: ReceiverConfig {
                ice: ice_config(&m.ice),
                codecs,
                latency_ms: m.jitter_latency_ms,
            },
            frame_interval_ms: i64::from(m.frame_interval_ms),
            jpeg_quality: m.jpeg_quality,
            media_timeout_ms: i64::from(m.media_timeout_ms),
            max_viewers: m.max_viewers_per_session as usize,
            viewer_connect_timeout_ms: i64::from(m.viewer_connect_timeout_ms),
        })
    }

    pub fn ice(&self) -> &IceConfig {
        &self.receiver.ice
    }

    pub(crate) fn feed_settings(&self) -> FeedSettings {
        FeedSettings {
            frame_interval_ms: self.frame_interval_ms,
            jpeg_quality: self.jpeg_quality,
            media_timeout_ms: self.media_timeout_ms,
            viewer_connect_timeout_ms: self.viewer_connect_timeout_ms,
        }
    }
}

/// `[media.ice]` as lx-media takes it.
pub fn ice_config(ice: &crate::config::IceSettings) -> IceConfig {
    IceConfig::from_settings(
        &ice.stun_server,
        &ice.turn_server,
        &ice.local_addresses,
        ice.port_min,
        ice.port_max,
    )
}

pub struct BuiltinMedia {
    config: BuiltinConfig,
    tokens: TokenKey,
    feeds: Arc<FeedMap>,
    /// Live inputs made for another server (edge mode).
    inputs: Mutex<HashSet<Uuid>>,
}

impl std::fmt::Debug for BuiltinMedia {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltinMedia")
            .field("config", &self.config)
            .field("feeds", &self.feeds.len())
            .finish()
    }
}

impl BuiltinMedia {
    /// The backend, with its monitor running on the current tokio runtime
    /// until the backend is dropped.
    pub fn new(
        config: BuiltinConfig,
        secret: &[u8; 32],
        clock: Arc<dyn Clock>,
        events: mpsc::Sender<MediaEvent>,
    ) -> Result<Self, MediaError> {
        check_gstreamer()?;
        let feeds = FeedMap::start(config.feed_settings(), clock, events);
        Ok(Self {
            config,
            tokens: TokenKey::derive(secret),
            feeds,
            inputs: Mutex::new(HashSet::new()),
        })
    }

    fn url(&self, endpoint: Endpoint, id: Uuid) -> String {
        format!(
            "{}/media/{}/{}",
            self.config.public_url.trim_end_matches('/'),
            endpoint.path(),
            self.tokens.token(endpoint, id)
        )
    }

    /// Whether a publisher is connected, and how many viewers, now.
    pub fn peers(&self, session_id: Uuid) -> (bool, usize) {
        self.feeds
            .get(session_id)
            .map_or((false, 0), |feed| (feed.has_source(), feed.viewer_count()))
    }

    async fn publish(&self, session_id: Uuid, offer: &str) -> Result<Negotiated, MediaError> {
        let feed = self.feeds.feed(session_id);
        let sink = feed.sink();
        let (receiver, answer) = Receiver::answer(offer, &self.config.receiver, sink.clone())
            .await
            .map_err(from_media)?;
        let resource = random_resource();
        let etag = random_resource();
        feed.install(sink, receiver, resource.clone(), etag.clone())?;
        Ok(Negotiated {
            answer,
            resource,
            etag: Some(etag),
        })
    }

    async fn view(&self, session_id: Uuid, offer: &str) -> Result<Negotiated, MediaError> {
        let feed = self.feeds.get(session_id).ok_or(MediaError::NoPublisher)?;
        let codec = feed.codec().ok_or(MediaError::NoPublisher)?;
        let slot = feed.reserve_viewer(self.config.max_viewers)?;
        let (viewer, answer) = Viewer::answer(offer, codec, self.config.ice())
            .await
            .map_err(from_media)?;
        let resource = random_resource();
        let etag = random_resource();
        slot.fill(resource.clone(), viewer, etag.clone());
        Ok(Negotiated {
            answer,
            resource,
            etag: Some(etag),
        })
    }
}

/// The elements the built-in plane cannot work without.
pub(crate) fn check_gstreamer() -> Result<(), MediaError> {
    lx_media::init().map_err(|e| MediaError::Unavailable(e.to_string()))?;
    for element in [
        "webrtcbin",
        "nicesrc",
        "rtpvp8depay",
        "vp8dec",
        "videobalance",
        "jpegenc",
    ] {
        if !lx_media::has_element(element) {
            return Err(MediaError::Unavailable(format!(
                "the GStreamer element {element} is missing; install gstreamer1.0-plugins-good, \
                 -bad, gstreamer1.0-nice and gstreamer1.0-libav (cargo xtask demo does)"
            )));
        }
    }
    Ok(())
}

#[async_trait]
impl MediaBackend for BuiltinMedia {
    fn name(&self) -> &'static str {
        "builtin"
    }

    async fn provision(&self, session_id: Uuid) -> Result<MediaEndpoints, MediaError> {
        Ok(MediaEndpoints {
            backend_ref: format!("builtin-{}", session_id.simple()),
            whip_url: self.url(Endpoint::Whip, session_id),
            whep_url: self.url(Endpoint::Whep, session_id),
        })
    }

    async fn release(&self, session_id: Uuid, _: &MediaEndpoints) -> Result<(), MediaError> {
        self.feeds.remove(session_id);
        Ok(())
    }

    fn latest_frame(&self, session_id: Uuid) -> Option<Frame> {
        self.feeds.get(session_id)?.latest()
    }

    fn session_of_token(&self, endpoint: Endpoint, token: &str) -> Option<Uuid> {
        self.tokens.verify(endpoint, token)
    }

    async fn negotiate(
        &self,
        endpoint: Endpoint,
        session_id: Uuid,
        offer: &str,
    ) -> Result<Negotiated, MediaError> {
        match endpoint {
            Endpoint::Whip => self.publish(session_id, offer).await,
            Endpoint::Whep => self.view(session_id, offer).await,
        }
    }

    async fn hang_up(
        &self,
        endpoint: Endpoint,
        session_id: Uuid,
        resource: &str,
    ) -> Result<(), MediaError> {
        let feed = self.feeds.get(session_id).ok_or(MediaError::NoResource)?;
        match endpoint {
            Endpoint::Whip => feed.remove_source(resource),
            Endpoint::Whep => feed.remove_viewer(resource),
        }
    }

    async fn trickle(
        &self,
        endpoint: Endpoint,
        session_id: Uuid,
        resource: &str,
        patch: IcePatch,
    ) -> Result<Trickled, MediaError> {
        let feed = self.feeds.get(session_id).ok_or(MediaError::NoResource)?;
        let (ice, tag) = feed.ice_of(endpoint, resource)?;
        match patch {
            IcePatch::Candidates { if_match, fragment } => {
                if if_match != tag {
                    return Err(MediaError::StaleIceSession {
                        given: if_match,
                        current: tag,
                    });
                }
                ice.add_candidates(&fragment).map_err(from_media)?;
                Ok(Trickled::Added)
            }
            IcePatch::Restart { fragment } => {
                let answer = ice.restart(&fragment).await.map_err(from_media)?;
                let etag = random_resource();
                feed.retag(endpoint, resource, etag.clone());
                tracing::info!(session = %session_id, endpoint = endpoint.path(), "ICE restarted");
                Ok(Trickled::Restarted { answer, etag })
            }
        }
    }

    fn adopt(&self, session_id: Uuid, _: &MediaEndpoints, live: bool) {
        if live {
            let feed = self.feeds.feed(session_id);
            feed.assume_media_at(self.feeds.clock.now_ms());
        }
    }

    fn take_over(
        &self,
        session_id: Uuid,
        _: &MediaEndpoints,
        last_media_ms: lx_protocol::time::UnixMillis,
    ) {
        self.feeds.feed(session_id).lost_since(last_media_ms);
    }

    fn is_live_input(&self, id: Uuid) -> bool {
        lock(&self.inputs).contains(&id)
    }

    async fn create_live_input(&self) -> Result<LiveInput, MediaError> {
        let uid = Uuid::new_v4();
        lock(&self.inputs).insert(uid);
        Ok(LiveInput {
            uid,
            whip_url: self.url(Endpoint::Whip, uid),
            whep_url: self.url(Endpoint::Whep, uid),
        })
    }

    async fn delete_live_input(&self, uid: Uuid) -> Result<(), MediaError> {
        if !lock(&self.inputs).remove(&uid) {
            return Err(MediaError::NoResource);
        }
        self.feeds.remove(uid);
        Ok(())
    }
}
