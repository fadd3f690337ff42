//! The flight controller (PX4, ArduPilot) over MAVLink: where the vehicle
//! is, its battery and whether it is armed, read from a UART or UDP.
//!
//! The agent only listens. It opens the link read-only in spirit: nothing
//! is ever written to it, so it cannot move the vehicle, change a mode or a
//! parameter, whatever it receives.
//!
//! Position: `GLOBAL_POSITION_INT` (the autopilot's fused estimate), while
//! `GPS_RAW_INT` says the receiver has a 3D fix or better; the accuracy is
//! `GPS_RAW_INT.h_acc` when the receiver reports it, else HDOP × UERE.
//! Battery: `BATTERY_STATUS` or `SYS_STATUS.battery_remaining`. Armed:
//! `HEARTBEAT.base_mode`.
//!
//! With a signing key (MAVLink 2 message signing), a message that is not
//! signed, or signed with another key, or replayed, is ignored and counted.

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use mavlink::dialects::common::{GpsFixType, MavMessage, MavModeFlag};
use mavlink::{MAVLinkMessageRaw, MavlinkVersion, Message, SigningConfig, SigningData};
use serde::Serialize;

/// Where the flight controller's messages come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A UART (or a pseudo-terminal) at a baud.
    Serial { path: PathBuf, baud: u32 },
    /// Datagrams sent to this address.
    Udp { bind: SocketAddr },
}

impl Endpoint {
    /// `serial:/dev/ttyAMA0:921600`, `serial:/dev/ttyACM0` (57600 baud) or
    /// `udpin:0.0.0.0:14550`.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        if let Some(rest) = text.strip_prefix("serial:") {
            let (path, baud) = match rest.rsplit_once(':') {
                Some((path, baud))
                    if baud.chars().all(|c| c.is_ascii_digit()) && !baud.is_empty() =>
                {
                    (path, baud.parse().context("the baud")?)
                }
                _ => (rest, 57_600),
            };
            if path.is_empty() || baud == 0 {
                bail!("{text:?}: serial:<device>[:<baud>], the baud positive");
            }
            return Ok(Self::Serial {
                path: path.into(),
                baud,
            });
        }
        if let Some(address) = text.strip_prefix("udpin:") {
            let bind = address
                .parse()
                .with_context(|| format!("{address:?} is not an address and port"))?;
            return Ok(Self::Udp { bind });
        }
        bail!("{text:?}: serial:<device>[:<baud>] or udpin:<address>:<port>")
    }
}

/// The 32-byte signing key from its 64 hex digits; `None` when empty.
pub fn signing_key(text: &str) -> anyhow::Result<Option<[u8; 32]>> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut key = [0u8; 32];
    hex::decode_to_slice(text.strip_prefix("0x").unwrap_or(text), &mut key)
        .map_err(|_| anyhow::anyhow!("must be 64 hex digits (32 bytes), or empty for none"))?;
    Ok(Some(key))
}

/// The last position the flight controller gave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VehicleFix {
    pub lat_e7: i32,
    pub lng_e7: i32,
    pub accuracy_m: Option<f64>,
    pub received: Instant,
}

/// What was received, for `/healthz`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkCounters {
    /// Messages taken.
    pub accepted: u64,
    /// Not signed while a key is set (or MAVLink 1).
    pub unsigned_ignored: u64,
    /// Signed with another key, or replayed.
    pub bad_signature_ignored: u64,
    /// Frames that do not parse as the common dialect.
    pub unparsed: u64,
}

/// The vehicle as the link describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VehicleState {
    pub connected: bool,
    pub fix: Option<VehicleFix>,
    /// GPS_RAW_INT's fix type: 3 is a 3D fix, 5 and 6 RTK.
    pub fix_type: Option<u8>,
    pub satellites: Option<u8>,
    pub hdop: Option<f64>,
    pub battery_percent: Option<u8>,
    pub armed: Option<bool>,
    pub altitude_m: Option<f64>,
    pub relative_altitude_m: Option<f64>,
    pub counters: LinkCounters,
    pub last_error: Option<String>,
}

impl VehicleState {
    /// Applies one message. `uere_m` turns HDOP into metres.
    pub fn apply(&mut self, message: &MavMessage, now: Instant, uere_m: f64) {
        match message {
            MavMessage::GPS_RAW_INT(gps) => {
                self.fix_type = Some(gps.fix_type as u8);
                self.satellites =
                    (gps.satellites_visible != u8::MAX).then_some(gps.satellites_visible);
                self.hdop = (gps.eph != u16::MAX).then(|| f64::from(gps.eph) / 100.0);
                if (gps.fix_type as u8) < GpsFixType::GPS_FIX_TYPE_3D_FIX as u8 {
                    self.fix = None;
                }
                let accuracy = if gps.h_acc > 0 {
                    Some(f64::from(gps.h_acc) / 1000.0)
                } else {
                    self.hdop.map(|h| h * uere_m)
                };
                if let Some(fix) = self.fix.as_mut() {
                    fix.accuracy_m = accuracy;
                }
            }
            MavMessage::GLOBAL_POSITION_INT(p) => {
                let located = self
                    .fix_type
                    .is_some_and(|t| t >= GpsFixType::GPS_FIX_TYPE_3D_FIX as u8);
                if located && !(p.lat == 0 && p.lon == 0) {
                    let accuracy_m = self
                        .fix
                        .and_then(|f| f.accuracy_m)
                        .or_else(|| self.hdop.map(|h| h * uere_m));
                    self.fix = Some(VehicleFix {
                        lat_e7: p.lat,
                        lng_e7: p.lon,
                        accuracy_m,
                        received: now,
                    });
                }
                self.altitude_m = Some(f64::from(p.alt) / 1000.0);
                self.relative_altitude_m = Some(f64::from(p.relative_alt) / 1000.0);
            }
            MavMessage::SYS_STATUS(s) if (0..=100).contains(&s.battery_remaining) => {
                self.battery_percent = u8::try_from(s.battery_remaining).ok();
            }
            MavMessage::BATTERY_STATUS(b) if (0..=100).contains(&b.battery_remaining) => {
                self.battery_percent = u8::try_from(b.battery_remaining).ok();
            }
            MavMessage::HEARTBEAT(h) => {
                self.armed = Some(
                    h.base_mode
                        .contains(MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED),
                );
            }
            _ => {}
        }
    }
}

/// Reads the link on a thread until dropped.
pub struct LinkReader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for LinkReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// UDP datagrams as a byte stream for the frame reader.
struct Datagrams(UdpSocket);

impl Read for Datagrams {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.recv(buf)
    }
}

/// How long a read waits before the thread looks at its stop flag.
const POLL: Duration = Duration::from_millis(200);

impl LinkReader {
    pub fn spawn(
        endpoint: Endpoint,
        key: Option<[u8; 32]>,
        allow_unsigned: bool,
        uere_m: f64,
        state: Arc<Mutex<VehicleState>>,
        battery: crate::battery::Battery,
    ) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let signing =
            key.map(|k| SigningData::from_config(SigningConfig::new(k, 0, false, allow_unsigned)));
        // A UDP port taken is a configuration error to say at once; a UART
        // not there yet is retried (it may be plugged in later).
        let udp = match &endpoint {
            Endpoint::Udp { bind } => {
                let socket =
                    UdpSocket::bind(bind).with_context(|| format!("binding MAVLink UDP {bind}"))?;
                socket.set_read_timeout(Some(POLL))?;
                Some(socket)
            }
            Endpoint::Serial { .. } => None,
        };
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("mavlink".into())
            .spawn(move || {
                let link = Link {
                    signing,
                    allow_unsigned,
                    uere_m,
                    state,
                    battery,
                    stop: flag,
                };
                match (endpoint, udp) {
                    (_, Some(socket)) => {
                        link.connected(true, None);
                        link.read_from(Datagrams(socket));
                    }
                    (Endpoint::Serial { path, baud }, None) => link.serial(&path, baud),
                    (Endpoint::Udp { .. }, None) => {}
                }
            })
            .context("starting the MAVLink reader")?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

struct Link {
    signing: Option<SigningData>,
    allow_unsigned: bool,
    uere_m: f64,
    state: Arc<Mutex<VehicleState>>,
    battery: crate::battery::Battery,
    stop: Arc<AtomicBool>,
}

impl Link {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn connected(&self, connected: bool, error: Option<String>) {
        if let Ok(mut s) = self.state.lock() {
            s.connected = connected;
            if !connected {
                s.fix = None;
            }
            s.last_error = error;
        }
    }

    /// Opens the UART again and again until stopped.
    fn serial(&self, path: &std::path::Path, baud: u32) {
        while !self.stopped() {
            match serialport::new(path.to_string_lossy(), baud)
                .timeout(POLL)
                .open_native()
            {
                Ok(port) => {
                    tracing::info!(path = %path.display(), baud, "flight controller link open");
                    self.connected(true, None);
                    self.read_from(port);
                    if self.stopped() {
                        return;
                    }
                    tracing::warn!(path = %path.display(), "flight controller link lost; reopening");
                    self.connected(false, Some(format!("{} closed", path.display())));
                }
                Err(e) => {
                    self.connected(false, Some(format!("{}: {e}", path.display())));
                }
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Reads frames until the source fails for good or the reader stops.
    fn read_from(&self, source: impl Read) {
        let mut reader = mavlink::MavlinkReader::new(source);
        while !self.stopped() {
            match reader.read_any_raw_message::<MavMessage>() {
                Ok(raw) => self.take(&raw),
                Err(mavlink::error::MessageReadError::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                    ) => {}
                Err(mavlink::error::MessageReadError::Io(e)) => {
                    tracing::debug!(error = %e, "flight controller link read failed");
                    return;
                }
                Err(_) => self.count(|c| c.unparsed += 1),
            }
        }
    }

    fn count(&self, f: impl FnOnce(&mut LinkCounters)) {
        if let Ok(mut s) = self.state.lock() {
            f(&mut s.counters);
        }
    }

    fn take(&self, raw: &MAVLinkMessageRaw) {
        if let Some(signing) = &self.signing {
            let verdict = match raw {
                MAVLinkMessageRaw::V1(_) => None,
                MAVLinkMessageRaw::V2(v2) => {
                    let signed =
                        v2.incompatibility_flags() & mavlink::consts::v2::IFLAG_SIGNED != 0;
                    signed.then(|| signing.verify_signature(v2))
                }
            };
            match verdict {
                None if !self.allow_unsigned => return self.count(|c| c.unsigned_ignored += 1),
                Some(false) => return self.count(|c| c.bad_signature_ignored += 1),
                _ => {}
            }
        }
        let version = match raw {
            MAVLinkMessageRaw::V1(_) => MavlinkVersion::V1,
            MAVLinkMessageRaw::V2(_) => MavlinkVersion::V2,
        };
        match MavMessage::parse(version, raw.message_id(), raw.payload()) {
            Ok(message) => {
                if let Ok(mut s) = self.state.lock() {
                    s.counters.accepted += 1;
                    s.apply(&message, Instant::now(), self.uere_m);
                    if s.battery_percent.is_some() {
                        self.battery.set(s.battery_percent);
                    }
                }
            }
            Err(_) => self.count(|c| c.unparsed += 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mavlink::dialects::common::{GLOBAL_POSITION_INT_DATA, GPS_RAW_INT_DATA, HEARTBEAT_DATA};

    #[test]
    fn endpoints_parse_and_bad_ones_are_named() {
        assert_eq!(
            Endpoint::parse("serial:/dev/ttyAMA0:921600").unwrap(),
            Endpoint::Serial {
                path: "/dev/ttyAMA0".into(),
                baud: 921_600
            }
        );
        assert_eq!(
            Endpoint::parse("serial:/dev/pts/7").unwrap(),
            Endpoint::Serial {
                path: "/dev/pts/7".into(),
                baud: 57_600
            }
        );
        assert_eq!(
            Endpoint::parse("udpin:0.0.0.0:14550").unwrap(),
            Endpoint::Udp {
                bind: "0.0.0.0:14550".parse().unwrap()
            }
        );
        for bad in [
            "tcp:1.2.3.4:5760",
            "udpin:nowhere",
            "serial:",
            "serial:/dev/x:0",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        assert!(signing_key("").unwrap().is_none());
        assert_eq!(signing_key(&"ab".repeat(32)).unwrap(), Some([0xab; 32]));
        assert!(signing_key("abcd").is_err());
    }

    #[test]
    fn a_position_counts_only_with_a_3d_fix_and_takes_h_acc_before_hdop() {
        let mut s = VehicleState::default();
        let now = Instant::now();
        let position = MavMessage::GLOBAL_POSITION_INT(GLOBAL_POSITION_INT_DATA {
            lat: 47_110_000,
            lon: -740_720_000,
            alt: 2_650_500,
            relative_alt: 40_250,
            ..Default::default()
        });
        s.apply(&position, now, 5.0);
        assert!(s.fix.is_none(), "no GPS_RAW_INT fix yet");
        assert_eq!(s.relative_altitude_m, Some(40.25));
        let mut gps = GPS_RAW_INT_DATA {
            fix_type: GpsFixType::GPS_FIX_TYPE_3D_FIX,
            eph: 120,
            satellites_visible: 14,
            ..Default::default()
        };
        s.apply(&MavMessage::GPS_RAW_INT(gps.clone()), now, 5.0);
        s.apply(&position, now, 5.0);
        let fix = s.fix.unwrap();
        assert_eq!((fix.lat_e7, fix.lng_e7), (47_110_000, -740_720_000));
        assert_eq!(fix.accuracy_m, Some(6.0), "HDOP 1.2 × 5 m");
        gps.h_acc = 1_500;
        s.apply(&MavMessage::GPS_RAW_INT(gps.clone()), now, 5.0);
        assert_eq!(s.fix.unwrap().accuracy_m, Some(1.5), "h_acc in mm");
        gps.fix_type = GpsFixType::GPS_FIX_TYPE_2D_FIX;
        s.apply(&MavMessage::GPS_RAW_INT(gps), now, 5.0);
        assert!(s.fix.is_none(), "a 2D fix drops the position");
        s.apply(
            &MavMessage::HEARTBEAT(HEARTBEAT_DATA {
                base_mode: MavModeFlag::MAV_MODE_FLAG_SAFETY_ARMED
                    | MavModeFlag::MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                ..Default::default()
            }),
            now,
            5.0,
        );
        assert_eq!(s.armed, Some(true));
    }
}
