//! Hostile traffic on the media plane (issue 15, item 6), each test written
//! as the attack against the real GStreamer plane: it passes because the
//! attack fails.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use lx_media::Codec;
use lx_media::receive::{Receiver, ReceiverConfig};
use lx_server::media::MediaBackend;
use uuid::Uuid;

use crate::media::{
    Count, Live, grows, loopback, post_sdp, publish, started_session_with, subscribe,
};

/// A session LIVE on a real publisher, on a server tweaked by `tweak`.
async fn live_session(tweak: impl FnOnce(&mut lx_server::config::Config)) -> (Live, Uuid) {
    let live = started_session_with(tweak).await;
    let id: Uuid = live.id.parse().unwrap();
    (live, id)
}

async fn offer() -> (Receiver, String) {
    let config = ReceiverConfig {
        ice: loopback(),
        ..ReceiverConfig::default()
    };
    Receiver::offer(&config, Arc::new(Count::default()))
        .await
        .expect("offer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_whep_offers_with_a_cap_of_two_get_at_most_two_answers() {
    let (live, id) = live_session(|c| c.media.max_viewers_per_session = 2).await;
    let (_publisher, _) = publish(&live.whip, Codec::Vp8).await;
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;
    let mut receivers = Vec::new();
    let mut offers = Vec::new();
    for _ in 0..20 {
        let (receiver, sdp) = offer().await;
        receivers.push(receiver);
        offers.push(sdp);
    }
    let answers = join_all(offers.iter().map(|sdp| post_sdp(&live.whep, sdp))).await;
    let accepted = answers
        .iter()
        .filter(|(status, _, _)| *status == 201)
        .count();
    assert!(
        (1..=2).contains(&accepted),
        "{accepted} of 20 concurrent offers were answered with a cap of 2"
    );
    for (status, _, body) in answers.iter().filter(|(status, _, _)| *status != 201) {
        assert_eq!(*status, 503, "{body}");
        assert!(body.contains("whep:tooManyViewers"), "{body}");
    }
    let builtin = live.t.builtin.as_ref().unwrap();
    assert!(builtin.peers(id).1 <= 2, "{:?}", builtin.peers(id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_whose_ice_never_connects_is_dropped_and_its_slot_freed() {
    let (live, id) = live_session(|c| {
        c.media.max_viewers_per_session = 1;
        c.media.viewer_connect_timeout_ms = 1500;
    })
    .await;
    let (_publisher, _) = publish(&live.whip, Codec::Vp8).await;
    live.t
        .wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(10))
        .await;
    // The squatter's offer carries no candidates, and it never applies the
    // answer: nothing can ever connect.
    let (_squatter, sdp) = offer().await;
    let bare: String = sdp
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("a=candidate") && !line.starts_with("a=end-of-candidates"))
        .collect();
    assert!(!bare.contains("a=candidate"));
    let (status, _, body) = post_sdp(&live.whep, &bare).await;
    assert_eq!(status, 201, "{body}");
    let builtin = live.t.builtin.as_ref().unwrap();
    assert_eq!(builtin.peers(id).1, 1, "the squatter holds the only slot");
    let (_other, sdp) = offer().await;
    let (status, _, body) = post_sdp(&live.whep, &sdp).await;
    assert_eq!(status, 503, "the slot is taken: {body}");
    let started = Instant::now();
    while builtin.peers(id).1 != 0 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the squatter still holds its slot"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An honest viewer gets the slot and plays.
    let (_viewer, seen, _) = subscribe(&live.whep).await;
    assert!(
        grows(&seen, 30, Duration::from_secs(10)).await,
        "the honest viewer plays"
    );
    tokio::time::sleep(Duration::from_millis(1_800)).await;
    assert_eq!(
        builtin.peers(id).1,
        1,
        "a connected viewer is kept past the bound"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_frame_behind_1024_queued_media_events_still_turns_the_session_live() {
    let (live, id) = live_session(|_| {}).await;
    let t = &live.t;
    // Flooders keep the media event queue (1,024 deep) full with events of
    // sessions that do not exist, waiting on it so no slot is ever free.
    let flooding = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicUsize::new(0));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let media = Arc::clone(&t.media);
            let flooding = Arc::clone(&flooding);
            let sent = Arc::clone(&sent);
            tokio::spawn(async move {
                while flooding.load(Ordering::Relaxed) {
                    media.media_lost(Uuid::new_v4(), 0).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    while sent.load(Ordering::Relaxed) < 2_048 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_publisher, _) = publish(&live.whip, Codec::Vp8).await;
    let builtin = t.builtin.as_ref().unwrap();
    let started = Instant::now();
    while builtin.latest_frame(id).is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no frame decoded"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The first frame met a full queue; the flood goes on a little longer.
    tokio::time::sleep(Duration::from_millis(500)).await;
    flooding.store(false, Ordering::Relaxed);
    for flooder in flooders {
        flooder.await.unwrap();
    }
    let flood_ended = Instant::now();
    t.wait_for_state_within(&live.consumer, &live.id, "LIVE", Duration::from_secs(2))
        .await;
    eprintln!(
        "{} events flooded; LIVE {:?} after the flood ended",
        sent.load(Ordering::Relaxed),
        flood_ended.elapsed()
    );
}
