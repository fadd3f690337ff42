//! PostgreSQL, the store several replicas share (issue 16): a pool of
//! connections (tokio-postgres under deadpool) and the schema's embedded
//! migrations, applied once under an advisory lock however many replicas
//! start at the same moment. The schema is the SQLite store's, table for
//! table and column for column (a test holds them together), so the two
//! stores run the same `store::suite`.
//!
//! Under way: the pool and the schema stand; the `Store` methods are ported
//! from `sqlite.rs` next, and `store.url = "postgres://…"` selects this
//! store once they all are.

#[cfg(any(test, feature = "test-support"))]
pub mod cluster;

use std::collections::{BTreeMap, BTreeSet};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{StoreError, StoreResult};

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("postgres/0001_schema.sql"))];

/// The advisory lock migrations run under ("lxmigr" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c78_6d69_6772;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

pub struct PgStore {
    pool: Pool,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("pool", &self.pool.status())
            .finish()
    }
}

impl PgStore {
    /// Connects with at most `max_connections` and migrates the schema.
    pub async fn connect(url: &str, max_connections: usize) -> StoreResult<Self> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| backend(format!("store.url: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(max_connections.max(1))
            .build()
            .map_err(backend)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool.get().await.map_err(backend)
    }

    /// Applies the migrations not yet applied, in one transaction under the
    /// migration lock: a replica starting beside another waits for it and
    /// then finds them applied.
    async fn migrate(&self) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(backend)?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(backend)?
            .iter()
            .map(|row| row.get(0))
            .collect();
        for (version, sql) in MIGRATIONS {
            if applied.contains(version) {
                continue;
            }
            tx.batch_execute(sql)
                .await
                .map_err(|e| backend(format!("migration {version}: {e}")))?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    /// The migrations applied, in order.
    pub async fn applied_migrations(&self) -> StoreResult<Vec<i32>> {
        let client = self.client().await?;
        Ok(client
            .query(
                "SELECT version FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(backend)?
            .iter()
            .map(|row| row.get(0))
            .collect())
    }

    /// Every table of the schema with its columns.
    pub async fn columns(&self) -> StoreResult<BTreeMap<String, BTreeSet<String>>> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND table_name <> 'schema_migrations'",
                &[],
            )
            .await
            .map_err(backend)?;
        let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            tables.entry(row.get(0)).or_default().insert(row.get(1));
        }
        Ok(tables)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn replicas_starting_together_migrate_once_to_the_sqlite_stores_schema() {
        let url = cluster::shared().fresh_database().await;
        let (a, b, c) = tokio::join!(
            PgStore::connect(&url, 2),
            PgStore::connect(&url, 2),
            PgStore::connect(&url, 2)
        );
        let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a.applied_migrations().await.unwrap(), vec![1]);
        let sqlite = SqliteStore::in_memory().unwrap().columns().await.unwrap();
        assert_eq!(sqlite.len(), 19, "{:?}", sqlite.keys());
        assert_eq!(a.columns().await.unwrap(), sqlite);
        // A restart finds everything applied.
        let again = PgStore::connect(&url, 1).await.unwrap();
        assert_eq!(again.applied_migrations().await.unwrap(), vec![1]);
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_by_name() {
        let err = PgStore::connect("mysql://x", 1).await.unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
    }
}
