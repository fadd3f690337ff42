//! In-memory spatial index of the ONLINE suppliers' coverage circles, used to
//! find the candidates for a request at a point on Earth.
//!
//! Contract:
//! - The index is an optimisation, never the source of truth. The store's
//!   compare-and-swap on a supplier's state guards correctness: an index that is
//!   stale (a supplier went offline, got busy or moved since it was last
//!   updated) only costs the dispatcher a retry with the next candidate.
//! - It holds one coverage circle per supplier id ([`CoverageIndex::upsert`]
//!   replaces an id's previous circle) and answers "who covers this point?"
//!   exactly: an R-tree over bounding boxes in (lng, lat) degrees narrows the
//!   candidates, then each is checked with the same great-circle distance the
//!   rest of the system uses ([`Point::distance_m`], haversine). A point is
//!   covered when its distance to the centre is `<= radius_m`.
//! - Circles crossing the antimeridian are found from either side, and a circle
//!   containing a pole covers every longitude in its latitude band.
//! - Nothing panics on any input: an invalid coverage (non-finite numbers,
//!   latitude outside [-90, 90], longitude outside [-180, 180], radius outside
//!   (0, 20 000 km]) is refused with [`IndexError`] and leaves the index as it
//!   was; an invalid query point simply matches nothing.
//! - [`CoverageIndex::pick`] is the hot path: it walks the R-tree with internal
//!   iteration and keeps the best candidate, without allocating.

use std::collections::HashMap;
use std::fmt;
use std::ops::ControlFlow;

use lx_protocol::geo::{EARTH_RADIUS_M, Point};
use rstar::{
    AABB, Envelope, PointDistance, RStarInsertionStrategy, RTree, RTreeObject, RTreeParams,
};
use uuid::Uuid;

/// Largest accepted coverage radius, metres (about half of the Earth's circumference).
const MAX_RADIUS_M: f64 = 20_000_000.0;

/// Absolute widening of every bounding box, degrees (about 1 cm), so that
/// rounding in the box arithmetic can never drop a point that the exact
/// great-circle test would accept.
const BOX_SLACK_DEG: f64 = 1e-7;

/// Beyond this longitude half-width a box simply spans all longitudes. Keeping
/// it well below 180 also guarantees that the two halves of an antimeridian
/// split never overlap, so no query point falls in both boxes of one id.
const FULL_LNG_HALF_WIDTH_DEG: f64 = 170.0;

/// A supplier's circular coverage: every point within `radius_m` metres
/// (great-circle distance) of `center`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Coverage {
    pub center: Point,
    pub radius_m: f64,
}

/// Why the index refused an entry.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexError {
    /// The coverage is not a valid circle on Earth; the reason says which part.
    InvalidCoverage(&'static str),
}

impl fmt::Display for IndexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IndexError::InvalidCoverage(reason) => write!(f, "invalid coverage: {reason}"),
        }
    }
}

impl std::error::Error for IndexError {}

/// R-tree node sizes. Measured with 1 000 000 bulk-loaded circles of 2-25 km
/// over Europe, nodes of up to 24 made `pick` about 20 % faster (p50 ~10 us,
/// p99 ~17 us on a shared 2-core machine) than rstar's default of 6, for
/// slightly dearer single inserts; 32 or 64 gained nothing more.
#[derive(Clone, Copy, Debug)]
struct IndexParams;

impl RTreeParams for IndexParams {
    const MIN_SIZE: usize = 8;
    const MAX_SIZE: usize = 24;
    const REINSERTION_COUNT: usize = 6;
    type DefaultInsertionStrategy = RStarInsertionStrategy;
}

/// One bounding box of one supplier's circle, with everything a query needs
/// inline so that the hot path touches no other memory.
#[derive(Clone, Debug, PartialEq)]
struct Entry {
    envelope: AABB<[f64; 2]>,
    id: Uuid,
    idle_since_ms: i64,
    center: Point,
    radius_m: f64,
}

impl Entry {
    /// The ordering key of [`CoverageIndex::pick`]: longest idle first, then the smaller id.
    fn key(&self) -> (i64, Uuid) {
        (self.idle_since_ms, self.id)
    }

    /// The exact test, after the box test.
    fn covers(&self, p: Point) -> bool {
        p.distance_m(self.center) <= self.radius_m
    }
}

impl RTreeObject for Entry {
    type Envelope = AABB<[f64; 2]>;

    fn envelope(&self) -> Self::Envelope {
        self.envelope
    }
}

impl PointDistance for Entry {
    fn distance_2(&self, point: &[f64; 2]) -> f64 {
        self.envelope.distance_2(point)
    }

    fn contains_point(&self, point: &[f64; 2]) -> bool {
        self.envelope.contains_point(point)
    }
}

/// What the index remembers per id, to find its boxes again.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Slot {
    coverage: Coverage,
    idle_since_ms: i64,
}

impl Slot {
    /// The one or two tree entries of this slot (two when the circle crosses
    /// the antimeridian). Deterministic: the same slot always yields
    /// bit-identical entries, which is what removal relies on.
    fn entries(&self, id: Uuid) -> impl Iterator<Item = Entry> + use<> {
        let Slot {
            coverage,
            idle_since_ms,
        } = *self;
        bounding_boxes(coverage)
            .into_iter()
            .flatten()
            .map(move |envelope| Entry {
                envelope,
                id,
                idle_since_ms,
                center: coverage.center,
                radius_m: coverage.radius_m,
            })
    }
}

/// The in-memory index of online suppliers' coverage circles.
#[derive(Clone, Default)]
pub struct CoverageIndex {
    tree: RTree<Entry, IndexParams>,
    slots: HashMap<Uuid, Slot>,
}

impl fmt::Debug for CoverageIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CoverageIndex")
            .field("suppliers", &self.slots.len())
            .field("boxes", &self.tree.size())
            .finish()
    }
}

impl CoverageIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index in one go (R-tree bulk load), from
    /// `(supplier id, coverage, idle_since unix ms)`. When an id appears more
    /// than once the last occurrence wins, as with successive upserts. Any
    /// invalid coverage refuses the whole load.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (Uuid, Coverage, i64)>,
    ) -> Result<Self, IndexError> {
        let entries = entries.into_iter();
        // Trust the size hint only so far: a lying iterator must not make us
        // reserve (and fail to allocate) absurd amounts up front.
        let mut slots = HashMap::with_capacity(entries.size_hint().0.min(1 << 22));
        for (id, coverage, idle_since_ms) in entries {
            validate(coverage)?;
            slots.insert(
                id,
                Slot {
                    coverage,
                    idle_since_ms,
                },
            );
        }
        let mut boxes = Vec::with_capacity(slots.len());
        for (&id, slot) in &slots {
            boxes.extend(slot.entries(id));
        }
        Ok(Self {
            tree: RTree::bulk_load_with_params(boxes),
            slots,
        })
    }

    /// Adds a supplier, or replaces its previous circle and idle time. An
    /// invalid coverage is refused and leaves the index unchanged (including
    /// any previous entry for `id`).
    pub fn upsert(
        &mut self,
        id: Uuid,
        coverage: Coverage,
        idle_since_ms: i64,
    ) -> Result<(), IndexError> {
        validate(coverage)?;
        let slot = Slot {
            coverage,
            idle_since_ms,
        };
        if let Some(old) = self.slots.insert(id, slot) {
            if old == slot {
                return Ok(());
            }
            self.remove_boxes(id, old);
        }
        for entry in slot.entries(id) {
            self.tree.insert(entry);
        }
        Ok(())
    }

    /// Drops a supplier; `false` if it was not indexed.
    pub fn remove(&mut self, id: Uuid) -> bool {
        match self.slots.remove(&id) {
            Some(old) => {
                self.remove_boxes(id, old);
                true
            }
            None => false,
        }
    }

    /// Number of suppliers (not boxes) indexed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.slots.contains_key(&id)
    }

    /// Every supplier whose circle contains `p`, sorted by id, without
    /// duplicates. Empty for an invalid point.
    pub fn covering(&self, p: Point) -> Vec<Uuid> {
        let mut ids = Vec::new();
        self.for_each_covering(p, |entry| ids.push(entry.id));
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// `covering(p).len()`, without allocating.
    pub fn count_covering(&self, p: Point) -> usize {
        // The boxes of one id never overlap (see FULL_LNG_HALF_WIDTH_DEG), so
        // each covering id is met exactly once.
        let mut n = 0;
        self.for_each_covering(p, |_| n += 1);
        n
    }

    /// The longest idle supplier covering p (smallest idle_since; ties broken
    /// by the smaller id) that `skip` does not exclude. `None` if there is none
    /// or `p` is invalid. Does not allocate; `skip` is only asked about
    /// candidates that cover `p` and would beat the best found so far.
    pub fn pick(&self, p: Point, skip: impl Fn(Uuid) -> bool) -> Option<Uuid> {
        let query = query_point(p)?;
        let mut best: Option<(i64, Uuid)> = None;
        let _ = self.tree.locate_all_at_point_int(&query, |entry| {
            let key = entry.key();
            if best.is_none_or(|b| key < b) && entry.covers(p) && !skip(entry.id) {
                best = Some(key);
            }
            ControlFlow::<()>::Continue(())
        });
        best.map(|(_, id)| id)
    }

    /// Calls `f` once per entry whose circle contains `p` (box query, then
    /// the exact great-circle test).
    fn for_each_covering<'a>(&'a self, p: Point, mut f: impl FnMut(&'a Entry)) {
        let Some(query) = query_point(p) else {
            return;
        };
        let _ = self.tree.locate_all_at_point_int(&query, |entry| {
            if entry.covers(p) {
                f(entry);
            }
            ControlFlow::<()>::Continue(())
        });
    }

    fn remove_boxes(&mut self, id: Uuid, old: Slot) {
        for entry in old.entries(id) {
            // Always present: every slot's entries were inserted with it.
            let _ = self.tree.remove(&entry);
        }
    }
}

/// Refuses circles that are not on Earth or not finite.
fn validate(coverage: Coverage) -> Result<(), IndexError> {
    let Coverage { center, radius_m } = coverage;
    if !(center.lat.is_finite() && (-90.0..=90.0).contains(&center.lat)) {
        return Err(IndexError::InvalidCoverage(
            "centre latitude must be a number between -90 and 90",
        ));
    }
    if !(center.lng.is_finite() && (-180.0..=180.0).contains(&center.lng)) {
        return Err(IndexError::InvalidCoverage(
            "centre longitude must be a number between -180 and 180",
        ));
    }
    if !(radius_m.is_finite() && radius_m > 0.0 && radius_m <= MAX_RADIUS_M) {
        return Err(IndexError::InvalidCoverage(
            "radius must be a number of metres above 0 and at most 20000000",
        ));
    }
    Ok(())
}

/// The R-tree coordinates of a query point, `None` if it is not on Earth.
fn query_point(p: Point) -> Option<[f64; 2]> {
    let valid = p.lat.is_finite()
        && p.lng.is_finite()
        && (-90.0..=90.0).contains(&p.lat)
        && (-180.0..=180.0).contains(&p.lng);
    valid.then_some([p.lng, p.lat])
}

fn aabb(lng_min: f64, lat_min: f64, lng_max: f64, lat_max: f64) -> AABB<[f64; 2]> {
    AABB::from_corners([lng_min, lat_min], [lng_max, lat_max])
}

/// Bounding boxes, in (lng, lat) degrees, that together contain every point
/// within `radius_m` of the centre on the sphere of `Point::distance_m`. One box,
/// or two when the circle crosses the antimeridian.
///
/// The exact spherical extents are used rather than `r / METRES_PER_DEGREE` and
/// `dlat / cos(lat)`: both of those undershoot (111 320 m is longer than a degree
/// on the haversine sphere, and the longitude half-width of a cap is
/// `asin(sin δ / cos φ)`, which exceeds `δ / cos φ` away from the equator), and
/// a box that undershoots would silently lose points near the circle's edge.
fn bounding_boxes(coverage: Coverage) -> [Option<AABB<[f64; 2]>>; 2] {
    let Coverage { center, radius_m } = coverage;
    // Angular radius, slightly widened against rounding.
    let delta_rad = radius_m / EARTH_RADIUS_M;
    let delta_deg = delta_rad.to_degrees() * (1.0 + 1e-9) + BOX_SLACK_DEG;
    let lat_min = center.lat - delta_deg;
    let lat_max = center.lat + delta_deg;
    if lat_max >= 90.0 || lat_min <= -90.0 {
        // The cap contains (or nearly touches) a pole: all longitudes.
        return [
            Some(aabb(-180.0, lat_min.max(-90.0), 180.0, lat_max.min(90.0))),
            None,
        ];
    }
    // Here |lat| + delta < 90, so cos(lat) > sin(delta) > 0 and the ratio is < 1.
    let ratio = delta_deg.to_radians().sin() / center.lat.to_radians().cos();
    let half_width = if ratio.is_finite() && ratio < 1.0 {
        ratio.asin().to_degrees() * (1.0 + 1e-9) + BOX_SLACK_DEG
    } else {
        f64::INFINITY
    };
    if half_width >= FULL_LNG_HALF_WIDTH_DEG {
        return [Some(aabb(-180.0, lat_min, 180.0, lat_max)), None];
    }
    let lng_min = center.lng - half_width;
    let lng_max = center.lng + half_width;
    if lng_min < -180.0 {
        [
            Some(aabb(-180.0, lat_min, lng_max, lat_max)),
            Some(aabb(lng_min + 360.0, lat_min, 180.0, lat_max)),
        ]
    } else if lng_max > 180.0 {
        [
            Some(aabb(lng_min, lat_min, 180.0, lat_max)),
            Some(aabb(-180.0, lat_min, lng_max - 360.0, lat_max)),
        ]
    } else {
        [Some(aabb(lng_min, lat_min, lng_max, lat_max)), None]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn cov(lat: f64, lng: f64, radius_m: f64) -> Coverage {
        Coverage {
            center: Point::new(lat, lng),
            radius_m,
        }
    }

    /// The point `dist_m` from `from` along the initial `bearing_deg`, on the
    /// sphere of `Point::distance_m`.
    fn destination(from: Point, bearing_deg: f64, dist_m: f64) -> Point {
        let (lat1, lng1) = (from.lat.to_radians(), from.lng.to_radians());
        let b = bearing_deg.to_radians();
        let d = dist_m / EARTH_RADIUS_M;
        let lat2 = (lat1.sin() * d.cos() + lat1.cos() * d.sin() * b.cos()).asin();
        let lng2 = lng1 + (b.sin() * d.sin() * lat1.cos()).atan2(d.cos() - lat1.sin() * lat2.sin());
        let mut lng = lng2.to_degrees();
        while lng > 180.0 {
            lng -= 360.0;
        }
        while lng < -180.0 {
            lng += 360.0;
        }
        Point::new(lat2.to_degrees(), lng)
    }

    /// Deterministic xorshift64* generator, so failures reproduce.
    struct XorShift(u64);

    impl XorShift {
        fn next_u64(&mut self) -> u64 {
            let mut x = self.0;
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            self.0 = x;
            x.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in [0, 1).
        fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        fn range(&mut self, lo: f64, hi: f64) -> f64 {
            lo + (hi - lo) * self.unit()
        }
    }

    #[test]
    fn containment_is_exact_at_the_edge_a_few_metres_either_side() {
        for (lat, lng) in [
            (0.0, 0.0),
            (48.85, 2.35),
            (60.0, 10.0),
            (75.0, -40.0),
            (85.0, 100.0),
            (-80.0, -120.0),
        ] {
            for radius_m in [2_000.0, 25_000.0, 300_000.0] {
                let c = cov(lat, lng, radius_m);
                let index = CoverageIndex::from_entries([(id(1), c, 0)]).expect("valid");
                for step in 0..72 {
                    let bearing = f64::from(step) * 5.0;
                    let inside = destination(c.center, bearing, radius_m - 3.0);
                    let outside = destination(c.center, bearing, radius_m + 3.0);
                    assert_eq!(
                        index.covering(inside),
                        vec![id(1)],
                        "{c:?} bearing {bearing} inside {inside:?}"
                    );
                    assert!(
                        index.covering(outside).is_empty(),
                        "{c:?} bearing {bearing} outside {outside:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_longest_idle_supplier_wins_and_ties_go_to_the_smaller_id() {
        let p = Point::new(4.71, -74.07);
        let index = CoverageIndex::from_entries([
            (id(1), cov(4.71, -74.07, 5_000.0), 3_000),
            (id(2), cov(4.72, -74.06, 5_000.0), 1_000),
            (id(3), cov(4.70, -74.08, 5_000.0), 2_000),
            (id(4), cov(5.50, -74.07, 5_000.0), 10), // idle longest, but far away
        ])
        .expect("valid");
        assert_eq!(index.pick(p, |_| false), Some(id(2)));

        let tied = CoverageIndex::from_entries([
            (id(9), cov(4.71, -74.07, 5_000.0), 1_000),
            (id(7), cov(4.71, -74.07, 5_000.0), 1_000),
            (id(8), cov(4.71, -74.07, 5_000.0), 1_000),
        ])
        .expect("valid");
        assert_eq!(tied.pick(p, |_| false), Some(id(7)));
    }

    #[test]
    fn skip_excludes_suppliers_from_the_pick() {
        let p = Point::new(4.71, -74.07);
        let index = CoverageIndex::from_entries([
            (id(1), cov(4.71, -74.07, 5_000.0), 1),
            (id(2), cov(4.71, -74.07, 5_000.0), 2),
            (id(3), cov(4.71, -74.07, 5_000.0), 3),
        ])
        .expect("valid");
        assert_eq!(index.pick(p, |s| s == id(1)), Some(id(2)));
        assert_eq!(index.pick(p, |s| s != id(3)), Some(id(3)));
        assert_eq!(index.pick(p, |_| true), None);
        assert_eq!(index.count_covering(p), 3);
    }

    #[test]
    fn upsert_moves_a_circle_and_updates_its_idle_time() {
        let mut index = CoverageIndex::new();
        let bogota = Point::new(4.71, -74.07);
        let paris = Point::new(48.85, 2.35);
        index
            .upsert(id(1), cov(4.71, -74.07, 5_000.0), 100)
            .expect("valid");
        index
            .upsert(id(2), cov(4.71, -74.07, 5_000.0), 200)
            .expect("valid");
        assert_eq!(index.pick(bogota, |_| false), Some(id(1)));

        index
            .upsert(id(1), cov(48.85, 2.35, 5_000.0), 100)
            .expect("valid");
        assert_eq!(index.len(), 2);
        assert_eq!(index.covering(bogota), vec![id(2)]);
        assert_eq!(index.covering(paris), vec![id(1)]);

        // Same place, later idle time: no longer first.
        index
            .upsert(id(3), cov(48.85, 2.35, 5_000.0), 150)
            .expect("valid");
        assert_eq!(index.pick(paris, |_| false), Some(id(1)));
        index
            .upsert(id(1), cov(48.85, 2.35, 5_000.0), 500)
            .expect("valid");
        assert_eq!(index.pick(paris, |_| false), Some(id(3)));
        assert_eq!(index.covering(paris), vec![id(1), id(3)]);

        // Re-upserting the identical entry is a no-op.
        index
            .upsert(id(1), cov(48.85, 2.35, 5_000.0), 500)
            .expect("valid");
        assert_eq!(index.count_covering(paris), 2);
    }

    #[test]
    fn remove_drops_a_supplier_and_reports_whether_it_was_there() {
        let mut index = CoverageIndex::from_entries([
            (id(1), cov(10.0, 179.9, 50_000.0), 1), // two boxes
            (id(2), cov(10.0, 20.0, 50_000.0), 2),
        ])
        .expect("valid");
        assert_eq!(index.len(), 2);
        assert!(index.contains(id(1)));
        assert!(index.remove(id(1)));
        assert!(!index.remove(id(1)));
        assert!(!index.contains(id(1)));
        assert_eq!(index.len(), 1);
        assert!(index.covering(Point::new(10.0, 179.9)).is_empty());
        assert!(index.covering(Point::new(10.0, -179.9)).is_empty());
        assert_eq!(index.tree.size(), 1);
        assert!(index.remove(id(2)));
        assert!(index.is_empty());
        assert_eq!(index.tree.size(), 0);
    }

    #[test]
    fn a_circle_across_the_antimeridian_is_found_from_both_sides() {
        for centre_lng in [179.95, -179.95, 180.0, -180.0] {
            let mut index = CoverageIndex::new();
            index
                .upsert(id(1), cov(-17.0, centre_lng, 20_000.0), 0)
                .expect("valid");
            for lng in [179.9, 179.99, 180.0, -180.0, -179.99, -179.9] {
                let p = Point::new(-17.0, lng);
                assert_eq!(
                    index.covering(p),
                    vec![id(1)],
                    "centre {centre_lng} p {p:?}"
                );
                assert_eq!(index.count_covering(p), 1);
                assert_eq!(index.pick(p, |_| false), Some(id(1)));
            }
            assert!(index.covering(Point::new(-17.0, 179.0)).is_empty());
            assert!(index.covering(Point::new(-17.0, -179.0)).is_empty());
        }
    }

    #[test]
    fn a_circle_around_a_pole_covers_every_longitude_near_it() {
        let mut index = CoverageIndex::new();
        // 0.1 degree from the north pole (about 11 km), radius 50 km.
        index
            .upsert(id(1), cov(89.9, 0.0, 50_000.0), 0)
            .expect("valid");
        index
            .upsert(id(2), cov(-90.0, 0.0, 100_000.0), 0)
            .expect("valid");
        for lng in [-180.0, -135.0, -90.0, 0.0, 45.0, 90.0, 180.0] {
            assert_eq!(index.covering(Point::new(90.0, lng)), vec![id(1)]);
            assert_eq!(index.covering(Point::new(89.75, lng)), vec![id(1)]);
            assert_eq!(index.covering(Point::new(-90.0, lng)), vec![id(2)]);
            assert_eq!(index.covering(Point::new(-89.2, lng)), vec![id(2)]);
        }
        // 0.4 degree (44 km) on the near side is in, 0.6 degree (67 km) beyond the pole is out.
        assert_eq!(index.covering(Point::new(89.5, 0.0)), vec![id(1)]);
        assert!(index.covering(Point::new(89.5, 180.0)).is_empty());
        assert!(index.covering(Point::new(-89.0, 0.0)).is_empty());
    }

    #[test]
    fn invalid_coverage_is_refused_without_panicking_and_changes_nothing() {
        let good = cov(10.0, 10.0, 1_000.0);
        let mut index = CoverageIndex::new();
        index.upsert(id(1), good, 5).expect("valid");
        let bad = [
            cov(f64::NAN, 10.0, 1_000.0),
            cov(10.0, f64::NAN, 1_000.0),
            cov(f64::INFINITY, 10.0, 1_000.0),
            cov(10.0, f64::NEG_INFINITY, 1_000.0),
            cov(90.000_001, 10.0, 1_000.0),
            cov(-91.0, 10.0, 1_000.0),
            cov(10.0, 180.000_001, 1_000.0),
            cov(10.0, -181.0, 1_000.0),
            cov(10.0, 10.0, 0.0),
            cov(10.0, 10.0, -0.0),
            cov(10.0, 10.0, -5.0),
            cov(10.0, 10.0, f64::NAN),
            cov(10.0, 10.0, f64::INFINITY),
            cov(10.0, 10.0, 20_000_000.5),
            cov(10.0, 10.0, f64::MAX),
        ];
        for c in bad {
            let err = index.upsert(id(1), c, 0).expect_err("must be refused");
            assert!(matches!(err, IndexError::InvalidCoverage(_)));
            assert!(err.to_string().starts_with("invalid coverage: "), "{err}");
            assert!(index.upsert(id(2), c, 0).is_err());
            assert!(CoverageIndex::from_entries([(id(1), good, 0), (id(2), c, 0)]).is_err());
        }
        assert_eq!(index.len(), 1);
        assert_eq!(index.covering(Point::new(10.0, 10.0)), vec![id(1)]);
        assert_eq!(index.pick(Point::new(10.0, 10.0), |_| false), Some(id(1)));

        // The extremes of the valid ranges are accepted.
        for c in [
            cov(90.0, 180.0, 1e-9),
            cov(-90.0, -180.0, 20_000_000.0),
            cov(0.0, 180.0, 20_000_000.0),
        ] {
            index.upsert(id(3), c, i64::MIN).expect("valid");
        }
        // The largest circle reaches every point but a disc of about 15 km
        // around its antipode, (0, 0).
        assert_eq!(index.count_covering(Point::new(0.0, 0.0)), 0);
        assert_eq!(index.count_covering(Point::new(0.0, 0.2)), 1);
        assert_eq!(index.count_covering(Point::new(45.0, 90.0)), 1);
        assert_eq!(index.count_covering(Point::new(-90.0, 0.0)), 1);

        // Invalid query points match nothing.
        for p in [
            Point::new(f64::NAN, 10.0),
            Point::new(10.0, f64::NAN),
            Point::new(f64::INFINITY, f64::INFINITY),
            Point::new(91.0, 10.0),
            Point::new(10.0, 190.0),
        ] {
            assert!(index.covering(p).is_empty());
            assert_eq!(index.count_covering(p), 0);
            assert_eq!(index.pick(p, |_| false), None);
        }
    }

    #[test]
    fn the_index_can_be_shared_between_threads_and_cloned() {
        fn shareable<T: Send + Sync + Clone>() {}
        shareable::<CoverageIndex>();
        let index =
            CoverageIndex::from_entries([(id(1), cov(0.0, 0.0, 1_000.0), 1)]).expect("valid");
        let mut copy = index.clone();
        assert!(copy.remove(id(1)));
        assert_eq!(index.covering(Point::new(0.0, 0.0)), vec![id(1)]);
        assert!(format!("{index:?}").contains("suppliers: 1"));
    }

    #[test]
    fn from_entries_keeps_the_last_occurrence_of_an_id() {
        let index = CoverageIndex::from_entries([
            (id(1), cov(0.0, 0.0, 1_000.0), 1),
            (id(1), cov(50.0, 50.0, 1_000.0), 1),
        ])
        .expect("valid");
        assert_eq!(index.len(), 1);
        assert!(index.covering(Point::new(0.0, 0.0)).is_empty());
        assert_eq!(index.covering(Point::new(50.0, 50.0)), vec![id(1)]);
        assert_eq!(index.tree.size(), 1);
    }

    #[test]
    fn covering_and_pick_agree_with_a_brute_force_scan_on_random_circles() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut circles: Vec<(Uuid, Coverage, i64)> = Vec::new();
        for n in 0..2_000u32 {
            // Centres over the whole globe, with some on the special meridians and poles.
            let lat = match n % 50 {
                0 => 90.0,
                1 => -90.0,
                _ => rng.range(-90.0, 90.0),
            };
            let lng = match n % 40 {
                0 => 180.0,
                1 => -180.0,
                2 => rng.range(179.0, 180.0),
                3 => rng.range(-180.0, -179.0),
                _ => rng.range(-180.0, 180.0),
            };
            // Radii log-uniform from 10 m to 5 000 km, with some huge ones.
            let radius_m = if n % 100 == 0 {
                rng.range(5_000_000.0, MAX_RADIUS_M)
            } else {
                10f64.powf(rng.range(1.0, 6.7))
            };
            let idle = (rng.next_u64() % 1_000) as i64; // many ties
            circles.push((
                Uuid::from_u128(u128::from(rng.next_u64())),
                cov(lat, lng, radius_m),
                idle,
            ));
        }
        // Half loaded in bulk, half inserted one by one; then some moved and removed.
        let (bulk, rest) = circles.split_at(1_000);
        let mut index = CoverageIndex::from_entries(bulk.iter().copied()).expect("valid");
        for &(s, c, idle) in rest {
            index.upsert(s, c, idle).expect("valid");
        }
        for k in (0..2_000).step_by(7) {
            let (s, c, idle) = circles[k];
            let moved = cov(-c.center.lat, c.center.lng, c.radius_m);
            index.upsert(s, moved, idle + 1).expect("valid");
            circles[k] = (s, moved, idle + 1);
        }
        let mut removed = Vec::new();
        for k in (3..2_000).step_by(11) {
            assert!(index.remove(circles[k].0));
            removed.push(k);
        }
        for &k in removed.iter().rev() {
            circles.remove(k);
        }
        assert_eq!(index.len(), circles.len());

        let mut points = Vec::new();
        for n in 0..500 {
            let p = if n % 2 == 0 {
                Point::new(rng.range(-90.0, 90.0), rng.range(-180.0, 180.0))
            } else {
                // Near a random circle's edge, on either side.
                let (_, c, _) = circles[(rng.next_u64() % circles.len() as u64) as usize];
                let d = c.radius_m * rng.range(0.99, 1.01);
                destination(c.center, rng.range(0.0, 360.0), d)
            };
            points.push(p);
        }
        let mut total = 0;
        for p in points {
            let mut expected: Vec<Uuid> = circles
                .iter()
                .filter(|(_, c, _)| p.distance_m(c.center) <= c.radius_m)
                .map(|&(s, _, _)| s)
                .collect();
            expected.sort_unstable();
            total += expected.len();
            assert_eq!(index.covering(p), expected, "{p:?}");
            assert_eq!(index.count_covering(p), expected.len(), "{p:?}");

            let best = |skip: &dyn Fn(Uuid) -> bool| {
                circles
                    .iter()
                    .filter(|(s, c, _)| p.distance_m(c.center) <= c.radius_m && !skip(*s))
                    .map(|&(s, _, idle)| (idle, s))
                    .min()
                    .map(|(_, s)| s)
            };
            assert_eq!(index.pick(p, |_| false), best(&|_| false), "{p:?}");
            let odd = |s: Uuid| s.as_u128() % 2 == 1;
            assert_eq!(index.pick(p, odd), best(&odd), "{p:?}");
        }
        assert!(total > 500, "the points should hit circles: {total}");
    }
}
