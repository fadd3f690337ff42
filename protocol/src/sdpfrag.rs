//! Trickle ICE's SDP fragments (`application/trickle-ice-sdpfrag`, RFC 8840)
//! as WHIP and WHEP carry them in `PATCH` (RFC 9725 §4.3): the ICE
//! credentials of the sender and the candidates it found since its offer.
//!
//! A fragment whose credentials differ from the session's asks for an ICE
//! restart; the answer to a restart is a fragment too. Parsing is strict
//! about what is acted on (credentials, candidates) and ignores the rest,
//! so a browser's extra attributes pass.

use std::net::IpAddr;

/// The media type of a fragment.
pub const CONTENT_TYPE: &str = "application/trickle-ice-sdpfrag";
/// The largest fragment taken, bytes; a few candidates fit in 2 KiB.
pub const MAX_BYTES: usize = 16 * 1024;
/// Candidates one fragment may carry.
pub const MAX_CANDIDATES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpFragError {
    #[error("the fragment is larger than {MAX_BYTES} bytes")]
    TooLarge,
    #[error("line {line} is not an SDP line ('<type>=<value>')")]
    NotSdp { line: usize },
    #[error("line {line}: {what}")]
    Bad { line: usize, what: String },
    #[error("the fragment has {0} candidates; at most {MAX_CANDIDATES} are taken")]
    TooManyCandidates(usize),
    #[error("the fragment has an ice-ufrag without an ice-pwd, or the reverse")]
    HalfCredentials,
}

/// The ICE username fragment and password of one side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub ufrag: String,
    pub pwd: String,
}

/// One candidate and the media section (`a=mid`) it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub mid: Option<String>,
    /// The attribute's value without `a=`: `candidate:<foundation> …`.
    pub line: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdpFrag {
    pub credentials: Option<Credentials>,
    pub candidates: Vec<Candidate>,
    /// `a=end-of-candidates`: the sender gathers no more.
    pub end_of_candidates: bool,
}

fn ice_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// RFC 8839 §5.4: ufrag 4–256 ice-chars, pwd 22–256.
fn check_credential(
    value: &str,
    min: usize,
    name: &str,
    line: usize,
) -> Result<String, SdpFragError> {
    if value.len() < min || value.len() > 256 || !ice_chars(value) {
        return Err(SdpFragError::Bad {
            line,
            what: format!("{name} must be {min} to 256 letters, digits, '+' or '/'"),
        });
    }
    Ok(value.to_string())
}

/// `candidate:<foundation> <component> <transport> <priority> <address>
/// <port> typ <type> …`, with an IP address or an mDNS name (`….local`,
/// what browsers put in host candidates): a server never resolves a name a
/// peer chose.
fn check_candidate(value: &str, line: usize) -> Result<String, SdpFragError> {
    let bad = |what: &str| SdpFragError::Bad {
        line,
        what: format!("candidate: {what}"),
    };
    let fields: Vec<&str> = value
        .strip_prefix("candidate:")
        .ok_or_else(|| bad("does not start with 'candidate:'"))?
        .split_ascii_whitespace()
        .collect();
    if fields.len() < 8 || fields.len() > 40 || value.len() > 512 {
        return Err(bad(
            "expected '<foundation> <component> <transport> <priority> <address> <port> typ <type>'",
        ));
    }
    let component: u16 = fields[1]
        .parse()
        .map_err(|_| bad("component is not a number"))?;
    if !(1..=256).contains(&component) {
        return Err(bad("component must be 1 to 256"));
    }
    if !["udp", "tcp"].contains(&fields[2].to_ascii_lowercase().as_str()) {
        return Err(bad("transport must be UDP or TCP"));
    }
    fields[3]
        .parse::<u32>()
        .map_err(|_| bad("priority is not a 32-bit number"))?;
    let address = fields[4];
    let mdns = address.ends_with(".local")
        && address.len() <= 80
        && address[..address.len() - 6]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if address.parse::<IpAddr>().is_err() && !mdns {
        return Err(bad(&format!(
            "address '{address}' is neither an IP address nor an mDNS name"
        )));
    }
    fields[5]
        .parse::<u16>()
        .map_err(|_| bad("port is not a port number"))?;
    if fields[6] != "typ" || !["host", "srflx", "prflx", "relay"].contains(&fields[7]) {
        return Err(bad("expected 'typ host|srflx|prflx|relay'"));
    }
    Ok(fields.iter().fold("candidate:".to_string(), |mut out, f| {
        if out.len() > "candidate:".len() {
            out.push(' ');
        }
        out.push_str(f);
        out
    }))
}

impl SdpFrag {
    pub fn parse(text: &str) -> Result<Self, SdpFragError> {
        if text.len() > MAX_BYTES {
            return Err(SdpFragError::TooLarge);
        }
        let mut frag = SdpFrag::default();
        let (mut ufrag, mut pwd) = (None, None);
        let mut mid: Option<String> = None;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = raw.trim_end_matches('\r');
            if raw.is_empty() {
                continue;
            }
            let (kind, value) = raw.split_once('=').ok_or(SdpFragError::NotSdp { line })?;
            if kind.len() != 1 {
                return Err(SdpFragError::NotSdp { line });
            }
            match kind {
                // A new media section: its candidates follow its a=mid.
                "m" => mid = None,
                "a" => {
                    let (name, arg) = value.split_once(':').unwrap_or((value, ""));
                    match name {
                        "ice-ufrag" => ufrag = Some(check_credential(arg, 4, "ice-ufrag", line)?),
                        "ice-pwd" => pwd = Some(check_credential(arg, 22, "ice-pwd", line)?),
                        "mid" => mid = Some(arg.to_string()),
                        "candidate" => {
                            frag.candidates.push(Candidate {
                                mid: mid.clone(),
                                line: check_candidate(value, line)?,
                            });
                            if frag.candidates.len() > MAX_CANDIDATES {
                                let n = text.matches("a=candidate:").count();
                                return Err(SdpFragError::TooManyCandidates(n));
                            }
                        }
                        "end-of-candidates" => frag.end_of_candidates = true,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        frag.credentials = match (ufrag, pwd) {
            (Some(ufrag), Some(pwd)) => Some(Credentials { ufrag, pwd }),
            (None, None) => None,
            _ => return Err(SdpFragError::HalfCredentials),
        };
        Ok(frag)
    }

    /// The credentials and candidates of a whole SDP (an answer given after
    /// a restart), as the fragment that carries them.
    pub fn of_sdp(sdp: &str) -> Result<Self, SdpFragError> {
        let mut text = String::new();
        let mut seen_media = false;
        for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
            if line.starts_with("m=") {
                if seen_media {
                    // Bundled: the first section carries the transport.
                    break;
                }
                seen_media = true;
            }
            let keep = line.starts_with("m=")
                || ["a=ice-ufrag:", "a=ice-pwd:", "a=mid:", "a=candidate:"]
                    .iter()
                    .any(|p| line.starts_with(p))
                || line == "a=end-of-candidates";
            if keep {
                text.push_str(line);
                text.push_str("\r\n");
            }
        }
        Self::parse(&text)
    }

    /// The fragment as sent: credentials, then one media section per mid
    /// with its candidates (`media` is that section's `m=` line).
    pub fn to_text(&self, media: &str) -> String {
        let mut out = String::new();
        if let Some(c) = &self.credentials {
            out.push_str(&format!(
                "a=ice-ufrag:{}\r\na=ice-pwd:{}\r\n",
                c.ufrag, c.pwd
            ));
        }
        let mut mids: Vec<Option<&str>> = Vec::new();
        for c in &self.candidates {
            if !mids.contains(&c.mid.as_deref()) {
                mids.push(c.mid.as_deref());
            }
        }
        if mids.is_empty() && self.end_of_candidates {
            mids.push(None);
        }
        for mid in mids {
            out.push_str(media);
            out.push_str("\r\n");
            if let Some(mid) = mid {
                out.push_str(&format!("a=mid:{mid}\r\n"));
            }
            for c in self.candidates.iter().filter(|c| c.mid.as_deref() == mid) {
                out.push_str(&format!("a={}\r\n", c.line));
            }
            if self.end_of_candidates {
                out.push_str("a=end-of-candidates\r\n");
            }
        }
        out
    }
}

/// The credentials a whole SDP uses (its first ones: bundled sections share
/// them).
pub fn credentials_of(sdp: &str) -> Option<Credentials> {
    let find = |prefix: &str| {
        sdp.lines()
            .map(|l| l.trim_end_matches('\r'))
            .find_map(|l| l.strip_prefix(prefix).map(str::to_string))
    };
    Some(Credentials {
        ufrag: find("a=ice-ufrag:")?,
        pwd: find("a=ice-pwd:")?,
    })
}

/// `sdp` with new ICE credentials and candidates, its earlier candidates
/// dropped and its version raised: the description a restart applies.
/// Candidates go to the section whose mid they name, or the first.
pub fn restarted(sdp: &str, frag: &SdpFrag) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut section = 0usize;
    let mut in_media = false;
    let mids = mids_of(sdp);
    let first_mid = mids.first().cloned().flatten();
    let candidates_for = |mid: &Option<String>| -> Vec<String> {
        frag.candidates
            .iter()
            .filter(|c| c.mid.clone().or_else(|| first_mid.clone()) == *mid)
            .map(|c| format!("a={}", c.line))
            .collect()
    };
    let close_section = |out: &mut Vec<String>, index: usize| {
        if let Some(mid) = mids.get(index) {
            out.extend(candidates_for(mid));
            if frag.end_of_candidates {
                out.push("a=end-of-candidates".into());
            }
        }
    };
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.is_empty() || line.starts_with("a=candidate:") || line == "a=end-of-candidates" {
            continue;
        }
        if line.starts_with("m=") {
            if in_media {
                close_section(&mut out, section);
                section += 1;
            }
            in_media = true;
        }
        if let Some(rest) = line.strip_prefix("o=") {
            // o=<user> <session id> <version> …: a changed description
            // carries a higher version (RFC 3264 §8).
            let mut fields: Vec<String> = rest.split(' ').map(str::to_string).collect();
            if let Some(version) = fields.get_mut(2)
                && let Some(next) = version.parse::<u64>().ok().and_then(|v| v.checked_add(1))
            {
                *version = next.to_string();
            }
            out.push(format!("o={}", fields.join(" ")));
            continue;
        }
        match (&frag.credentials, line) {
            (Some(c), l) if l.starts_with("a=ice-ufrag:") => {
                out.push(format!("a=ice-ufrag:{}", c.ufrag))
            }
            (Some(c), l) if l.starts_with("a=ice-pwd:") => out.push(format!("a=ice-pwd:{}", c.pwd)),
            _ => out.push(line.to_string()),
        }
    }
    if in_media {
        close_section(&mut out, section);
    }
    let mut text = out.join("\r\n");
    text.push_str("\r\n");
    text
}

/// `sdp` with `credentials` in place of its own, nothing else changed.
pub fn with_credentials(sdp: &str, credentials: &Credentials) -> String {
    let mut text: String = sdp
        .lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty())
        .map(|line| {
            if line.starts_with("a=ice-ufrag:") {
                format!("a=ice-ufrag:{}", credentials.ufrag)
            } else if line.starts_with("a=ice-pwd:") {
                format!("a=ice-pwd:{}", credentials.pwd)
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    text.push_str("\r\n");
    text
}

/// Each media section's `a=mid`, in order.
pub fn mids_of(sdp: &str) -> Vec<Option<String>> {
    let mut mids: Vec<Option<String>> = Vec::new();
    for line in sdp.lines().map(|l| l.trim_end_matches('\r')) {
        if line.starts_with("m=") {
            mids.push(None);
        } else if let (Some(mid), Some(last)) = (line.strip_prefix("a=mid:"), mids.last_mut()) {
            *last = Some(mid.to_string());
        }
    }
    mids
}

/// The media section a candidate goes to: the one with its mid, else the
/// first (bundled sections share one transport).
pub fn mline_of(sdp: &str, mid: Option<&str>) -> u32 {
    mid.and_then(|mid| mids_of(sdp).iter().position(|m| m.as_deref() == Some(mid)))
        .and_then(|i| u32::try_from(i).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAG: &str = "a=ice-options:trickle ice2\r\n\
        a=group:BUNDLE 0\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        a=mid:0\r\n\
        a=ice-ufrag:EsAw\r\n\
        a=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n\
        a=candidate:1387637174 1 udp 2122260223 192.0.2.1 61764 typ host generation 0 ufrag EsAw\r\n\
        a=candidate:3471623853 1 udp 2122194687 4f2b8c1e-2d9a-4c1b-9a4e-0c1d2e3f4a5b.local 61765 typ host\r\n\
        a=end-of-candidates\r\n";

    #[test]
    fn a_browser_fragment_gives_its_credentials_and_candidates_by_mid() {
        let frag = SdpFrag::parse(FRAG).unwrap();
        assert_eq!(
            frag.credentials,
            Some(Credentials {
                ufrag: "EsAw".into(),
                pwd: "P2uYro0UCOQ4zxjKXaWCBui1".into()
            })
        );
        assert_eq!(frag.candidates.len(), 2);
        assert_eq!(frag.candidates[0].mid.as_deref(), Some("0"));
        assert!(frag.candidates[1].line.contains(".local 61765 typ host"));
        assert!(frag.end_of_candidates);
        let again = SdpFrag::parse(&frag.to_text("m=video 9 UDP/TLS/RTP/SAVPF 96")).unwrap();
        assert_eq!(again, frag, "what we print parses back the same");
    }

    #[test]
    fn what_a_peer_must_not_make_us_do_is_refused_by_line() {
        let cases: &[(&str, &str)] = &[
            (
                "a=candidate:1 1 udp 1 intranet.example.com 80 typ host\r\n",
                "neither an IP address",
            ),
            (
                "a=candidate:1 1 sctp 1 10.0.0.1 80 typ host\r\n",
                "transport",
            ),
            ("a=candidate:1 1 udp 1 10.0.0.1 99999 typ host\r\n", "port"),
            ("a=candidate:1 1 udp 1 10.0.0.1 80 typ nonsense\r\n", "typ"),
            ("a=candidate:1 1 udp\r\n", "expected"),
            (
                "a=ice-ufrag:ab\r\na=ice-pwd:P2uYro0UCOQ4zxjKXaWCBui1\r\n",
                "ice-ufrag",
            ),
            ("a=ice-ufrag:abcd\r\na=ice-pwd:short\r\n", "ice-pwd"),
            ("this is not sdp\r\n", "not an SDP line"),
        ];
        for (text, expected) in cases {
            let err = SdpFrag::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        assert_eq!(
            SdpFrag::parse("a=ice-ufrag:abcd\r\n"),
            Err(SdpFragError::HalfCredentials)
        );
        let flood: String = (0..40)
            .map(|i| format!("a=candidate:{i} 1 udp 1 10.0.0.1 {} typ host\r\n", 1000 + i))
            .collect();
        assert_eq!(
            SdpFrag::parse(&flood),
            Err(SdpFragError::TooManyCandidates(40))
        );
        assert_eq!(
            SdpFrag::parse(&"a=x\r\n".repeat(MAX_BYTES)),
            Err(SdpFragError::TooLarge)
        );
    }

    const OFFER: &str = "v=0\r\no=- 123 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE video0 data1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:video0\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldpasswordoldpassword\r\n\
        a=candidate:1 1 UDP 100 10.0.0.1 5000 typ host\r\na=end-of-candidates\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:data1\r\na=ice-ufrag:oldU\r\na=ice-pwd:oldpasswordoldpassword\r\n";

    #[test]
    fn a_restart_replaces_credentials_and_candidates_and_raises_the_version() {
        let frag = SdpFrag::parse(
            "a=ice-ufrag:newU\r\na=ice-pwd:newpasswordnewpassword\r\n\
             a=candidate:2 1 udp 200 10.0.0.2 6000 typ host\r\n",
        )
        .unwrap();
        let next = restarted(OFFER, &frag);
        assert!(next.contains("o=- 123 2 IN IP4"), "{next}");
        assert!(
            !next.contains("oldU") && !next.contains("oldpassword"),
            "{next}"
        );
        assert_eq!(next.matches("a=ice-ufrag:newU").count(), 2);
        assert!(!next.contains("10.0.0.1"), "old candidates go");
        let (video, data) = next.split_once("m=application").unwrap();
        assert!(video.contains("a=candidate:2 1 udp 200 10.0.0.2 6000 typ host"));
        assert!(
            !data.contains("a=candidate"),
            "a candidate without mid goes to the first section"
        );
        assert_eq!(credentials_of(&next).unwrap().ufrag, "newU");
        let renewed = with_credentials(OFFER, frag.credentials.as_ref().unwrap());
        assert!(renewed.contains("o=- 123 1 IN IP4"), "the version stays");
        assert!(renewed.contains("10.0.0.1"), "candidates stay");
        assert_eq!(credentials_of(&renewed), frag.credentials);
        assert_eq!(mline_of(OFFER, Some("data1")), 1);
        assert_eq!(mline_of(OFFER, Some("nope")), 0);
        assert_eq!(mline_of(OFFER, None), 0);
    }

    #[test]
    fn an_answer_becomes_the_fragment_of_its_first_section() {
        let frag = SdpFrag::of_sdp(OFFER).unwrap();
        assert_eq!(frag.credentials.unwrap().ufrag, "oldU");
        assert_eq!(frag.candidates.len(), 1);
        assert_eq!(frag.candidates[0].mid.as_deref(), Some("video0"));
        assert!(frag.end_of_candidates);
    }
}
