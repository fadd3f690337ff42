//! The media plane behind a trait: a backend provisions the tokened WHIP and
//! WHEP URLs of a session, tears them down, and reports media events (the
//! first decoded frame turns a session LIVE) on the channel it was built with.

use async_trait::async_trait;
use lx_protocol::time::UnixMillis;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::store::MediaEndpoints;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("media backend unavailable: {0}")]
    Unavailable(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    FirstFrame { session_id: Uuid, at_ms: UnixMillis },
}

#[async_trait]
pub trait MediaBackend: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn provision(&self, session_id: Uuid) -> Result<MediaEndpoints, MediaError>;
    async fn release(&self, session_id: Uuid, endpoints: &MediaEndpoints)
    -> Result<(), MediaError>;
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
/// released, and lets a test say when a first frame was "decoded".
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
