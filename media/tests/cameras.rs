//! The camera sources no machine here has: a Raspberry Pi camera module
//! (libcamera, Debian's gstreamer1.0-libcamera) and a V4L2 webcam. Checked
//! as far as GStreamer allows without the hardware: the publisher's
//! pipeline builds with the real source element; starting it without a
//! camera fails with an error instead of hanging; and the rest of the chain
//! negotiates from the very caps such a camera produces, down to H.264
//! constrained baseline at the configured size.
#![allow(clippy::unwrap_used)] // a failed check is a failed test

use lx_media::publish::{Publisher, PublisherConfig, VideoSource, pipeline_description};
use lx_media::{Codec, IceConfig};

fn config(source: VideoSource) -> PublisherConfig {
    PublisherConfig {
        source,
        codec: Codec::H264,
        width: 640,
        height: 360,
        fps: 30,
        bitrate_kbps: 800,
        keyframe_interval_frames: 30,
        ice: IceConfig {
            local_addresses: vec!["127.0.0.1".into()],
            ..IceConfig::default()
        },
        ..PublisherConfig::default()
    }
}

/// Runs the publisher's chain with `fake` in place of the camera and a
/// fakesink in place of WebRTC; returns the encoder's output caps and how
/// many buffers came out.
fn negotiate(source: VideoSource, fake: &str) -> (String, u64) {
    use gst::prelude::*;
    let description = pipeline_description(&config(source), "x264enc");
    let (_, rest) = description
        .split_once(" ! videoconvert")
        .expect("the source comes first");
    let (chain, _) = rest
        .split_once(" ! rtph264pay")
        .expect("then the payloader");
    let launch = format!("{fake} ! videoconvert{chain} ! fakesink name=sink");
    let pipeline = gst::parse::launch(&launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = count.clone();
    sink.static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the chain ends");
    if let gst::MessageView::Error(e) = message.view() {
        panic!("the chain does not negotiate from {fake}: {}", e.error());
    }
    let caps = sink
        .static_pad("sink")
        .unwrap()
        .current_caps()
        .map(|c| c.to_string())
        .unwrap_or_default();
    pipeline.set_state(gst::State::Null).unwrap();
    (caps, count.load(std::sync::atomic::Ordering::Relaxed))
}

fn assert_h264_out(caps: &str, buffers: u64, what: &str) {
    // The chain's leaky queue drops frames on a loaded machine; this is
    // about negotiating, not throughput.
    assert!(buffers >= 10, "{what}: {buffers} encoded frames");
    assert!(caps.contains("video/x-h264"), "{what}: {caps}");
    assert!(
        caps.contains("profile=(string)constrained-baseline"),
        "{what}: {caps}"
    );
    assert!(
        caps.contains("width=(int)640") && caps.contains("height=(int)360"),
        "{what}: {caps}"
    );
}

#[test]
fn a_libcamera_module_pipeline_builds_fails_clearly_without_a_camera_and_negotiates_its_nv12() {
    lx_media::init().unwrap();
    assert!(
        gst::ElementFactory::find("libcamerasrc").is_some(),
        "libcamerasrc is missing: apt-get install gstreamer1.0-libcamera"
    );
    let source = VideoSource::Libcamera { camera: None };
    let Err(err) = Publisher::start(&config(source.clone())) else {
        panic!("no camera here: the pipeline must not start");
    };
    assert!(err.to_string().contains("libcamerasrc"), "{err}");
    // What a Pi camera module gives libcamerasrc at 1080p: NV12.
    let (caps, buffers) = negotiate(
        source,
        "videotestsrc num-buffers=45 ! video/x-raw,format=NV12,width=1920,height=1080,framerate=30/1",
    );
    assert_h264_out(&caps, buffers, "libcamera NV12 1080p");
}

#[test]
fn a_v4l2_webcam_pipeline_builds_fails_clearly_without_a_device_and_negotiates_its_yuy2() {
    lx_media::init().unwrap();
    assert!(
        gst::ElementFactory::find("v4l2src").is_some(),
        "v4l2src is missing"
    );
    let source = VideoSource::V4l2 {
        device: "/dev/video-not-here".into(),
    };
    let failed = match Publisher::start(&config(source.clone())) {
        Err(e) => e.to_string(),
        Ok(p) => {
            // v4l2src may only fail once it runs: the failure is reported.
            let mut failures = p.failures();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Some(reason) = failures.borrow_and_update().clone() {
                    break reason;
                }
                assert!(std::time::Instant::now() < deadline, "no failure reported");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    };
    assert!(!failed.is_empty());
    // A UVC webcam's raw mode: YUY2 at 640x480.
    let (caps, buffers) = negotiate(
        source,
        "videotestsrc num-buffers=45 ! video/x-raw,format=YUY2,width=640,height=480,framerate=30/1",
    );
    assert_h264_out(&caps, buffers, "v4l2 YUY2 480p");
}
