//! Agent configuration: the documented defaults of `configs/agent-drone.toml`
//! compiled in, a file over them, `LX_AGENT__SECTION__KEY` variables over both.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use lx_protocol::api::DeviceKind;
use serde::{Deserialize, Serialize};

pub const DEFAULT_TOML: &str = include_str!("../../configs/agent-drone.toml");
const ENV_PREFIX: &str = "LX_AGENT__";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub device: DeviceConfig,
    pub gps: GpsConfig,
    pub telemetry: TelemetryConfig,
    pub lifecycle: LifecycleConfig,
    pub video: VideoConfig,
    pub mqtt: MqttConfig,
    pub power: PowerConfig,
    pub led: LedConfig,
    pub health: HealthConfig,
    pub update: UpdateConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub url: String,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub name: String,
    pub kind: DeviceKind,
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GpsSource {
    Serial,
    Mavlink,
    Fixed,
    Simulated,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpsConfig {
    pub source: GpsSource,
    pub port: PathBuf,
    /// "auto" or a number, as TOML: a string or an integer.
    pub baud: toml::Value,
    pub uere_m: f64,
    pub max_fix_age_ms: u64,
    pub mavlink: MavlinkConfig,
    pub fixed: FixedPosition,
    pub simulated: SimulatedPath,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MavlinkConfig {
    pub endpoint: String,
    pub signing_key: String,
    pub allow_unsigned: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedPosition {
    pub lat: f64,
    pub lng: f64,
    pub accuracy_m: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathKind {
    Hover,
    Orbit,
    Transit,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedPath {
    pub kind: PathKind,
    pub lat: f64,
    pub lng: f64,
    pub jitter_m: f64,
    pub radius_m: f64,
    pub period_s: f64,
    pub to_lat: f64,
    pub to_lng: f64,
    pub speed_mps: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    pub session_interval_ms: u64,
    pub idle_interval_ms: u64,
    pub queue_max_samples: usize,
    pub batch_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    pub poll_interval_ms: u64,
    pub auto_accept: bool,
    pub min_battery_percent: u8,
    /// Offers are refused above this CPU temperature; 0 for no limit.
    pub max_temperature_c: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CameraSource {
    /// GStreamer's `videotestsrc` (demos, tests, a bench without a camera).
    Test,
    V4l2,
    Libcamera,
    Rtsp,
    /// A `gst-launch` fragment of its own, ending in raw video.
    Custom,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoConfig {
    pub enabled: bool,
    pub source: CameraSource,
    pub device: String,
    pub camera: String,
    pub rtsp_url: String,
    pub rtsp_latency_ms: u32,
    pub pattern: String,
    pub pipeline: String,
    pub codec: String,
    pub encoder: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub keyframe_interval_frames: u32,
    /// Empty: the worker bundled into this agent's file, else
    /// `lx-agent-video` beside it (`video::program`).
    pub worker_program: String,
    /// A worker waits prepared while the device would take an offer.
    pub ready: bool,
    pub ice: IceSettings,
}

pub use lx_protocol::config::IceSettings;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    pub enabled: bool,
    pub url: String,
    pub ca_file: PathBuf,
    pub keep_alive_seconds: u16,
    pub status_interval_ms: u64,
    pub poll_interval_ms: u64,
    pub resend_after_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PowerMonitor {
    None,
    Ina219,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerConfig {
    pub monitor: PowerMonitor,
    pub i2c_bus: PathBuf,
    pub address: u8,
    pub shunt_milliohm: u32,
    pub current_lsb_microamp: u32,
    pub curve: Vec<[u32; 2]>,
    pub read_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedConfig {
    pub gpio_chip: String,
    pub line: u32,
    pub active_low: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    pub listen: String,
    /// Where sysfs and procfs are read from: `/` on a device.
    pub sys_root: PathBuf,
    pub read_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The fleet update key's Ethereum address; empty turns updates off.
    pub signer: String,
    pub max_bytes: u64,
    pub download_timeout_s: u64,
    pub confirm_within_s: u64,
}

impl UpdateConfig {
    /// The update key's address, or why updates are refused.
    pub fn signer(&self) -> Result<lx_protocol::wallet::Address, String> {
        if self.signer.trim().is_empty() {
            return Err("updates are off on this device: update.signer is not set".into());
        }
        self.signer
            .trim()
            .parse()
            .map_err(|e| format!("update.signer: {e}"))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub filter: String,
    pub format: String,
}

impl Config {
    pub fn defaults() -> Self {
        Self::from_layers(None, std::iter::empty()).expect("the compiled-in configuration is valid")
    }

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

    /// The configured baud: `None` for auto-detection.
    pub fn baud(&self) -> anyhow::Result<Option<u32>> {
        match &self.gps.baud {
            toml::Value::String(s) if s == "auto" => Ok(None),
            toml::Value::Integer(n) if *n > 0 => Ok(Some(u32::try_from(*n).context("gps.baud")?)),
            other => bail!("gps.baud must be \"auto\" or a positive number, not {other}"),
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.server.url.parse::<reqwest::Url>().is_err() {
            bail!("server.url is not a URL: {}", self.server.url);
        }
        self.baud()?;
        let t = &self.telemetry;
        if t.session_interval_ms == 0 || t.idle_interval_ms == 0 {
            bail!("telemetry intervals must be positive");
        }
        if t.queue_max_samples == 0 || t.batch_max == 0 || t.batch_max > 1000 {
            bail!("telemetry.queue_max_samples must be positive and telemetry.batch_max 1 to 1000");
        }
        if self.lifecycle.poll_interval_ms == 0 {
            bail!("lifecycle.poll_interval_ms must be positive");
        }
        if self.lifecycle.min_battery_percent > 100 {
            bail!("lifecycle.min_battery_percent must be at most 100");
        }
        if !(self.lifecycle.max_temperature_c >= 0.0 && self.lifecycle.max_temperature_c <= 150.0) {
            bail!("lifecycle.max_temperature_c must be 0 (no limit) to 150");
        }
        let u = &self.update;
        if !u.signer.trim().is_empty() {
            u.signer().map_err(anyhow::Error::msg)?;
        }
        if u.max_bytes < 1024 || u.download_timeout_s == 0 || u.confirm_within_s < 10 {
            bail!(
                "update: max_bytes must be at least 1024, download_timeout_s positive, confirm_within_s at least 10"
            );
        }
        if self.health.read_interval_ms == 0 {
            bail!("health.read_interval_ms must be positive");
        }
        if self.gps.source == GpsSource::Mavlink {
            let m = &self.gps.mavlink;
            crate::mavlink::Endpoint::parse(&m.endpoint)
                .map_err(|e| anyhow::anyhow!("gps.mavlink.endpoint: {e}"))?;
            crate::mavlink::signing_key(&m.signing_key)
                .map_err(|e| anyhow::anyhow!("gps.mavlink.signing_key: {e}"))?;
        }
        let f = &self.gps.fixed;
        if !(lx_protocol::geo::check_lat(f.lat).is_ok()
            && lx_protocol::geo::check_lng(f.lng).is_ok()
            && f.accuracy_m >= 0.0)
        {
            bail!("gps.fixed: lat, lng or accuracy_m out of range");
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!("log.format must be \"text\" or \"json\"");
        }
        let m = &self.mqtt;
        if !m.url.is_empty() {
            m.url
                .parse::<lx_protocol::mqtt::BrokerUrl>()
                .map_err(|e| anyhow::anyhow!("mqtt.url: {e}"))?;
        }
        if m.keep_alive_seconds < 5
            || m.status_interval_ms < 1000
            || m.poll_interval_ms == 0
            || m.resend_after_ms < 500
        {
            bail!(
                "mqtt: keep_alive_seconds must be at least 5, status_interval_ms 1000, resend_after_ms 500, poll_interval_ms positive"
            );
        }
        self.validate_power()?;
        self.validate_video()
    }

    fn validate_power(&self) -> anyhow::Result<()> {
        let p = &self.power;
        if p.monitor == PowerMonitor::None {
            return Ok(());
        }
        if !(0x40..=0x4F).contains(&p.address) {
            bail!("power.address must be an INA219 address, 64 to 79 (0x40 to 0x4F)");
        }
        if p.read_interval_ms < 100 {
            bail!("power.read_interval_ms must be at least 100");
        }
        lx_hal::ina219::Calibration {
            shunt_milliohm: p.shunt_milliohm,
            current_lsb_microamp: p.current_lsb_microamp,
        }
        .register()
        .with_context(
            || "power.shunt_milliohm and power.current_lsb_microamp give no INA219 calibration",
        )?;
        let points = p
            .curve
            .iter()
            .map(|[mv, pct]| u8::try_from(*pct).map(|pct| (*mv, pct)))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| anyhow::anyhow!("power.curve: percentages must be 0 to 100"))?;
        lx_hal::ina219::BatteryCurve::new(points)
            .map_err(|e| anyhow::anyhow!("power.curve: {e}"))?;
        Ok(())
    }

    fn validate_video(&self) -> anyhow::Result<()> {
        let v = &self.video;
        if !matches!(v.codec.to_ascii_lowercase().as_str(), "vp8" | "h264") {
            bail!("video.codec must be \"vp8\" or \"h264\", not '{}'", v.codec);
        }
        if v.width < 16 || v.height < 16 || v.width % 2 == 1 || v.height % 2 == 1 {
            bail!("video.width and video.height must be even and at least 16");
        }
        if !(1..=120).contains(&v.fps) {
            bail!("video.fps must be between 1 and 120");
        }
        if v.bitrate_kbps < 50 || v.keyframe_interval_frames == 0 {
            bail!(
                "video.bitrate_kbps must be at least 50 and video.keyframe_interval_frames positive"
            );
        }
        let needs = |what: &str, value: &str| {
            if value.trim().is_empty() {
                bail!("video.source = \"{:?}\" needs video.{what}", v.source);
            }
            Ok(())
        };
        match v.source {
            CameraSource::V4l2 => needs("device", &v.device)?,
            CameraSource::Rtsp => needs("rtsp_url", &v.rtsp_url)?,
            CameraSource::Custom => needs("pipeline", &v.pipeline)?,
            CameraSource::Test => needs("pattern", &v.pattern)?,
            CameraSource::Libcamera => {}
        }
        v.ice.validate("video.ice").map_err(anyhow::Error::msg)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_loads() {
        for text in [
            include_str!("../../configs/agent-drone.toml"),
            include_str!("../../configs/agent-rpi-camera.toml"),
            include_str!("../../configs/agent-fixed-ptz.toml"),
        ] {
            Config::from_layers(Some(text), []).unwrap();
        }
        let ptz = Config::from_layers(Some(include_str!("../../configs/agent-fixed-ptz.toml")), [])
            .unwrap();
        assert_eq!(ptz.gps.source, GpsSource::Fixed);
        assert_eq!(ptz.device.kind, DeviceKind::Ptz);
    }

    #[test]
    fn baud_is_auto_or_a_number() {
        assert_eq!(Config::defaults().baud().unwrap(), None);
        let c = Config::from_layers(
            None,
            [("LX_AGENT__GPS__BAUD".to_owned(), "9600".to_owned())],
        )
        .unwrap();
        assert_eq!(c.baud().unwrap(), Some(9600));
        assert!(
            Config::from_layers(
                None,
                [("LX_AGENT__GPS__BAUD".to_owned(), "fast".to_owned())]
            )
            .is_err()
        );
    }
}
