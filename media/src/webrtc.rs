//! What every `webrtcbin` of ours shares: ICE settings, the promise-based
//! signals as futures, and waiting for ICE gathering so that an SDP carries
//! the candidates found (an answer every one; an offer those found within
//! a short wait, the rest trickled: [`crate::trickle`]).

use std::time::Duration;

use gst::prelude::*;
use gst_webrtc::{WebRTCICEGatheringState, WebRTCSDPType, WebRTCSessionDescription};
use tokio::sync::oneshot;

use crate::MediaError;

/// ICE settings of one peer connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceConfig {
    /// `stun://host:port`; none by default: no public server is ever asked.
    pub stun_server: Option<String>,
    /// `turn(s)://user:password@host:port`.
    pub turn_server: Option<String>,
    /// Gather host candidates on these addresses only (libnice otherwise
    /// takes every interface but loopback). Tests use `["127.0.0.1"]`.
    pub local_addresses: Vec<String>,
    /// UDP ports for ICE, `(min, max)`; `None`: any.
    pub port_range: Option<(u16, u16)>,
}

impl IceConfig {
    /// From configuration values: empty servers are none, a zero port range
    /// is any port.
    pub fn from_settings(
        stun_server: &str,
        turn_server: &str,
        local_addresses: &[String],
        port_min: u16,
        port_max: u16,
    ) -> Self {
        let non_empty = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        Self {
            stun_server: non_empty(stun_server),
            turn_server: non_empty(turn_server),
            local_addresses: local_addresses.to_vec(),
            port_range: (port_max > 0).then_some((port_min, port_max)),
        }
    }
}

/// How long gathering may take before the SDP goes out with what it has.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one promise-based signal may take.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A `webrtcbin` with our ICE settings, one bundle, and `latency` ms of
/// jitter buffer for what it receives.
pub(crate) fn webrtcbin(
    name: &str,
    ice: &IceConfig,
    latency_ms: u32,
) -> Result<gst::Element, MediaError> {
    let webrtc = gst::ElementFactory::make("webrtcbin")
        .name(name)
        .build()
        .map_err(|_| {
            MediaError::missing(
                "webrtcbin",
                "gstreamer1.0-plugins-bad and gstreamer1.0-nice",
            )
        })?;
    configure(&webrtc, ice, latency_ms)?;
    Ok(webrtc)
}

/// Applies our settings to a `webrtcbin` made elsewhere (a parsed pipeline).
pub(crate) fn configure(
    webrtc: &gst::Element,
    ice: &IceConfig,
    latency_ms: u32,
) -> Result<(), MediaError> {
    webrtc.set_property_from_str("bundle-policy", "max-bundle");
    webrtc.set_property("latency", latency_ms);
    if let Some(stun) = &ice.stun_server {
        webrtc.set_property("stun-server", stun);
    }
    if let Some(turn) = &ice.turn_server {
        webrtc.set_property("turn-server", turn);
    }
    let agent = webrtc.property::<gst::glib::Object>("ice-agent");
    if agent.find_property("agent").is_some() {
        let nice = agent.property::<gst::glib::Object>("agent");
        // No UPnP port mapping: it multicasts on every interface and binds
        // ports of its own; a server or a device has its addresses set.
        if nice.find_property("upnp").is_some() {
            nice.set_property("upnp", false);
        }
        // Keepalives that expect an answer: a peer that vanished without a
        // word (a crash, a pulled cable) fails the connection instead of
        // leaving it CONNECTED forever.
        if nice.find_property("keepalive-conncheck").is_some() {
            nice.set_property("keepalive-conncheck", true);
        }
    }
    for address in &ice.local_addresses {
        let added = agent.emit_by_name::<bool>("add-local-ip-address", &[address]);
        if !added {
            return Err(MediaError::Config(format!(
                "ICE cannot use local address '{address}'"
            )));
        }
    }
    if let Some((min, max)) = ice.port_range {
        agent.set_property("min-rtp-port", u32::from(min));
        agent.set_property("max-rtp-port", u32::from(max));
    }
    Ok(())
}

/// Emits a promise-taking signal and waits for the reply.
async fn promise_signal(
    webrtc: &gst::Element,
    signal: &str,
    first: Option<&(dyn ToValue + Sync)>,
) -> Result<Option<gst::Structure>, MediaError> {
    promise_signal_with(webrtc, signal, first, None).await
}

async fn promise_signal_with(
    webrtc: &gst::Element,
    signal: &str,
    first: Option<&(dyn ToValue + Sync)>,
    options: Option<gst::Structure>,
) -> Result<Option<gst::Structure>, MediaError> {
    let (tx, rx) = oneshot::channel();
    let promise = gst::Promise::with_change_func(move |reply| {
        let reply = reply.map(|s| s.map(ToOwned::to_owned));
        let _ = tx.send(reply);
    });
    match first {
        Some(arg) => webrtc.emit_by_name::<()>(signal, &[arg, &promise]),
        None => webrtc.emit_by_name::<()>(signal, &[&options, &promise]),
    }
    let reply = tokio::time::timeout(SIGNAL_TIMEOUT, rx)
        .await
        .map_err(|_| MediaError::Negotiation(format!("{signal} did not answer")))?
        .map_err(|_| MediaError::Negotiation(format!("{signal} was dropped")))?
        .map_err(|e| MediaError::Negotiation(format!("{signal}: {e:?}")))?;
    if let Some(error) = reply
        .as_ref()
        .and_then(|s| s.get::<gst::glib::Error>("error").ok())
    {
        return Err(MediaError::Negotiation(format!(
            "{signal}: {}",
            error.message()
        )));
    }
    Ok(reply)
}

pub(crate) fn parse_sdp(
    kind: WebRTCSDPType,
    text: &str,
) -> Result<WebRTCSessionDescription, MediaError> {
    let sdp = gst_sdp::SDPMessage::parse_buffer(text.as_bytes())
        .map_err(|_| MediaError::BadSdp("not an SDP message".into()))?;
    Ok(WebRTCSessionDescription::new(kind, sdp))
}

pub(crate) async fn set_remote(
    webrtc: &gst::Element,
    desc: &WebRTCSessionDescription,
) -> Result<(), MediaError> {
    promise_signal(webrtc, "set-remote-description", Some(desc)).await?;
    Ok(())
}

pub(crate) async fn set_local(
    webrtc: &gst::Element,
    desc: &WebRTCSessionDescription,
) -> Result<(), MediaError> {
    promise_signal(webrtc, "set-local-description", Some(desc)).await?;
    Ok(())
}

/// `create-offer` or `create-answer`, set as the local description.
pub(crate) async fn create_local(
    webrtc: &gst::Element,
    kind: WebRTCSDPType,
) -> Result<(), MediaError> {
    create_local_with(webrtc, kind, None).await
}

/// [`create_local`] with `create-offer`'s options (`ice-restart`).
pub(crate) async fn create_local_with(
    webrtc: &gst::Element,
    kind: WebRTCSDPType,
    options: Option<gst::Structure>,
) -> Result<(), MediaError> {
    let desc = create_description(webrtc, kind, options).await?;
    set_local(webrtc, &desc).await
}

/// `create-offer` or `create-answer`, not set.
pub(crate) async fn create_description(
    webrtc: &gst::Element,
    kind: WebRTCSDPType,
    options: Option<gst::Structure>,
) -> Result<WebRTCSessionDescription, MediaError> {
    let (signal, field) = match kind {
        WebRTCSDPType::Offer => ("create-offer", "offer"),
        _ => ("create-answer", "answer"),
    };
    let reply = promise_signal_with(webrtc, signal, None, options)
        .await?
        .ok_or_else(|| MediaError::Negotiation(format!("{signal} gave nothing")))?;
    reply
        .get::<WebRTCSessionDescription>(field)
        .map_err(|_| MediaError::Negotiation(format!("{signal} gave no {field}")))
}

/// The local description once ICE gathering is complete (or after
/// [`GATHER_TIMEOUT`] with the candidates found so far).
pub(crate) async fn gathered_local_sdp(webrtc: &gst::Element) -> Result<String, MediaError> {
    let sdp = local_sdp_within(webrtc, GATHER_TIMEOUT).await;
    if webrtc.property::<WebRTCICEGatheringState>("ice-gathering-state")
        != WebRTCICEGatheringState::Complete
    {
        tracing::warn!(
            "ICE gathering incomplete after {GATHER_TIMEOUT:?}; sending the candidates found so far"
        );
    }
    sdp
}

/// The local description once ICE gathering is complete or `wait` passed,
/// with the candidates found so far.
pub(crate) async fn local_sdp_within(
    webrtc: &gst::Element,
    wait: Duration,
) -> Result<String, MediaError> {
    let (tx, rx) = oneshot::channel::<()>();
    let tx = std::sync::Mutex::new(Some(tx));
    let complete = move |w: &gst::Element| {
        if w.property::<WebRTCICEGatheringState>("ice-gathering-state")
            == WebRTCICEGatheringState::Complete
            && let Some(tx) = tx.lock().ok().and_then(|mut t| t.take())
        {
            let _ = tx.send(());
        }
    };
    let complete = std::sync::Arc::new(complete);
    let handler = {
        let complete = std::sync::Arc::clone(&complete);
        webrtc.connect_notify(Some("ice-gathering-state"), move |w, _| complete(w))
    };
    complete(webrtc);
    let _ = tokio::time::timeout(wait, rx).await;
    webrtc.disconnect(handler);
    let desc = webrtc
        .property::<Option<WebRTCSessionDescription>>("local-description")
        .ok_or_else(|| MediaError::Negotiation("no local description".into()))?;
    desc.sdp()
        .as_text()
        .map_err(|_| MediaError::Negotiation("the local description does not print".into()))
}
