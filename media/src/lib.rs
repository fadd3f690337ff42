//! lx's media plane over GStreamer 1.22.
//!
//! - [`publish::Publisher`]: a camera (or test pattern) encoded to VP8 or
//!   H.264 into a send-only `webrtcbin`, as the agent publishes over WHIP.
//! - [`receive::Receiver`]: a receive-only `webrtcbin` that answers a WHIP
//!   offer (the server's ingest) or makes a WHEP offer (a subscriber: the
//!   external backend's frame grabber, tests and benchmarks). It hands on
//!   whole encoded frames and asks the publisher for key frames.
//! - [`decode::Decoder`]: encoded key frames to a JPEG (or raw pixels) on a
//!   pipeline of its own, so that only what the frame endpoint needs is
//!   decoded.
//! - [`viewer::Viewer`]: one WHEP viewer, its own pipeline fed with copies
//!   of the ingest's frames, so a bad viewer never stalls the ingest.
//! - [`trickle`]: trickle ICE and ICE restarts on either end (RFC 9725's
//!   `PATCH` fragments). An answer carries every candidate; an offer may go
//!   out with those found so far.
//!
//! Nothing here reads a clock for a decision; callers stamp what they see.

pub mod barcode;
pub mod codec;
pub mod decode;
pub mod publish;
pub mod receive;
pub mod sdp;
pub mod testpattern;
pub mod trickle;
pub mod viewer;
mod webrtc;

use std::sync::OnceLock;

pub use codec::Codec;
pub use webrtc::{GATHER_TIMEOUT, IceConfig};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not start: {0}")]
    Init(String),
    #[error("the GStreamer element '{element}' is missing (install {package})")]
    Missing {
        element: String,
        package: &'static str,
    },
    #[error("bad SDP: {0}")]
    BadSdp(String),
    #[error(transparent)]
    Sdp(#[from] sdp::SdpError),
    #[error("WebRTC negotiation failed: {0}")]
    Negotiation(String),
    #[error("media configuration: {0}")]
    Config(String),
    #[error("media pipeline: {0}")]
    Pipeline(String),
}

impl MediaError {
    pub(crate) fn missing(element: &str, package: &'static str) -> Self {
        Self::Missing {
            element: element.to_string(),
            package,
        }
    }
}

/// Initialises GStreamer once per process; later calls return the first result.
pub fn init() -> Result<(), MediaError> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| gst::init().map_err(|e| e.to_string()))
        .clone()
        .map_err(MediaError::Init)
}

/// Makes this process's DTLS certificate now. GStreamer generates one (an
/// RSA key) when the first DTLS element is made and keeps it for the life
/// of the process: a quarter of a second spent here, ahead of time, is not
/// spent between a session's start and its first frame.
pub fn warm_up_dtls() -> Result<(), MediaError> {
    init()?;
    make("dtlsdec").map(drop)
}

/// Whether an element of that name can be made here.
pub fn has_element(name: &str) -> bool {
    init().is_ok() && gst::ElementFactory::find(name).is_some()
}

/// Which Debian package brings an element, for error messages.
pub(crate) fn package_of(element: &str) -> &'static str {
    match element {
        "webrtcbin" | "h264parse" | "openh264enc" | "openh264dec" => "gstreamer1.0-plugins-bad",
        "nicesrc" | "nicesink" => "gstreamer1.0-nice",
        "dtlsdec" | "dtlsenc" => "gstreamer1.0-plugins-bad",
        "vp8enc" | "vp8dec" | "jpegenc" | "videobalance" | "rtpvp8pay" | "rtpvp8depay"
        | "rtph264pay" | "rtph264depay" | "v4l2src" | "rtspsrc" | "v4l2h264enc" => {
            "gstreamer1.0-plugins-good"
        }
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "avdec_h264" => "gstreamer1.0-libav",
        "libcamerasrc" => "gstreamer1.0-libcamera",
        _ => "gstreamer1.0-plugins-base",
    }
}

/// An upstream request for a key frame, with the codec's headers: a
/// receiver's depayloader turns it into an RTCP PLI, a publisher's
/// payloader passes it to the encoder.
pub(crate) fn force_key_unit() -> gst::Event {
    gst::event::CustomUpstream::builder(
        gst::Structure::builder("GstForceKeyUnit")
            .field("all-headers", true)
            .build(),
    )
    .build()
}

/// Makes an element, naming the package to install when it is missing.
pub(crate) fn make(element: &str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(element)
        .build()
        .map_err(|_| MediaError::missing(element, package_of(element)))
}

/// A pipeline from a `gst-launch` description, naming a missing element.
pub(crate) fn launch(description: &str) -> Result<gst::Pipeline, MediaError> {
    use gst::prelude::*;
    let element =
        gst::parse::launch(description).map_err(|e| match e.kind::<gst::ParseError>() {
            Some(gst::ParseError::NoSuchElement) => {
                let name = e.message().split('"').nth(1).unwrap_or("?").to_string();
                let package = package_of(&name);
                MediaError::Missing {
                    element: name,
                    package,
                }
            }
            _ => MediaError::Pipeline(format!(
                "{}: {}",
                e.message(),
                lx_protocol::redact::url_credentials(description)
            )),
        })?;
    element.downcast::<gst::Pipeline>().map_err(|_| {
        MediaError::Pipeline(format!(
            "not a pipeline: {}",
            lx_protocol::redact::url_credentials(description)
        ))
    })
}

/// Turns the first error on a pipeline's bus (or the end of its stream)
/// into a call of `on_failure`, from GStreamer's thread.
pub(crate) fn watch_bus(
    pipeline: &gst::Pipeline,
    on_failure: impl Fn(String) + Send + Sync + 'static,
) {
    use gst::prelude::*;
    let Some(bus) = pipeline.bus() else { return };
    bus.set_sync_handler(move |_, message| {
        use gst::MessageView;
        match message.view() {
            MessageView::Error(err) => {
                let source = err
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                // An RTSP source's errors may quote its URL, password and all.
                let text = format!("{source}: {}", err.error());
                on_failure(lx_protocol::redact::url_credentials(&text).into_owned());
            }
            MessageView::Eos(_) => on_failure("end of stream".into()),
            _ => {}
        }
        gst::BusSyncReply::Drop
    });
}

/// Stops a pipeline; safe to call from any thread but a streaming thread of
/// that pipeline.
pub(crate) fn stop(pipeline: &gst::Pipeline) {
    use gst::prelude::*;
    if let Some(bus) = pipeline.bus() {
        bus.unset_sync_handler();
    }
    let _ = pipeline.set_state(gst::State::Null);
}
