//! The built-in media backend (the embedded default): the server itself
//! answers WHIP publishers and WHEP viewers over GStreamer (`lx-media`).
//!
//! Per session a [`Feed`]: at most one publisher (a receive-only ingest; a
//! new POST to the same URL replaces it), the flow monitor, the key-frame
//! decoder that keeps the latest JPEG about once per `frame_interval`, and
//! the viewers, each on its own pipeline fed with copies of the frames.
//! Everything the streaming threads touch is behind one short lock per
//! feed; pipelines are stopped off the async workers and never from their
//! own threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use lx_media::decode::{DecodeTo, Decoder};
use lx_media::receive::{EncodedFrame, FrameSink, Receiver, ReceiverConfig};
use lx_media::viewer::Viewer;
use lx_media::{Codec, IceConfig};
use lx_protocol::time::UnixMillis;
use rand::RngCore;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::flow::{Flow, FlowMonitor};
use super::token::TokenKey;
use super::{Endpoint, Frame, MediaBackend, MediaError, MediaEvent, Negotiated};
use crate::clock::Clock;
use crate::store::MediaEndpoints;

/// How often the monitor looks for lost media and dead peers.
const MONITOR_PERIOD: Duration = Duration::from_millis(250);
/// At most one key-frame request per this long.
const KEYFRAME_REQUEST_GAP_MS: i64 = 500;

#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    /// Base of the WHIP and WHEP URLs (`http.public_url`).
    pub public_url: String,
    pub receiver: ReceiverConfig,
    /// A JPEG about this often, from the key frame nearest to it.
    pub frame_interval_ms: i64,
    pub jpeg_quality: u8,
    /// No media for longer than this opens a NETWORK_ERROR window.
    pub media_timeout_ms: i64,
    pub max_viewers: usize,
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
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        Ok(Self {
            public_url: config.http.public_url.clone(),
            receiver: ReceiverConfig {
                ice: IceConfig {
                    stun_server: non_empty(&m.ice.stun_server),
                    turn_server: non_empty(&m.ice.turn_server),
                    local_addresses: m.ice.local_addresses.clone(),
                    port_range: (m.ice.port_max > 0).then_some((m.ice.port_min, m.ice.port_max)),
                },
                codecs,
                latency_ms: m.jitter_latency_ms,
            },
            frame_interval_ms: i64::from(m.frame_interval_ms),
            jpeg_quality: m.jpeg_quality,
            media_timeout_ms: i64::from(m.media_timeout_ms),
            max_viewers: m.max_viewers_per_session as usize,
        })
    }

    pub fn ice(&self) -> &IceConfig {
        &self.receiver.ice
    }
}

#[derive(Debug)]
pub struct BuiltinMedia {
    shared: Arc<Shared>,
}

struct Shared {
    config: BuiltinConfig,
    tokens: TokenKey,
    clock: Arc<dyn Clock>,
    events: mpsc::Sender<MediaEvent>,
    feeds: Mutex<HashMap<Uuid, Arc<Feed>>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("feeds", &self.feeds.lock().map(|f| f.len()).unwrap_or(0))
            .finish()
    }
}

struct Feed {
    session_id: Uuid,
    state: Mutex<FeedState>,
    /// Written by the decoder's thread, read by the frame endpoint.
    latest: Arc<Mutex<Option<Frame>>>,
    first_frame: Arc<AtomicBool>,
}

struct Publisher {
    resource: String,
    receiver: Receiver,
    sink: Arc<IngestSink>,
}

struct FeedState {
    flow: FlowMonitor,
    publisher: Option<Publisher>,
    /// Counts publishers; frames of a replaced one are ignored.
    generation: u64,
    codec: Option<Codec>,
    decoder: Option<(Codec, Decoder)>,
    last_decode_ms: Option<UnixMillis>,
    last_keyframe_ms: Option<UnixMillis>,
    last_keyframe_request_ms: Option<UnixMillis>,
    viewers: Vec<(String, Viewer)>,
}

/// Hands one publisher's frames to its feed. It holds the feed weakly: the
/// feed owns the pipeline that owns this sink.
struct IngestSink {
    feed: Weak<Feed>,
    generation: u64,
    clock: Arc<dyn Clock>,
    events: mpsc::Sender<MediaEvent>,
    frame_interval_ms: i64,
    jpeg_quality: u8,
    failed: AtomicBool,
}

fn random_resource() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic on a streaming thread must not take the feed down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn send(events: &mpsc::Sender<MediaEvent>, event: MediaEvent) {
    if let Err(err) = events.try_send(event) {
        tracing::warn!(?event, %err, "media event dropped");
    }
}

/// Stops pipelines off the async workers (setting a pipeline to NULL waits
/// for its threads).
fn dispose<T: Send + 'static>(things: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(things));
        }
        Err(_) => drop(things),
    }
}

fn from_media(err: lx_media::MediaError) -> MediaError {
    match err {
        lx_media::MediaError::Sdp(e) => MediaError::Refused(e.to_string()),
        lx_media::MediaError::BadSdp(e) => MediaError::Refused(format!("bad SDP: {e}")),
        other => MediaError::Unavailable(other.to_string()),
    }
}

impl FrameSink for IngestSink {
    fn on_frame(&self, frame: EncodedFrame) {
        let Some(feed) = self.feed.upgrade() else {
            return;
        };
        let now = self.clock.now_ms();
        let mut st = lock(&feed.state);
        if st.generation != self.generation {
            return;
        }
        if let Some(Flow::Resumed { at_ms }) = st.flow.on_media(now) {
            send(
                &self.events,
                MediaEvent::MediaResumed {
                    session_id: feed.session_id,
                    at_ms,
                },
            );
        }
        st.codec = Some(frame.codec);
        for (_, viewer) in &st.viewers {
            viewer.push(&frame);
        }
        let mut want_keyframe = st.viewers.iter().any(|(_, v)| v.needs_keyframe());
        if frame.keyframe {
            st.last_keyframe_ms = Some(now);
            // A little early is fine: key frames come about once an interval.
            let due = st
                .last_decode_ms
                .is_none_or(|t| now - t >= self.frame_interval_ms * 3 / 4);
            if due {
                st.last_decode_ms = Some(now);
                self.decode(&feed, &mut st, &frame, now);
            }
        } else if st
            .last_keyframe_ms
            .is_none_or(|t| now - t > self.frame_interval_ms)
        {
            // A publisher with a long key-frame interval (a browser) is asked.
            want_keyframe = true;
        }
        if want_keyframe
            && st
                .last_keyframe_request_ms
                .is_none_or(|t| now - t >= KEYFRAME_REQUEST_GAP_MS)
        {
            st.last_keyframe_request_ms = Some(now);
            if let Some(p) = &st.publisher {
                p.receiver.request_keyframe();
            }
        }
    }

    fn on_failure(&self, reason: String) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::info!(%reason, "publisher connection ended");
        }
    }
}

impl IngestSink {
    fn decode(&self, feed: &Feed, st: &mut FeedState, frame: &EncodedFrame, _now: UnixMillis) {
        let usable = matches!(&st.decoder, Some((c, d)) if *c == frame.codec && !d.is_broken());
        if !usable {
            let latest = Arc::clone(&feed.latest);
            let first = Arc::clone(&feed.first_frame);
            let clock = Arc::clone(&self.clock);
            let events = self.events.clone();
            let session_id = feed.session_id;
            let made = Decoder::new(
                frame.codec,
                DecodeTo::Jpeg {
                    quality: self.jpeg_quality,
                },
                move |picture| {
                    let decoded_ms = clock.now_ms();
                    *lock(&latest) = Some(Frame {
                        jpeg: Arc::new(picture.data),
                        width: picture.width,
                        height: picture.height,
                        decoded_ms,
                    });
                    if !first.swap(true, Ordering::Relaxed) {
                        send(
                            &events,
                            MediaEvent::FirstFrame {
                                session_id,
                                at_ms: decoded_ms,
                            },
                        );
                    }
                },
            );
            match made {
                Ok(decoder) => {
                    if let Some(old) = st.decoder.replace((frame.codec, decoder)) {
                        dispose(old);
                    }
                }
                Err(err) => {
                    tracing::error!(session = %feed.session_id, %err, "no frame decoder");
                    return;
                }
            }
        }
        if let Some((_, decoder)) = &st.decoder
            && let Err(err) = decoder.push(&frame.buffer)
        {
            tracing::debug!(session = %feed.session_id, %err, "key frame not decoded");
        }
    }
}

impl Shared {
    fn feed(&self, session_id: Uuid) -> Arc<Feed> {
        let mut feeds = lock(&self.feeds);
        Arc::clone(feeds.entry(session_id).or_insert_with(|| {
            Arc::new(Feed {
                session_id,
                state: Mutex::new(FeedState {
                    flow: FlowMonitor::new(self.config.media_timeout_ms),
                    publisher: None,
                    generation: 0,
                    codec: None,
                    decoder: None,
                    last_decode_ms: None,
                    last_keyframe_ms: None,
                    last_keyframe_request_ms: None,
                    viewers: Vec::new(),
                }),
                latest: Arc::new(Mutex::new(None)),
                first_frame: Arc::new(AtomicBool::new(false)),
            })
        }))
    }

    /// One pass of the monitor: lost media, dead publishers and viewers.
    fn check(&self, now: UnixMillis) {
        let feeds: Vec<Arc<Feed>> = lock(&self.feeds).values().cloned().collect();
        for feed in feeds {
            let mut st = lock(&feed.state);
            if let Some(Flow::Lost { last_media_ms }) = st.flow.poll(now) {
                tracing::info!(session = %feed.session_id, "media lost");
                send(
                    &self.events,
                    MediaEvent::MediaLost {
                        session_id: feed.session_id,
                        at_ms: last_media_ms,
                    },
                );
            }
            let publisher_failed = st
                .publisher
                .as_ref()
                .is_some_and(|p| p.sink.failed.load(Ordering::Relaxed));
            let dead_publisher = if publisher_failed {
                st.publisher.take()
            } else {
                None
            };
            let (gone, kept): (Vec<_>, Vec<_>) =
                st.viewers.drain(..).partition(|(_, v)| v.is_failed());
            st.viewers = kept;
            drop(st);
            if dead_publisher.is_some() || !gone.is_empty() {
                dispose((dead_publisher, gone));
            }
        }
    }

    async fn publish(&self, session_id: Uuid, offer: &str) -> Result<Negotiated, MediaError> {
        let feed = self.feed(session_id);
        let generation = {
            let mut st = lock(&feed.state);
            st.generation += 1;
            st.generation
        };
        let sink = Arc::new(IngestSink {
            feed: Arc::downgrade(&feed),
            generation,
            clock: Arc::clone(&self.clock),
            events: self.events.clone(),
            frame_interval_ms: self.config.frame_interval_ms,
            jpeg_quality: self.config.jpeg_quality,
            failed: AtomicBool::new(false),
        });
        let (receiver, answer) = Receiver::answer(offer, &self.config.receiver, sink.clone())
            .await
            .map_err(from_media)?;
        let resource = random_resource();
        let mut st = lock(&feed.state);
        if st.generation != generation {
            drop(st);
            dispose(receiver);
            return Err(MediaError::Refused(
                "a newer publisher took this session's WHIP endpoint".into(),
            ));
        }
        let replaced = st.publisher.replace(Publisher {
            resource: resource.clone(),
            receiver,
            sink,
        });
        st.last_keyframe_request_ms = None;
        drop(st);
        if replaced.is_some() {
            tracing::info!(session = %session_id, "a new publisher replaces the previous one");
            dispose(replaced);
        }
        Ok(Negotiated { answer, resource })
    }

    async fn view(&self, session_id: Uuid, offer: &str) -> Result<Negotiated, MediaError> {
        let feed = lock(&self.feeds)
            .get(&session_id)
            .cloned()
            .ok_or(MediaError::NoPublisher)?;
        let codec = {
            let st = lock(&feed.state);
            if st.viewers.len() >= self.config.max_viewers {
                return Err(MediaError::TooManyViewers(st.viewers.len()));
            }
            st.codec.ok_or(MediaError::NoPublisher)?
        };
        let (viewer, answer) = Viewer::answer(offer, codec, self.config.ice())
            .await
            .map_err(from_media)?;
        let resource = random_resource();
        lock(&feed.state).viewers.push((resource.clone(), viewer));
        Ok(Negotiated { answer, resource })
    }

    fn hang_up(
        &self,
        endpoint: Endpoint,
        session_id: Uuid,
        resource: &str,
    ) -> Result<(), MediaError> {
        let feed = lock(&self.feeds)
            .get(&session_id)
            .cloned()
            .ok_or(MediaError::NoResource)?;
        let mut st = lock(&feed.state);
        match endpoint {
            Endpoint::Whip => {
                if st.publisher.as_ref().is_none_or(|p| p.resource != resource) {
                    return Err(MediaError::NoResource);
                }
                let publisher = st.publisher.take();
                drop(st);
                dispose(publisher);
            }
            Endpoint::Whep => {
                let at = st
                    .viewers
                    .iter()
                    .position(|(r, _)| r == resource)
                    .ok_or(MediaError::NoResource)?;
                let viewer = st.viewers.remove(at);
                drop(st);
                dispose(viewer);
            }
        }
        Ok(())
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
        lx_media::init().map_err(|e| MediaError::Unavailable(e.to_string()))?;
        for element in ["webrtcbin", "nicesrc", "rtpvp8depay", "vp8dec", "jpegenc"] {
            if !lx_media::has_element(element) {
                return Err(MediaError::Unavailable(format!(
                    "the GStreamer element {element} is missing; install gstreamer1.0-plugins-good, \
                     -bad, gstreamer1.0-nice and gstreamer1.0-libav (cargo xtask demo does)"
                )));
            }
        }
        let shared = Arc::new(Shared {
            config,
            tokens: TokenKey::derive(secret),
            clock,
            events,
            feeds: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&shared);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MONITOR_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(shared) = weak.upgrade() else { break };
                shared.check(shared.clock.now_ms());
            }
        });
        Ok(Self { shared })
    }

    fn url(&self, endpoint: Endpoint, session_id: Uuid) -> String {
        format!(
            "{}/media/{}/{}",
            self.shared.config.public_url.trim_end_matches('/'),
            endpoint.path(),
            self.shared.tokens.token(endpoint, session_id)
        )
    }

    /// Publishers and viewers connected now, for tests and status.
    pub fn peers(&self, session_id: Uuid) -> (bool, usize) {
        lock(&self.shared.feeds)
            .get(&session_id)
            .map_or((false, 0), |feed| {
                let st = lock(&feed.state);
                (st.publisher.is_some(), st.viewers.len())
            })
    }
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
        let feed = lock(&self.shared.feeds).remove(&session_id);
        if let Some(feed) = feed {
            let mut st = lock(&feed.state);
            let parts = (
                st.publisher.take(),
                std::mem::take(&mut st.viewers),
                st.decoder.take(),
            );
            st.generation += 1;
            drop(st);
            dispose(parts);
        }
        Ok(())
    }

    fn latest_frame(&self, session_id: Uuid) -> Option<Frame> {
        let feed = lock(&self.shared.feeds).get(&session_id).cloned()?;
        lock(&feed.latest).clone()
    }

    fn session_of_token(&self, endpoint: Endpoint, token: &str) -> Option<Uuid> {
        self.shared.tokens.verify(endpoint, token)
    }

    async fn negotiate(
        &self,
        endpoint: Endpoint,
        session_id: Uuid,
        offer: &str,
    ) -> Result<Negotiated, MediaError> {
        match endpoint {
            Endpoint::Whip => self.shared.publish(session_id, offer).await,
            Endpoint::Whep => self.shared.view(session_id, offer).await,
        }
    }

    async fn hang_up(
        &self,
        endpoint: Endpoint,
        session_id: Uuid,
        resource: &str,
    ) -> Result<(), MediaError> {
        self.shared.hang_up(endpoint, session_id, resource)
    }
}
