//! Dispatch: which supplier gets a session.
//!
//! Candidates come from the in-memory coverage index (ONLINE suppliers whose
//! circle contains the point); the longest idle wins. The index may be
//! stale: the store's compare-and-swap on the supplier (ONLINE → BUSY in the
//! same transaction as the assignment) decides, and a loser just tries the
//! next candidate.

pub mod index;

use std::sync::RwLock;

use lx_protocol::geo::Point;
use uuid::Uuid;

use crate::store::Workspace;
use index::{Coverage, CoverageIndex};

use lx_protocol::api::{Availability, Role};

#[derive(Debug, Default)]
pub struct Dispatcher {
    index: RwLock<CoverageIndex>,
}

fn dispatchable(ws: &Workspace) -> Option<Coverage> {
    let c = ws.coverage?;
    (ws.availability == Availability::Online && ws.has_role(Role::Supplier)).then(|| Coverage {
        center: Point::new(c.lat, c.lng),
        radius_m: f64::from(c.radius_m),
    })
}

impl Dispatcher {
    pub fn from_suppliers(suppliers: &[Workspace]) -> Self {
        let entries = suppliers
            .iter()
            .filter_map(|ws| dispatchable(ws).map(|c| (ws.id, c, ws.idle_since_ms)));
        let index = CoverageIndex::from_entries(entries).unwrap_or_else(|err| {
            tracing::warn!(%err, "a stored coverage is invalid; loading suppliers one by one");
            let mut index = CoverageIndex::new();
            for ws in suppliers {
                if let Some(c) = dispatchable(ws) {
                    let _ = index.upsert(ws.id, c, ws.idle_since_ms);
                }
            }
            index
        });
        Self {
            index: RwLock::new(index),
        }
    }

    /// Brings the index in line with a workspace as just stored.
    pub fn sync(&self, ws: &Workspace) {
        let Ok(mut index) = self.index.write() else {
            return;
        };
        match dispatchable(ws) {
            Some(c) => {
                if let Err(err) = index.upsert(ws.id, c, ws.idle_since_ms) {
                    tracing::warn!(workspace = %ws.id, %err, "coverage not indexed");
                    index.remove(ws.id);
                }
            }
            None => {
                index.remove(ws.id);
            }
        }
    }

    pub fn remove(&self, id: Uuid) {
        if let Ok(mut index) = self.index.write() {
            index.remove(id);
        }
    }

    pub fn pick(&self, point: Point, skip: impl Fn(Uuid) -> bool) -> Option<Uuid> {
        self.index.read().ok()?.pick(point, skip)
    }

    pub fn count_covering(&self, point: Point) -> usize {
        self.index
            .read()
            .map(|i| i.count_covering(point))
            .unwrap_or(0)
    }

    pub fn len(&self) -> usize {
        self.index.read().map(|i| i.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
