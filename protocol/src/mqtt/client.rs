//! rumqttc options for a broker URL, the same for the agent and the server:
//! TCP_NODELAY on (without it a QoS 1 round trip stalls ~40 ms on Nagle and
//! delayed ACKs), a client id unique to the connection, a clean session.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, NetworkOptions, QoS};

use super::BrokerUrl;

/// What a connection needs besides the URL.
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// A prefix; a random suffix makes each connection's id unique.
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM of the CA for `mqtts://`; `None`: the Mozilla roots
    /// (webpki-roots).
    pub ca_pem: Option<Vec<u8>>,
    pub keep_alive: Duration,
    /// Published by the broker when the connection is lost: (topic, payload).
    pub last_will: Option<(String, Vec<u8>)>,
}

/// The client id of one connection: `prefix-` and 8 random hex digits.
pub fn unique_client_id(prefix: &str) -> String {
    let suffix: u32 = rand_u32();
    format!("{prefix}-{suffix:08x}")
}

fn rand_u32() -> u32 {
    // Not for secrets: only to keep two connections' ids apart.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let counter = NEXT.fetch_add(0x9e37_79b9, std::sync::atomic::Ordering::Relaxed);
    nanos ^ counter ^ std::process::id().rotate_left(16)
}

static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0x2545_f491);

/// The options for one connection to `url`.
pub fn options(url: &BrokerUrl, login: &Login) -> Result<(MqttOptions, NetworkOptions), String> {
    let mut options = MqttOptions::new(
        unique_client_id(&login.client_id),
        url.host.clone(),
        url.port,
    );
    options
        .set_keep_alive(login.keep_alive.max(Duration::from_secs(5)))
        .set_clean_session(true)
        .set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(username) = &login.username {
        options.set_credentials(username.clone(), login.password.clone().unwrap_or_default());
    }
    if let Some((topic, payload)) = &login.last_will {
        options.set_last_will(LastWill::new(
            topic.clone(),
            payload.clone(),
            QoS::AtLeastOnce,
            true,
        ));
    }
    if url.tls {
        set_tls(&mut options, login)?;
    }
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    network.set_connection_timeout(5);
    Ok((options, network))
}

/// The PEM of a CA file setting (`mqtt.ca_file`); `None` when it is empty.
pub fn read_ca(path: &std::path::Path) -> Result<Option<Vec<u8>>, String> {
    if path.as_os_str().is_empty() {
        return Ok(None);
    }
    std::fs::read(path)
        .map(Some)
        .map_err(|e| format!("reading mqtt.ca_file {}: {e}", path.display()))
}

/// Whether the broker refused any filter of a SUBSCRIBE (its ACL).
pub fn refused(ack: &rumqttc::SubAck) -> bool {
    ack.return_codes
        .iter()
        .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
}

/// A clean goodbye: DISCONNECT, and the event loop driven until it is
/// written (at most half a second). The broker sends no last will for it.
pub async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    let _ = client.try_disconnect();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(event)) = tokio::time::timeout_at(deadline, eventloop.poll()).await {
        if matches!(event, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
            break;
        }
    }
}

#[cfg(feature = "mqtt-tls")]
fn set_tls(options: &mut MqttOptions, login: &Login) -> Result<(), String> {
    use rumqttc::{TlsConfiguration, Transport};
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &login.ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| format!("the broker's CA file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("the broker's CA file: {e}"))?;
            }
            if roots.is_empty() {
                return Err("the broker's CA file holds no PEM certificate".into());
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS for the broker: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        std::sync::Arc::new(config),
    )));
    Ok(())
}

#[cfg(not(feature = "mqtt-tls"))]
fn set_tls(_: &mut MqttOptions, _: &Login) -> Result<(), String> {
    Err("mqtts:// needs a build with the `mqtt-tls` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_connection_gets_its_own_client_id() {
        let a = unique_client_id("lx-agent");
        let b = unique_client_id("lx-agent");
        assert_ne!(a, b);
        assert!(
            a.starts_with("lx-agent-") && a.len() == "lx-agent-".len() + 8,
            "{a}"
        );
    }

    #[test]
    fn options_carry_the_login_and_the_will() {
        let url: BrokerUrl = "mqtt://127.0.0.1:1884".parse().unwrap();
        let login = Login {
            client_id: "t".into(),
            username: Some("u".into()),
            password: Some("p".into()),
            keep_alive: Duration::from_secs(10),
            last_will: Some(("lx/v1/x".into(), b"gone".to_vec())),
            ..Login::default()
        };
        let (options, _) = options(&url, &login).unwrap();
        assert_eq!(options.broker_address(), ("127.0.0.1".to_owned(), 1884));
        let credentials = options.credentials().unwrap();
        assert_eq!(
            (credentials.username.as_str(), credentials.password.as_str()),
            ("u", "p")
        );
        assert_eq!(options.keep_alive(), Duration::from_secs(10));
        assert!(options.clean_session());
        let will = options.last_will().unwrap();
        assert_eq!(will.topic, "lx/v1/x");
        assert!(will.retain);
    }
}
