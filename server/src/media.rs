//! The media plane behind a trait: a backend provisions the tokened WHIP and
//! WHEP URLs of a session, answers what arrives at them (when it serves them
//! itself), keeps the latest decoded frame, tears down, and reports media
//! events on the channel it was built with: the first decoded frame turns a
//! session LIVE, and media lost and resumed bound its NETWORK_ERROR windows.

#[cfg(feature = "builtin-media")]
pub mod builtin;
#[cfg(feature = "builtin-media")]
pub mod external;
#[cfg(feature = "builtin-media")]
mod feed;
pub mod flow;
pub mod token;

use std::sync::Arc;

use async_trait::async_trait;
use lx_protocol::time::UnixMillis;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::MediaEndpoints;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("media backend unavailable: {0}")]
    Unavailable(String),
    /// This backend serves no WHIP or WHEP endpoints of its own.
    #[error("this media backend does not serve {0} endpoints")]
    NotServed(&'static str),
    /// The offer cannot be taken (bad SDP, no codec in common).
    #[error("{0}")]
    Refused(String),
    /// A viewer came before any publisher: the codec is not known yet.
    #[error("the session has no publisher yet")]
    NoPublisher,
    #[error("the session already has {0} viewers")]
    TooManyViewers(usize),
    #[error("no such WHIP or WHEP resource")]
    NoResource,
    /// A trickle `PATCH` names an ICE session that is not the resource's
    /// now (its `If-Match` is not the current `ETag`).
    #[error(
        "the resource's ICE session is {current}, not {given}: PATCH with the latest ETag, or If-Match: \"*\" to restart ICE"
    )]
    StaleIceSession { given: String, current: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    FirstFrame {
        session_id: Uuid,
        at_ms: UnixMillis,
    },
    /// No media since `at_ms` (the last seen), for longer than the timeout.
    MediaLost {
        session_id: Uuid,
        at_ms: UnixMillis,
    },
    /// Media flows again from `at_ms`.
    MediaResumed {
        session_id: Uuid,
        at_ms: UnixMillis,
    },
}

/// The latest decoded picture of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub jpeg: Arc<Vec<u8>>,
    pub width: u32,
    pub height: u32,
    pub decoded_ms: UnixMillis,
}

/// The two kinds of tokened endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Whip,
    Whep,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Whip => "whip",
            Endpoint::Whep => "whep",
        }
    }
}

/// A live input made for another server (a WHIP/WHEP edge's provisioning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveInput {
    pub uid: Uuid,
    pub whip_url: String,
    pub whep_url: String,
}

/// An answered offer: the SDP answer, the resource to DELETE later and the
/// entity tag of its ICE session (what a trickle `PATCH` names in
/// `If-Match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub answer: String,
    pub resource: String,
    pub etag: Option<String>,
}

/// A trickle ICE `PATCH` to a resource (RFC 9725 §4.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IcePatch {
    /// Late candidates for the ICE session tagged `if_match`.
    Candidates {
        if_match: String,
        fragment: lx_protocol::sdpfrag::SdpFrag,
    },
    /// `If-Match: "*"` with new credentials: an ICE restart.
    Restart {
        fragment: lx_protocol::sdpfrag::SdpFrag,
    },
}

/// What a `PATCH` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trickled {
    Added,
    /// ICE restarted: our fragment (new credentials and candidates) and
    /// the new ICE session's tag.
    Restarted {
        answer: String,
        etag: String,
    },
}

#[async_trait]
pub trait MediaBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn provision(&self, session_id: Uuid) -> Result<MediaEndpoints, MediaError>;
    async fn release(&self, session_id: Uuid, endpoints: &MediaEndpoints)
    -> Result<(), MediaError>;

    /// The latest decoded frame, if the session has one.
    fn latest_frame(&self, _session_id: Uuid) -> Option<Frame> {
        None
    }

    /// The session a token of one of our endpoints stands for.
    fn session_of_token(&self, _endpoint: Endpoint, _token: &str) -> Option<Uuid> {
        None
    }

    /// Answers a publisher's (WHIP) or viewer's (WHEP) offer.
    async fn negotiate(
        &self,
        endpoint: Endpoint,
        _session_id: Uuid,
        _offer: &str,
    ) -> Result<Negotiated, MediaError> {
        Err(MediaError::NotServed(endpoint.path()))
    }

    /// Ends a publisher or viewer resource.
    async fn hang_up(
        &self,
        endpoint: Endpoint,
        _session_id: Uuid,
        _resource: &str,
    ) -> Result<(), MediaError> {
        Err(MediaError::NotServed(endpoint.path()))
    }

    /// Trickle ICE and ICE restarts on a publisher or viewer resource.
    async fn trickle(
        &self,
        endpoint: Endpoint,
        _session_id: Uuid,
        _resource: &str,
        _patch: IcePatch,
    ) -> Result<Trickled, MediaError> {
        Err(MediaError::NotServed(endpoint.path()))
    }

    /// After a restart: the session carried media before it (`live`: it
    /// was LIVE or PAUSED, so silence from now on is a media gap).
    fn adopt(&self, _session_id: Uuid, _endpoints: &MediaEndpoints, _live: bool) {}

    /// The session's media move here from a replica that is gone, which
    /// last carried media at `last_media_ms`: they are lost since then, a
    /// gap that the session's next frame here closes.
    fn take_over(
        &self,
        _session_id: Uuid,
        _endpoints: &MediaEndpoints,
        _last_media_ms: UnixMillis,
    ) {
    }

    /// Edge mode: whether `id` is a live input made through
    /// [`Self::create_live_input`] rather than a session of this server.
    fn is_live_input(&self, _id: Uuid) -> bool {
        false
    }

    async fn create_live_input(&self) -> Result<LiveInput, MediaError> {
        Err(MediaError::NotServed("live input"))
    }

    async fn delete_live_input(&self, _uid: Uuid) -> Result<(), MediaError> {
        Err(MediaError::NotServed("live input"))
    }
}

/// `media.backend = "none"`: a server without a media plane. `start` fails
/// with `VIDEO_ERROR`, so no session ever claims to be LIVE without video.
#[derive(Debug, Default)]
pub struct NoMedia;

#[async_trait]
impl MediaBackend for NoMedia {
    fn name(&self) -> &'static str {
        "none"
    }

    async fn provision(&self, _session_id: Uuid) -> Result<MediaEndpoints, MediaError> {
        Err(MediaError::Unavailable(
            "this server has no media backend (media.backend = \"none\")".into(),
        ))
    }

    async fn release(&self, _: Uuid, _: &MediaEndpoints) -> Result<(), MediaError> {
        Ok(())
    }
}

pub fn channel() -> (mpsc::Sender<MediaEvent>, mpsc::Receiver<MediaEvent>) {
    mpsc::channel(1024)
}

/// A test double: hands out URLs, records what was provisioned and
/// released, and lets a test say when a first frame was "decoded" and when
/// media was lost and resumed.
#[cfg(any(test, feature = "test-support"))]
#[derive(Debug)]
pub struct ScriptedMedia {
    events: mpsc::Sender<MediaEvent>,
    pub provisioned: std::sync::Mutex<Vec<Uuid>>,
    pub released: std::sync::Mutex<Vec<Uuid>>,
}

#[cfg(any(test, feature = "test-support"))]
impl ScriptedMedia {
    pub fn new(events: mpsc::Sender<MediaEvent>) -> Self {
        Self {
            events,
            provisioned: Default::default(),
            released: Default::default(),
        }
    }

    pub async fn first_frame(&self, session_id: Uuid, at_ms: UnixMillis) {
        let _ = self
            .events
            .send(MediaEvent::FirstFrame { session_id, at_ms })
            .await;
    }

    pub async fn media_lost(&self, session_id: Uuid, at_ms: UnixMillis) {
        let _ = self
            .events
            .send(MediaEvent::MediaLost { session_id, at_ms })
            .await;
    }

    pub async fn media_resumed(&self, session_id: Uuid, at_ms: UnixMillis) {
        let _ = self
            .events
            .send(MediaEvent::MediaResumed { session_id, at_ms })
            .await;
    }
}

#[cfg(any(test, feature = "test-support"))]
#[async_trait]
impl MediaBackend for ScriptedMedia {
    fn name(&self) -> &'static str {
        "scripted"
    }

    async fn provision(&self, session_id: Uuid) -> Result<MediaEndpoints, MediaError> {
        if let Ok(mut p) = self.provisioned.lock() {
            p.push(session_id);
        }
        Ok(MediaEndpoints {
            backend_ref: format!("scripted-{}", session_id.simple()),
            whip_url: format!("http://media.invalid/whip/{}", session_id.simple()),
            whep_url: format!("http://media.invalid/whep/{}", session_id.simple()),
        })
    }

    async fn release(&self, session_id: Uuid, _: &MediaEndpoints) -> Result<(), MediaError> {
        if let Ok(mut r) = self.released.lock() {
            r.push(session_id);
        }
        Ok(())
    }
}

/// The origin (`scheme://host:port`) of a URL: how the replica carrying a
/// session's media is named (the built-in plane's URLs start with its
/// replica's `http.public_url`).
pub fn origin(url: &str) -> Option<String> {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
}
