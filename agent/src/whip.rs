//! WHIP signalling (RFC 9725), sans IO: the publisher side of a session's
//! video. The core says which HTTP request to send; the shell sends it with
//! reqwest and feeds the answer back, with `now` passed in.
//!
//! - `start` → POST the SDP offer to the WHIP URL; `201 Created` carries the
//!   answer and, in `Location`, the session resource (maybe relative).
//! - 307/308 redirect the POST (at most [`MAX_REDIRECTS`]).
//! - Any failure (network, 5xx, a refused offer, the media pipeline dying)
//!   → wait with exponential backoff, ask the shell for a fresh offer and
//!   POST again to the same WHIP URL: the URL is stable for the session.
//! - Trickle ICE: candidates found after the offer went out are PATCHed to
//!   the resource as `application/trickle-ice-sdpfrag` with `If-Match` set
//!   to the resource's `ETag`, one request at a time, queued until the
//!   resource exists. A server that refuses PATCH (405, 422, 501) gets no
//!   more, and later offers wait for every candidate instead.
//! - `stop` → DELETE the resource, if there is one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub const MAX_REDIRECTS: u32 = 3;
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// POSTs in a row that reach no server before the endpoint is reported
/// gone: the replica that carried the session may have died, and the
/// session's `start` names where its media are now.
pub const GONE_AFTER_UNREACHABLE: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Post,
    /// Trickle ICE: a fragment with late candidates.
    Patch,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub url: String,
    /// The SDP offer, for a POST; the fragment, for a PATCH.
    pub body: Option<String>,
    /// The resource's entity tag, for a PATCH.
    pub if_match: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Publish with this offer.
    Offer {
        sdp: String,
        now: Instant,
    },
    /// The answer to the request last sent.
    Response {
        status: u16,
        location: Option<String>,
        /// The `ETag` of a created resource.
        etag: Option<String>,
        body: String,
        now: Instant,
    },
    /// Candidates found after the offer, as a trickle-ice-sdpfrag.
    LateCandidates {
        fragment: String,
    },
    /// The request last sent did not get an answer.
    Unreachable {
        now: Instant,
    },
    /// The media flowing under the session broke: publish again.
    MediaFailed {
        now: Instant,
    },
    /// No offer could be made (the camera or the encoder would not start).
    OfferFailed {
        reason: String,
        now: Instant,
    },
    Tick {
        now: Instant,
    },
    Stop {
        now: Instant,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Send(Request),
    /// Hand this SDP answer to webrtcbin.
    Answer(String),
    /// Build a fresh offer and feed it back as `Input::Offer`.
    NeedOffer,
    /// Publishing; the resource to DELETE on stop.
    Connected {
        resource: String,
    },
    Retrying {
        attempt: u32,
        after: Duration,
        reason: String,
    },
    /// [`GONE_AFTER_UNREACHABLE`] POSTs in a row reached no server: ask
    /// the session's `start` again (the core goes on retrying meanwhile).
    EndpointGone,
    Stopped,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// The next offer goes to `url`.
    AwaitingOffer {
        url: String,
        redirects: u32,
    },
    Posting {
        url: String,
        redirects: u32,
    },
    Running {
        resource: String,
    },
    Waiting {
        until: Instant,
    },
    Deleting,
    Stopped,
}

/// Whether the server takes trickled candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trickle {
    Untried,
    Taken,
    Refused,
}

#[derive(Debug)]
pub struct WhipClient {
    endpoint: String,
    state: State,
    attempt: u32,
    /// POSTs in a row that reached no server.
    unreachable: u32,
    outputs: VecDeque<Output>,
    trickle: Trickle,
    /// The running resource's ICE session tag.
    etag: Option<String>,
    /// Fragments waiting for the resource or for the PATCH in flight.
    fragments: VecDeque<String>,
    patching: bool,
}

/// `location` resolved against the URL it answered.
fn resolve(base: &str, location: &str) -> Option<String> {
    let base = reqwest::Url::parse(base).ok()?;
    base.join(location).ok().map(String::from)
}

impl WhipClient {
    pub fn new(endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        let state = State::AwaitingOffer {
            url: endpoint.clone(),
            redirects: 0,
        };
        Self {
            endpoint,
            state,
            attempt: 0,
            unreachable: 0,
            outputs: VecDeque::new(),
            trickle: Trickle::Untried,
            etag: None,
            fragments: VecDeque::new(),
            patching: false,
        }
    }

    /// Whether an offer may go out before every candidate is found: no
    /// server of this session refused trickle ICE yet.
    pub fn trickles(&self) -> bool {
        self.trickle != Trickle::Refused
    }

    /// PATCHes the next fragment if the resource can take one now.
    fn send_fragment(&mut self) {
        let State::Running { resource } = &self.state else {
            return;
        };
        let Some(etag) = self.etag.clone() else {
            self.fragments.clear();
            return;
        };
        if self.patching || self.trickle == Trickle::Refused {
            return;
        }
        if let Some(fragment) = self.fragments.pop_front() {
            self.patching = true;
            self.outputs.push_back(Output::Send(Request {
                method: Method::Patch,
                url: resource.clone(),
                body: Some(fragment),
                if_match: Some(etag),
            }));
        }
    }

    /// The answer to a PATCH: the next fragment goes, or none ever again.
    fn patched(&mut self, status: Option<u16>) {
        self.patching = false;
        match status {
            Some(200..=299) => self.trickle = Trickle::Taken,
            Some(405 | 422 | 501) => {
                self.trickle = Trickle::Refused;
                self.fragments.clear();
            }
            // A stale tag or a refused fragment loses that fragment only.
            _ => {}
        }
        self.send_fragment();
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, State::Running { .. })
    }

    /// When the core wants a `Tick`, if it waits for anything.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { until } => Some(until),
            _ => None,
        }
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    fn retry(&mut self, now: Instant, reason: String) {
        self.etag = None;
        self.fragments.clear();
        self.patching = false;
        self.attempt += 1;
        let exp = MIN_BACKOFF.saturating_mul(1u32 << self.attempt.min(16).saturating_sub(1));
        let after = exp.min(MAX_BACKOFF);
        self.state = State::Waiting { until: now + after };
        self.outputs.push_back(Output::Retrying {
            attempt: self.attempt,
            after,
            reason,
        });
    }

    pub fn handle_input(&mut self, input: Input) {
        if matches!(input, Input::Response { .. }) {
            // A server answered: whatever it said, the endpoint is there.
            self.unreachable = 0;
        }
        if self.patching {
            match input {
                Input::Response { status, .. } => return self.patched(Some(status)),
                Input::Unreachable { .. } => return self.patched(None),
                _ => {}
            }
        }
        if let Input::LateCandidates { fragment } = input {
            let waiting_for_resource = matches!(
                self.state,
                State::AwaitingOffer { .. } | State::Posting { .. }
            );
            let running = matches!(self.state, State::Running { .. });
            if self.trickle != Trickle::Refused && (waiting_for_resource || running) {
                self.fragments.push_back(fragment);
                self.send_fragment();
            }
            return;
        }
        match (std::mem::replace(&mut self.state, State::Stopped), input) {
            (State::Stopped, _) => self.state = State::Stopped,
            (State::Running { resource }, Input::Stop { .. }) => {
                self.state = State::Deleting;
                self.outputs.push_back(Output::Send(Request {
                    method: Method::Delete,
                    url: resource,
                    body: None,
                    if_match: None,
                }));
            }
            (State::Deleting, Input::Response { .. } | Input::Unreachable { .. })
            | (_, Input::Stop { .. }) => {
                self.state = State::Stopped;
                self.outputs.push_back(Output::Stopped);
            }
            (State::AwaitingOffer { url, redirects }, Input::Offer { sdp, .. }) => {
                self.outputs.push_back(Output::Send(Request {
                    method: Method::Post,
                    url: url.clone(),
                    body: Some(sdp),
                    if_match: None,
                }));
                self.state = State::Posting { url, redirects };
            }
            (
                State::Posting { url, redirects },
                Input::Response {
                    status,
                    location,
                    etag,
                    body,
                    now,
                },
            ) => match status {
                201 => match location.as_deref().and_then(|l| resolve(&url, l)) {
                    Some(resource) => {
                        self.attempt = 0;
                        self.outputs.push_back(Output::Answer(body));
                        self.outputs.push_back(Output::Connected {
                            resource: resource.clone(),
                        });
                        self.state = State::Running { resource };
                        self.etag = etag;
                        self.send_fragment();
                    }
                    None => self.retry(now, "201 without a usable Location".into()),
                },
                307 | 308 if redirects < MAX_REDIRECTS => {
                    match location.as_deref().and_then(|l| resolve(&url, l)) {
                        Some(next) => {
                            self.fragments.clear();
                            self.outputs.push_back(Output::NeedOffer);
                            self.state = State::AwaitingOffer {
                                url: next,
                                redirects: redirects + 1,
                            };
                        }
                        None => self.retry(now, format!("{status} without a usable Location")),
                    }
                }
                _ => self.retry(now, format!("WHIP endpoint answered {status}")),
            },
            (State::Posting { .. }, Input::Unreachable { now }) => {
                self.unreachable += 1;
                if self.unreachable == GONE_AFTER_UNREACHABLE {
                    self.outputs.push_back(Output::EndpointGone);
                }
                self.retry(now, "WHIP endpoint unreachable".into())
            }
            (State::Running { .. }, Input::MediaFailed { now }) => {
                self.retry(now, "media stopped flowing".into())
            }
            (State::AwaitingOffer { .. }, Input::OfferFailed { reason, now }) => {
                self.retry(now, reason)
            }
            (State::Waiting { until }, Input::Tick { now }) if now >= until => {
                // Back to the session's own WHIP URL, whatever redirected us.
                self.state = State::AwaitingOffer {
                    url: self.endpoint.clone(),
                    redirects: 0,
                };
                self.outputs.push_back(Output::NeedOffer);
            }
            (state, _) => self.state = state,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHIP: &str = "http://lx.example/media/whip/tok123";

    fn build_client() -> (WhipClient, Instant) {
        let mut c = WhipClient::new(WHIP);
        let t0 = Instant::now();
        c.handle_input(Input::Offer {
            sdp: "v=0 offer".into(),
            now: t0,
        });
        (c, t0)
    }

    fn drain(c: &mut WhipClient) -> Vec<Output> {
        std::iter::from_fn(|| c.poll_output()).collect()
    }

    #[test]
    fn an_offer_is_posted_and_the_answer_connects() {
        let (mut c, t0) = build_client();
        assert_eq!(
            drain(&mut c),
            vec![Output::Send(Request {
                method: Method::Post,
                url: WHIP.into(),
                body: Some("v=0 offer".into()),
                if_match: None,
            })]
        );
        c.handle_input(Input::Response {
            status: 201,
            location: Some("/media/whip/tok123/r1".into()),
            etag: None,
            body: "v=0 answer".into(),
            now: t0,
        });
        assert_eq!(
            drain(&mut c),
            vec![
                Output::Answer("v=0 answer".into()),
                Output::Connected {
                    resource: "http://lx.example/media/whip/tok123/r1".into()
                }
            ]
        );
        assert!(c.is_running());
    }

    #[test]
    fn an_endpoint_unreachable_twice_in_a_row_is_reported_gone_once() {
        let (mut c, t0) = build_client();
        drain(&mut c);
        let mut now = t0;
        let mut gone = 0;
        // Unreachable, answered, then unreachable twice and thrice.
        for reachable in [false, true, false, false, false] {
            if reachable {
                c.handle_input(Input::Response {
                    status: 503,
                    location: None,
                    etag: None,
                    body: String::new(),
                    now,
                });
            } else {
                c.handle_input(Input::Unreachable { now });
            }
            let outputs = drain(&mut c);
            gone += outputs
                .iter()
                .filter(|o| **o == Output::EndpointGone)
                .count();
            // Back to posting after the backoff.
            now += MAX_BACKOFF;
            c.handle_input(Input::Tick { now });
            drain(&mut c);
            c.handle_input(Input::Offer {
                sdp: "v=0".into(),
                now,
            });
            drain(&mut c);
        }
        assert_eq!(gone, 1, "reported once, at the second unreachable in a row");
    }

    #[test]
    fn failures_back_off_exponentially_and_post_again_to_the_same_url() {
        let (mut c, t0) = build_client();
        drain(&mut c);
        c.handle_input(Input::Unreachable { now: t0 });
        assert!(
            matches!(drain(&mut c)[..], [Output::Retrying { attempt: 1, after, .. }] if after == MIN_BACKOFF)
        );
        c.handle_input(Input::Tick {
            now: t0 + Duration::from_millis(499),
        });
        assert!(drain(&mut c).is_empty());
        c.handle_input(Input::Tick {
            now: t0 + MIN_BACKOFF,
        });
        assert_eq!(drain(&mut c), vec![Output::NeedOffer]);
        c.handle_input(Input::Offer {
            sdp: "v=0 again".into(),
            now: t0 + MIN_BACKOFF,
        });
        match &drain(&mut c)[..] {
            [Output::Send(r)] => assert_eq!(r.url, WHIP),
            other => panic!("{other:?}"),
        }
        c.handle_input(Input::Response {
            status: 503,
            location: None,
            etag: None,
            body: String::new(),
            now: t0,
        });
        assert!(
            matches!(drain(&mut c)[..], [Output::Retrying { attempt: 2, after, .. }] if after == MIN_BACKOFF * 2)
        );
    }

    #[test]
    fn the_backoff_is_capped() {
        let (mut c, t0) = build_client();
        for _ in 0..20 {
            drain(&mut c);
            c.handle_input(Input::Unreachable { now: t0 });
            let until = c.deadline().unwrap();
            assert!(until - t0 <= MAX_BACKOFF);
            c.handle_input(Input::Tick { now: until });
            c.handle_input(Input::Offer {
                sdp: "o".into(),
                now: until,
            });
        }
    }

    #[test]
    fn media_dying_while_running_republishes() {
        let (mut c, t0) = build_client();
        c.handle_input(Input::Response {
            status: 201,
            location: Some("r1".into()),
            etag: None,
            body: "a".into(),
            now: t0,
        });
        drain(&mut c);
        c.handle_input(Input::MediaFailed { now: t0 });
        assert!(matches!(
            drain(&mut c)[..],
            [Output::Retrying { attempt: 1, .. }]
        ));
    }

    fn patch(fragment: &str, etag: &str) -> Output {
        Output::Send(Request {
            method: Method::Patch,
            url: "http://lx.example/media/whip/tok123/r1".into(),
            body: Some(fragment.into()),
            if_match: Some(etag.into()),
        })
    }

    fn created(c: &mut WhipClient, now: Instant, etag: Option<&str>) {
        c.handle_input(Input::Response {
            status: 201,
            location: Some("/media/whip/tok123/r1".into()),
            etag: etag.map(str::to_string),
            body: "v=0 answer".into(),
            now,
        });
    }

    fn answered(c: &mut WhipClient, status: u16, now: Instant) {
        c.handle_input(Input::Response {
            status,
            location: None,
            etag: None,
            body: String::new(),
            now,
        });
    }

    #[test]
    fn late_candidates_wait_for_the_resource_then_go_one_patch_at_a_time() {
        let (mut c, t0) = build_client();
        drain(&mut c);
        c.handle_input(Input::LateCandidates {
            fragment: "f1".into(),
        });
        assert_eq!(drain(&mut c), vec![], "no resource to PATCH yet");
        created(&mut c, t0, Some("\"tag1\""));
        let out = drain(&mut c);
        assert_eq!(out.last(), Some(&patch("f1", "\"tag1\"")));
        c.handle_input(Input::LateCandidates {
            fragment: "f2".into(),
        });
        assert_eq!(drain(&mut c), vec![], "one PATCH in flight at a time");
        answered(&mut c, 204, t0);
        assert_eq!(drain(&mut c), vec![patch("f2", "\"tag1\"")]);
        answered(&mut c, 412, t0);
        assert!(
            c.trickles(),
            "a stale tag loses one fragment, not trickling"
        );
        assert!(c.is_running());
        c.handle_input(Input::Stop { now: t0 });
        assert!(matches!(
            drain(&mut c).as_slice(),
            [Output::Send(Request {
                method: Method::Delete,
                ..
            })]
        ));
    }

    #[test]
    fn a_server_that_refuses_patch_gets_no_more_and_later_offers_wait_for_every_candidate() {
        let (mut c, t0) = build_client();
        drain(&mut c);
        created(&mut c, t0, Some("\"t\""));
        drain(&mut c);
        for f in ["f1", "f2"] {
            c.handle_input(Input::LateCandidates { fragment: f.into() });
        }
        assert_eq!(drain(&mut c), vec![patch("f1", "\"t\"")]);
        answered(&mut c, 405, t0);
        assert_eq!(drain(&mut c), vec![], "the queued fragment is dropped");
        assert!(!c.trickles());
        assert!(c.is_running(), "the session publishes on");
        c.handle_input(Input::LateCandidates {
            fragment: "f3".into(),
        });
        assert_eq!(drain(&mut c), vec![]);
    }

    #[test]
    fn without_an_etag_no_fragment_is_sent_and_a_retry_forgets_the_old_ones() {
        let (mut c, t0) = build_client();
        drain(&mut c);
        c.handle_input(Input::LateCandidates {
            fragment: "f1".into(),
        });
        created(&mut c, t0, None);
        assert!(
            !drain(&mut c).iter().any(|o| matches!(
                o,
                Output::Send(Request {
                    method: Method::Patch,
                    ..
                })
            )),
            "a PATCH needs If-Match"
        );
        let (mut c, t0) = build_client();
        drain(&mut c);
        c.handle_input(Input::LateCandidates {
            fragment: "old".into(),
        });
        answered(&mut c, 503, t0);
        drain(&mut c);
        c.handle_input(Input::Tick {
            now: t0 + MAX_BACKOFF,
        });
        c.handle_input(Input::Offer {
            sdp: "v=0 offer 2".into(),
            now: t0 + MAX_BACKOFF,
        });
        drain(&mut c);
        created(&mut c, t0 + MAX_BACKOFF, Some("\"t2\""));
        assert!(
            !drain(&mut c).iter().any(|o| matches!(
                o,
                Output::Send(Request {
                    method: Method::Patch,
                    ..
                })
            )),
            "the first offer's candidates are not the second's"
        );
    }

    #[test]
    fn stop_deletes_the_resource() {
        let (mut c, t0) = build_client();
        c.handle_input(Input::Response {
            status: 201,
            location: Some("r1".into()),
            etag: None,
            body: "a".into(),
            now: t0,
        });
        drain(&mut c);
        c.handle_input(Input::Stop { now: t0 });
        assert_eq!(
            drain(&mut c),
            vec![Output::Send(Request {
                method: Method::Delete,
                url: "http://lx.example/media/whip/r1".into(),
                body: None,
                if_match: None,
            })]
        );
        c.handle_input(Input::Response {
            status: 200,
            location: None,
            etag: None,
            body: String::new(),
            now: t0,
        });
        assert_eq!(drain(&mut c), vec![Output::Stopped]);
        c.handle_input(Input::Offer {
            sdp: "o".into(),
            now: t0,
        });
        assert!(drain(&mut c).is_empty(), "nothing after stop");
    }

    #[test]
    fn a_redirect_asks_for_a_new_offer_for_the_new_url() {
        let (mut c, t0) = build_client();
        drain(&mut c);
        c.handle_input(Input::Response {
            status: 307,
            location: Some("http://edge2.example/whip/x".into()),
            etag: None,
            body: String::new(),
            now: t0,
        });
        assert_eq!(drain(&mut c), vec![Output::NeedOffer]);
        c.handle_input(Input::Offer {
            sdp: "o2".into(),
            now: t0,
        });
        match &drain(&mut c)[..] {
            [Output::Send(r)] => assert_eq!(r.url, "http://edge2.example/whip/x"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_offer_that_cannot_be_made_backs_off_and_asks_again() {
        let mut c = WhipClient::new(WHIP);
        let t0 = Instant::now();
        c.handle_input(Input::OfferFailed {
            reason: "no camera at /dev/video0".into(),
            now: t0,
        });
        assert!(matches!(
            &drain(&mut c)[..],
            [Output::Retrying { attempt: 1, reason, .. }] if reason.contains("/dev/video0")
        ));
        c.handle_input(Input::Tick {
            now: t0 + MIN_BACKOFF,
        });
        assert_eq!(drain(&mut c), vec![Output::NeedOffer]);
    }
}
