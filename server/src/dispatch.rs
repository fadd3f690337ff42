//! Dispatch: which supplier gets a session.
//!
//! Candidates come from the in-memory coverage index (ONLINE suppliers whose
//! circle contains the point); the longest idle wins among those that meet
//! the session's minimum trust tier and are not cooling down. The index may
//! be stale: the store's compare-and-swap on the supplier (ONLINE → BUSY in
//! the same transaction as the assignment) decides, the lifecycle refuses an
//! assignment below the session's tier, and a loser just tries the next
//! candidate.
//!
//! A workspace's coverage radius counts only up to the cap of its device
//! kind, whatever was stored before the cap existed.

pub mod index;

use std::collections::HashMap;
use std::sync::RwLock;

use lx_protocol::geo::Point;
use lx_protocol::time::UnixMillis;
use uuid::Uuid;

use crate::config::CoverageCaps;
use crate::store::Workspace;
use index::{Coverage, CoverageIndex};

use lx_protocol::api::{Availability, Role};

/// What dispatch knows of an indexed supplier besides its coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Standing {
    trust_tier: u8,
    cooling_down_until_ms: Option<UnixMillis>,
}

impl Standing {
    fn eligible(&self, min_trust_tier: u8, now: UnixMillis) -> bool {
        self.trust_tier >= min_trust_tier && self.cooling_down_until_ms.is_none_or(|u| u <= now)
    }
}

#[derive(Debug, Default)]
struct Indexed {
    coverage: CoverageIndex,
    standing: HashMap<Uuid, Standing>,
}

#[derive(Debug)]
pub struct Dispatcher {
    inner: RwLock<Indexed>,
    caps: CoverageCaps,
}

impl Default for Dispatcher {
    fn default() -> Self {
        Self {
            inner: RwLock::default(),
            caps: CoverageCaps::UNCAPPED,
        }
    }
}

fn dispatchable(ws: &Workspace, caps: &CoverageCaps) -> Option<Coverage> {
    let c = ws.coverage?;
    let radius = c.radius_m.min(caps.for_kind(ws.device_kind));
    (ws.availability == Availability::Online && ws.has_role(Role::Supplier)).then(|| Coverage {
        center: Point::new(c.lat, c.lng),
        radius_m: f64::from(radius),
    })
}

fn standing(ws: &Workspace) -> Standing {
    Standing {
        trust_tier: ws.trust_tier,
        cooling_down_until_ms: ws.cooling_down_until_ms,
    }
}

impl Dispatcher {
    /// The index of `suppliers`, each reaching at most its kind's cap.
    pub fn from_suppliers(suppliers: &[Workspace], caps: CoverageCaps) -> Self {
        let entries = suppliers
            .iter()
            .filter_map(|ws| dispatchable(ws, &caps).map(|c| (ws.id, c, ws.idle_since_ms)));
        let coverage = CoverageIndex::from_entries(entries).unwrap_or_else(|err| {
            tracing::warn!(%err, "a stored coverage is invalid; loading suppliers one by one");
            let mut index = CoverageIndex::new();
            for ws in suppliers {
                if let Some(c) = dispatchable(ws, &caps) {
                    let _ = index.upsert(ws.id, c, ws.idle_since_ms);
                }
            }
            index
        });
        let standing = suppliers
            .iter()
            .filter(|ws| coverage.contains(ws.id))
            .map(|ws| (ws.id, standing(ws)))
            .collect();
        Self {
            inner: RwLock::new(Indexed { coverage, standing }),
            caps,
        }
    }

    /// Replaces the whole index with `suppliers` (after changes were missed).
    pub fn reload(&self, suppliers: &[Workspace]) {
        let fresh = Self::from_suppliers(suppliers, self.caps).inner;
        let Ok(fresh) = fresh.into_inner() else {
            return;
        };
        if let Ok(mut inner) = self.inner.write() {
            *inner = fresh;
        }
    }

    /// Brings the index in line with a workspace as just stored.
    pub fn sync(&self, ws: &Workspace) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        match dispatchable(ws, &self.caps) {
            Some(c) => {
                if let Err(err) = inner.coverage.upsert(ws.id, c, ws.idle_since_ms) {
                    tracing::warn!(workspace = %ws.id, %err, "coverage not indexed");
                    inner.coverage.remove(ws.id);
                    inner.standing.remove(&ws.id);
                } else {
                    inner.standing.insert(ws.id, standing(ws));
                }
            }
            None => {
                inner.coverage.remove(ws.id);
                inner.standing.remove(&ws.id);
            }
        }
    }

    pub fn remove(&self, id: Uuid) {
        if let Ok(mut inner) = self.inner.write() {
            inner.coverage.remove(id);
            inner.standing.remove(&id);
        }
    }

    /// The longest idle supplier covering `point` that `skip` does not exclude.
    pub fn pick(&self, point: Point, skip: impl Fn(Uuid) -> bool) -> Option<Uuid> {
        self.inner.read().ok()?.coverage.pick(point, skip)
    }

    /// The longest idle supplier covering `point` of at least
    /// `min_trust_tier`, not cooling down at `now`, that `skip` does not
    /// exclude.
    pub fn pick_eligible(
        &self,
        point: Point,
        min_trust_tier: u8,
        now: UnixMillis,
        skip: impl Fn(Uuid) -> bool,
    ) -> Option<Uuid> {
        let inner = self.inner.read().ok()?;
        inner.coverage.pick(point, |id| {
            skip(id)
                || !inner
                    .standing
                    .get(&id)
                    .is_some_and(|s| s.eligible(min_trust_tier, now))
        })
    }

    /// The best trust tier among the suppliers covering `point` that are not
    /// cooling down at `now`; `None` when none covers it.
    pub fn best_tier_covering(&self, point: Point, now: UnixMillis) -> Option<u8> {
        let inner = self.inner.read().ok()?;
        inner
            .coverage
            .covering(point)
            .into_iter()
            .filter_map(|id| inner.standing.get(&id))
            .filter(|s| s.eligible(0, now))
            .map(|s| s.trust_tier)
            .max()
    }

    pub fn count_covering(&self, point: Point) -> usize {
        self.inner
            .read()
            .map(|i| i.coverage.count_covering(point))
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.coverage.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CoverageArea;
    use lx_protocol::api::DeviceKind;

    const HOME: Point = Point {
        lat: 4.711,
        lng: -74.072,
    };

    fn build_supplier(n: u128, idle_since_ms: i64, tier: u8) -> Workspace {
        Workspace {
            id: Uuid::from_u128(n),
            slug: format!("s{n}"),
            name: format!("s{n}"),
            wallet: lx_protocol::wallet::Address([1; 20]),
            roles: vec![Role::Supplier],
            availability: Availability::Online,
            coverage: Some(CoverageArea {
                lat: HOME.lat,
                lng: HOME.lng,
                radius_m: 2_000,
            }),
            device_kind: Some(DeviceKind::Drone),
            auto_accept: true,
            offer_timeout_seconds: 15,
            idle_since_ms,
            created_ms: 0,
            trust_tier: tier,
            cooling_down_until_ms: None,
        }
    }

    #[test]
    fn a_session_asking_for_tier_1_skips_workspaces_without_devices() {
        let d = Dispatcher::from_suppliers(
            &[build_supplier(1, 100, 0), build_supplier(2, 200, 1)],
            CoverageCaps::UNCAPPED,
        );
        assert_eq!(
            d.pick_eligible(HOME, 0, 0, |_| false),
            Some(Uuid::from_u128(1))
        );
        assert_eq!(
            d.pick_eligible(HOME, 1, 0, |_| false),
            Some(Uuid::from_u128(2))
        );
        assert_eq!(
            d.pick_eligible(HOME, 1, 0, |id| id == Uuid::from_u128(2)),
            None
        );
        assert_eq!(d.best_tier_covering(HOME, 0), Some(1));
        // The device workspace loses its last device: it is tier 0 now.
        d.sync(&build_supplier(2, 200, 0));
        assert_eq!(d.pick_eligible(HOME, 1, 0, |_| false), None);
        assert_eq!(d.best_tier_covering(HOME, 0), Some(0));
    }

    #[test]
    fn a_cooling_supplier_is_skipped_until_its_cool_down_ends() {
        let d = Dispatcher::from_suppliers(
            &[build_supplier(1, 100, 0), build_supplier(2, 200, 0)],
            CoverageCaps::UNCAPPED,
        );
        let mut first = build_supplier(1, 5_000, 0);
        first.cooling_down_until_ms = Some(10_000);
        d.sync(&first);
        assert_eq!(
            d.pick_eligible(HOME, 0, 9_999, |_| false),
            Some(Uuid::from_u128(2))
        );
        assert_eq!(
            d.pick_eligible(HOME, 0, 9_999, |id| id == Uuid::from_u128(2)),
            None
        );
        assert_eq!(
            d.pick_eligible(HOME, 0, 10_000, |_| false),
            Some(Uuid::from_u128(2))
        );
        assert_eq!(
            d.pick_eligible(HOME, 0, 10_000, |id| id == Uuid::from_u128(2)),
            Some(Uuid::from_u128(1)),
            "back once the cool-down is over"
        );
    }

    #[test]
    fn a_stored_radius_reaches_only_as_far_as_its_kinds_cap() {
        let mut wide = build_supplier(1, 100, 0);
        wide.coverage = Some(CoverageArea {
            lat: HOME.lat,
            lng: HOME.lng,
            radius_m: 1_000_000,
        });
        let caps = CoverageCaps {
            drone: Some(10_000),
            ..CoverageCaps::UNCAPPED
        };
        let d = Dispatcher::from_suppliers(&[wide], caps);
        let near = Point::new(HOME.lat + 0.05, HOME.lng); // ~5.6 km
        let far = Point::new(HOME.lat + 1.0, HOME.lng); // ~111 km
        assert_eq!(
            d.pick_eligible(near, 0, 0, |_| false),
            Some(Uuid::from_u128(1))
        );
        assert_eq!(d.pick_eligible(far, 0, 0, |_| false), None);
    }
}
