//! Helpers of the media integration tests.
#![allow(clippy::unwrap_used)] // test helpers: a poisoned lock is a failed test

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lx_media::publish::{PublisherConfig, VideoSource};
use lx_media::receive::{EncodedFrame, FrameSink};
use lx_media::viewer::Viewer;
use lx_media::{Codec, IceConfig};

pub(crate) fn loopback() -> IceConfig {
    IceConfig {
        local_addresses: vec!["127.0.0.1".into()],
        ..IceConfig::default()
    }
}

pub(crate) fn publisher_config(codec: Codec) -> PublisherConfig {
    PublisherConfig {
        source: VideoSource::TestPattern {
            pattern: "smpte".into(),
        },
        codec,
        width: 320,
        height: 240,
        fps: 30,
        bitrate_kbps: 800,
        keyframe_interval_frames: 30,
        ice: loopback(),
        ..PublisherConfig::default()
    }
}

/// Polls `check` every 20 ms until it answers or `limit` passes.
pub(crate) async fn wait_for<T>(
    limit: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A frame sink that records what arrived and may forward it to a viewer.
#[derive(Default)]
pub(crate) struct Frames {
    count: Mutex<usize>,
    keyframe: Mutex<Option<EncodedFrame>>,
    failure: Mutex<Option<String>>,
    forward: Mutex<Option<Arc<Viewer>>>,
}

impl Frames {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub(crate) fn count(&self) -> usize {
        *self.count.lock().unwrap()
    }

    pub(crate) fn forward_to(&self, viewer: Arc<Viewer>) {
        *self.forward.lock().unwrap() = Some(viewer);
    }

    pub(crate) async fn wait_keyframe(&self, limit: Duration) -> Option<EncodedFrame> {
        wait_for(limit, || self.keyframe.lock().unwrap().clone()).await
    }
}

impl FrameSink for Frames {
    fn on_frame(&self, frame: EncodedFrame) {
        *self.count.lock().unwrap() += 1;
        if let Some(v) = self.forward.lock().unwrap().as_ref() {
            v.push(&frame);
        }
        if frame.keyframe {
            *self.keyframe.lock().unwrap() = Some(frame);
        }
    }

    fn on_failure(&self, reason: String) {
        *self.failure.lock().unwrap() = Some(reason);
    }
}

/// The decoded picture shows the SMPTE bars of the test source.
pub(crate) fn smpte_bars_match(image: &image::RgbImage) -> Result<(), String> {
    lx_media::testpattern::smpte_bars_match(image.as_raw(), image.width(), image.height())
}
