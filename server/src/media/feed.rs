//! One session's media as the server sees it, whatever carries it: the
//! source of its frames (a WHIP publisher for the built-in backend, a WHEP
//! subscription to the edge for the external one), the flow monitor, the
//! key-frame decoder that keeps the latest JPEG about once per
//! `frame_interval`, and the WHEP viewers fed with copies of the frames.
//!
//! Everything GStreamer's streaming threads touch is behind one short lock;
//! pipelines are stopped off the async workers ([`dispose`]) and never from
//! their own threads.
//!
//! Viewers are bounded: a slot is reserved before an offer is negotiated
//! (so concurrent offers cannot overshoot the cap), and a viewer whose ICE
//! has not connected within the connect timeout is dropped. Media events are
//! never lost: what the bounded channel cannot take now waits in the feed's
//! [`Outbox`], in order, for the monitor's next pass.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use lx_media::Codec;
use lx_media::decode::{DecodeTo, Decoder};
use lx_media::receive::{EncodedFrame, FrameSink, Receiver};
use lx_media::trickle::Answering;
use lx_media::viewer::Viewer;
use lx_protocol::time::UnixMillis;
use rand::RngCore;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use uuid::Uuid;

use super::flow::{Flow, FlowMonitor};
use super::{Endpoint, Frame, MediaError, MediaEvent};
use crate::clock::Clock;

/// At most one key-frame request per this long.
const KEYFRAME_REQUEST_GAP_MS: i64 = 500;

#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedSettings {
    /// A JPEG about this often, from the key frame nearest to it.
    pub(crate) frame_interval_ms: i64,
    pub(crate) jpeg_quality: u8,
    /// No media for longer than this opens a NETWORK_ERROR window.
    pub(crate) media_timeout_ms: i64,
    /// A viewer not ICE-connected this long after its answer is dropped.
    pub(crate) viewer_connect_timeout_ms: i64,
}

/// What the feed's frames come from.
pub(crate) struct Source {
    /// The WHIP resource, for a publisher.
    pub(crate) resource: String,
    pub(crate) receiver: Receiver,
    sink: Arc<FeedSink>,
    /// The entity tag of its ICE session.
    ice_tag: String,
}

impl Source {
    pub(crate) fn failed(&self) -> bool {
        self.sink.failed.load(Ordering::Relaxed)
    }
}

pub(crate) struct Feed {
    pub(crate) session_id: Uuid,
    settings: FeedSettings,
    clock: Arc<dyn Clock>,
    outbox: Outbox,
    state: Mutex<FeedState>,
    /// Written by the decoder's thread, read by the frame endpoint.
    latest: Arc<Mutex<Option<Frame>>>,
    first_frame: Arc<AtomicBool>,
}

struct FeedState {
    flow: FlowMonitor,
    source: Option<Source>,
    /// Counts sources; frames of a replaced one are ignored.
    generation: u64,
    codec: Option<Codec>,
    decoder: Option<(Codec, Decoder)>,
    last_decode_ms: Option<UnixMillis>,
    last_keyframe_ms: Option<UnixMillis>,
    last_keyframe_request_ms: Option<UnixMillis>,
    viewers: Vec<Watcher>,
    /// Slots promised to offers being negotiated.
    reserved: usize,
}

/// A WHEP viewer of the feed.
struct Watcher {
    resource: String,
    viewer: Viewer,
    answered_ms: UnixMillis,
    ice_tag: String,
}

/// A viewer slot held while an offer is negotiated; given back when dropped
/// unless [`ViewerSlot::fill`] took it.
pub(crate) struct ViewerSlot {
    feed: Arc<Feed>,
    held: bool,
}

impl ViewerSlot {
    /// The negotiated viewer takes the slot.
    pub(crate) fn fill(mut self, resource: String, viewer: Viewer, ice_tag: String) {
        let answered_ms = self.feed.clock.now_ms();
        let mut st = lock(&self.feed.state);
        st.reserved -= 1;
        st.viewers.push(Watcher {
            resource,
            viewer,
            answered_ms,
            ice_tag,
        });
        self.held = false;
    }
}

impl Drop for ViewerSlot {
    fn drop(&mut self) {
        if self.held {
            lock(&self.feed.state).reserved -= 1;
        }
    }
}

/// Media events on their way to the app. The channel is bounded; an event
/// it cannot take now waits here, behind any earlier one, and goes at the
/// monitor's next [`Outbox::flush`]: late, never dropped. A feed makes a
/// handful of events in its life (one first frame, a loss and a resume per
/// gap), so what waits stays small.
#[derive(Clone)]
pub(crate) struct Outbox {
    events: mpsc::Sender<MediaEvent>,
    waiting: Arc<Mutex<VecDeque<MediaEvent>>>,
}

impl Outbox {
    pub(crate) fn new(events: mpsc::Sender<MediaEvent>) -> Self {
        Self {
            events,
            waiting: Arc::default(),
        }
    }

    pub(crate) fn send(&self, event: MediaEvent) {
        let mut waiting = lock(&self.waiting);
        if waiting.is_empty() {
            match self.events.try_send(event) {
                Ok(()) | Err(TrySendError::Closed(_)) => return,
                Err(TrySendError::Full(_)) => {
                    tracing::warn!(
                        ?event,
                        "media event queue full: the event waits for the next pass"
                    );
                }
            }
        }
        waiting.push_back(event);
    }

    /// Sends what waits, in order, as far as the channel takes it.
    pub(crate) fn flush(&self) {
        let mut waiting = lock(&self.waiting);
        while let Some(event) = waiting.front().copied() {
            match self.events.try_send(event) {
                Ok(()) => {
                    waiting.pop_front();
                }
                Err(TrySendError::Full(_)) => break,
                Err(TrySendError::Closed(_)) => {
                    waiting.clear();
                    break;
                }
            }
        }
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        lock(&self.waiting).len()
    }
}

/// Hands one source's frames to its feed. It holds the feed weakly: the
/// feed owns the pipeline that owns this sink.
pub(crate) struct FeedSink {
    feed: Weak<Feed>,
    generation: u64,
    failed: AtomicBool,
}

pub(crate) fn random_resource() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic on a streaming thread must not take the feed down with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stops pipelines off the async workers (setting a pipeline to NULL waits
/// for its threads).
pub(crate) fn dispose<T: Send + 'static>(things: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn_blocking(move || drop(things));
        }
        Err(_) => drop(things),
    }
}

pub(crate) fn from_media(err: lx_media::MediaError) -> MediaError {
    match err {
        lx_media::MediaError::Sdp(e) => MediaError::Refused(e.to_string()),
        lx_media::MediaError::BadSdp(e) => MediaError::Refused(format!("bad SDP: {e}")),
        other => MediaError::Unavailable(other.to_string()),
    }
}

impl FrameSink for FeedSink {
    fn on_frame(&self, frame: EncodedFrame) {
        if let Some(feed) = self.feed.upgrade() {
            feed.on_frame(self.generation, &frame);
        }
    }

    fn on_failure(&self, reason: String) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::info!(%reason, "media source ended");
        }
    }
}

impl Feed {
    pub(crate) fn new(
        session_id: Uuid,
        settings: FeedSettings,
        clock: Arc<dyn Clock>,
        events: mpsc::Sender<MediaEvent>,
    ) -> Arc<Self> {
        Arc::new(Self {
            session_id,
            settings,
            clock,
            outbox: Outbox::new(events),
            state: Mutex::new(FeedState {
                flow: FlowMonitor::new(settings.media_timeout_ms),
                source: None,
                generation: 0,
                codec: None,
                decoder: None,
                last_decode_ms: None,
                last_keyframe_ms: None,
                last_keyframe_request_ms: None,
                viewers: Vec::new(),
                reserved: 0,
            }),
            latest: Arc::new(Mutex::new(None)),
            first_frame: Arc::new(AtomicBool::new(false)),
        })
    }

    /// A sink for the next source; [`Self::install`] it once its receiver
    /// is made. A newer `sink` call supersedes this one.
    pub(crate) fn sink(self: &Arc<Self>) -> Arc<FeedSink> {
        let mut st = lock(&self.state);
        st.generation += 1;
        Arc::new(FeedSink {
            feed: Arc::downgrade(self),
            generation: st.generation,
            failed: AtomicBool::new(false),
        })
    }

    /// Makes `receiver` the source; the one it replaces is disposed of.
    /// Refused when a newer sink was handed out meanwhile.
    pub(crate) fn install(
        &self,
        sink: Arc<FeedSink>,
        receiver: Receiver,
        resource: String,
        ice_tag: String,
    ) -> Result<(), MediaError> {
        let mut st = lock(&self.state);
        if st.generation != sink.generation {
            drop(st);
            dispose(receiver);
            return Err(MediaError::Refused(
                "a newer publisher took this session's media".into(),
            ));
        }
        let replaced = st.source.replace(Source {
            resource,
            receiver,
            sink,
            ice_tag,
        });
        st.last_keyframe_request_ms = None;
        drop(st);
        if replaced.is_some() {
            tracing::info!(session = %self.session_id, "a new media source replaces the previous one");
            dispose(replaced);
        }
        Ok(())
    }

    /// Counts `now` as the last media seen: a session adopted after a
    /// restart was carrying media, and silence from here is a gap.
    pub(crate) fn assume_media_at(&self, now: UnixMillis) {
        lock(&self.state).flow.on_media(now);
    }

    /// Counts media as lost since `last_media_ms`: the session's media moved
    /// here from a replica that is gone. The next frame resumes them.
    pub(crate) fn lost_since(&self, last_media_ms: UnixMillis) {
        let mut st = lock(&self.state);
        if st.flow.is_lost() {
            return;
        }
        if let Flow::Lost { last_media_ms } = st.flow.lost_since(last_media_ms) {
            self.outbox.send(MediaEvent::MediaLost {
                session_id: self.session_id,
                at_ms: last_media_ms,
            });
        }
    }

    /// The codec flowing now, once a frame arrived.
    pub(crate) fn codec(&self) -> Option<Codec> {
        lock(&self.state).codec
    }

    pub(crate) fn has_source(&self) -> bool {
        lock(&self.state).source.is_some()
    }

    pub(crate) fn viewer_count(&self) -> usize {
        lock(&self.state).viewers.len()
    }

    /// Holds one of `max` viewer slots for an offer about to be negotiated,
    /// counting the slots other offers hold meanwhile.
    pub(crate) fn reserve_viewer(self: &Arc<Self>, max: usize) -> Result<ViewerSlot, MediaError> {
        let mut st = lock(&self.state);
        let taken = st.viewers.len() + st.reserved;
        if taken >= max {
            return Err(MediaError::TooManyViewers(taken));
        }
        st.reserved += 1;
        Ok(ViewerSlot {
            feed: Arc::clone(self),
            held: true,
        })
    }

    /// The ICE end of a resource (the source's for WHIP, a viewer's for
    /// WHEP) and its ICE session's tag.
    pub(crate) fn ice_of(
        &self,
        endpoint: Endpoint,
        resource: &str,
    ) -> Result<(Answering, String), MediaError> {
        let st = lock(&self.state);
        let found = match endpoint {
            Endpoint::Whip => st
                .source
                .as_ref()
                .filter(|s| s.resource == resource)
                .and_then(|s| Some((s.receiver.answering()?.clone(), s.ice_tag.clone()))),
            Endpoint::Whep => st
                .viewers
                .iter()
                .find(|w| w.resource == resource)
                .map(|w| (w.viewer.ice().clone(), w.ice_tag.clone())),
        };
        found.ok_or(MediaError::NoResource)
    }

    /// A resource's ICE session restarted: its new tag.
    pub(crate) fn retag(&self, endpoint: Endpoint, resource: &str, ice_tag: String) {
        let mut st = lock(&self.state);
        let tag = match endpoint {
            Endpoint::Whip => st
                .source
                .as_mut()
                .filter(|s| s.resource == resource)
                .map(|s| &mut s.ice_tag),
            Endpoint::Whep => st
                .viewers
                .iter_mut()
                .find(|w| w.resource == resource)
                .map(|w| &mut w.ice_tag),
        };
        if let Some(tag) = tag {
            *tag = ice_tag;
        }
    }

    /// Ends the source with this WHIP resource.
    pub(crate) fn remove_source(&self, resource: &str) -> Result<(), MediaError> {
        let mut st = lock(&self.state);
        if st.source.as_ref().is_none_or(|s| s.resource != resource) {
            return Err(MediaError::NoResource);
        }
        let source = st.source.take();
        drop(st);
        dispose(source);
        Ok(())
    }

    pub(crate) fn remove_viewer(&self, resource: &str) -> Result<(), MediaError> {
        let mut st = lock(&self.state);
        let at = st
            .viewers
            .iter()
            .position(|w| w.resource == resource)
            .ok_or(MediaError::NoResource)?;
        let viewer = st.viewers.remove(at);
        drop(st);
        dispose(viewer);
        Ok(())
    }

    pub(crate) fn latest(&self) -> Option<Frame> {
        lock(&self.latest).clone()
    }

    /// Lost media, and dead sources and viewers, at `now`: sends what waits
    /// in the outbox first. Returns whether the source failed (and was
    /// dropped).
    pub(crate) fn check(&self, now: UnixMillis) -> bool {
        self.outbox.flush();
        let mut st = lock(&self.state);
        if let Some(Flow::Lost { last_media_ms }) = st.flow.poll(now) {
            tracing::info!(session = %self.session_id, "media lost");
            self.outbox.send(MediaEvent::MediaLost {
                session_id: self.session_id,
                at_ms: last_media_ms,
            });
        }
        let dead_source = if st.source.as_ref().is_some_and(Source::failed) {
            st.source.take()
        } else {
            None
        };
        let connect_timeout = self.settings.viewer_connect_timeout_ms;
        let (gone, kept): (Vec<_>, Vec<_>) = st.viewers.drain(..).partition(|w| {
            w.viewer.is_failed()
                || (!w.viewer.is_connected() && now - w.answered_ms > connect_timeout)
        });
        st.viewers = kept;
        if !gone.is_empty() {
            tracing::info!(session = %self.session_id, viewers = gone.len(), "viewers failed or never connected: dropped");
        }
        drop(st);
        let failed = dead_source.is_some();
        if failed || !gone.is_empty() {
            dispose((dead_source, gone));
        }
        failed
    }

    /// Stops everything; later frames are ignored.
    pub(crate) fn shut(&self) {
        let mut st = lock(&self.state);
        st.generation += 1;
        let parts = (
            st.source.take(),
            std::mem::take(&mut st.viewers),
            st.decoder.take(),
        );
        drop(st);
        dispose(parts);
    }

    fn on_frame(&self, generation: u64, frame: &EncodedFrame) {
        let now = self.clock.now_ms();
        let interval = self.settings.frame_interval_ms;
        let mut st = lock(&self.state);
        if st.generation != generation {
            return;
        }
        if let Some(Flow::Resumed { at_ms }) = st.flow.on_media(now) {
            self.outbox.send(MediaEvent::MediaResumed {
                session_id: self.session_id,
                at_ms,
            });
        }
        st.codec = Some(frame.codec);
        for w in &st.viewers {
            w.viewer.push(frame);
        }
        let mut want_keyframe = st.viewers.iter().any(|w| w.viewer.needs_keyframe());
        if frame.keyframe {
            st.last_keyframe_ms = Some(now);
            // A little early is fine: key frames come about once an interval.
            let due = st
                .last_decode_ms
                .is_none_or(|t| now - t >= interval * 3 / 4);
            if due {
                st.last_decode_ms = Some(now);
                self.decode(&mut st, frame);
            }
        } else if st.last_keyframe_ms.is_none_or(|t| now - t > interval) {
            // A publisher with a long key-frame interval (a browser) is asked.
            want_keyframe = true;
        }
        if want_keyframe
            && st
                .last_keyframe_request_ms
                .is_none_or(|t| now - t >= KEYFRAME_REQUEST_GAP_MS)
        {
            st.last_keyframe_request_ms = Some(now);
            if let Some(source) = &st.source {
                source.receiver.request_keyframe();
            }
        }
    }

    fn decode(&self, st: &mut FeedState, frame: &EncodedFrame) {
        let usable = matches!(&st.decoder, Some((c, d)) if *c == frame.codec && !d.is_broken());
        if !usable {
            let latest = Arc::clone(&self.latest);
            let first = Arc::clone(&self.first_frame);
            let clock = Arc::clone(&self.clock);
            let outbox = self.outbox.clone();
            let session_id = self.session_id;
            let made = Decoder::new(
                frame.codec,
                DecodeTo::Jpeg {
                    quality: self.settings.jpeg_quality,
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
                        outbox.send(MediaEvent::FirstFrame {
                            session_id,
                            at_ms: decoded_ms,
                        });
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
                    tracing::error!(session = %self.session_id, %err, "no frame decoder");
                    return;
                }
            }
        }
        if let Some((_, decoder)) = &st.decoder
            && let Err(err) = decoder.push(&frame.buffer)
        {
            tracing::debug!(session = %self.session_id, %err, "key frame not decoded");
        }
    }
}

/// The feeds of a backend, and the monitor that checks them.
pub(crate) struct FeedMap {
    pub(crate) settings: FeedSettings,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) events: mpsc::Sender<MediaEvent>,
    feeds: Mutex<std::collections::HashMap<Uuid, Arc<Feed>>>,
}

/// How often the monitor looks for lost media and dead peers.
const MONITOR_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);

impl FeedMap {
    /// The map, with its monitor running on the current tokio runtime until
    /// the map is dropped.
    pub(crate) fn start(
        settings: FeedSettings,
        clock: Arc<dyn Clock>,
        events: mpsc::Sender<MediaEvent>,
    ) -> Arc<Self> {
        let map = Arc::new(Self {
            settings,
            clock,
            events,
            feeds: Mutex::new(std::collections::HashMap::new()),
        });
        let weak = Arc::downgrade(&map);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MONITOR_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(map) = weak.upgrade() else { break };
                let now = map.clock.now_ms();
                for feed in map.all() {
                    feed.check(now);
                }
            }
        });
        map
    }

    /// The session's feed, made on first use.
    pub(crate) fn feed(&self, session_id: Uuid) -> Arc<Feed> {
        let mut feeds = lock(&self.feeds);
        Arc::clone(feeds.entry(session_id).or_insert_with(|| {
            Feed::new(
                session_id,
                self.settings,
                Arc::clone(&self.clock),
                self.events.clone(),
            )
        }))
    }

    pub(crate) fn get(&self, session_id: Uuid) -> Option<Arc<Feed>> {
        lock(&self.feeds).get(&session_id).cloned()
    }

    /// Removes the feed and stops everything in it.
    pub(crate) fn remove(&self, session_id: Uuid) {
        let feed = lock(&self.feeds).remove(&session_id);
        if let Some(feed) = feed {
            feed.shut();
        }
    }

    fn all(&self) -> Vec<Arc<Feed>> {
        lock(&self.feeds).values().cloned().collect()
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.feeds).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    #[tokio::test]
    async fn an_adopted_session_that_stays_silent_loses_its_media_from_the_restart() {
        let clock = ManualClock::new(1_000_000);
        let (tx, mut rx) = super::super::channel();
        let settings = FeedSettings {
            frame_interval_ms: 1000,
            jpeg_quality: 80,
            media_timeout_ms: 2000,
            viewer_connect_timeout_ms: 10_000,
        };
        let map = FeedMap::start(settings, clock.clone(), tx);
        let id = Uuid::new_v4();
        let feed = map.feed(id);
        assert!(!feed.check(1_005_000), "nothing to lose before any media");
        assert!(rx.try_recv().is_err());
        feed.assume_media_at(1_010_000);
        feed.check(1_011_000);
        assert!(rx.try_recv().is_err(), "within the timeout");
        feed.check(1_012_001);
        assert_eq!(
            rx.try_recv().ok(),
            Some(MediaEvent::MediaLost {
                session_id: id,
                at_ms: 1_010_000
            })
        );
    }

    #[tokio::test]
    async fn an_event_the_full_queue_cannot_take_waits_and_goes_in_order() {
        let (tx, mut rx) = mpsc::channel(2);
        let other = Uuid::new_v4();
        for at_ms in [1, 2] {
            tx.try_send(MediaEvent::MediaLost {
                session_id: other,
                at_ms,
            })
            .unwrap();
        }
        let outbox = Outbox::new(tx);
        let id = Uuid::new_v4();
        let first = MediaEvent::FirstFrame {
            session_id: id,
            at_ms: 10,
        };
        let lost = MediaEvent::MediaLost {
            session_id: id,
            at_ms: 20,
        };
        outbox.send(first);
        outbox.send(lost);
        assert_eq!(outbox.waiting(), 2, "the queue is full: both wait");
        outbox.flush();
        assert_eq!(outbox.waiting(), 2, "still full");
        rx.recv().await.unwrap();
        outbox.flush();
        assert_eq!(outbox.waiting(), 1, "one slot, the earlier event");
        rx.recv().await.unwrap();
        assert_eq!(rx.recv().await, Some(first));
        outbox.flush();
        assert_eq!(rx.recv().await, Some(lost));
        assert_eq!(outbox.waiting(), 0);
        let resumed = MediaEvent::MediaResumed {
            session_id: id,
            at_ms: 30,
        };
        outbox.send(resumed);
        assert_eq!(
            rx.try_recv().ok(),
            Some(resumed),
            "nothing waits: straight through"
        );
    }
}
