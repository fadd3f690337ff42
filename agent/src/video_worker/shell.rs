//! The GStreamer side of the video task (feature `video`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lx_media::publish::{EncoderChoice, Publisher, PublisherConfig, VideoSource};
use lx_media::trickle::{LateCandidates, LocalIce, TRICKLE_WAIT};
use lx_media::{Codec, GATHER_TIMEOUT, IceConfig};
use tokio::sync::{Mutex, mpsc, watch};
use uuid::Uuid;

use lx_agent::config::{CameraSource, VideoConfig};
use lx_agent::video::{Stream, VideoStats};
use lx_agent::whip::{Input, Method, Output, Request, WhipClient};

/// The publisher settings from the agent's `[video]` section.
pub(crate) fn publisher_config(v: &VideoConfig) -> anyhow::Result<PublisherConfig> {
    let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
    let source = match v.source {
        CameraSource::Test => VideoSource::TestPattern {
            pattern: v.pattern.clone(),
        },
        CameraSource::V4l2 => VideoSource::V4l2 {
            device: v.device.clone(),
        },
        CameraSource::Libcamera => VideoSource::Libcamera {
            camera: non_empty(&v.camera),
        },
        CameraSource::Rtsp => VideoSource::Rtsp {
            url: v.rtsp_url.clone(),
            latency_ms: v.rtsp_latency_ms,
        },
        CameraSource::Custom => VideoSource::Custom {
            pipeline: v.pipeline.clone(),
        },
    };
    Ok(PublisherConfig {
        source,
        codec: v.codec.parse::<Codec>()?,
        encoder: if v.encoder == "auto" {
            EncoderChoice::Auto
        } else {
            EncoderChoice::Named(v.encoder.clone())
        },
        width: v.width,
        height: v.height,
        fps: v.fps,
        bitrate_kbps: v.bitrate_kbps,
        keyframe_interval_frames: v.keyframe_interval_frames,
        ice: IceConfig::from_settings(
            &v.ice.stun_server,
            &v.ice.turn_server,
            &v.ice.local_addresses,
            v.ice.port_min,
            v.ice.port_max,
        ),
        stamp_time: false,
    })
}

/// Runs until `shutdown`: publishes whatever `target` names (in the worker
/// process, one session).
pub(super) async fn run(
    config: PublisherConfig,
    mut prepared: Option<Publisher>,
    http: reqwest::Client,
    mut target: watch::Receiver<Option<Stream>>,
    stats: Arc<Mutex<VideoStats>>,
    gone: mpsc::Sender<Uuid>,
    mut shutdown: watch::Receiver<bool>,
) {
    stats.lock().await.codec = config.codec.to_string();
    loop {
        let current = target.borrow_and_update().clone();
        {
            let mut s = stats.lock().await;
            s.state = "idle".into();
            s.session_id = current.as_ref().map(|c| c.session_id);
            s.bitrate_kbps = 0;
        }
        if let Some(stream) = current {
            let camera = Camera {
                config: &config,
                prepared: prepared.take(),
            };
            let done = publish(
                camera,
                &http,
                &stream,
                &mut target,
                &stats,
                &gone,
                &mut shutdown,
            )
            .await;
            if done == Ended::Shutdown {
                return;
            }
            continue;
        }
        tokio::select! {
            changed = target.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Ended {
    Retargeted,
    Shutdown,
}

/// What a session's publishing starts from: the pipeline's settings and,
/// with `video.ready`, the pipeline already prepared.
struct Camera<'a> {
    config: &'a PublisherConfig,
    prepared: Option<Publisher>,
}

/// One session's publishing, until the target changes or shutdown.
async fn publish(
    camera: Camera<'_>,
    http: &reqwest::Client,
    stream: &Stream,
    target: &mut watch::Receiver<Option<Stream>>,
    stats: &Mutex<VideoStats>,
    gone: &mpsc::Sender<Uuid>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    let Camera {
        config,
        mut prepared,
    } = camera;
    let mut core = WhipClient::new(stream.whip_url.clone());
    let mut publisher: Option<Publisher> = None;
    let mut failures: Option<watch::Receiver<Option<String>>> = None;
    let mut late: Option<LateCandidates> = None;
    let mut trickled_any = false;
    let mut published_once = false;
    let mut ending: Option<Ended> = None;
    let mut rate = RateMeter::default();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(session = %stream.session_id, "publishing video");
    let mut pending = vec![Output::NeedOffer];
    loop {
        // Drain the core.
        while let Some(output) = pending.pop().or_else(|| core.poll_output()) {
            match output {
                Output::NeedOffer => {
                    if let Some(old) = publisher.take() {
                        dispose(old);
                    }
                    failures = None;
                    late = None;
                    stats.lock().await.state = "connecting".into();
                    let wait = if core.trickles() {
                        TRICKLE_WAIT
                    } else {
                        GATHER_TIMEOUT
                    };
                    match make_offer(config, prepared.take(), wait).await {
                        Ok((mut p, sdp)) => {
                            stats.lock().await.encoder = Some(p.encoder().to_string());
                            failures = Some(p.failures());
                            late = p.ice_mut().take_late_candidates();
                            trickled_any = false;
                            publisher = Some(p);
                            core.handle_input(Input::Offer {
                                sdp,
                                now: Instant::now(),
                            });
                        }
                        Err(reason) => core.handle_input(Input::OfferFailed {
                            reason,
                            now: Instant::now(),
                        }),
                    }
                }
                Output::Send(request) => {
                    let input = send(http, &request).await;
                    core.handle_input(input);
                }
                Output::Answer(sdp) => {
                    let applied = match &publisher {
                        Some(p) => p.accept_answer(&sdp).await.map_err(|e| e.to_string()),
                        None => Err("no publisher".into()),
                    };
                    if let Err(err) = applied {
                        tracing::warn!(%err, "the WHIP answer does not apply");
                        stats.lock().await.last_error = Some(err);
                        core.handle_input(Input::MediaFailed {
                            now: Instant::now(),
                        });
                    }
                }
                Output::Connected { resource } => {
                    let mut s = stats.lock().await;
                    if published_once {
                        s.reconnects += 1;
                    }
                    published_once = true;
                    s.state = "publishing".into();
                    tracing::info!(session = %stream.session_id, %resource, encoder = ?s.encoder, "video published");
                }
                Output::Retrying {
                    attempt,
                    after,
                    reason,
                } => {
                    tracing::warn!(session = %stream.session_id, attempt, ?after, %reason, "video: publishing again");
                    if let Some(old) = publisher.take() {
                        dispose(old);
                    }
                    failures = None;
                    late = None;
                    let mut s = stats.lock().await;
                    s.state = "retrying".into();
                    s.last_error = Some(reason);
                    s.bitrate_kbps = 0;
                }
                Output::EndpointGone => {
                    // The lifecycle asks `start` again; a new URL retargets us.
                    tracing::warn!(session = %stream.session_id, url = %stream.whip_url,
                        "the WHIP endpoint reaches no server: asking where the session's media are now");
                    let _ = gone.try_send(stream.session_id);
                }
                Output::Stopped => {
                    if let Some(old) = publisher.take() {
                        dispose(old);
                    }
                    tracing::info!(session = %stream.session_id, "video stopped");
                    return ending.unwrap_or(Ended::Retargeted);
                }
            }
        }
        if let Some(ended) = ending {
            // Stop always ends in Stopped within the drain; never wait here.
            return ended;
        }
        let deadline = core.deadline();
        let failed = async {
            match failures.as_mut() {
                Some(f) => {
                    let _ = f.wait_for(Option::is_some).await;
                }
                None => std::future::pending().await,
            }
        };
        let late_candidate = async {
            match late.as_mut() {
                Some(l) => l.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            found = late_candidate => match (found, &publisher) {
                (Some(LocalIce::Candidate(candidate)), Some(p)) => {
                    trickled_any = true;
                    let fragment = p.ice().fragment(vec![candidate], false);
                    core.handle_input(Input::LateCandidates { fragment });
                }
                (Some(LocalIce::Done), Some(p)) if trickled_any => {
                    let fragment = p.ice().fragment(Vec::new(), true);
                    core.handle_input(Input::LateCandidates { fragment });
                }
                (None, _) => late = None,
                _ => {}
            },
            _ = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => core.handle_input(Input::Tick { now: Instant::now() }),
            _ = failed => {
                let reason = failures.as_ref().and_then(|f| f.borrow().clone()).unwrap_or_default();
                tracing::warn!(%reason, "video media failed");
                failures = None;
                core.handle_input(Input::MediaFailed { now: Instant::now() });
            }
            _ = tick.tick() => {
                if let Some(p) = &publisher {
                    let frames = p.stats().frames.load(Ordering::Relaxed);
                    let bytes = p.stats().rtp_bytes.load(Ordering::Relaxed);
                    let kbps = rate.update(bytes, Instant::now());
                    let mut s = stats.lock().await;
                    s.frames_sent = frames;
                    s.bitrate_kbps = kbps;
                }
            }
            changed = target.changed() => {
                let next = if changed.is_ok() { target.borrow().clone() } else { None };
                if next.as_ref() != Some(stream) {
                    ending = Some(Ended::Retargeted);
                    core.handle_input(Input::Stop { now: Instant::now() });
                }
            }
            _ = shutdown.changed() => {
                ending = Some(Ended::Shutdown);
                core.handle_input(Input::Stop { now: Instant::now() });
            }
        }
    }
}

/// An offer from the prepared pipeline if there is one (it only has to
/// start flowing), else from a new one.
async fn make_offer(
    config: &PublisherConfig,
    prepared: Option<Publisher>,
    wait: Duration,
) -> Result<(Publisher, String), String> {
    let publisher = match prepared {
        Some(p) => {
            p.play().map_err(|e| e.to_string())?;
            p
        }
        None => Publisher::start(config).map_err(|e| e.to_string())?,
    };
    let sdp = publisher
        .offer_within(wait)
        .await
        .map_err(|e| e.to_string())?;
    Ok((publisher, sdp))
}

/// How long one WHIP request may take.
const WHIP_TIMEOUT: Duration = Duration::from_secs(10);

async fn send(http: &reqwest::Client, request: &Request) -> Input {
    let builder = match request.method {
        Method::Post => http
            .post(&request.url)
            .header(reqwest::header::CONTENT_TYPE, "application/sdp")
            .body(request.body.clone().unwrap_or_default()),
        Method::Patch => http
            .patch(&request.url)
            .header(
                reqwest::header::CONTENT_TYPE,
                lx_protocol::sdpfrag::CONTENT_TYPE,
            )
            .header(
                reqwest::header::IF_MATCH,
                request.if_match.clone().unwrap_or_default(),
            )
            .body(request.body.clone().unwrap_or_default()),
        Method::Delete => http.delete(&request.url),
    };
    match builder.timeout(WHIP_TIMEOUT).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let header = |name| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let location = header(reqwest::header::LOCATION);
            let etag = header(reqwest::header::ETAG);
            let body = resp.text().await.unwrap_or_default();
            // A resource the server already closed with its session: gone is gone.
            let already_gone = request.method == Method::Delete && status == 404;
            if status >= 400 && !already_gone {
                tracing::warn!(status, %body, url = %lx_protocol::redact::media_url(&request.url), "WHIP request refused");
            }
            Input::Response {
                status,
                location,
                etag,
                body,
                now: Instant::now(),
            }
        }
        Err(err) => {
            tracing::warn!(err = %err.without_url(), url = %lx_protocol::redact::media_url(&request.url), "WHIP request failed");
            Input::Unreachable {
                now: Instant::now(),
            }
        }
    }
}

/// Stops a pipeline off the async workers.
fn dispose(publisher: Publisher) {
    tokio::task::spawn_blocking(move || drop(publisher));
}

/// Bits per second over the last tick.
#[derive(Debug, Default)]
struct RateMeter {
    last: Option<(u64, Instant)>,
}

impl RateMeter {
    fn update(&mut self, bytes: u64, now: Instant) -> u64 {
        let kbps = match self.last {
            Some((b, t)) if now > t && bytes >= b => {
                let secs = now.duration_since(t).as_secs_f64();
                ((bytes - b) as f64 * 8.0 / 1000.0 / secs) as u64
            }
            _ => 0,
        };
        self.last = Some((bytes, now));
        kbps
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn the_rate_is_bytes_over_the_last_interval() {
        let mut m = RateMeter::default();
        let t0 = Instant::now();
        assert_eq!(m.update(0, t0), 0);
        assert_eq!(m.update(125_000, t0 + Duration::from_secs(1)), 1000);
        assert_eq!(m.update(125_000, t0 + Duration::from_secs(2)), 0);
        assert_eq!(
            m.update(10, t0 + Duration::from_secs(3)),
            0,
            "a new publisher starts over"
        );
    }

    #[test]
    fn every_shipped_config_maps_to_a_publisher() {
        for text in [
            include_str!("../../../configs/agent-drone.toml"),
            include_str!("../../../configs/agent-rpi-camera.toml"),
            include_str!("../../../configs/agent-fixed-ptz.toml"),
        ] {
            let config = lx_agent::config::Config::from_layers(Some(text), []).unwrap();
            let publisher = publisher_config(&config.video).unwrap();
            assert_eq!(publisher.codec, Codec::H264);
            assert_eq!(publisher.keyframe_interval_frames, 30);
        }
        let ptz = lx_agent::config::Config::from_layers(
            Some(include_str!("../../../configs/agent-fixed-ptz.toml")),
            [],
        )
        .unwrap();
        assert!(matches!(
            publisher_config(&ptz.video).unwrap().source,
            VideoSource::Rtsp { .. }
        ));
    }
}
