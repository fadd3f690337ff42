//! Synthetic flight paths and the receiver that flies them.
//!
//! Contract: a [`Path`] is a pure function of time since its start to a
//! position, speed and course; no clock, no randomness (the hover "jitter" is
//! a fixed Lissajous wobble inside `jitter_m`). Offsets are computed on a
//! local tangent plane with the mean Earth radius, which is exact enough for
//! the few kilometres a demo flies. [`Synth`] turns a path into the GGA, RMC
//! and GST sentences of each epoch.

use std::f64::consts::TAU;
use std::time::Duration;

use crate::error::Error;
use crate::sim::nmea::{self, Epoch};

/// Mean Earth radius (IUGG), the same as the server's geofence maths.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// A WGS84 position in degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatLng {
    pub lat: f64,
    pub lng: f64,
}

impl LatLng {
    pub fn new(lat: f64, lng: f64) -> Self {
        Self { lat, lng }
    }

    /// Great-circle distance (haversine).
    pub fn distance_m(self, other: LatLng) -> f64 {
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lng - self.lng).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().asin()
    }

    /// The point `east_m` east and `north_m` north of this one.
    pub fn offset(self, east_m: f64, north_m: f64) -> LatLng {
        let lat = self.lat + (north_m / EARTH_RADIUS_M).to_degrees();
        let lng = self.lng + (east_m / (EARTH_RADIUS_M * self.lat.to_radians().cos())).to_degrees();
        LatLng { lat, lng }
    }

    fn check(self, name: &'static str) -> Result<(), Error> {
        let ok = self.lat.is_finite()
            && self.lng.is_finite()
            && self.lat.abs() <= 89.0
            && self.lng.abs() <= 180.0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidConfig(name))
        }
    }
}

/// Where the simulated vehicle is at time `t` since the start.
#[derive(Debug, Clone, PartialEq)]
pub enum Path {
    /// Holding position with a small deterministic wobble of at most `jitter_m`.
    Hover { at: LatLng, jitter_m: f64 },
    /// A circle around `center`, starting due north of it, clockwise.
    Orbit {
        center: LatLng,
        radius_m: f64,
        period_s: f64,
    },
    /// A straight line from `from` to `to` at `speed_mps`, then hovering at `to`.
    Transit {
        from: LatLng,
        to: LatLng,
        speed_mps: f64,
    },
}

/// A path's state at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PathPoint {
    pub position: LatLng,
    pub speed_mps: f64,
    /// Degrees true, in [0, 360).
    pub course_deg: f64,
}

impl Path {
    /// Checks the parameters (finite, positive where they must be, away
    /// from the poles).
    pub fn validate(&self) -> Result<(), Error> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        match *self {
            Path::Hover { at, jitter_m } => {
                at.check("hover position")?;
                if !(jitter_m.is_finite() && jitter_m >= 0.0) {
                    return Err(Error::InvalidConfig("jitter_m must be >= 0"));
                }
            }
            Path::Orbit {
                center,
                radius_m,
                period_s,
            } => {
                center.check("orbit center")?;
                if !positive(radius_m) || !positive(period_s) {
                    return Err(Error::InvalidConfig("radius_m and period_s must be > 0"));
                }
            }
            Path::Transit {
                from,
                to,
                speed_mps,
            } => {
                from.check("transit from")?;
                to.check("transit to")?;
                if !positive(speed_mps) {
                    return Err(Error::InvalidConfig("speed_mps must be > 0"));
                }
            }
        }
        Ok(())
    }

    /// The state at `t` after the start.
    pub fn at(&self, t: Duration) -> PathPoint {
        let t = t.as_secs_f64();
        match *self {
            Path::Hover { at, jitter_m } => {
                // Two incommensurate periods keep the wobble from repeating soon.
                let (w1, w2) = (TAU / 7.3, TAU / 5.1);
                let a = jitter_m * std::f64::consts::FRAC_1_SQRT_2;
                let (east, north) = (a * (w1 * t).sin(), a * (w2 * t + 1.0).sin());
                let (ve, vn) = (a * w1 * (w1 * t).cos(), a * w2 * (w2 * t + 1.0).cos());
                PathPoint {
                    position: at.offset(east, north),
                    speed_mps: ve.hypot(vn),
                    course_deg: course(ve, vn),
                }
            }
            Path::Orbit {
                center,
                radius_m,
                period_s,
            } => {
                let theta = TAU * t / period_s;
                PathPoint {
                    position: center.offset(radius_m * theta.sin(), radius_m * theta.cos()),
                    speed_mps: TAU * radius_m / period_s,
                    course_deg: course(theta.cos(), -theta.sin()),
                }
            }
            Path::Transit {
                from,
                to,
                speed_mps,
            } => {
                let total = from.distance_m(to);
                let travelled = (speed_mps * t).min(total);
                let f = if total > 0.0 { travelled / total } else { 1.0 };
                let position = LatLng {
                    lat: from.lat + f * (to.lat - from.lat),
                    lng: from.lng + f * (to.lng - from.lng),
                };
                let east = (to.lng - from.lng) * from.lat.to_radians().cos();
                let north = to.lat - from.lat;
                PathPoint {
                    position,
                    speed_mps: if travelled < total { speed_mps } else { 0.0 },
                    course_deg: course(east, north),
                }
            }
        }
    }
}

fn course(east: f64, north: f64) -> f64 {
    east.atan2(north).to_degrees().rem_euclid(360.0)
}

/// What the simulated receiver reports besides the path.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthOptions {
    pub talker: &'static str,
    pub satellites: u8,
    pub hdop: f32,
    pub accuracy_m: f64,
    pub altitude_m: f64,
}

impl Default for SynthOptions {
    fn default() -> Self {
        Self {
            talker: "GN",
            satellites: 12,
            hdop: 0.8,
            accuracy_m: 2.5,
            altitude_m: 120.0,
        }
    }
}

/// A simulated receiver on a path, started at `start_utc_ms`.
#[derive(Debug, Clone, PartialEq)]
pub struct Synth {
    pub path: Path,
    pub start_utc_ms: u64,
    pub options: SynthOptions,
}

impl Synth {
    pub fn new(path: Path, start_utc_ms: u64) -> Result<Self, Error> {
        path.validate()?;
        Ok(Self {
            path,
            start_utc_ms,
            options: SynthOptions::default(),
        })
    }

    /// The epoch at `t` after the start.
    pub fn epoch(&self, t: Duration) -> Epoch {
        let point = self.path.at(t);
        let o = &self.options;
        Epoch {
            utc_ms: self.start_utc_ms + t.as_millis() as u64,
            lat: point.position.lat,
            lng: point.position.lng,
            altitude_m: o.altitude_m,
            speed_mps: point.speed_mps,
            course_deg: point.course_deg,
            satellites: o.satellites,
            hdop: o.hdop,
            accuracy_m: o.accuracy_m,
            talker: o.talker,
        }
    }

    /// GGA, RMC and GST at `t` after the start.
    pub fn sentences(&self, t: Duration) -> String {
        nmea::epoch_sentences(&self.epoch(t))
    }

    /// The position at a UTC time (Unix ms) of this receiver's epochs.
    pub fn position_at_utc(&self, utc_ms: u64) -> Option<LatLng> {
        let t = utc_ms.checked_sub(self.start_utc_ms)?;
        Some(self.path.at(Duration::from_millis(t)).position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZURICH: LatLng = LatLng {
        lat: 47.3769,
        lng: 8.5417,
    };

    #[test]
    fn an_orbit_stays_on_its_radius_and_returns_after_one_period() {
        let path = Path::Orbit {
            center: ZURICH,
            radius_m: 200.0,
            period_s: 60.0,
        };
        for s in 0..60 {
            let p = path.at(Duration::from_secs(s));
            assert!(
                (p.position.distance_m(ZURICH) - 200.0).abs() < 0.05,
                "{s}: {p:?}"
            );
        }
        let start = path.at(Duration::ZERO).position;
        let end = path.at(Duration::from_secs(60)).position;
        assert!(start.distance_m(end) < 1e-6);
        assert!((path.at(Duration::ZERO).course_deg - 90.0).abs() < 1e-9);
    }

    #[test]
    fn a_transit_moves_at_its_speed_and_stops_at_the_target() {
        let to = ZURICH.offset(1000.0, 0.0);
        let path = Path::Transit {
            from: ZURICH,
            to,
            speed_mps: 10.0,
        };
        let p = path.at(Duration::from_secs(30));
        assert!((p.position.distance_m(ZURICH) - 300.0).abs() < 0.5, "{p:?}");
        assert!((p.course_deg - 90.0).abs() < 0.01);
        let end = path.at(Duration::from_secs(500));
        assert_eq!(end.position, to);
        assert_eq!(end.speed_mps, 0.0);
    }

    #[test]
    fn a_hover_stays_within_its_jitter() {
        let path = Path::Hover {
            at: ZURICH,
            jitter_m: 3.0,
        };
        for tenth in 0..1000 {
            let p = path.at(Duration::from_millis(tenth * 100));
            assert!(p.position.distance_m(ZURICH) <= 3.0 + 1e-6);
        }
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let bad = Path::Orbit {
            center: ZURICH,
            radius_m: -1.0,
            period_s: 60.0,
        };
        assert_eq!(
            bad.validate(),
            Err(Error::InvalidConfig("radius_m and period_s must be > 0"))
        );
        let polar = Path::Hover {
            at: LatLng::new(f64::NAN, 0.0),
            jitter_m: 1.0,
        };
        assert_eq!(
            polar.validate(),
            Err(Error::InvalidConfig("hover position"))
        );
    }
}
