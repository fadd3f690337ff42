//! Encoded frames to pictures, on a pipeline of its own: a decoder that
//! fails takes nothing else down, and the caller decides which frames are
//! worth decoding (the server: about one key frame a second).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;

use crate::MediaError;
use crate::codec::Codec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeTo {
    Jpeg {
        quality: u8,
    },
    /// 8-bit I420, for reading pixels (tests, benchmarks).
    I420,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
    /// The pipeline time stamp of the frame it came from, nanoseconds.
    pub pts_ns: Option<u64>,
}

#[derive(Debug)]
pub struct Decoder {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    broken: Arc<AtomicBool>,
}

impl Decoder {
    pub fn new(
        codec: Codec,
        to: DecodeTo,
        on_picture: impl Fn(Picture) + Send + Sync + 'static,
    ) -> Result<Self, MediaError> {
        crate::init()?;
        let decoder = match codec {
            // Frame threading holds pictures back by as many frames as it
            // has threads: seconds, at one key frame a second.
            Codec::H264 => "h264parse ! avdec_h264 max-threads=1 output-corrupt=false",
            Codec::Vp8 => "vp8dec",
        };
        let output = match to {
            // JPEG (JFIF) is full range, and decoders give limited range
            // (white at 235): `range` stretches it to full in place before
            // jpegenc takes the planes as they are. Through RGB instead,
            // a JPEG costs three times the CPU (converted to RGB, then
            // back to YCbCr and subsampled inside the encoder).
            DecodeTo::Jpeg { quality } => format!(
                "video/x-raw,format=I420 ! videobalance name=range ! jpegenc quality={quality}"
            ),
            DecodeTo::I420 => "video/x-raw,format=I420".into(),
        };
        let description = format!(
            "appsrc name=src is-live=true format=time do-timestamp=true block=false max-bytes=8000000 \
             caps=\"{caps}\" ! {decoder} ! videoconvert ! {output} ! appsink name=out sync=false \
             max-buffers=2 drop=true",
            caps = codec.frame_caps(),
        );
        let pipeline = crate::launch(&description)?;
        let appsrc = pipeline
            .by_name("src")
            .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            .ok_or_else(|| MediaError::Pipeline("decoder without appsrc".into()))?;
        let appsink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| MediaError::Pipeline("decoder without appsink".into()))?;
        appsink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let size = sample.caps().and_then(|c| {
                        let s = c.structure(0)?;
                        Some((s.get::<i32>("width").ok()?, s.get::<i32>("height").ok()?))
                    });
                    if let (Some(buffer), Some((w, h))) = (sample.buffer(), size)
                        && let Ok(map) = buffer.map_readable()
                    {
                        on_picture(Picture {
                            data: map.as_slice().to_vec(),
                            width: w.max(0) as u32,
                            height: h.max(0) as u32,
                            pts_ns: buffer.pts().map(|t| t.nseconds()),
                        });
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        if let Some(range) = pipeline.by_name("range") {
            stretch_to_full_range(&range);
        }
        let broken = Arc::new(AtomicBool::new(false));
        {
            let broken = Arc::clone(&broken);
            crate::watch_bus(&pipeline, move |reason| {
                tracing::debug!(%reason, "decoder failed");
                broken.store(true, Ordering::Relaxed);
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| MediaError::Pipeline("the decoder does not start".into()))?;
        Ok(Self {
            pipeline,
            appsrc,
            broken,
        })
    }

    /// Queues a frame for decoding; fails once the decoder has broken (make
    /// a new one).
    pub fn push(&self, buffer: &gst::Buffer) -> Result<(), MediaError> {
        if self.is_broken() {
            return Err(MediaError::Pipeline("the decoder failed".into()));
        }
        let mut buffer = buffer.copy();
        {
            let b = buffer.make_mut();
            b.set_pts(gst::ClockTime::NONE);
            b.set_dts(gst::ClockTime::NONE);
        }
        self.appsrc
            .push_buffer(buffer)
            .map(|_| ())
            .map_err(|e| MediaError::Pipeline(format!("decoder: {e:?}")))
    }

    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::Relaxed)
    }
}

/// videobalance settings that take limited-range YCbCr (luma 16–235,
/// chroma 16–240) to full range: luma scaled by 255/219 with 16 mapped to 0,
/// chroma scaled by 255/224 about its middle.
const LIMITED_TO_FULL_LUMA: f64 = 255.0 / 219.0;
const LIMITED_TO_FULL_BLACK: f64 = -16.0 / 255.0;
const LIMITED_TO_FULL_CHROMA: f64 = 255.0 / 224.0;

/// Sets `range` (a videobalance) from the caps it is given, before their
/// first picture: limited range is stretched to full; a stream the decoder
/// says is full range already (an H.264 camera that sets its full-range
/// flag) passes untouched, since stretched again its highlights and shadows
/// would clip.
fn stretch_to_full_range(range: &gst::Element) {
    let Some(pad) = range.static_pad("sink") else {
        return;
    };
    let balance = range.downgrade();
    pad.connect_notify(Some("caps"), move |pad, _| {
        let Some(balance) = balance.upgrade() else {
            return;
        };
        let full = pad.current_caps().is_some_and(|caps| {
            caps.structure(0)
                .and_then(|s| s.get::<&str>("colorimetry").ok())
                .is_some_and(is_full_range)
        });
        let (luma, black, chroma) = if full {
            (1.0, 0.0, 1.0)
        } else {
            (
                LIMITED_TO_FULL_LUMA,
                LIMITED_TO_FULL_BLACK,
                LIMITED_TO_FULL_CHROMA,
            )
        };
        balance.set_property("contrast", luma);
        balance.set_property("brightness", black);
        balance.set_property("saturation", chroma);
    });
}

/// Whether a decoder's YUV `colorimetry` names full range: its numeric
/// form starts with the range, 1 being 0–255; the YUV names a decoder
/// gives (bt601, bt709, bt2020, …) are all limited.
fn is_full_range(colorimetry: &str) -> bool {
    colorimetry.starts_with("1:")
}

impl Drop for Decoder {
    fn drop(&mut self) {
        crate::stop(&self.pipeline);
    }
}

#[cfg(test)]
mod tests {
    use super::is_full_range;

    #[test]
    fn only_a_numeric_colorimetry_with_range_one_is_full_range() {
        assert!(is_full_range("1:4:0:0"));
        assert!(is_full_range("1:3:5:1"));
        for limited in ["2:4:0:0", "bt601", "bt709", "bt2020", "0:0:0:0", ""] {
            assert!(!is_full_range(limited), "{limited}");
        }
    }
}
