//! The publisher the media benchmarks run, as the agent runs it: VP8
//! 640x480 at 30 fps from a test pattern, ICE on 127.0.0.1; and the
//! percentile their figures are read with.

// Each benchmark uses a different part.
#![allow(dead_code)]

use lx_media::publish::{PublisherConfig, VideoSource};
use lx_media::{Codec, IceConfig};

pub(crate) fn loopback() -> IceConfig {
    IceConfig {
        local_addresses: vec!["127.0.0.1".into()],
        ..IceConfig::default()
    }
}

/// `stamp_time`: the wall clock drawn into every frame (glass to glass).
pub(crate) fn camera(stamp_time: bool) -> PublisherConfig {
    PublisherConfig {
        source: VideoSource::TestPattern {
            pattern: "ball".into(),
        },
        codec: Codec::Vp8,
        width: 640,
        height: 480,
        fps: 30,
        bitrate_kbps: 1000,
        keyframe_interval_frames: 30,
        ice: loopback(),
        stamp_time,
        ..PublisherConfig::default()
    }
}

/// The `p`th percentile (0-100) of `sorted`, NaN when empty.
pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
