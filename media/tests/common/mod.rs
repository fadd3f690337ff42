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

/// videotestsrc's SMPTE pattern: the top two thirds are seven full bars,
/// white, yellow, cyan, green, magenta, red, blue. Checks the middle of each
/// bar within a tolerance that survives encoding twice.
pub(crate) fn smpte_bars_match(image: &image::RgbImage) -> Result<(), String> {
    const BARS: [(&str, [u8; 3]); 7] = [
        ("white", [255, 255, 255]),
        ("yellow", [255, 255, 0]),
        ("cyan", [0, 255, 255]),
        ("green", [0, 255, 0]),
        ("magenta", [255, 0, 255]),
        ("red", [255, 0, 0]),
        ("blue", [0, 0, 255]),
    ];
    let (w, h) = image.dimensions();
    for (i, (name, want)) in BARS.iter().enumerate() {
        let x = (w * (2 * i as u32 + 1)) / 14;
        let y = h / 3;
        let got = image.get_pixel(x, y).0;
        let off = want
            .iter()
            .zip(got)
            .map(|(a, b)| (*a as i32 - b as i32).abs())
            .max()
            .unwrap_or(0);
        if off > 40 {
            return Err(format!(
                "bar {i} ({name}) at ({x},{y}) is {got:?}, want about {want:?}"
            ));
        }
    }
    Ok(())
}
