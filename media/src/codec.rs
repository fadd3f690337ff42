//! The video codecs the media plane carries end to end, and the GStreamer
//! elements and caps that go with each.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Vp8,
    /// Always packetization-mode 1, so browsers and hardware decoders take it.
    H264,
}

impl Codec {
    pub const ALL: [Codec; 2] = [Codec::Vp8, Codec::H264];

    /// The RTP encoding name (`a=rtpmap:96 VP8/90000`).
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Vp8 => "VP8",
            Codec::H264 => "H264",
        }
    }

    pub fn from_encoding_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    pub(crate) fn depayloader(self) -> &'static str {
        match self {
            Codec::Vp8 => "rtpvp8depay",
            Codec::H264 => "rtph264depay",
        }
    }

    /// Caps of one encoded access unit as the ingest hands it on: what the
    /// decoder and the viewers' payloaders take.
    pub(crate) fn frame_caps(self) -> &'static str {
        match self {
            Codec::Vp8 => "video/x-vp8",
            Codec::H264 => "video/x-h264,stream-format=byte-stream,alignment=au",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Vp8 => "vp8",
            Codec::H264 => "h264",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec '{0}' (known: vp8, h264)")]
pub struct UnknownCodec(pub String);

impl FromStr for Codec {
    type Err = UnknownCodec;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "vp8" => Ok(Codec::Vp8),
            "h264" | "h.264" | "avc" => Ok(Codec::H264),
            _ => Err(UnknownCodec(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for codec in Codec::ALL {
            assert_eq!(codec.to_string().parse::<Codec>(), Ok(codec));
            assert_eq!(
                Codec::from_encoding_name(codec.encoding_name()),
                Some(codec)
            );
        }
        assert_eq!(Codec::from_encoding_name("h264"), Some(Codec::H264));
        assert!("vp9".parse::<Codec>().is_err());
    }
}
