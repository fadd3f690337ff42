//! Trickle ICE and ICE restarts on a `webrtcbin` (RFC 9725 §4.3), both
//! ends:
//!
//! - [`Answering`]: the end that answered an offer (the server's WHIP
//!   ingest and WHEP viewers) takes a peer's late candidates and, when the
//!   peer's credentials change, applies its offer again with them and
//!   answers with fresh ones.
//! - [`Offering`]: the end that made the offer (the agent's publisher, a
//!   WHEP subscriber) hands on the candidates it finds after its offer went
//!   out, and restarts ICE with `create-offer`'s `ice-restart`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gst::prelude::*;
use gst_webrtc::{WebRTCICEGatheringState, WebRTCSDPType};
use lx_protocol::sdpfrag::{self, Candidate, Credentials, SdpFrag};
use tokio::sync::mpsc;

use crate::MediaError;
use crate::webrtc;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The first `m=` line of an SDP: the section a fragment names.
fn first_media_line(sdp: &str) -> String {
    sdp.lines()
        .map(|l| l.trim_end_matches('\r'))
        .find(|l| l.starts_with("m="))
        .unwrap_or("m=video 9 UDP/TLS/RTP/SAVPF 96")
        .to_string()
}

fn add_candidates(webrtc: &gst::Element, remote: &str, frag: &SdpFrag) {
    for candidate in &frag.candidates {
        let mline = sdpfrag::mline_of(remote, candidate.mid.as_deref());
        webrtc.emit_by_name::<()>("add-ice-candidate", &[&mline, &candidate.line]);
    }
}

/// Late candidates one ICE session takes from its peer: each is checked
/// with STUN from here, so a peer may not make us probe without end.
pub const MAX_LATE_CANDIDATES: usize = 64;

/// A new ICE username fragment and password (RFC 8839: at least 24 and
/// 128 bits of randomness).
fn fresh_credentials() -> Credentials {
    use rand::Rng;
    const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = rand::thread_rng();
    let mut draw = |n: usize| -> String {
        (0..n)
            .map(|_| char::from(ICE_CHARS[rng.gen_range(0..ICE_CHARS.len())]))
            .collect()
    };
    Credentials {
        ufrag: draw(16),
        pwd: draw(32),
    }
}

/// The answering end of one peer connection.
#[derive(Debug, Clone)]
pub struct Answering {
    webrtc: gst::Element,
    /// The remote offer as last applied, and the late candidates it took.
    offer: Arc<Mutex<(String, usize)>>,
}

impl Answering {
    pub(crate) fn new(webrtc: &gst::Element, offer: &str) -> Self {
        Self {
            webrtc: webrtc.clone(),
            offer: Arc::new(Mutex::new((offer.to_string(), 0))),
        }
    }

    /// The peer's ICE credentials now.
    pub fn remote_credentials(&self) -> Option<Credentials> {
        sdpfrag::credentials_of(&lock(&self.offer).0)
    }

    /// Adds a peer's late candidates, refusing a fragment whose credentials
    /// are not the session's or that goes past [`MAX_LATE_CANDIDATES`].
    pub fn add_candidates(&self, frag: &SdpFrag) -> Result<(), MediaError> {
        let mut offer = lock(&self.offer);
        if let Some(given) = &frag.credentials
            && sdpfrag::credentials_of(&offer.0).as_ref() != Some(given)
        {
            return Err(MediaError::BadSdp(format!(
                "the fragment's ice-ufrag '{}' is not this ICE session's: restart ICE with If-Match: \"*\"",
                given.ufrag
            )));
        }
        if offer.1 + frag.candidates.len() > MAX_LATE_CANDIDATES {
            return Err(MediaError::BadSdp(format!(
                "an ICE session takes at most {MAX_LATE_CANDIDATES} late candidates"
            )));
        }
        offer.1 += frag.candidates.len();
        add_candidates(&self.webrtc, &offer.0, frag);
        Ok(())
    }

    /// An ICE restart: the peer's offer again with the fragment's new
    /// credentials and candidates; returns our answer as a fragment, with
    /// our new credentials and every candidate we gathered.
    pub async fn restart(&self, frag: &SdpFrag) -> Result<String, MediaError> {
        if frag.credentials.is_none() {
            return Err(MediaError::BadSdp(
                "an ICE restart needs the new ice-ufrag and ice-pwd".into(),
            ));
        }
        let offer = sdpfrag::restarted(&lock(&self.offer).0.clone(), frag);
        let desc = webrtc::parse_sdp(WebRTCSDPType::Offer, &offer)?;
        webrtc::set_remote(&self.webrtc, &desc).await?;
        // webrtcbin answers a restart with the credentials it had; an
        // answerer must change its own too (RFC 8839 §4.4.1.1.1), and what
        // the local description says is what webrtcbin hands to ICE.
        let answer = webrtc::create_description(&self.webrtc, WebRTCSDPType::Answer, None).await?;
        let text = answer
            .sdp()
            .as_text()
            .map_err(|_| MediaError::Negotiation("the answer does not print".into()))?;
        let renewed = webrtc::parse_sdp(
            WebRTCSDPType::Answer,
            &sdpfrag::with_credentials(&text, &fresh_credentials()),
        )?;
        webrtc::set_local(&self.webrtc, &renewed).await?;
        let answer = webrtc::gathered_local_sdp(&self.webrtc).await?;
        *lock(&self.offer) = (offer, 0);
        let mut ours =
            SdpFrag::of_sdp(&answer).map_err(|e| MediaError::Negotiation(e.to_string()))?;
        ours.end_of_candidates = true;
        Ok(ours.to_text(&first_media_line(&answer)))
    }
}

/// What the offering end finds after its offer went out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalIce {
    Candidate(Candidate),
    /// Gathering is complete.
    Done,
}

/// How long an offer waits for candidates before it goes out with those it
/// has, the rest following as fragments: host candidates take a few
/// milliseconds, STUN and TURN a round trip each.
pub const TRICKLE_WAIT: Duration = Duration::from_millis(150);

/// webrtcbin's candidate: the m-line index and `candidate:…`.
type RawCandidate = Option<(u32, String)>;

/// The candidates an offering end finds after its offer went out.
#[derive(Debug)]
pub struct LateCandidates {
    raw: mpsc::UnboundedReceiver<RawCandidate>,
    offer: Arc<Mutex<String>>,
}

impl LateCandidates {
    /// The next candidate the offer does not carry already; `None` when the
    /// connection is gone.
    pub async fn next(&mut self) -> Option<LocalIce> {
        loop {
            let Some((mline, line)) = self.raw.recv().await? else {
                return Some(LocalIce::Done);
            };
            let offer = lock(&self.offer).clone();
            // webrtcbin writes a candidate into its local description before
            // it signals it: one read with the offer went out with it.
            if offer
                .lines()
                .any(|l| l.trim_end_matches('\r').strip_prefix("a=") == Some(&line))
            {
                continue;
            }
            let mid = sdpfrag::mids_of(&offer)
                .get(mline as usize)
                .cloned()
                .flatten();
            return Some(LocalIce::Candidate(Candidate { mid, line }));
        }
    }
}

/// The offering end of one peer connection.
#[derive(Debug)]
pub struct Offering {
    webrtc: gst::Element,
    late: Option<LateCandidates>,
    /// Our offer as last set, for the mids of late candidates.
    offer: Arc<Mutex<String>>,
    answer: Mutex<Option<String>>,
}

impl Offering {
    /// Starts listening to `webrtc`'s candidates; call before the offer.
    pub(crate) fn watch(webrtc: &gst::Element) -> Self {
        let (tx, raw) = mpsc::unbounded_channel::<RawCandidate>();
        let offer: Arc<Mutex<String>> = Arc::default();
        {
            let tx = tx.clone();
            webrtc.connect("on-ice-candidate", false, move |values| {
                let mline = values.get(1).and_then(|v| v.get::<u32>().ok())?;
                let line = values.get(2).and_then(|v| v.get::<String>().ok())?;
                let line = line.strip_prefix("a=").unwrap_or(&line).to_string();
                let _ = tx.send(Some((mline, line)));
                None
            });
        }
        webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| {
            if w.property::<WebRTCICEGatheringState>("ice-gathering-state")
                == WebRTCICEGatheringState::Complete
            {
                let _ = tx.send(None);
            }
        });
        Self {
            webrtc: webrtc.clone(),
            late: Some(LateCandidates {
                raw,
                offer: Arc::clone(&offer),
            }),
            offer,
            answer: Mutex::new(None),
        }
    }

    /// The candidates found after the offer; once.
    pub fn take_late_candidates(&mut self) -> Option<LateCandidates> {
        self.late.take()
    }

    /// Creates and sets the offer (`restart`: with fresh ICE credentials)
    /// and returns it once gathering completed or `wait` passed, with the
    /// candidates found until then.
    pub(crate) async fn offer(&self, restart: bool, wait: Duration) -> Result<String, MediaError> {
        let options = restart.then(|| {
            gst::Structure::builder("options")
                .field("ice-restart", true)
                .build()
        });
        webrtc::create_local_with(&self.webrtc, WebRTCSDPType::Offer, options).await?;
        let sdp = webrtc::local_sdp_within(&self.webrtc, wait).await?;
        *lock(&self.offer) = sdp.clone();
        Ok(sdp)
    }

    /// The answer's late candidates (an answerer rarely sends any).
    pub fn add_candidates(&self, frag: &SdpFrag) {
        let offer = lock(&self.offer).clone();
        add_candidates(&self.webrtc, &offer, frag);
    }

    /// Notes the answer applied, for a later restart.
    pub(crate) fn answered(&self, answer: &str) {
        *lock(&self.answer) = Some(answer.to_string());
    }

    /// An ICE restart: a new offer with fresh credentials, as the fragment
    /// to PATCH with `If-Match: "*"`.
    pub async fn restart_fragment(&self) -> Result<String, MediaError> {
        let offer = self.offer(true, webrtc::GATHER_TIMEOUT).await?;
        let mut frag =
            SdpFrag::of_sdp(&offer).map_err(|e| MediaError::Negotiation(e.to_string()))?;
        frag.end_of_candidates = true;
        Ok(frag.to_text(&first_media_line(&offer)))
    }

    /// Applies the answer to a restart: the answer applied before, with
    /// the credentials and candidates of `answer_fragment`.
    pub async fn accept_restart(&self, answer_fragment: &str) -> Result<(), MediaError> {
        let frag = SdpFrag::parse(answer_fragment)
            .map_err(|e| MediaError::BadSdp(format!("restart answer: {e}")))?;
        if frag.credentials.is_none() {
            return Err(MediaError::BadSdp(
                "the restart answer carries no ICE credentials".into(),
            ));
        }
        let previous = lock(&self.answer)
            .clone()
            .ok_or_else(|| MediaError::Negotiation("no answer to restart from".into()))?;
        let answer = sdpfrag::restarted(&previous, &frag);
        let desc = webrtc::parse_sdp(WebRTCSDPType::Answer, &answer)?;
        webrtc::set_remote(&self.webrtc, &desc).await?;
        self.answered(&answer);
        Ok(())
    }

    /// A local candidate as the fragment that carries it.
    pub fn fragment(&self, candidates: Vec<Candidate>, done: bool) -> String {
        let offer = lock(&self.offer).clone();
        SdpFrag {
            credentials: sdpfrag::credentials_of(&offer),
            candidates,
            end_of_candidates: done,
        }
        .to_text(&first_media_line(&offer))
    }
}
