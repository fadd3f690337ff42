//! The receiving end of a WebRTC video: a receive-only `webrtcbin` that
//! either answers a publisher's offer (the server's WHIP ingest) or makes an
//! offer to a WHEP endpoint (a subscriber). Either way it depayloads the
//! video to whole encoded frames and hands each to a [`FrameSink`]; it
//! decodes nothing itself.

use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCRTPTransceiverDirection, WebRTCSDPType};

use crate::MediaError;
use crate::codec::Codec;
use crate::sdp::{self, VideoPayload};
use crate::trickle::{Answering, Offering};
use crate::webrtc::{self, IceConfig};

/// One encoded picture (an access unit for H.264, with its parameter sets
/// before every key frame).
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    pub codec: Codec,
    pub buffer: gst::Buffer,
    pub keyframe: bool,
}

/// Where a receiver's frames go. Called on GStreamer's streaming threads:
/// return quickly and never stop the receiver from inside.
pub trait FrameSink: Send + Sync + 'static {
    fn on_frame(&self, frame: EncodedFrame);
    /// The connection or the pipeline failed; no more frames will come.
    fn on_failure(&self, reason: String);
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    pub ice: IceConfig,
    /// The codecs taken, most preferred first.
    pub codecs: Vec<Codec>,
    /// Jitter buffer, milliseconds.
    pub latency_ms: u32,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        Self {
            ice: IceConfig::default(),
            codecs: vec![Codec::Vp8, Codec::H264],
            latency_ms: 50,
        }
    }
}

#[derive(Debug)]
pub struct Receiver {
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    depayloader: Arc<Mutex<Option<gst::Element>>>,
    codecs: Vec<Codec>,
    codec: Option<Codec>,
    /// Set when this end answered (an ingest) …
    answering: Option<Answering>,
    /// … or when it offered (a subscriber).
    offering: Option<Offering>,
}

impl Receiver {
    fn build(config: &ReceiverConfig, sink: Arc<dyn FrameSink>) -> Result<Self, MediaError> {
        crate::init()?;
        let pipeline = gst::Pipeline::new();
        let webrtc = webrtc::webrtcbin("webrtc", &config.ice, config.latency_ms)?;
        pipeline
            .add(&webrtc)
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        let depayloader = Arc::new(Mutex::new(None));
        {
            let sink = Arc::clone(&sink);
            let depayloader = Arc::clone(&depayloader);
            webrtc.connect_pad_added(move |webrtc, pad| {
                if let Err(err) = link_incoming(webrtc, pad, &sink, &depayloader) {
                    sink.on_failure(err.to_string());
                }
            });
        }
        {
            let sink = Arc::clone(&sink);
            webrtc.connect_notify(Some("connection-state"), move |w, _| {
                let state = w.property::<WebRTCPeerConnectionState>("connection-state");
                if matches!(
                    state,
                    WebRTCPeerConnectionState::Failed | WebRTCPeerConnectionState::Closed
                ) {
                    sink.on_failure(format!("peer connection {state:?}"));
                }
            });
        }
        crate::watch_bus(&pipeline, move |reason| sink.on_failure(reason));
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| MediaError::Pipeline("the receiving pipeline does not start".into()))?;
        Ok(Self {
            pipeline,
            webrtc,
            depayloader,
            codecs: config.codecs.clone(),
            codec: None,
            answering: None,
            offering: None,
        })
    }

    /// Answers a publisher's offer (WHIP). The offer is narrowed to the best
    /// video payload we take; returns the receiver and the answer SDP.
    pub async fn answer(
        offer: &str,
        config: &ReceiverConfig,
        sink: Arc<dyn FrameSink>,
    ) -> Result<(Self, String), MediaError> {
        let chosen = sdp::choose_video(offer, &config.codecs)?;
        let narrowed = sdp::keep_only(offer, &chosen);
        let offer = webrtc::parse_sdp(WebRTCSDPType::Offer, &narrowed)?;
        let mut receiver = Self::build(config, sink)?;
        receiver.codec = Some(chosen.codec);
        webrtc::set_remote(&receiver.webrtc, &offer).await?;
        webrtc::create_local(&receiver.webrtc, WebRTCSDPType::Answer).await?;
        let answer = webrtc::gathered_local_sdp(&receiver.webrtc).await?;
        receiver.answering = Some(Answering::new(&receiver.webrtc, &narrowed));
        Ok((receiver, answer))
    }

    /// Makes a receive-only offer for a WHEP endpoint; follow with
    /// [`Self::accept_answer`].
    pub async fn offer(
        config: &ReceiverConfig,
        sink: Arc<dyn FrameSink>,
    ) -> Result<(Self, String), MediaError> {
        Self::offer_within(config, sink, crate::GATHER_TIMEOUT).await
    }

    /// [`Self::offer`] with the candidates found within `wait`; the later
    /// ones come from [`Self::offering_mut`] (trickle ICE).
    pub async fn offer_within(
        config: &ReceiverConfig,
        sink: Arc<dyn FrameSink>,
        wait: std::time::Duration,
    ) -> Result<(Self, String), MediaError> {
        let mut receiver = Self::build(config, sink)?;
        let caps = offer_caps(&config.codecs);
        receiver
            .webrtc
            .emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
                "add-transceiver",
                &[&WebRTCRTPTransceiverDirection::Recvonly, &caps],
            );
        let offering = Offering::watch(&receiver.webrtc);
        let offer = offering.offer(false, wait).await?;
        receiver.offering = Some(offering);
        Ok((receiver, offer))
    }

    /// Applies the WHEP endpoint's answer to our offer.
    pub async fn accept_answer(&mut self, answer: &str) -> Result<(), MediaError> {
        let VideoPayload { codec, .. } = sdp::choose_video(answer, &self.codecs)?;
        let desc = webrtc::parse_sdp(WebRTCSDPType::Answer, answer)?;
        webrtc::set_remote(&self.webrtc, &desc).await?;
        self.codec = Some(codec);
        if let Some(offering) = &self.offering {
            offering.answered(answer);
        }
        Ok(())
    }

    /// Trickle ICE of an answering receiver (an ingest).
    pub fn answering(&self) -> Option<&Answering> {
        self.answering.as_ref()
    }

    /// Trickle ICE and restarts of an offering receiver (a subscriber).
    pub fn offering_mut(&mut self) -> Option<&mut Offering> {
        self.offering.as_mut()
    }

    /// The negotiated codec.
    pub fn codec(&self) -> Option<Codec> {
        self.codec
    }

    /// Asks the publisher for a key frame (an RTCP PLI).
    pub fn request_keyframe(&self) {
        let depayloader = self.depayloader.lock().ok().and_then(|d| d.clone());
        if let Some(depayloader) = depayloader {
            depayloader.send_event(crate::force_key_unit());
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        crate::stop(&self.pipeline);
    }
}

/// The receive-only offer's codecs: each with NACK and PLI feedback.
fn offer_caps(codecs: &[Codec]) -> gst::Caps {
    let mut caps = gst::Caps::new_empty();
    let caps_mut = caps.make_mut();
    for (i, codec) in codecs.iter().enumerate() {
        let mut s = gst::Structure::builder("application/x-rtp")
            .field("media", "video")
            .field("encoding-name", codec.encoding_name())
            .field("payload", 96 + i as i32)
            .field("clock-rate", 90_000i32)
            .field("rtcp-fb-nack", true)
            .field("rtcp-fb-nack-pli", true)
            .build();
        if *codec == Codec::H264 {
            s.set("packetization-mode", "1");
            s.set("profile-level-id", "42e01f");
            s.set("level-asymmetry-allowed", "1");
        }
        caps_mut.append_structure(s);
    }
    caps
}

fn set_if_present(element: &gst::Element, property: &str, value: bool) {
    if element.find_property(property).is_some() {
        element.set_property(property, value);
    }
}

/// Links a new pad of `webrtc`: video of a codec we take to depayloader →
/// parser → appsink; anything else to a fakesink.
fn link_incoming(
    webrtc: &gst::Element,
    pad: &gst::Pad,
    sink: &Arc<dyn FrameSink>,
    depayloader_slot: &Mutex<Option<gst::Element>>,
) -> Result<(), MediaError> {
    if pad.direction() != gst::PadDirection::Src {
        return Ok(());
    }
    let pipeline = webrtc
        .parent()
        .and_then(|p| p.downcast::<gst::Pipeline>().ok())
        .ok_or_else(|| MediaError::Pipeline("webrtcbin outside a pipeline".into()))?;
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let structure = caps.structure(0);
    let media = structure
        .and_then(|s| s.get::<&str>("media").ok())
        .unwrap_or("");
    let codec = structure
        .and_then(|s| s.get::<&str>("encoding-name").ok())
        .and_then(Codec::from_encoding_name);
    let add = |elements: &[&gst::Element]| -> Result<(), MediaError> {
        pipeline
            .add_many(elements.iter().copied())
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        for e in elements {
            e.sync_state_with_parent()
                .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        }
        Ok(())
    };
    let (Some(codec), "video") = (codec, media) else {
        let discard = gst::ElementFactory::make("fakesink")
            .property("async", false)
            .property("sync", false)
            .build()
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        add(&[&discard])?;
        return pad
            .link(
                &discard
                    .static_pad("sink")
                    .ok_or_else(|| MediaError::Pipeline("fakesink pad".into()))?,
            )
            .map(|_| ())
            .map_err(|e| MediaError::Pipeline(format!("{e:?}")));
    };
    let depay = crate::make(codec.depayloader())?;
    set_if_present(&depay, "request-keyframe", true);
    set_if_present(&depay, "wait-for-keyframe", true);
    let mut chain = vec![depay.clone()];
    if codec == Codec::H264 {
        let parse = crate::make("h264parse")?;
        parse.set_property("config-interval", 0i32);
        chain.push(parse);
    }
    let filter = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            codec
                .frame_caps()
                .parse::<gst::Caps>()
                .map_err(|e| MediaError::Pipeline(e.to_string()))?,
        )
        .build()
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    chain.push(filter);
    let appsink = gst_app::AppSink::builder()
        .sync(false)
        .max_buffers(16)
        .drop(true)
        .build();
    {
        let sink = Arc::clone(sink);
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |appsink| {
                    let sample = appsink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    if let Some(buffer) = sample.buffer_owned() {
                        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
                        sink.on_frame(EncodedFrame {
                            codec,
                            buffer,
                            keyframe,
                        });
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
    }
    chain.push(appsink.upcast());
    let refs: Vec<&gst::Element> = chain.iter().collect();
    add(&refs)?;
    gst::Element::link_many(&refs).map_err(|e| MediaError::Pipeline(e.to_string()))?;
    pad.link(
        &depay
            .static_pad("sink")
            .ok_or_else(|| MediaError::Pipeline("depayloader pad".into()))?,
    )
    .map_err(|e| MediaError::Pipeline(format!("linking the {codec} depayloader: {e:?}")))?;
    if let Ok(mut slot) = depayloader_slot.lock() {
        *slot = Some(depay);
    }
    Ok(())
}
