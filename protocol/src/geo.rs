//! Points on Earth, their validation, and great-circle distance.

use serde::{Deserialize, Serialize};

/// Mean Earth radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Metres per degree of latitude, near enough for bounding boxes.
pub const METRES_PER_DEGREE: f64 = 111_320.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Point {
    pub lat: f64,
    pub lng: f64,
}

impl Point {
    pub fn new(lat: f64, lng: f64) -> Self {
        Self { lat, lng }
    }

    /// Great-circle distance in metres (haversine).
    pub fn distance_m(self, other: Point) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlng = (other.lng - self.lng).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlng / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_M * a.sqrt().min(1.0).asin()
    }
}

/// Why a latitude or longitude is not acceptable.
pub fn check_lat(lat: f64) -> Result<(), &'static str> {
    if lat.is_finite() && (-90.0..=90.0).contains(&lat) {
        Ok(())
    } else {
        Err("must be a number between -90 and 90")
    }
}

pub fn check_lng(lng: f64) -> Result<(), &'static str> {
    if lng.is_finite() && (-180.0..=180.0).contains(&lng) {
        Ok(())
    } else {
        Err("must be a number between -180 and 180")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_degree_of_latitude_is_about_111_km() {
        let d = Point::new(0.0, 0.0).distance_m(Point::new(1.0, 0.0));
        assert!((d - 111_195.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn distance_is_symmetric_and_zero_on_itself() {
        let a = Point::new(4.71, -74.07);
        let b = Point::new(4.72, -74.05);
        assert_eq!(a.distance_m(a), 0.0);
        assert!((a.distance_m(b) - b.distance_m(a)).abs() < 1e-6);
    }

    #[test]
    fn out_of_range_coordinates_are_refused() {
        assert!(check_lat(90.0).is_ok());
        assert!(check_lat(90.1).is_err());
        assert!(check_lat(f64::NAN).is_err());
        assert!(check_lng(-180.0).is_ok());
        assert!(check_lng(181.0).is_err());
    }
}
