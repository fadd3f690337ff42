//! Server configuration: TOML with every default compiled in from
//! `configs/server.toml`, a file that overrides any part of it, and
//! `LX_SERVER__SECTION__KEY` environment variables over both.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Deserialize;

pub const DEFAULT_TOML: &str = include_str!("../../configs/server.toml");
const ENV_PREFIX: &str = "LX_SERVER__";
/// The largest coverage radius any cap may allow, metres.
pub const MAX_COVERAGE_RADIUS_M: u32 = 1_000_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub http: HttpConfig,
    pub mcp: McpConfig,
    pub store: StoreConfig,
    pub auth: AuthConfig,
    pub sessions: SessionsConfig,
    pub dispatch: DispatchConfig,
    pub telemetry: TelemetryConfig,
    pub operators: OperatorsConfig,
    pub pricing: PricingConfig,
    pub credit: CreditConfig,
    pub chain: ChainConfig,
    pub media: MediaConfig,
    pub mqtt: MqttConfig,
    pub webhooks: WebhooksConfig,
    pub retention: RetentionConfig,
    pub rate_limits: RateLimitsConfig,
    pub log: LogConfig,
}

/// `[rate_limits]`: requests per minute per client address and per
/// credential, by kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    pub challenges_per_minute: u32,
    pub sign_in_per_minute: u32,
    pub workspaces_per_minute: u32,
    pub registrations_per_minute: u32,
    pub webhooks_per_minute: u32,
    pub telemetry_per_minute: u32,
    pub media_offers_per_minute: u32,
    pub media_patches_per_minute: u32,
    pub quotes_per_minute: u32,
    pub mcp_per_minute: u32,
    /// A refusal is answered after this long: a client that ignores
    /// Retry-After and calls again at once is slowed to a few calls a
    /// second per connection, instead of costing the server its CPU.
    pub refusal_delay_ms: u32,
    /// Requests refused 401 from one address a minute (a burst as large);
    /// past it the address gets 429 on everything until it would be under.
    pub auth_failures_per_minute: u32,
}

/// `[retention]`: how long rows that only grow are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    pub interval_seconds: u64,
    pub challenges_seconds: u64,
    pub quotes_seconds: u64,
    pub heartbeat_samples_seconds: u64,
    pub locations_seconds: u64,
    pub dispatch_attempts_seconds: u64,
    pub enrollment_tokens_seconds: u64,
    pub webhook_rows_seconds: u64,
    pub outages_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub max_connections: u32,
    pub header_read_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// Origins besides this server the web console may connect to (an
    /// external media edge's WHIP/WHEP host); they go into its CSP.
    #[serde(default)]
    pub console_connect_origins: Vec<String>,
}

/// `/mcp`, the MCP tools over streamable HTTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpConfig {
    pub enabled: bool,
    /// Host names the endpoint answers besides loopback and `http.public_url`'s.
    pub allowed_hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub read_connections: u16,
    /// `postgres://…`: the PostgreSQL store several replicas share, instead
    /// of the SQLite file at `path`. Empty: SQLite.
    pub url: String,
    /// The PostgreSQL pool's size.
    pub max_connections: u16,
}

impl StoreConfig {
    /// Whether `url` selects PostgreSQL.
    pub fn postgres(&self) -> bool {
        !self.url.is_empty()
    }

    /// Where the store is, for logs: never the URL's password.
    pub fn location(&self) -> String {
        if !self.postgres() {
            return self.path.display().to_string();
        }
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
            None => "postgres".to_owned(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    pub cookie_secret: String,
    pub session_ttl_seconds: u32,
    pub challenge_ttl_seconds: u32,
    pub revoke_grace_seconds: u32,
    pub secure_cookie: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    pub default_wait_timeout_seconds: u32,
    pub min_wait_timeout_seconds: u32,
    pub max_wait_timeout_seconds: u32,
    pub max_duration_seconds: u32,
    pub default_geofence_radius_meters: u32,
    pub sweep_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    pub default_offer_timeout_seconds: u32,
    /// The `minTrustTier` of a session whose request names none.
    pub default_min_trust_tier: u8,
    /// An ASSIGNED supplier that is not LIVE this long after the assignment
    /// is cooled down and the session dispatched again; 0: never.
    pub assigned_live_timeout_seconds: u32,
    /// How long dispatch skips a cooled-down workspace (and device).
    pub cooldown_seconds: u32,
    pub max_coverage_radius_meters: CoverageCaps,
}

/// The largest coverage radius a supplier workspace may claim, by its
/// `deviceKind`; `default` for a workspace without one (or a kind not listed).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoverageCaps {
    pub default: u32,
    #[serde(default)]
    pub phone: Option<u32>,
    #[serde(default)]
    pub laptop: Option<u32>,
    #[serde(default)]
    pub drone: Option<u32>,
    #[serde(default)]
    pub ptz: Option<u32>,
    #[serde(default)]
    pub fixed: Option<u32>,
    #[serde(default)]
    pub other: Option<u32>,
}

impl CoverageCaps {
    /// No cap beyond the index's own limit (for benchmarks and tools).
    pub const UNCAPPED: Self = Self {
        default: u32::MAX,
        phone: None,
        laptop: None,
        drone: None,
        ptz: None,
        fixed: None,
        other: None,
    };

    pub fn for_kind(&self, kind: Option<lx_protocol::api::DeviceKind>) -> u32 {
        use lx_protocol::api::DeviceKind::*;
        let specific = match kind {
            Some(Phone) => self.phone,
            Some(Laptop) => self.laptop,
            Some(Drone) => self.drone,
            Some(Ptz) => self.ptz,
            Some(Fixed) => self.fixed,
            Some(Other) => self.other,
            None => None,
        };
        specific.unwrap_or(self.default)
    }

    fn all(&self) -> impl Iterator<Item = (&'static str, u32)> {
        [
            ("default", Some(self.default)),
            ("phone", self.phone),
            ("laptop", self.laptop),
            ("drone", self.drone),
            ("ptz", self.ptz),
            ("fixed", self.fixed),
            ("other", self.other),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub fresh_seconds: u32,
    /// The freshness of a tier-0 workspace's unsigned location heartbeat.
    pub heartbeat_fresh_seconds: u32,
    pub max_accuracy_meters: u32,
    pub max_future_skew_ms: u32,
    pub settle_delay_seconds: u32,
    /// A sample received longer than this after its capture counts only
    /// inside a recorded outage of its device; a device not heard from for
    /// longer than this is recorded as disconnected.
    pub late_sample_bound_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorsConfig {
    pub enrollment_token_ttl_seconds: u32,
    pub connected_within_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PricingConfig {
    pub base_rate_micro_usdc: u64,
    pub platform_fee_bps: u32,
    pub quote_ttl_seconds: u32,
    pub demand_radius_meters: u32,
    #[serde(default)]
    pub corridors: Vec<Corridor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Corridor {
    pub name: String,
    pub min_lat: f64,
    pub max_lat: f64,
    pub min_lng: f64,
    pub max_lng: f64,
    pub multiplier_bps: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreditConfig {
    pub source: String,
    pub default_micro_usdc: u64,
    pub watch_interval_ms: u64,
    #[serde(default)]
    pub wallets: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    pub chain_id: u64,
    pub rpc_url: String,
    pub settlement_address: String,
    pub relayer_keystore: String,
    pub relayer_password_env: String,
    pub confirmations: u32,
    pub settle_interval_ms: u64,
    pub settle_batch_max: u32,
    pub debt_retry_seconds: u32,
    pub relayer_margin_seconds: u32,
    pub resubmit_after_seconds: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub timeout_ms: u64,
    pub poll_interval_ms: u64,
    pub max_per_workspace: u32,
    pub disable_after_failed_events: u32,
    pub max_in_flight_per_workspace: u32,
    pub allowed_targets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    pub backend: String,
    pub codecs: Vec<String>,
    pub frame_interval_ms: u32,
    pub jpeg_quality: u8,
    pub media_timeout_ms: u32,
    pub jitter_latency_ms: u32,
    pub max_viewers_per_session: u32,
    pub viewer_connect_timeout_ms: u32,
    pub token_secret: String,
    pub edge_api_token: String,
    pub ice: IceSettings,
    pub external: ExternalSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalSettings {
    pub api_url: String,
    pub api_token: String,
}

pub use lx_protocol::config::IceSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub url: String,
    pub device_url: String,
    pub username: String,
    pub password: String,
    pub ca_file: PathBuf,
    pub keep_alive_seconds: u16,
    pub mosquitto: MosquittoConfig,
}

impl MqttConfig {
    pub fn enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// What devices are told to connect to.
    pub fn device_url(&self) -> &str {
        if self.device_url.is_empty() {
            &self.url
        } else {
            &self.device_url
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosquittoConfig {
    pub password_file: PathBuf,
    pub acl_file: PathBuf,
    pub pid_file: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    pub format: String,
}

impl Config {
    /// The compiled-in defaults.
    pub fn defaults() -> Self {
        Self::from_layers(None, std::iter::empty()).expect("the compiled-in configuration is valid")
    }

    /// Defaults, then the file at `path` (if any), then `LX_SERVER__…` variables.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let file = lx_protocol::config::read_file(path).map_err(anyhow::Error::msg)?;
        Self::from_layers(file.as_deref(), std::env::vars())
    }

    pub fn from_layers(
        file: Option<&str>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let config: Self = lx_protocol::config::parse(DEFAULT_TOML, file, env, ENV_PREFIX)
            .map_err(anyhow::Error::msg)?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.store.postgres()
            && !(self.store.url.starts_with("postgres://")
                || self.store.url.starts_with("postgresql://"))
        {
            bail!("store.url must start with postgres:// (or be empty for the SQLite file)");
        }
        if self.store.postgres() && self.store.max_connections == 0 {
            bail!("store.max_connections must be at least 1");
        }
        if self.store.read_connections == 0 {
            bail!("store.read_connections must be at least 1");
        }
        if self.rate_limits.refusal_delay_ms > 5_000 {
            // Each refusal holds its connection this long.
            bail!("rate_limits.refusal_delay_ms must be at most 5000");
        }
        let s = &self.sessions;
        if s.min_wait_timeout_seconds == 0
            || s.min_wait_timeout_seconds > s.max_wait_timeout_seconds
        {
            bail!(
                "sessions: min_wait_timeout_seconds must be between 1 and max_wait_timeout_seconds"
            );
        }
        if !(s.min_wait_timeout_seconds..=s.max_wait_timeout_seconds)
            .contains(&s.default_wait_timeout_seconds)
        {
            bail!("sessions.default_wait_timeout_seconds must lie within the min and max");
        }
        if s.max_duration_seconds == 0 {
            bail!("sessions.max_duration_seconds must be positive");
        }
        let d = &self.dispatch;
        if d.default_min_trust_tier > lx_protocol::api::MAX_TRUST_TIER {
            bail!(
                "dispatch.default_min_trust_tier must be 0 (any supplier) or 1 (enrolled devices only)"
            );
        }
        if d.assigned_live_timeout_seconds > 0 {
            if d.cooldown_seconds == 0 {
                bail!(
                    "dispatch.cooldown_seconds must be positive while assigned_live_timeout_seconds is"
                );
            }
            // Past the wait timeout the session has expired: the cool-down
            // would never fire for a session that waits the default.
            if d.assigned_live_timeout_seconds >= s.default_wait_timeout_seconds {
                bail!(
                    "dispatch.assigned_live_timeout_seconds must be below sessions.default_wait_timeout_seconds (or 0: off)"
                );
            }
        }
        for (kind, cap) in d.max_coverage_radius_meters.all() {
            if cap == 0 || cap > MAX_COVERAGE_RADIUS_M {
                bail!(
                    "dispatch.max_coverage_radius_meters.{kind} must be 1 to {MAX_COVERAGE_RADIUS_M}"
                );
            }
        }
        let t = &self.telemetry;
        if t.fresh_seconds == 0 || t.heartbeat_fresh_seconds == 0 {
            bail!("telemetry.fresh_seconds and telemetry.heartbeat_fresh_seconds must be positive");
        }
        if t.late_sample_bound_seconds == 0 {
            bail!("telemetry.late_sample_bound_seconds must be positive");
        }
        if self.pricing.platform_fee_bps > 10_000 {
            bail!("pricing.platform_fee_bps must be at most 10000");
        }
        if self.pricing.quote_ttl_seconds == 0 {
            bail!("pricing.quote_ttl_seconds must be positive");
        }
        for c in &self.pricing.corridors {
            if !(c.min_lat < c.max_lat && c.min_lng < c.max_lng) || c.multiplier_bps == 0 {
                bail!(
                    "pricing.corridors '{}': needs min < max and a positive multiplier",
                    c.name
                );
            }
        }
        match self.credit.source.as_str() {
            "static" => {}
            "onchain" => {
                if self.chain.rpc_url.is_empty() {
                    bail!("credit.source = \"onchain\" needs chain.rpc_url");
                }
                if self
                    .chain
                    .settlement_address
                    .parse::<lx_protocol::wallet::Address>()
                    .is_err()
                {
                    bail!(
                        "credit.source = \"onchain\" needs chain.settlement_address, the contract's 0x… address"
                    );
                }
            }
            other => bail!("credit.source '{other}' is not known (known: static, onchain)"),
        }
        let m = &self.media;
        if !matches!(m.backend.as_str(), "none" | "builtin" | "external") {
            bail!(
                "media.backend '{}' is not known (known: builtin, external, none)",
                m.backend
            );
        }
        if m.backend == "external" && m.external.api_url.parse::<axum::http::Uri>().is_err() {
            bail!(
                "media.backend = \"external\" needs media.external.api_url, the edge's live-inputs API"
            );
        }
        if m.codecs.is_empty() {
            bail!("media.codecs must name at least one codec (vp8, h264)");
        }
        for codec in &m.codecs {
            if !matches!(codec.to_ascii_lowercase().as_str(), "vp8" | "h264") {
                bail!("media.codecs: unknown codec '{codec}' (known: vp8, h264)");
            }
        }
        if m.frame_interval_ms < 100 {
            bail!("media.frame_interval_ms must be at least 100");
        }
        if !(1..=100).contains(&m.jpeg_quality) {
            bail!("media.jpeg_quality must be between 1 and 100");
        }
        if m.media_timeout_ms < 500 {
            bail!("media.media_timeout_ms must be at least 500");
        }
        if m.viewer_connect_timeout_ms < 1000 {
            bail!("media.viewer_connect_timeout_ms must be at least 1000");
        }
        if m.max_viewers_per_session == 0 {
            bail!("media.max_viewers_per_session must be positive");
        }
        m.ice.validate("media.ice").map_err(anyhow::Error::msg)?;
        self.validate_mqtt()?;
        let w = &self.webhooks;
        if w.max_attempts == 0 {
            bail!("webhooks.max_attempts must be at least 1");
        }
        if w.backoff_initial_ms == 0 || w.backoff_initial_ms > w.backoff_max_ms {
            bail!("webhooks.backoff_initial_ms must be between 1 and webhooks.backoff_max_ms");
        }
        if w.timeout_ms < 100 {
            bail!("webhooks.timeout_ms must be at least 100");
        }
        if w.poll_interval_ms < 10 {
            bail!("webhooks.poll_interval_ms must be at least 10");
        }
        if w.disable_after_failed_events == 0 {
            bail!("webhooks.disable_after_failed_events must be at least 1");
        }
        if w.max_in_flight_per_workspace == 0 {
            bail!("webhooks.max_in_flight_per_workspace must be at least 1");
        }
        crate::egress::TargetPolicy::from_config(&w.allowed_targets).map_err(anyhow::Error::msg)?;
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        if self.http.public_url.parse::<axum::http::Uri>().is_err() {
            bail!("http.public_url is not a URL: {}", self.http.public_url);
        }
        for origin in &self.http.console_connect_origins {
            if origin_of(origin).is_none() {
                bail!("http.console_connect_origins: '{origin}' is not an http(s) origin");
            }
        }
        Ok(())
    }

    fn validate_mqtt(&self) -> anyhow::Result<()> {
        let q = &self.mqtt;
        let m = &q.mosquitto;
        let managed = [&m.password_file, &m.acl_file]
            .iter()
            .filter(|p| !p.as_os_str().is_empty())
            .count();
        if !q.enabled() {
            if managed > 0 {
                bail!("mqtt.mosquitto needs mqtt.url, the broker those files are for");
            }
            return Ok(());
        }
        for (key, url) in [
            ("mqtt.url", q.url.as_str()),
            ("mqtt.device_url", q.device_url()),
        ] {
            url.parse::<lx_protocol::mqtt::BrokerUrl>()
                .map_err(|e| anyhow::anyhow!("{key}: {e}"))?;
        }
        if q.username.is_empty() || q.username.contains(['/', '+', '#', ':']) {
            bail!("mqtt.username must be a plain name");
        }
        if managed == 1 {
            bail!("mqtt.mosquitto: set both password_file and acl_file, or neither");
        }
        if managed == 2 && q.password.is_empty() {
            bail!(
                "mqtt.mosquitto manages the broker's accounts, so mqtt.password (LX_SERVER__MQTT__PASSWORD) must be set"
            );
        }
        if q.keep_alive_seconds < 5 {
            bail!("mqtt.keep_alive_seconds must be at least 5");
        }
        Ok(())
    }

    /// The rendered TOML of this configuration, for `lx-server print-config`.
    pub fn default_text() -> &'static str {
        DEFAULT_TOML
    }
}

/// `scheme://host[:port]` of an http(s) URL, or `None` when `url` is not one.
/// Only this shape goes into the policy, so no configured text can add a
/// directive to it.
pub fn origin_of(url: &str) -> Option<String> {
    let uri: axum::http::Uri = url.parse().ok()?;
    let scheme = uri
        .scheme_str()
        .filter(|s| matches!(*s, "http" | "https"))?;
    let authority = uri.authority()?.as_str();
    // An authority with credentials (`user@host`) is not an origin.
    if authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_defaults_load() {
        let c = Config::defaults();
        assert_eq!(c.pricing.base_rate_micro_usdc, 1000);
        assert_eq!(c.sessions.default_wait_timeout_seconds, 300);
    }

    #[test]
    fn file_then_environment_override_the_defaults() {
        let file = "[http]\nlisten = \"127.0.0.1:9999\"\n[pricing]\nplatform_fee_bps = 250\n";
        let env = [
            (
                "LX_SERVER__PRICING__PLATFORM_FEE_BPS".to_owned(),
                "500".to_owned(),
            ),
            ("LX_SERVER__STORE__PATH".to_owned(), "/tmp/x.db".to_owned()),
            ("UNRELATED".to_owned(), "1".to_owned()),
        ];
        let c = Config::from_layers(Some(file), env).unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:9999");
        assert_eq!(c.pricing.platform_fee_bps, 500);
        assert_eq!(c.store.path, PathBuf::from("/tmp/x.db"));
    }

    #[test]
    fn trust_settings_are_checked_and_caps_fall_back_to_the_default() {
        use lx_protocol::api::DeviceKind;
        let c = Config::defaults();
        assert_eq!(c.dispatch.default_min_trust_tier, 0);
        let caps = c.dispatch.max_coverage_radius_meters;
        assert_eq!(caps.for_kind(Some(DeviceKind::Phone)), 5_000);
        assert_eq!(caps.for_kind(None), caps.default);
        let only_default = Config::from_layers(
            Some("[dispatch.max_coverage_radius_meters]\ndefault = 7\n"),
            [],
        )
        .unwrap();
        assert_eq!(
            only_default
                .dispatch
                .max_coverage_radius_meters
                .for_kind(Some(DeviceKind::Drone)),
            10_000,
            "a file overrides one key; the others keep their defaults"
        );
        for (bad, key) in [
            (
                "[dispatch]\ndefault_min_trust_tier = 2\n",
                "default_min_trust_tier",
            ),
            (
                "[dispatch]\nassigned_live_timeout_seconds = 300\n",
                "assigned_live_timeout_seconds",
            ),
            ("[dispatch]\ncooldown_seconds = 0\n", "cooldown_seconds"),
            (
                "[dispatch.max_coverage_radius_meters]\nphone = 0\n",
                "phone",
            ),
            ("[dispatch.max_coverage_radius_meters]\nboat = 5\n", "boat"),
            (
                "[telemetry]\nlate_sample_bound_seconds = 0\n",
                "late_sample_bound_seconds",
            ),
        ] {
            let err = Config::from_layers(Some(bad), []).unwrap_err();
            assert!(format!("{err:#}").contains(key), "{bad}: {err:#}");
        }
        let off = Config::from_layers(
            Some("[dispatch]\nassigned_live_timeout_seconds = 0\ncooldown_seconds = 0\n"),
            [],
        );
        assert!(off.is_ok(), "0 turns the cool-down off");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = Config::from_layers(Some("[http]\nlistn = \"x\"\n"), []).unwrap_err();
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
        let err =
            Config::from_layers(Some("[pricing]\nplatform_fee_bps = 20000\n"), []).unwrap_err();
        assert!(format!("{err:#}").contains("platform_fee_bps"), "{err:#}");
        let err = Config::from_layers(
            Some("[webhooks]\nbackoff_initial_ms = 5000\nbackoff_max_ms = 1000\n"),
            [],
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("webhooks.backoff_initial_ms"),
            "{err:#}"
        );
        for (text, named) in [
            ("[store]\nread_connections = 0\n", "store.read_connections"),
            ("[store]\nurl = \"mysql://db/lx\"\n", "store.url"),
            (
                "[store]\nurl = \"postgres://db/lx\"\nmax_connections = 0\n",
                "store.max_connections",
            ),
            (
                "[rate_limits]\nrefusal_delay_ms = 60000\n",
                "rate_limits.refusal_delay_ms",
            ),
            (
                "[media]\nviewer_connect_timeout_ms = 10\n",
                "media.viewer_connect_timeout_ms",
            ),
        ] {
            let err = Config::from_layers(Some(text), []).unwrap_err();
            assert!(format!("{err:#}").contains(named), "{err:#}");
        }
    }
}
