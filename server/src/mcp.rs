//! `/mcp`: the lx MCP tools over streamable HTTP, for AI agents that speak
//! MCP rather than REST. The tools are lx-client's, the same ones `lx mcp`
//! serves on stdio; here each call acts with the `Authorization: Bearer`
//! key of its own HTTP request, through this server's own API on loopback,
//! so scopes, visibility and errors are exactly the REST API's.

use std::net::SocketAddr;
use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, McpConfig};

/// Where the tools reach this server's API, and the token that closes the
/// endpoint's open event streams on shutdown (graceful shutdown waits for
/// every connection, and an MCP client may hold one open indefinitely).
#[derive(Debug, Default)]
pub struct McpEndpoint {
    self_url: OnceLock<String>,
    closing: CancellationToken,
}

impl McpEndpoint {
    /// Records the address the HTTP listener is bound to.
    pub fn serving_at(&self, addr: SocketAddr) {
        let _ = self.self_url.set(loopback_url(addr));
    }

    /// Ends the endpoint's streams; call when shutdown begins.
    pub fn close(&self) {
        self.closing.cancel();
    }

    fn api_url(&self, config: &Config) -> String {
        self.self_url
            .get()
            .cloned()
            .unwrap_or_else(|| config.http.public_url.clone())
    }
}

/// The listener's own address as seen from this host: a wildcard bind
/// (`0.0.0.0`, `[::]`) is reached on loopback.
fn loopback_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// The hosts the endpoint answers: loopback, the public URL's host and the
/// configured extras. Others get 403 (DNS-rebinding protection).
fn allowed_hosts(config: &Config, mcp: &McpConfig) -> Vec<String> {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if let Ok(uri) = config.http.public_url.parse::<axum::http::Uri>()
        && let Some(host) = uri.host()
    {
        hosts.push(
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
        );
    }
    hosts.extend(mcp.allowed_hosts.iter().cloned());
    hosts.sort();
    hosts.dedup();
    hosts
}

/// The `/mcp` service for `app`, reaching its API where `endpoint` says.
pub fn service(
    app: &std::sync::Arc<crate::app::App>,
    endpoint: &std::sync::Arc<McpEndpoint>,
) -> rmcp::transport::StreamableHttpService<
    lx_client::mcp::LxTools,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    let config = rmcp::transport::StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts(&app.config, &app.config.mcp))
        .with_cancellation_token(endpoint.closing.child_token());
    let weak = std::sync::Arc::downgrade(app);
    let endpoint = std::sync::Arc::clone(endpoint);
    let make = move || {
        let app = weak
            .upgrade()
            .ok_or_else(|| std::io::Error::other("the server is shutting down"))?;
        lx_client::Client::new(&endpoint.api_url(&app.config), None)
            .map(lx_client::mcp::LxTools::new)
            .map_err(|e| std::io::Error::other(e.to_string()))
    };
    rmcp::transport::StreamableHttpService::new(make, std::sync::Arc::default(), config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wildcard_bind_is_reached_on_loopback() {
        assert_eq!(
            loopback_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(loopback_url("[::]:81".parse().unwrap()), "http://[::1]:81");
        assert_eq!(
            loopback_url("10.1.2.3:9".parse().unwrap()),
            "http://10.1.2.3:9"
        );
    }

    #[test]
    fn the_public_host_and_extras_are_allowed() {
        let mut config = Config::from_layers(None, Vec::<(String, String)>::new()).unwrap();
        config.http.public_url = "https://lx.example.org:8443".into();
        let mcp = McpConfig {
            enabled: true,
            allowed_hosts: vec!["mcp.example.org".into()],
        };
        let hosts = allowed_hosts(&config, &mcp);
        for h in [
            "localhost",
            "127.0.0.1",
            "lx.example.org",
            "mcp.example.org",
        ] {
            assert!(hosts.iter().any(|x| x == h), "{h} in {hosts:?}");
        }
    }
}
