//! One WHEP viewer: its own pipeline (appsrc → payloader → send-only
//! `webrtcbin`) fed with the ingest's encoded frames. The appsrc never
//! blocks and drops the oldest frames when full, so a viewer that stalls or
//! vanishes costs the ingest nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;
use gst_webrtc::{
    WebRTCICEConnectionState, WebRTCPeerConnectionState, WebRTCRTPTransceiverDirection,
    WebRTCSDPType,
};

use crate::MediaError;
use crate::codec::Codec;
use crate::receive::EncodedFrame;
use crate::sdp;
use crate::trickle::Answering;
use crate::webrtc::{self, IceConfig};

/// How much a slow viewer may queue before its oldest frames go.
const QUEUE_BYTES: u64 = 4_000_000;

#[derive(Debug)]
pub struct Viewer {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    codec: Codec,
    started: AtomicBool,
    failed: Arc<AtomicBool>,
    /// ICE found a working pair: the viewer is really there.
    connected: Arc<AtomicBool>,
    ice: Answering,
}

impl Viewer {
    /// Answers a WHEP offer with `codec`, the codec the ingest carries.
    pub async fn answer(
        offer: &str,
        codec: Codec,
        ice: &IceConfig,
    ) -> Result<(Self, String), MediaError> {
        crate::init()?;
        let chosen = sdp::choose_video(offer, &[codec])?;
        let narrowed = sdp::keep_only(offer, &chosen);
        let offer = webrtc::parse_sdp(WebRTCSDPType::Offer, &narrowed)?;
        let payloader = match codec {
            Codec::Vp8 => "rtpvp8pay picture-id-mode=15-bit mtu=1200",
            // The ingest's access units carry SPS and PPS before each IDR.
            Codec::H264 => "rtph264pay config-interval=0 aggregate-mode=zero-latency mtu=1200",
        };
        let pt = chosen.payload_type;
        let description = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true block=false leaky-type=downstream \
             max-bytes={QUEUE_BYTES} caps=\"{caps}\" ! {payloader} pt={pt} \
             ! application/x-rtp,media=video,encoding-name={name},payload={pt},clock-rate=90000 \
             ! webrtcbin name=webrtc",
            caps = codec.frame_caps(),
            name = codec.encoding_name(),
        );
        let pipeline = crate::launch(&description)?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| MediaError::Pipeline("viewer without appsrc".into()))?;
        let webrtc = pipeline
            .by_name("webrtc")
            .ok_or_else(|| MediaError::Pipeline("viewer without webrtcbin".into()))?;
        webrtc::configure(&webrtc, ice, 50)?;
        if let Some(pad) = webrtc.static_pad("sink_0") {
            let transceiver = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
            transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
        }
        let failed = Arc::new(AtomicBool::new(false));
        {
            let failed = Arc::clone(&failed);
            crate::watch_bus(&pipeline, move |reason| {
                tracing::debug!(%reason, "viewer pipeline failed");
                failed.store(true, Ordering::Relaxed);
            });
        }
        {
            let failed = Arc::clone(&failed);
            webrtc.connect_notify(Some("connection-state"), move |w, _| {
                let state = w.property::<WebRTCPeerConnectionState>("connection-state");
                if matches!(
                    state,
                    WebRTCPeerConnectionState::Failed
                        | WebRTCPeerConnectionState::Closed
                        | WebRTCPeerConnectionState::Disconnected
                ) {
                    failed.store(true, Ordering::Relaxed);
                }
            });
        }
        let connected = Arc::new(AtomicBool::new(false));
        {
            let connected = Arc::clone(&connected);
            webrtc.connect_notify(Some("ice-connection-state"), move |w, _| {
                let state = w.property::<WebRTCICEConnectionState>("ice-connection-state");
                if matches!(
                    state,
                    WebRTCICEConnectionState::Connected | WebRTCICEConnectionState::Completed
                ) {
                    connected.store(true, Ordering::Relaxed);
                }
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| MediaError::Pipeline("the viewer pipeline does not start".into()))?;
        let viewer = Self {
            pipeline,
            appsrc,
            codec,
            started: AtomicBool::new(false),
            failed,
            connected,
            ice: Answering::new(&webrtc, &narrowed),
        };
        webrtc::set_remote(&webrtc, &offer).await?;
        webrtc::create_local(&webrtc, WebRTCSDPType::Answer).await?;
        let answer = webrtc::gathered_local_sdp(&webrtc).await?;
        Ok((viewer, answer))
    }

    /// Trickle ICE and restarts of this viewer's connection.
    pub fn ice(&self) -> &Answering {
        &self.ice
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Whether it still waits for a key frame to start from.
    pub fn needs_keyframe(&self) -> bool {
        !self.started.load(Ordering::Relaxed)
    }

    /// Hands the viewer a frame, never blocking. Until the first key frame
    /// nothing is sent: a decoder cannot start on a delta frame.
    pub fn push(&self, frame: &EncodedFrame) {
        if self.is_failed() || frame.codec != self.codec {
            return;
        }
        if !self.started.load(Ordering::Relaxed) {
            if !frame.keyframe {
                return;
            }
            self.started.store(true, Ordering::Relaxed);
        }
        let mut buffer = frame.buffer.copy();
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::NONE);
            b.set_dts(gst::ClockTime::NONE);
        }
        if self.appsrc.push_buffer(buffer).is_err() {
            self.failed.store(true, Ordering::Relaxed);
        }
    }

    /// The connection or the pipeline failed: drop this viewer.
    pub fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// ICE connected at least once. A viewer that never gets here (an
    /// offer without reachable candidates) only holds a slot.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        crate::stop(&self.pipeline);
    }
}
