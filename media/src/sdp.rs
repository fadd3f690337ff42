//! SDP, as text: which video payload a peer's offer carries that we can
//! take, and the offer narrowed to that one payload so that the answer
//! GStreamer writes names only it.
//!
//! Pure functions over the SDP text (RFC 8866 lines); GStreamer parses the
//! result again, so this only has to find and drop lines, never to validate.

use crate::codec::Codec;

/// The video payload chosen from an offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoPayload {
    /// Index of the `m=` section among all media sections.
    pub mline: usize,
    pub codec: Codec,
    pub payload_type: u8,
    /// The `a=fmtp` parameters of that payload type, if any.
    pub fmtp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("the offer has no video section")]
    NoVideo,
    #[error("the offer's video carries none of {wanted}: it offers {offered}")]
    NoCommonCodec { wanted: String, offered: String },
}

/// One `a=rtpmap` entry of a media section.
#[derive(Debug, Clone)]
struct RtpMap {
    payload_type: u8,
    encoding: String,
}

fn lines(sdp: &str) -> impl Iterator<Item = &str> {
    sdp.lines().map(|l| l.trim_end_matches('\r'))
}

/// Splits the SDP into the session part and one part per `m=` section.
fn sections(sdp: &str) -> (Vec<&str>, Vec<Vec<&str>>) {
    let mut session = Vec::new();
    let mut media: Vec<Vec<&str>> = Vec::new();
    for line in lines(sdp).filter(|l| !l.is_empty()) {
        if line.starts_with("m=") {
            media.push(vec![line]);
        } else if let Some(current) = media.last_mut() {
            current.push(line);
        } else {
            session.push(line);
        }
    }
    (session, media)
}

/// The payload type an attribute line such as `a=fmtp:96 …` is about.
fn attribute_payload(line: &str, attribute: &str) -> Option<u8> {
    let rest = line
        .strip_prefix("a=")?
        .strip_prefix(attribute)?
        .strip_prefix(':')?;
    rest.split([' ', '\t']).next()?.parse().ok()
}

fn rtpmaps(section: &[&str]) -> Vec<RtpMap> {
    section
        .iter()
        .filter_map(|line| {
            let payload_type = attribute_payload(line, "rtpmap")?;
            let encoding = line.split_once(' ')?.1.split('/').next()?.to_string();
            Some(RtpMap {
                payload_type,
                encoding,
            })
        })
        .collect()
}

fn fmtp_of(section: &[&str], payload_type: u8) -> Option<String> {
    section.iter().find_map(|line| {
        (attribute_payload(line, "fmtp") == Some(payload_type))
            .then(|| line.split_once(' ').map(|(_, p)| p.trim().to_string()))
            .flatten()
    })
}

fn fmtp_param<'a>(fmtp: &'a str, key: &str) -> Option<&'a str> {
    fmtp.split(';').find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        k.trim().eq_ignore_ascii_case(key).then_some(v.trim())
    })
}

/// How well an H.264 payload suits us; `None` when we cannot take it.
/// Packetization mode 1 is required; constrained baseline (`42e0…`) is what
/// every browser and hardware decoder plays, so it ranks first.
fn h264_rank(fmtp: Option<&str>) -> Option<u8> {
    let fmtp = fmtp?;
    if fmtp_param(fmtp, "packetization-mode") != Some("1") {
        return None;
    }
    let profile = fmtp_param(fmtp, "profile-level-id")
        .unwrap_or("")
        .to_ascii_lowercase();
    Some(if profile.starts_with("42e0") {
        0
    } else if profile.starts_with("42") {
        1
    } else {
        2
    })
}

/// The first video section's best payload among `prefer`, in the order of
/// `prefer`, then of the offer.
pub fn choose_video(sdp: &str, prefer: &[Codec]) -> Result<VideoPayload, SdpError> {
    let (_, media) = sections(sdp);
    let (mline, section) = media
        .iter()
        .enumerate()
        .find(|(_, s)| s[0].starts_with("m=video"))
        .ok_or(SdpError::NoVideo)?;
    let maps = rtpmaps(section);
    for &codec in prefer {
        let best = maps
            .iter()
            .filter(|m| Codec::from_encoding_name(&m.encoding) == Some(codec))
            .filter_map(|m| {
                let fmtp = fmtp_of(section, m.payload_type);
                let rank = match codec {
                    Codec::Vp8 => Some(0),
                    Codec::H264 => h264_rank(fmtp.as_deref()),
                };
                rank.map(|r| (r, m.payload_type, fmtp))
            })
            .min_by_key(|(rank, _, _)| *rank);
        if let Some((_, payload_type, fmtp)) = best {
            return Ok(VideoPayload {
                mline,
                codec,
                payload_type,
                fmtp,
            });
        }
    }
    let mut offered: Vec<String> = maps.iter().map(|m| m.encoding.clone()).collect();
    offered.dedup();
    Err(SdpError::NoCommonCodec {
        wanted: prefer
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        offered: if offered.is_empty() {
            "nothing".into()
        } else {
            offered.join(", ")
        },
    })
}

/// The SDP with section `payload.mline` carrying only `payload`'s type: the
/// other formats leave the `m=` line with their `rtpmap`, `fmtp` and
/// `rtcp-fb` lines. Other sections are untouched.
/// `sdp` with `profile-level-id=id` on the fmtp line of every H.264 payload
/// that does not say one.
pub fn declare_h264_profile(sdp: &str, id: &str) -> String {
    let (_, sections) = sections(sdp);
    let h264: Vec<u8> = sections
        .iter()
        .flat_map(|s| rtpmaps(s))
        .filter(|m| m.encoding.eq_ignore_ascii_case("H264"))
        .map(|m| m.payload_type)
        .collect();
    let mut out = String::with_capacity(sdp.len() + 64);
    for line in sdp.split_inclusive('\n') {
        let text = line.trim_end_matches(['\r', '\n']);
        match attribute_payload(text, "fmtp") {
            Some(pt)
                if h264.contains(&pt)
                    && text.split_once(' ').is_some_and(|(_, params)| {
                        fmtp_param(params, "profile-level-id").is_none()
                    }) =>
            {
                out.push_str(text);
                out.push_str(&format!(";profile-level-id={id}"));
                out.push_str(&line[text.len()..]);
            }
            _ => out.push_str(line),
        }
    }
    out
}

pub fn keep_only(sdp: &str, payload: &VideoPayload) -> String {
    let (session, media) = sections(sdp);
    let keep = payload.payload_type;
    let mut out: Vec<String> = session.iter().map(|l| l.to_string()).collect();
    for (index, section) in media.iter().enumerate() {
        if index != payload.mline {
            out.extend(section.iter().map(|l| l.to_string()));
            continue;
        }
        // m=<media> <port> <proto> <fmt> …
        let mut fields: Vec<&str> = section[0].split(' ').collect();
        fields.truncate(3);
        let keep_text = keep.to_string();
        fields.push(&keep_text);
        out.push(fields.join(" "));
        for line in &section[1..] {
            let about = ["rtpmap", "fmtp", "rtcp-fb"]
                .iter()
                .find_map(|a| attribute_payload(line, a));
            if about.is_none_or(|pt| pt == keep) {
                out.push(line.to_string());
            }
        }
    }
    let mut text = out.join("\r\n");
    text.push_str("\r\n");
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_h264_offer_declares_its_profile_and_one_that_says_one_keeps_it() {
        let offer = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=rtpmap:96 H264/90000\r\n\
                     a=fmtp:96 packetization-mode=1\r\na=rtpmap:97 VP8/90000\r\na=fmtp:97 x=1\r\n";
        let declared = declare_h264_profile(offer, "42e01f");
        assert!(
            declared.contains("a=fmtp:96 packetization-mode=1;profile-level-id=42e01f\r\n"),
            "{declared}"
        );
        assert!(declared.contains("a=fmtp:97 x=1\r\n"), "VP8 untouched");
        assert_eq!(
            declare_h264_profile(&declared, "42e028"),
            declared,
            "already said"
        );
    }

    /// Shaped like Chromium's offer: VP8 with its RTX, two H.264 profiles
    /// in each packetization mode, and an audio section first.
    const BROWSER_OFFER: &str = "v=0\r\n\
o=- 1 2 IN IP4 127.0.0.1\r\n\
s=-\r\n\
t=0 0\r\n\
a=group:BUNDLE 0 1\r\n\
m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
a=mid:0\r\n\
a=rtpmap:111 opus/48000/2\r\n\
m=video 9 UDP/TLS/RTP/SAVPF 96 97 102 103 104 106 45\r\n\
a=mid:1\r\n\
a=sendonly\r\n\
a=rtpmap:96 VP8/90000\r\n\
a=rtcp-fb:96 nack\r\n\
a=rtcp-fb:96 nack pli\r\n\
a=rtpmap:97 rtx/90000\r\n\
a=fmtp:97 apt=96\r\n\
a=rtpmap:102 H264/90000\r\n\
a=rtcp-fb:102 nack pli\r\n\
a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f\r\n\
a=rtpmap:103 H264/90000\r\n\
a=fmtp:103 level-asymmetry-allowed=1;packetization-mode=0;profile-level-id=42e01f\r\n\
a=rtpmap:104 H264/90000\r\n\
a=rtcp-fb:104 nack pli\r\n\
a=fmtp:104 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n\
a=rtpmap:106 rtx/90000\r\n\
a=fmtp:106 apt=104\r\n\
a=rtpmap:45 AV1/90000\r\n\
a=rtcp-fb:* transport-cc\r\n";

    #[test]
    fn the_preferred_codec_wins_and_h264_takes_mode_1_constrained_baseline() {
        let vp8 = choose_video(BROWSER_OFFER, &[Codec::Vp8, Codec::H264]).unwrap();
        assert_eq!(
            (vp8.mline, vp8.codec, vp8.payload_type),
            (1, Codec::Vp8, 96)
        );
        let h264 = choose_video(BROWSER_OFFER, &[Codec::H264, Codec::Vp8]).unwrap();
        assert_eq!((h264.codec, h264.payload_type), (Codec::H264, 104));
        assert!(h264.fmtp.unwrap().contains("42e01f"));
    }

    #[test]
    fn an_offer_without_a_codec_we_take_is_refused_naming_what_it_offers() {
        let av1_only = BROWSER_OFFER
            .replace("VP8/", "VP9/")
            .replace("H264/", "H265/");
        assert_eq!(
            choose_video(&av1_only, &[Codec::Vp8, Codec::H264]),
            Err(SdpError::NoCommonCodec {
                wanted: "vp8, h264".into(),
                offered: "VP9, rtx, H265, rtx, AV1".into()
            })
        );
        let audio_only = "v=0\r\nm=audio 9 RTP/AVP 0\r\n";
        assert_eq!(
            choose_video(audio_only, &Codec::ALL),
            Err(SdpError::NoVideo)
        );
    }

    #[test]
    fn keep_only_drops_the_other_formats_and_their_attributes() {
        let chosen = choose_video(BROWSER_OFFER, &[Codec::H264]).unwrap();
        let narrowed = keep_only(BROWSER_OFFER, &chosen);
        assert!(narrowed.contains("m=video 9 UDP/TLS/RTP/SAVPF 104\r\n"));
        assert!(narrowed.contains("a=rtpmap:104 H264/90000"));
        assert!(narrowed.contains("a=rtcp-fb:104 nack pli"));
        assert!(narrowed.contains("a=rtcp-fb:* transport-cc"));
        assert!(
            narrowed.contains("a=rtpmap:111 opus/48000/2"),
            "audio untouched"
        );
        for gone in [
            "a=rtpmap:96 ",
            "a=fmtp:97 ",
            "a=rtpmap:102 ",
            "a=fmtp:106 ",
            "AV1",
        ] {
            assert!(!narrowed.contains(gone), "{gone} left in:\n{narrowed}");
        }
        // Narrowing again changes nothing.
        assert_eq!(
            keep_only(&narrowed, &choose_video(&narrowed, &[Codec::H264]).unwrap()),
            narrowed
        );
    }
}
