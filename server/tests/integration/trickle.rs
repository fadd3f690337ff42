//! Trickle ICE and ICE restarts on the built-in media plane (RFC 9725
//! §4.3): a publisher and a player whose offers carry no candidate at all
//! reach LIVE and play only through what they PATCH; a restart gives fresh
//! credentials and the media go on; what a peer must not do is refused by
//! status and name.

use std::sync::Arc;
use std::time::Duration;

use lx_media::Codec;
use lx_media::publish::Publisher;
use lx_media::receive::{Receiver, ReceiverConfig};
use lx_media::trickle::{LateCandidates, LocalIce, Offering};
use lx_protocol::sdpfrag::{self, Candidate, SdpFrag};

use crate::media::{Count, camera, frame, grows, loopback, origin, started_session};

/// The offer without its candidates, and those candidates.
fn without_candidates(offer: &str) -> (String, Vec<String>) {
    let mut candidates = Vec::new();
    let mut kept = String::new();
    for line in offer.lines().map(|l| l.trim_end_matches('\r')) {
        if let Some(c) = line.strip_prefix("a=") {
            if c.starts_with("candidate:") {
                candidates.push(c.to_string());
                continue;
            }
            if c == "end-of-candidates" {
                continue;
            }
        }
        kept.push_str(line);
        kept.push_str("\r\n");
    }
    (kept, candidates)
}

struct Created {
    resource_url: String,
    etag: String,
    answer: String,
}

async fn post_bare_offer(url: &str, offer: &str) -> Created {
    let resp = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/sdp")
        .body(offer.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let location = header("location").expect("Location");
    let etag = header("etag").expect("a 201 carries the ICE session's ETag");
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    Created {
        resource_url: format!("{}{location}", origin(url)),
        etag,
        answer: resp.text().await.unwrap(),
    }
}

async fn patch(
    url: &str,
    if_match: Option<&str>,
    content_type: &str,
    body: &str,
) -> (u16, Option<String>, String) {
    let mut request = reqwest::Client::new()
        .patch(url)
        .header("content-type", content_type)
        .body(body.to_owned());
    if let Some(tag) = if_match {
        request = request.header("if-match", tag);
    }
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, etag, resp.text().await.unwrap())
}

/// PATCHes the offer's own candidates, then every late one until gathering
/// is done; returns how many went.
async fn trickle_all(
    offering: &Offering,
    late: &mut LateCandidates,
    created: &Created,
    in_offer: Vec<String>,
) -> usize {
    let as_candidates = |lines: Vec<String>| {
        lines
            .into_iter()
            .map(|line| Candidate { mid: None, line })
            .collect::<Vec<_>>()
    };
    let mut sent = in_offer.len();
    if !in_offer.is_empty() {
        let fragment = offering.fragment(as_candidates(in_offer), false);
        let (status, _, body) = patch(
            &created.resource_url,
            Some(&created.etag),
            sdpfrag::CONTENT_TYPE,
            &fragment,
        )
        .await;
        assert_eq!(status, 204, "{body}");
    }
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), late.next())
            .await
            .expect("gathering ends");
        let done = !matches!(next, Some(LocalIce::Candidate(_)));
        let fragment = match next {
            Some(LocalIce::Candidate(c)) => {
                sent += 1;
                offering.fragment(vec![c], false)
            }
            Some(LocalIce::Done) | None => offering.fragment(Vec::new(), true),
        };
        let (status, _, body) = patch(
            &created.resource_url,
            Some(&created.etag),
            sdpfrag::CONTENT_TYPE,
            &fragment,
        )
        .await;
        assert_eq!(status, 204, "{body}");
        if done {
            return sent;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_and_a_player_that_only_trickle_go_live_play_and_restart_ice() {
    let live = started_session().await;

    // The publisher: an offer without a single candidate.
    let mut publisher = Publisher::start(&camera(Codec::H264)).unwrap();
    let offer = publisher.offer_within(Duration::ZERO).await.unwrap();
    let mut late = publisher.ice_mut().take_late_candidates().unwrap();
    let (bare, in_offer) = without_candidates(&offer);
    let created = post_bare_offer(&live.whip, &bare).await;
    publisher.accept_answer(&created.answer).await.unwrap();
    let trickled = trickle_all(publisher.ice(), &mut late, &created, in_offer).await;
    assert!(trickled >= 1, "at least the loopback host candidate");
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;
    assert_eq!(frame(&live).await.status().as_u16(), 200);

    // The player, likewise.
    let seen = Arc::new(Count::default());
    let config = ReceiverConfig {
        ice: loopback(),
        ..ReceiverConfig::default()
    };
    let (mut player, offer) = Receiver::offer_within(&config, seen.clone(), Duration::ZERO)
        .await
        .unwrap();
    let (bare, in_offer) = without_candidates(&offer);
    let viewer = post_bare_offer(&live.whep, &bare).await;
    player.accept_answer(&viewer.answer).await.unwrap();
    let offering = player.offering_mut().unwrap();
    let mut player_late = offering.take_late_candidates().unwrap();
    trickle_all(offering, &mut player_late, &viewer, in_offer).await;
    assert!(
        grows(&seen, 30, Duration::from_secs(10)).await,
        "the trickling player plays"
    );

    // What a peer must not do, each refused by name; nothing breaks.
    let url = &created.resource_url;
    let one = publisher.ice().fragment(Vec::new(), true);
    let cases: Vec<(Option<&str>, &str, String, u16, &str)> = vec![
        (
            Some(&created.etag),
            "application/sdp",
            one.clone(),
            415,
            "whip:contentType",
        ),
        (
            None,
            sdpfrag::CONTENT_TYPE,
            one.clone(),
            428,
            "whip:ifMatch",
        ),
        (
            Some("\"not-the-tag\""),
            sdpfrag::CONTENT_TYPE,
            one.clone(),
            412,
            "whip:staleIceSession",
        ),
        (
            Some(&created.etag),
            sdpfrag::CONTENT_TYPE,
            "not sdp".into(),
            400,
            "whip:sdpfrag",
        ),
        (
            Some(&created.etag),
            sdpfrag::CONTENT_TYPE,
            "a=candidate:1 1 udp 1 metadata.internal 80 typ host\r\n".into(),
            400,
            "whip:sdpfrag",
        ),
        (
            Some(&created.etag),
            sdpfrag::CONTENT_TYPE,
            "a=ice-ufrag:abcd\r\na=ice-pwd:notthesessionspassword1\r\n".into(),
            400,
            "whip:sdpfrag",
        ),
    ];
    for (if_match, content_type, body, status, detail) in cases {
        let (got, _, text) = patch(url, if_match, content_type, &body).await;
        assert_eq!(got, status, "{detail}: {text}");
        assert!(text.contains(detail), "{detail}: {text}");
    }
    let flood: Vec<Candidate> = (0..32)
        .map(|i| Candidate {
            mid: None,
            line: format!("candidate:{i} 1 udp 1 192.0.2.1 {} typ host", 10_000 + i),
        })
        .collect();
    let mut refused_at = None;
    for round in 0..3 {
        let fragment = publisher.ice().fragment(flood.clone(), false);
        let (status, _, text) =
            patch(url, Some(&created.etag), sdpfrag::CONTENT_TYPE, &fragment).await;
        if status == 400 {
            assert!(text.contains("at most 64 late candidates"), "{text}");
            refused_at = Some(round);
            break;
        }
        assert_eq!(status, 204, "{text}");
    }
    assert_eq!(refused_at, Some(1), "the second batch passes the cap");
    let gone = format!("{}-gone", created.resource_url);
    let (status, _, _) = patch(&gone, Some(&created.etag), sdpfrag::CONTENT_TYPE, &one).await;
    assert_eq!(status, 404);

    // An ICE restart: fresh credentials both ways, a new tag, media go on.
    let old_remote = sdpfrag::credentials_of(&created.answer).unwrap();
    let restart = publisher.ice().restart_fragment().await.unwrap();
    let (status, etag, answer) = patch(url, Some("*"), sdpfrag::CONTENT_TYPE, &restart).await;
    assert_eq!(status, 200, "{answer}");
    let etag = etag.expect("a restart gives a new ETag");
    assert_ne!(etag, created.etag);
    let theirs = SdpFrag::parse(&answer).unwrap().credentials.unwrap();
    assert_ne!(theirs, old_remote, "the server's credentials are new");
    publisher.ice().accept_restart(&answer).await.unwrap();
    let (status, _, text) = patch(url, Some(&created.etag), sdpfrag::CONTENT_TYPE, &one).await;
    assert_eq!(status, 412, "the old ICE session's tag is stale: {text}");
    let (status, _, text) = patch(url, Some(&etag), sdpfrag::CONTENT_TYPE, &one).await;
    assert_eq!(status, 204, "{text}");
    let decoded_at = |r: reqwest::Response| {
        r.headers()["x-lx-frame-decoded-at"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let before = decoded_at(frame(&live).await);
    // Long enough for ICE's keepalive checks, which carry the new
    // credentials: a side that kept the old ones would fail the connection.
    tokio::time::sleep(Duration::from_secs(40)).await;
    let after = decoded_at(frame(&live).await);
    assert_ne!(before, after, "frames still decode after the restart");
    assert!(
        grows(&seen, 30, Duration::from_secs(10)).await,
        "the player still plays"
    );
    assert_eq!(
        live.t.session(&live.consumer, &live.id).await["state"],
        "LIVE"
    );
}
