//! Leases: work one replica does at a time (the relayer's nonces, the
//! telemetry devices publish over MQTT). A lease
//! is a session-level advisory lock held on a connection of its own; when
//! the holder dies its connection closes and PostgreSQL frees the lock at
//! once, so the next replica that asks takes it.
//!
//! Between the holder losing its connection and noticing (its next
//! `hold`), it may finish the step it was in while another replica already
//! holds the lease. The work under a lease must bear that: the relayer's
//! settlements carry per-consumer sequences the contract accepts once.

use std::collections::HashMap;

use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::sql_error;
use crate::store::{Lease, StoreResult};

/// The advisory lock key of a lease ("lxlease" and the lease's number).
fn key(lease: Lease) -> i64 {
    const BASE: i64 = 0x6c78_6c65_6173_6500;
    match lease {
        Lease::Relayer => BASE + 1,
        Lease::TelemetryIngest => BASE + 2,
    }
}

pub(super) struct Leases {
    config: tokio_postgres::Config,
    /// The connection holding each lease held.
    held: Mutex<HashMap<Lease, Client>>,
}

impl Leases {
    pub(super) fn new(config: tokio_postgres::Config) -> Self {
        Self {
            config,
            held: Mutex::new(HashMap::new()),
        }
    }

    pub(super) async fn hold(&self, lease: Lease) -> StoreResult<bool> {
        let mut held = self.held.lock().await;
        if let Some(client) = held.get(&lease) {
            // The lock lives as long as its connection.
            if !client.is_closed() && client.simple_query("SELECT 1").await.is_ok() {
                return Ok(true);
            }
            held.remove(&lease);
            tracing::warn!(lease = lease.name(), "lost the lease with its connection");
        }
        let (client, connection) = self.config.connect(NoTls).await.map_err(sql_error)?;
        // Driven until the client is dropped (the lease given up or never taken).
        tokio::spawn(connection);
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key(lease)])
            .await
            .map_err(sql_error)?
            .get(0);
        if taken {
            tracing::info!(lease = lease.name(), "holding the lease");
            held.insert(lease, client);
        }
        Ok(taken)
    }
}
