//! Real GStreamer pipelines over loopback: a publisher, the ingest that
//! answers it, the decoder, viewers and subscribers, with ICE on 127.0.0.1.
#![allow(clippy::unwrap_used)] // a poisoned lock or a failed check is a failed test

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Frames, loopback, publisher_config, smpte_bars_match, wait_for};
use lx_media::decode::{DecodeTo, Decoder};
use lx_media::publish::Publisher;
use lx_media::receive::{Receiver, ReceiverConfig};
use lx_media::viewer::Viewer;
use lx_media::{Codec, MediaError};

async fn publish_and_decode_a_frame(codec: Codec) {
    let publisher = Publisher::start(&publisher_config(codec)).expect("publisher");
    let offer = publisher.offer().await.expect("offer");
    assert!(
        offer.contains(&format!("{}/90000", codec.encoding_name())),
        "{offer}"
    );
    assert!(
        offer.contains("127.0.0.1"),
        "host candidate on loopback: {offer}"
    );

    let frames = Frames::new();
    let config = ReceiverConfig {
        ice: loopback(),
        ..ReceiverConfig::default()
    };
    let (receiver, answer) = Receiver::answer(&offer, &config, frames.clone())
        .await
        .expect("answer");
    assert_eq!(receiver.codec(), Some(codec));
    publisher
        .accept_answer(&answer)
        .await
        .expect("accept answer");

    let keyframe = frames
        .wait_keyframe(Duration::from_secs(10))
        .await
        .expect("a key frame arrives");
    assert_eq!(keyframe.codec, codec);
    let picture = decode_one(codec, &keyframe).await;
    assert_eq!((picture.width, picture.height), (320, 240));
    let image = image::load_from_memory_with_format(&picture.data, image::ImageFormat::Jpeg)
        .expect("a valid JPEG")
        .to_rgb8();
    smpte_bars_match(&image).unwrap();
    // Full range, as JFIF is: white is white, not video's 235, and black
    // is black, not 16.
    let white = image.get_pixel(picture.width / 14, picture.height / 6).0;
    assert!(white.iter().all(|&c| c >= 245), "white bar is {white:?}");
    let blue = image
        .get_pixel(picture.width * 13 / 14, picture.height / 6)
        .0;
    assert!(blue[0] <= 10 && blue[1] <= 10, "blue bar is {blue:?}");
    assert!(
        publisher
            .stats()
            .frames
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    assert!(publisher.failures().borrow().is_none());
}

/// One key frame through a fresh decoder, as a JPEG.
async fn decode_one(
    codec: Codec,
    keyframe: &lx_media::receive::EncodedFrame,
) -> lx_media::decode::Picture {
    let jpeg = Arc::new(std::sync::Mutex::new(None));
    let decoder = {
        let jpeg = Arc::clone(&jpeg);
        Decoder::new(codec, DecodeTo::Jpeg { quality: 85 }, move |p| {
            *jpeg.lock().unwrap() = Some(p);
        })
        .expect("decoder")
    };
    decoder.push(&keyframe.buffer).expect("push");
    wait_for(Duration::from_secs(5), || jpeg.lock().unwrap().clone())
        .await
        .expect("a JPEG")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_publisher_is_received_and_its_key_frame_decodes_to_the_test_pattern() {
    publish_and_decode_a_frame(Codec::Vp8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_publisher_is_received_and_its_key_frame_decodes_to_the_test_pattern() {
    publish_and_decode_a_frame(Codec::H264).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_a_codec_we_take_is_refused_before_any_pipeline() {
    let publisher = Publisher::start(&publisher_config(Codec::Vp8)).expect("publisher");
    let offer = publisher.offer().await.expect("offer");
    let config = ReceiverConfig {
        ice: loopback(),
        codecs: vec![Codec::H264],
        ..ReceiverConfig::default()
    };
    let err = Receiver::answer(&offer, &config, Frames::new())
        .await
        .unwrap_err();
    assert!(matches!(err, MediaError::Sdp(_)), "{err}");
    let err = Receiver::answer("not sdp", &ReceiverConfig::default(), Frames::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MediaError::Sdp(_) | MediaError::BadSdp(_)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_fed_from_the_ingest_reaches_a_whep_subscriber() {
    for codec in Codec::ALL {
        let publisher = Publisher::start(&publisher_config(codec)).expect("publisher");
        let ingest_frames = Frames::new();
        let config = ReceiverConfig {
            ice: loopback(),
            ..ReceiverConfig::default()
        };
        let (_ingest, answer) = Receiver::answer(
            &publisher.offer().await.unwrap(),
            &config,
            ingest_frames.clone(),
        )
        .await
        .expect("ingest");
        publisher.accept_answer(&answer).await.unwrap();

        let seen = Frames::new();
        let (mut subscriber, whep_offer) = Receiver::offer(&config, seen.clone())
            .await
            .expect("subscriber offer");
        let (viewer, whep_answer) = Viewer::answer(&whep_offer, codec, &loopback())
            .await
            .expect("viewer");
        subscriber
            .accept_answer(&whep_answer)
            .await
            .expect("subscriber answer");
        assert_eq!(subscriber.codec(), Some(codec));
        let viewer = Arc::new(viewer);
        ingest_frames.forward_to(Arc::clone(&viewer));

        let keyframe = seen
            .wait_keyframe(Duration::from_secs(10))
            .await
            .expect("the subscriber sees a key frame");
        assert_eq!(keyframe.codec, codec);
        let picture = decode_one(codec, &keyframe).await;
        let image = image::load_from_memory_with_format(&picture.data, image::ImageFormat::Jpeg)
            .unwrap()
            .to_rgb8();
        smpte_bars_match(&image).unwrap_or_else(|e| panic!("{codec} after the relay: {e}"));
        let deltas = wait_for(Duration::from_secs(5), || {
            (seen.count() >= 20).then_some(())
        })
        .await;
        assert!(
            deltas.is_some(),
            "{codec}: {} frames reached the subscriber",
            seen.count()
        );
        assert!(
            viewer.is_connected(),
            "{codec}: media flows, so ICE connected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_whose_receiver_vanished_fails_within_fifteen_seconds() {
    let publisher = Publisher::start(&publisher_config(Codec::Vp8)).expect("publisher");
    let frames = Frames::new();
    let config = ReceiverConfig {
        ice: loopback(),
        ..ReceiverConfig::default()
    };
    let (receiver, answer) =
        Receiver::answer(&publisher.offer().await.unwrap(), &config, frames.clone())
            .await
            .unwrap();
    publisher.accept_answer(&answer).await.unwrap();
    frames.wait_keyframe(Duration::from_secs(10)).await.unwrap();
    // Healthy for a while: reports keep coming.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(publisher.failures().borrow().is_none());
    // The receiver's process dies: no goodbye, no more RTCP.
    drop(receiver);
    let gone = std::time::Instant::now();
    let mut failures = publisher.failures();
    let failed = tokio::time::timeout(Duration::from_secs(20), failures.wait_for(Option::is_some))
        .await
        .expect("the publisher notices")
        .unwrap()
        .clone()
        .unwrap();
    assert!(failed.contains("RTCP"), "{failed}");
    assert!(
        gone.elapsed() <= Duration::from_secs(16),
        "{:?}",
        gone.elapsed()
    );
}
