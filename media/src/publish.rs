//! The publisher: a camera encoded into a send-only `webrtcbin`, as a WHIP
//! client publishes. Signalling is the caller's (the agent's WHIP core);
//! this makes the offer, takes the answer and says when media has failed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gst::prelude::*;
use gst_webrtc::{WebRTCPeerConnectionState, WebRTCRTPTransceiverDirection, WebRTCSDPType};
use tokio::sync::watch;

use crate::codec::Codec;
use crate::trickle::Offering;
use crate::webrtc::{self, IceConfig};
use crate::{MediaError, barcode};

/// Where the pictures come from. Its `Debug` hides an RTSP URL's password.
#[derive(Clone, PartialEq, Eq)]
pub enum VideoSource {
    /// `videotestsrc` with one of its patterns (`smpte`, `ball`, …).
    TestPattern { pattern: String },
    /// A V4L2 camera (USB webcams, the Pi's legacy camera stack).
    V4l2 { device: String },
    /// A libcamera camera (the Pi's camera modules); `None`: the first one.
    Libcamera { camera: Option<String> },
    /// An IP camera's RTSP stream, decoded and encoded again.
    Rtsp { url: String, latency_ms: u32 },
    /// Any `gst-launch` fragment that ends in raw video.
    Custom { pipeline: String },
}

impl std::fmt::Debug for VideoSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TestPattern { pattern } => write!(f, "TestPattern({pattern})"),
            Self::V4l2 { device } => write!(f, "V4l2({device})"),
            Self::Libcamera { camera } => write!(f, "Libcamera({camera:?})"),
            Self::Rtsp { url, latency_ms } => write!(
                f,
                "Rtsp({}, {latency_ms} ms)",
                lx_protocol::redact::url_credentials(url)
            ),
            Self::Custom { pipeline } => write!(
                f,
                "Custom({})",
                lx_protocol::redact::url_credentials(pipeline)
            ),
        }
    }
}

/// Which encoder to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncoderChoice {
    /// Hardware where the board has one, else software (see [`pick_encoder`]).
    Auto,
    /// This element, by name.
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    pub source: VideoSource,
    pub codec: Codec,
    pub encoder: EncoderChoice,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    /// A key frame at least every this many frames: viewers join and the
    /// server's frame decoder works on key frames.
    pub keyframe_interval_frames: u32,
    pub ice: IceConfig,
    /// Draw the wall-clock time into every frame as a [`barcode`], for
    /// glass-to-glass measurements.
    pub stamp_time: bool,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            source: VideoSource::TestPattern {
                pattern: "smpte".into(),
            },
            codec: Codec::Vp8,
            encoder: EncoderChoice::Auto,
            width: 640,
            height: 480,
            fps: 30,
            bitrate_kbps: 1000,
            keyframe_interval_frames: 30,
            ice: IceConfig::default(),
            stamp_time: false,
        }
    }
}

/// The encoders we know, hardware first, for each codec.
const ENCODERS: &[(Codec, &str)] = &[
    (Codec::H264, "v4l2h264enc"),
    (Codec::H264, "x264enc"),
    (Codec::H264, "openh264enc"),
    (Codec::Vp8, "vp8enc"),
];

/// The encoder element to use: the named one, or the first of
/// [`ENCODERS`] for the codec that this machine has.
pub fn pick_encoder(
    codec: Codec,
    choice: &EncoderChoice,
    available: impl Fn(&str) -> bool,
) -> Result<String, MediaError> {
    match choice {
        EncoderChoice::Named(name) => {
            let known = ENCODERS.iter().find(|(_, n)| n == name);
            match known {
                Some((c, _)) if *c != codec => Err(MediaError::Config(format!(
                    "encoder {name} makes {c}, but video.codec is {codec}"
                ))),
                Some(_) if !available(name) => {
                    Err(MediaError::missing(name, crate::package_of(name)))
                }
                Some(_) => Ok(name.clone()),
                None => Err(MediaError::Config(format!(
                    "unknown encoder '{name}' (known: {})",
                    ENCODERS
                        .iter()
                        .map(|(_, n)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ))),
            }
        }
        EncoderChoice::Auto => ENCODERS
            .iter()
            .filter(|(c, _)| *c == codec)
            .map(|(_, n)| *n)
            .find(|n| available(n))
            .map(str::to_string)
            .ok_or_else(|| {
                let first = ENCODERS
                    .iter()
                    .rev()
                    .find(|(c, _)| *c == codec)
                    .map_or("vp8enc", |(_, n)| n);
                MediaError::missing(first, crate::package_of(first))
            }),
    }
}

/// `gst-launch` text for the source up to raw I420 at the configured size.
fn source_description(source: &VideoSource) -> String {
    match source {
        VideoSource::TestPattern { pattern } => {
            format!("videotestsrc is-live=true pattern={pattern}")
        }
        VideoSource::V4l2 { device } => format!("v4l2src device={device}"),
        VideoSource::Libcamera { camera: Some(name) } => {
            format!("libcamerasrc camera-name=\"{name}\"")
        }
        VideoSource::Libcamera { camera: None } => "libcamerasrc".into(),
        VideoSource::Rtsp { url, latency_ms } => {
            format!("rtspsrc location=\"{url}\" latency={latency_ms} ! decodebin")
        }
        VideoSource::Custom { pipeline } => pipeline.clone(),
    }
}

fn encoder_description(encoder: &str, config: &PublisherConfig) -> String {
    let kbps = config.bitrate_kbps;
    let gop = config.keyframe_interval_frames.max(1);
    let text = match encoder {
        "vp8enc" => format!(
            "vp8enc deadline=1 threads=1 cpu-used=4 end-usage=cbr target-bitrate={} \
             keyframe-max-dist={gop} lag-in-frames=0 error-resilient=partitions",
            u64::from(kbps) * 1000
        ),
        "x264enc" => format!(
            "x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} \
             ! video/x-h264,profile=constrained-baseline"
        ),
        "openh264enc" => format!(
            "openh264enc bitrate={} gop-size={gop} complexity=low ! video/x-h264,profile=constrained-baseline",
            u64::from(kbps) * 1000
        ),
        "v4l2h264enc" => format!(
            "v4l2h264enc extra-controls=\"controls,repeat_sequence_header=1,video_bitrate={},h264_i_frame_period={gop}\" \
             ! video/x-h264,level=(string)4,profile=(string)constrained-baseline",
            u64::from(kbps) * 1000
        ),
        other => other.to_string(),
    };
    // The element is named for the frame counter; caps after it stay as they are.
    match text.split_once(' ') {
        Some((element, rest)) => format!("{element} name=encoder {rest}"),
        None => format!("{text} name=encoder"),
    }
}

/// The RTP payload type the publisher offers.
const PAYLOAD_TYPE: u8 = 96;

fn payloader(codec: Codec) -> String {
    match codec {
        Codec::Vp8 => format!("rtpvp8pay pt={PAYLOAD_TYPE} picture-id-mode=15-bit mtu=1200"),
        // The encoders repeat SPS and PPS before every IDR themselves; the
        // payloader's own insertion (config-interval) goes before every IDR
        // *slice*, which splits a multi-slice key frame in two for every
        // receiver.
        Codec::H264 => format!(
            "rtph264pay pt={PAYLOAD_TYPE} config-interval=0 aggregate-mode=zero-latency mtu=1200"
        ),
    }
}

/// The H.264 profile-level-id offered: constrained baseline (`42e0`, what
/// every browser and hardware decoder plays) at the lowest level that
/// carries the picture: 3.1 up to 720p30, 4.0 up to 1080p30, 5.1 above.
fn h264_profile_level_id(width: u32, height: u32, fps: u32) -> &'static str {
    let macroblocks_per_second =
        u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16)) * u64::from(fps);
    match macroblocks_per_second {
        0..=108_000 => "42e01f",
        108_001..=245_760 => "42e028",
        _ => "42e033",
    }
}

fn rtp_caps(codec: Codec) -> String {
    format!(
        "application/x-rtp,media=video,encoding-name={},payload={PAYLOAD_TYPE},clock-rate=90000{}",
        codec.encoding_name(),
        // Without it the offer has no fmtp line and answerers assume mode 0.
        match codec {
            Codec::H264 => ",packetization-mode=(string)1",
            Codec::Vp8 => "",
        }
    )
}

/// The whole publishing pipeline as `gst-launch` text.
pub fn pipeline_description(config: &PublisherConfig, encoder: &str) -> String {
    format!(
        "{source} ! videoconvert ! videoscale ! videorate \
         ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1,pixel-aspect-ratio=1/1 \
         ! identity name=stamp ! queue max-size-buffers=2 leaky=downstream \
         ! {encoder} ! {payloader} name=pay ! {rtp_caps} ! webrtcbin name=webrtc",
        source = source_description(&config.source),
        w = config.width,
        h = config.height,
        fps = config.fps,
        encoder = encoder_description(encoder, config),
        payloader = payloader(config.codec),
        rtp_caps = rtp_caps(config.codec),
    )
}

/// An encoded clip, recorded once from a publisher configuration and then
/// played in a loop by any number of publishers without encoding again.
#[derive(Debug)]
pub struct Clip {
    codec: Codec,
    fps: u32,
    profile_level_id: &'static str,
    frames: Vec<gst::Buffer>,
}

impl Clip {
    /// Encodes `frames` frames of `config`'s source.
    pub fn record(config: &PublisherConfig, frames: usize) -> Result<Arc<Self>, MediaError> {
        crate::init()?;
        let encoder = pick_encoder(config.codec, &config.encoder, crate::has_element)?;
        let parse = match config.codec {
            Codec::H264 => "! h264parse ",
            Codec::Vp8 => "",
        };
        let description = format!(
            "{source} ! videoconvert ! videoscale ! videorate \
             ! video/x-raw,format=I420,width={w},height={h},framerate={fps}/1 \
             ! {encoder} {parse}! {caps} ! appsink name=out sync=false",
            source = source_description(&config.source),
            w = config.width,
            h = config.height,
            fps = config.fps,
            encoder = encoder_description(&encoder, config),
            caps = config.codec.frame_caps(),
        );
        let pipeline = crate::launch(&description)?;
        let sink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| MediaError::Pipeline("no clip appsink".into()))?;
        pipeline.set_state(gst::State::Playing).map_err(|_| {
            MediaError::Pipeline(format!(
                "the clip does not record: {}",
                lx_protocol::redact::url_credentials(&description)
            ))
        })?;
        let mut recorded = Vec::with_capacity(frames);
        while recorded.len() < frames {
            match sink.try_pull_sample(gst::ClockTime::from_seconds(10)) {
                Some(sample) => recorded.extend(sample.buffer_owned()),
                None => break,
            }
        }
        crate::stop(&pipeline);
        if recorded.len() < frames {
            return Err(MediaError::Pipeline(format!(
                "the clip stopped after {} of {frames} frames",
                recorded.len()
            )));
        }
        Ok(Arc::new(Self {
            codec: config.codec,
            fps: config.fps.max(1),
            profile_level_id: h264_profile_level_id(config.width, config.height, config.fps),
            frames: recorded,
        }))
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Pushes the frames at the clip's rate, looping, until the pipeline goes.
    fn feed(&self, appsrc: &gst::glib::WeakRef<gst_app::AppSrc>) {
        let period = std::time::Duration::from_secs(1) / self.fps;
        let mut next = std::time::Instant::now();
        for frame in self.frames.iter().cycle() {
            let Some(src) = appsrc.upgrade() else { return };
            let mut buffer = frame.copy();
            {
                let b = buffer.make_mut();
                b.set_pts(gst::ClockTime::NONE);
                b.set_dts(gst::ClockTime::NONE);
            }
            if src.push_buffer(buffer).is_err() {
                return;
            }
            drop(src);
            next += period;
            if let Some(wait) = next.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
}

/// Counters of what went out, for the agent's status.
#[derive(Debug, Default)]
pub struct PublishStats {
    pub frames: AtomicU64,
    pub rtp_bytes: AtomicU64,
}

#[derive(Debug)]
pub struct Publisher {
    /// The pipeline as launched, a camera URL's password redacted.
    description: String,
    pipeline: gst::Pipeline,
    webrtc: gst::Element,
    encoder: String,
    /// What the offer declares for H.264: webrtcbin writes no
    /// profile-level-id before the encoder's first SPS, and answerers would
    /// assume plain baseline.
    h264_profile_level_id: Option<&'static str>,
    stats: Arc<PublishStats>,
    failed: watch::Receiver<Option<String>>,
    ice: Offering,
}

impl Publisher {
    /// Builds the pipeline and starts the camera; [`Self::offer`] next.
    pub fn start(config: &PublisherConfig) -> Result<Self, MediaError> {
        let publisher = Self::prepare(config)?;
        publisher.play()?;
        Ok(publisher)
    }

    /// Builds the pipeline and takes it to PAUSED: the elements made, the
    /// plugins loaded, the camera opened, nothing flowing. [`Self::play`]
    /// starts it.
    pub fn prepare(config: &PublisherConfig) -> Result<Self, MediaError> {
        crate::init()?;
        let encoder = pick_encoder(config.codec, &config.encoder, crate::has_element)?;
        let description = pipeline_description(config, &encoder);
        let pipeline = crate::launch(&description)?;
        if config.stamp_time {
            let stamp = pipeline
                .by_name("stamp")
                .ok_or_else(|| MediaError::Pipeline("no element stamp".into()))?;
            barcode::stamp_wall_clock(&stamp, config.width, config.height);
        }
        let mut publisher = Self::wire(pipeline, &description, &config.ice, "encoder", encoder)?;
        publisher.pause()?;
        publisher.h264_profile_level_id = (config.codec == Codec::H264)
            .then(|| h264_profile_level_id(config.width, config.height, config.fps));
        Ok(publisher)
    }

    /// A publisher that loops an encoded [`Clip`] instead of encoding a
    /// camera: what benchmarks use to stand for many devices on one machine.
    pub fn start_clip(clip: &Arc<Clip>, ice: &IceConfig) -> Result<Self, MediaError> {
        crate::init()?;
        let description = format!(
            "appsrc name=clip is-live=true format=time do-timestamp=true block=false \
             leaky-type=downstream max-bytes=2000000 caps=\"{caps}\" ! {payloader} name=pay \
             ! {rtp_caps} ! webrtcbin name=webrtc",
            caps = clip.codec.frame_caps(),
            payloader = payloader(clip.codec),
            rtp_caps = rtp_caps(clip.codec),
        );
        let pipeline = crate::launch(&description)?;
        let appsrc = pipeline
            .by_name("clip")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| MediaError::Pipeline("no clip appsrc".into()))?;
        let mut publisher = Self::wire(pipeline, &description, ice, "clip", "clip".into())?;
        publisher.play()?;
        publisher.h264_profile_level_id =
            (clip.codec == Codec::H264).then_some(clip.profile_level_id);
        let weak = appsrc.downgrade();
        let clip = Arc::clone(clip);
        std::thread::Builder::new()
            .name("lx-clip".into())
            .spawn(move || clip.feed(&weak))
            .map_err(|e| MediaError::Pipeline(format!("no clip thread: {e}")))?;
        Ok(publisher)
    }

    /// Wires counters and failure watches and makes the transceiver
    /// send-only.
    fn wire(
        pipeline: gst::Pipeline,
        description: &str,
        ice: &IceConfig,
        counted: &str,
        encoder: String,
    ) -> Result<Self, MediaError> {
        tracing::debug!(description = %lx_protocol::redact::url_credentials(description), "publisher pipeline");
        let by_name = |name: &str| {
            pipeline
                .by_name(name)
                .ok_or_else(|| MediaError::Pipeline(format!("no element {name}")))
        };
        let webrtc = by_name("webrtc")?;
        webrtc::configure(&webrtc, ice, 200)?;
        let offering = Offering::watch(&webrtc);

        let stats = Arc::new(PublishStats::default());
        count_buffers(&by_name(counted)?, Arc::clone(&stats), |s, _| {
            s.frames.fetch_add(1, Ordering::Relaxed);
        });
        count_buffers(&by_name("pay")?, Arc::clone(&stats), |s, size| {
            s.rtp_bytes.fetch_add(size, Ordering::Relaxed);
        });

        let (fail_tx, failed) = watch::channel(None);
        let fail_tx = Arc::new(fail_tx);
        {
            let fail_tx = Arc::clone(&fail_tx);
            crate::watch_bus(&pipeline, move |reason| {
                fail_tx.send_if_modified(|f| f.replace(reason).is_none());
            });
        }
        watch_receiver_reports(&webrtc, &fail_tx);
        let payloader = by_name("pay")?.downgrade();
        webrtc.connect_notify(Some("connection-state"), move |w, _| {
            let state = w.property::<WebRTCPeerConnectionState>("connection-state");
            if state == WebRTCPeerConnectionState::Connected {
                // The key frame the encoder began with went out before DTLS
                // was up, and was dropped: without a new one the receiver
                // waits for its key-frame request's round trip, or for the
                // next interval's (a second).
                if let Some(payloader) = payloader.upgrade() {
                    payloader.send_event(crate::force_key_unit());
                }
            }
            if matches!(
                state,
                WebRTCPeerConnectionState::Failed | WebRTCPeerConnectionState::Closed
            ) {
                fail_tx.send_if_modified(|f| {
                    f.replace(format!("peer connection {state:?}")).is_none()
                });
            }
        });

        // The payloader's pad is linked, so the transceiver exists: it only sends.
        if let Some(pad) = webrtc.static_pad("sink_0") {
            let transceiver = pad.property::<gst_webrtc::WebRTCRTPTransceiver>("transceiver");
            transceiver.set_property("direction", WebRTCRTPTransceiverDirection::Sendonly);
        }
        Ok(Self {
            description: lx_protocol::redact::url_credentials(description).into_owned(),
            pipeline,
            webrtc,
            encoder,
            h264_profile_level_id: None,
            stats,
            failed,
            ice: offering,
        })
    }

    fn pause(&self) -> Result<(), MediaError> {
        self.pipeline.set_state(gst::State::Paused).map_err(|_| {
            MediaError::Pipeline(format!(
                "the camera pipeline does not get ready: {}",
                self.description
            ))
        })?;
        Ok(())
    }

    /// Starts a prepared pipeline flowing.
    pub fn play(&self) -> Result<(), MediaError> {
        self.pipeline.set_state(gst::State::Playing).map_err(|_| {
            MediaError::Pipeline(format!(
                "the camera pipeline does not start: {}",
                self.description
            ))
        })?;
        Ok(())
    }

    /// The encoder element in use.
    pub fn encoder(&self) -> &str {
        &self.encoder
    }

    /// Creates the offer, gathers ICE and returns the SDP to POST.
    pub async fn offer(&self) -> Result<String, MediaError> {
        self.offer_within(webrtc::GATHER_TIMEOUT).await
    }

    /// The offer with the candidates found within `wait`; the later ones
    /// come from [`Offering::take_late_candidates`] (trickle ICE).
    pub async fn offer_within(&self, wait: std::time::Duration) -> Result<String, MediaError> {
        let sdp = self.ice.offer(false, wait).await?;
        Ok(match self.h264_profile_level_id {
            Some(id) => crate::sdp::declare_h264_profile(&sdp, id),
            None => sdp,
        })
    }

    /// Applies the WHIP endpoint's answer.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), MediaError> {
        let answer = webrtc::parse_sdp(WebRTCSDPType::Answer, sdp)?;
        webrtc::set_remote(&self.webrtc, &answer).await?;
        self.ice.answered(sdp);
        Ok(())
    }

    /// Trickle ICE and ICE restarts of this publisher's connection.
    pub fn ice(&self) -> &Offering {
        &self.ice
    }

    pub fn ice_mut(&mut self) -> &mut Offering {
        &mut self.ice
    }

    pub fn stats(&self) -> &Arc<PublishStats> {
        &self.stats
    }

    /// Becomes `Some(reason)` when the pipeline or the connection failed.
    pub fn failures(&self) -> watch::Receiver<Option<String>> {
        self.failed.clone()
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        crate::stop(&self.pipeline);
    }
}

/// A receiver that stopped sending RTCP reports for this long is gone.
/// Reports come every 5 s on average (RFC 3550's interval, randomised
/// between half and one and a half of it); ICE's own keepalives take
/// about 50 s to notice a peer that vanished.
const RECEIVER_SILENCE: std::time::Duration = std::time::Duration::from_secs(12);

/// Fails the publisher when the receiver, once heard, falls silent: the
/// server crashed or restarted, or the network dropped the path. The
/// WHIP client then posts again.
fn watch_receiver_reports(webrtc: &gst::Element, fail_tx: &Arc<watch::Sender<Option<String>>>) {
    let Some(rtpbin) = webrtc
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.by_name("rtpbin"))
    else {
        return;
    };
    let heard = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    {
        let heard = Arc::clone(&heard);
        rtpbin.connect("on-ssrc-active", false, move |_| {
            if let Ok(mut h) = heard.lock() {
                *h = Some(std::time::Instant::now());
            }
            None
        });
    }
    let weak = webrtc.downgrade();
    let fail_tx = Arc::clone(fail_tx);
    let _ = std::thread::Builder::new()
        .name("lx-rtcp-watch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if weak.upgrade().is_none() {
                    return;
                }
                let silent = heard
                    .lock()
                    .ok()
                    .and_then(|h| *h)
                    .is_some_and(|t| t.elapsed() > RECEIVER_SILENCE);
                if silent {
                    fail_tx.send_if_modified(|f| {
                        f.replace(format!(
                            "no RTCP report from the receiver for {} s",
                            RECEIVER_SILENCE.as_secs()
                        ))
                        .is_none()
                    });
                    return;
                }
            }
        });
}

fn count_buffers(
    element: &gst::Element,
    stats: Arc<PublishStats>,
    add: impl Fn(&PublishStats, u64) + Send + Sync + 'static,
) {
    if let Some(pad) = element.static_pad("src") {
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                add(&stats, buffer.size() as u64);
            }
            gst::PadProbeReturn::Ok
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_hardware_first_then_software() {
        let everything = |_: &str| true;
        assert_eq!(
            pick_encoder(Codec::H264, &EncoderChoice::Auto, everything).unwrap(),
            "v4l2h264enc"
        );
        let no_hardware = |n: &str| n != "v4l2h264enc";
        assert_eq!(
            pick_encoder(Codec::H264, &EncoderChoice::Auto, no_hardware).unwrap(),
            "x264enc"
        );
        assert_eq!(
            pick_encoder(Codec::Vp8, &EncoderChoice::Auto, no_hardware).unwrap(),
            "vp8enc"
        );
        let nothing = |_: &str| false;
        assert!(matches!(
            pick_encoder(Codec::H264, &EncoderChoice::Auto, nothing),
            Err(MediaError::Missing {
                package: "gstreamer1.0-plugins-bad",
                ..
            })
        ));
    }

    #[test]
    fn a_named_encoder_must_exist_and_make_the_codec() {
        let all = |_: &str| true;
        assert!(matches!(
            pick_encoder(Codec::Vp8, &EncoderChoice::Named("x264enc".into()), all),
            Err(MediaError::Config(m)) if m.contains("makes h264")
        ));
        assert!(matches!(
            pick_encoder(Codec::Vp8, &EncoderChoice::Named("nvenc".into()), all),
            Err(MediaError::Config(m)) if m.contains("unknown encoder 'nvenc'")
        ));
        let no_x264 = |n: &str| n != "x264enc";
        assert!(matches!(
            pick_encoder(
                Codec::H264,
                &EncoderChoice::Named("x264enc".into()),
                no_x264
            ),
            Err(MediaError::Missing {
                package: "gstreamer1.0-plugins-ugly",
                ..
            })
        ));
    }

    #[test]
    fn the_pipeline_names_source_size_encoder_and_payloader() {
        let config = PublisherConfig {
            source: VideoSource::V4l2 {
                device: "/dev/video0".into(),
            },
            codec: Codec::H264,
            width: 1280,
            height: 720,
            fps: 25,
            keyframe_interval_frames: 25,
            ..PublisherConfig::default()
        };
        let text = pipeline_description(&config, "x264enc");
        for part in [
            "v4l2src device=/dev/video0 !",
            "width=1280,height=720,framerate=25/1",
            "x264enc name=encoder tune=zerolatency speed-preset=ultrafast bitrate=1000 key-int-max=25",
            "rtph264pay pt=96 config-interval=0",
            "encoding-name=H264",
        ] {
            assert!(text.contains(part), "{part} not in {text}");
        }
    }
}
