//! Where the device is: a GNSS receiver on a serial port (through lx-hal),
//! a drone's flight controller over MAVLink, a surveyed fixed position, or
//! a synthetic path for demos and tests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use lx_hal::gps::serial::{Baud, Event, GpsReader, SerialConfig};
use lx_hal::gps::{Fix, Quality};
use lx_hal::sim::{LatLng, Path};
use lx_protocol::geo::Point;
use lx_protocol::telemetry::Source;
use lx_protocol::time::UnixMillis;

use crate::battery::Battery;
use crate::config::{Config, GpsSource, PathKind};
use crate::mavlink::{Endpoint, LinkReader, VehicleState};

/// Accuracy reported when the receiver gives neither GST nor HDOP: poor
/// enough that the server's meter will not count it.
const UNKNOWN_ACCURACY_M: f64 = 999.0;

/// A position observed at a wall-clock instant, ready to be signed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Observation {
    pub point: Point,
    pub accuracy_m: f64,
    pub observed_ms: UnixMillis,
    pub source: Source,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReceiverState {
    pub connected: bool,
    pub baud: Option<u32>,
    pub fix: Option<Fix>,
    pub last_error: Option<String>,
}

pub enum PositionSource {
    Serial {
        state: Arc<Mutex<ReceiverState>>,
        _reader: GpsReader,
        max_age: Duration,
    },
    Mavlink {
        state: Arc<Mutex<VehicleState>>,
        _reader: LinkReader,
        max_age: Duration,
    },
    Fixed {
        point: Point,
        accuracy_m: f64,
    },
    Simulated {
        path: Path,
        started: Instant,
    },
}

impl std::fmt::Debug for PositionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Serial { .. } => f.write_str("PositionSource::Serial"),
            Self::Mavlink { .. } => f.write_str("PositionSource::Mavlink"),
            Self::Fixed { point, .. } => write!(f, "PositionSource::Fixed({point:?})"),
            Self::Simulated { path, .. } => write!(f, "PositionSource::Simulated({path:?})"),
        }
    }
}

impl PositionSource {
    /// `battery`: where a flight controller's battery reading goes.
    pub fn start(config: &Config, battery: &Battery) -> anyhow::Result<Self> {
        let gps = &config.gps;
        match gps.source {
            GpsSource::Mavlink => {
                let m = &gps.mavlink;
                let state = Arc::new(Mutex::new(VehicleState::default()));
                let reader = LinkReader::spawn(
                    Endpoint::parse(&m.endpoint)?,
                    crate::mavlink::signing_key(&m.signing_key)?,
                    m.allow_unsigned,
                    gps.uere_m,
                    Arc::clone(&state),
                    battery.clone(),
                )?;
                Ok(Self::Mavlink {
                    state,
                    _reader: reader,
                    max_age: Duration::from_millis(gps.max_fix_age_ms),
                })
            }
            GpsSource::Serial => {
                let mut serial = SerialConfig::new(&gps.port);
                serial.baud = config.baud()?.map_or(Baud::Auto, Baud::Fixed);
                serial.tracker.uere_m = gps.uere_m;
                let state = Arc::new(Mutex::new(ReceiverState::default()));
                let sink_state = Arc::clone(&state);
                let reader = GpsReader::spawn(serial, move |event| {
                    let Ok(mut s) = sink_state.lock() else {
                        return false;
                    };
                    match event {
                        Event::Connected { baud } | Event::Reconnected { baud } => {
                            tracing::info!(baud, "GPS receiver connected");
                            s.connected = true;
                            s.baud = Some(baud);
                            s.last_error = None;
                        }
                        Event::Fix(fix) => s.fix = Some(fix),
                        Event::FixLost => s.fix = None,
                        Event::Disconnected { error } => {
                            tracing::warn!(%error, "GPS receiver lost; retrying");
                            s.connected = false;
                            s.fix = None;
                            s.last_error = Some(error.to_string());
                        }
                    }
                    true
                })
                .with_context(|| format!("starting the GPS reader on {}", gps.port.display()))?;
                Ok(Self::Serial {
                    state,
                    _reader: reader,
                    max_age: Duration::from_millis(gps.max_fix_age_ms),
                })
            }
            GpsSource::Fixed => Ok(Self::Fixed {
                point: Point::new(gps.fixed.lat, gps.fixed.lng),
                accuracy_m: gps.fixed.accuracy_m,
            }),
            GpsSource::Simulated => {
                let s = &gps.simulated;
                let at = LatLng::new(s.lat, s.lng);
                let path = match s.kind {
                    PathKind::Hover => Path::Hover {
                        at,
                        jitter_m: s.jitter_m,
                    },
                    PathKind::Orbit => Path::Orbit {
                        center: at,
                        radius_m: s.radius_m,
                        period_s: s.period_s,
                    },
                    PathKind::Transit => Path::Transit {
                        from: at,
                        to: LatLng::new(s.to_lat, s.to_lng),
                        speed_mps: s.speed_mps,
                    },
                };
                path.validate()
                    .map_err(|e| anyhow::anyhow!("gps.simulated: {e}"))?;
                Ok(Self::Simulated {
                    path,
                    started: Instant::now(),
                })
            }
        }
    }

    /// The current position, if there is a fresh one.
    pub fn latest(&self, now: Instant, wall_now_ms: UnixMillis) -> Option<Observation> {
        match self {
            Self::Serial { state, max_age, .. } => {
                let s = state.lock().ok()?;
                let fix = s
                    .fix
                    .as_ref()
                    .filter(|f| f.quality.is_measured() && f.is_fresh(now, *max_age))?;
                let age_ms = i64::try_from(fix.age(now).as_millis()).unwrap_or(i64::MAX);
                Some(Observation {
                    point: Point::new(fix.lat, fix.lng),
                    accuracy_m: fix.accuracy_m.unwrap_or(UNKNOWN_ACCURACY_M),
                    observed_ms: wall_now_ms - age_ms,
                    source: if matches!(fix.quality, Quality::Rtk | Quality::FloatRtk) {
                        Source::Rtk
                    } else {
                        Source::Gps
                    },
                })
            }
            Self::Mavlink { state, max_age, .. } => {
                let s = state.lock().ok()?;
                let fix = s
                    .fix
                    .filter(|f| now.saturating_duration_since(f.received) <= *max_age)?;
                let age_ms = i64::try_from(now.saturating_duration_since(fix.received).as_millis())
                    .unwrap_or(i64::MAX);
                Some(Observation {
                    point: Point::new(f64::from(fix.lat_e7) / 1e7, f64::from(fix.lng_e7) / 1e7),
                    accuracy_m: fix.accuracy_m.unwrap_or(UNKNOWN_ACCURACY_M),
                    observed_ms: wall_now_ms - age_ms,
                    source: Source::Mavlink,
                })
            }
            Self::Fixed { point, accuracy_m } => Some(Observation {
                point: *point,
                accuracy_m: *accuracy_m,
                observed_ms: wall_now_ms,
                source: Source::Fixed,
            }),
            Self::Simulated { path, started } => {
                let p = path.at(now.saturating_duration_since(*started)).position;
                Some(Observation {
                    point: Point::new(p.lat, p.lng),
                    accuracy_m: 2.5,
                    observed_ms: wall_now_ms,
                    source: Source::Gps,
                })
            }
        }
    }

    /// For the health endpoint: receiver connected, and its baud.
    pub fn receiver(&self) -> Option<ReceiverState> {
        match self {
            Self::Serial { state, .. } => state.lock().ok().map(|s| s.clone()),
            Self::Mavlink { state, .. } => state.lock().ok().map(|s| ReceiverState {
                connected: s.connected,
                baud: None,
                fix: None,
                last_error: s.last_error.clone(),
            }),
            _ => None,
        }
    }

    /// The flight controller's view of the vehicle, with a MAVLink source.
    pub fn vehicle(&self) -> Option<VehicleState> {
        match self {
            Self::Mavlink { state, .. } => state.lock().ok().map(|s| s.clone()),
            _ => None,
        }
    }
}
