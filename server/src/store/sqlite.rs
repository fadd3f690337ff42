//! The embedded store: one SQLite file in WAL mode, schema migrations
//! compiled in and applied on open.
//!
//! One writer connection serves every write on a blocking thread; SQLite
//! serializes writers anyway, and `BEGIN IMMEDIATE` makes each transition one
//! atomic compare-and-swap. Reads go to a pool of read-only connections beside
//! it (WAL lets readers see the last commit while a write is under way), so a
//! long write never queues a read. Every call waits for its connection without
//! holding an async worker, then runs on a blocking thread. A process killed at
//! any point loses no committed write (WAL with `synchronous = NORMAL` is
//! durable against process crashes).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lx_protocol::api::{
    Availability, KeyEnvironment, Scope, SessionState, Subsystem, WebhookEventType,
};
use lx_protocol::geo::Point;
use lx_protocol::telemetry::{Sample, Source};
use lx_protocol::time::UnixMillis;
use lx_protocol::wallet::Address;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::schema::{
    API_KEY_COLUMNS, DELIVERY_COLUMNS, MQTT_ACCOUNT_COLUMNS, OPEN_STATES, OPERATOR_COLUMNS,
    QUOTE_COLUMNS, SAMPLE_COLUMNS, SESSION_COLUMNS, SETTLEMENT_COLUMNS, WEBHOOK_COLUMNS,
    WORKSPACE_COLUMNS, WORKSPACE_SELECT, enum_text, list_text, wallet_text,
};
use super::*;

const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_core.sql"),
    include_str!("migrations/0002_operators.sql"),
    include_str!("migrations/0003_settlements.sql"),
    include_str!("migrations/0004_mqtt.sql"),
    include_str!("migrations/0005_webhooks.sql"),
    include_str!("migrations/0006_money.sql"),
    include_str!("migrations/0007_trust.sql"),
    include_str!("migrations/0008_webhook_health.sql"),
    include_str!("migrations/0009_cookie_revocations.sql"),
    include_str!("migrations/0010_session_samples.sql"),
    include_str!("migrations/0011_device_logs.sql"),
    include_str!("migrations/0012_telemetry_without_rowid.sql"),
    include_str!("migrations/0013_telemetry_by_session.sql"),
];

/// How many read connections a file store opens unless told otherwise.
pub const DEFAULT_READ_CONNECTIONS: usize = 4;

/// How long a connection waits for SQLite's own file lock (another process,
/// or a checkpoint) before the call fails.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: Arc<tokio::sync::Mutex<Connection>>,
    /// `None` for an in-memory store: a private in-memory database has one
    /// connection, so reads share the writer's.
    readers: Option<Arc<ReadPool>>,
    write_seq: Arc<AtomicU64>,
}

/// Read-only connections to the same file, each lent to one call at a time.
#[derive(Debug)]
struct ReadPool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl ReadPool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        // A panic while the list was held cannot leave it half-changed.
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lend(self: Arc<Self>) -> Option<LentReader> {
        let conn = self.idle().pop()?;
        Some(LentReader {
            pool: self,
            conn: Some(conn),
        })
    }
}

/// A read connection out of the pool; it goes back when dropped, even if the
/// call using it panicked.
struct LentReader {
    pool: Arc<ReadPool>,
    conn: Option<Connection>,
}

impl std::ops::Deref for LentReader {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for LentReader {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until dropped")
    }
}

impl Drop for LentReader {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle().push(conn);
        }
    }
}

type Sql<T> = Result<T, rusqlite::Error>;

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        backend(err)
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file with
    /// [`DEFAULT_READ_CONNECTIONS`] readers and brings its schema up to date.
    pub fn open(path: &Path) -> StoreResult<Self> {
        Self::open_with_readers(path, DEFAULT_READ_CONNECTIONS)
    }

    /// Opens the database file with `readers` read-only connections beside
    /// the writer (at least one).
    pub fn open_with_readers(path: &Path, readers: usize) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| backend(format!("creating {}: {e}", dir.display())))?;
        }
        let opening = |e: rusqlite::Error| backend(format!("opening {}: {e}", path.display()));
        let writer = Connection::open(path).map_err(opening)?;
        let mut store = Self::from_writer(writer)?;
        // The schema exists now (the writer migrated it): readers only read.
        let idle = (0..readers.max(1))
            .map(|_| {
                let conn = Connection::open(path).map_err(opening)?;
                conn.pragma_update(None, "query_only", "ON")?;
                conn.busy_timeout(BUSY_TIMEOUT)?;
                Ok(conn)
            })
            .collect::<StoreResult<Vec<_>>>()?;
        store.readers = Some(Arc::new(ReadPool {
            permits: Arc::new(tokio::sync::Semaphore::new(idle.len())),
            idle: Mutex::new(idle),
        }));
        Ok(store)
    }

    /// A private in-memory database, for tests.
    /// Every table of the schema with its columns (what the PostgreSQL
    /// store's schema is held to).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn columns(
        &self,
    ) -> StoreResult<std::collections::BTreeMap<String, std::collections::BTreeSet<String>>> {
        self.read(|c| {
            let tables: Vec<String> = c
                .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")?
                .query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut out = std::collections::BTreeMap::new();
            for table in tables {
                let columns = c
                    .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<_, _>>()?;
                out.insert(table, columns);
            }
            Ok(out)
        })
        .await
    }

    pub fn in_memory() -> StoreResult<Self> {
        Self::from_writer(Connection::open_in_memory()?)
    }

    fn from_writer(mut conn: Connection) -> StoreResult<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        migrate(&mut conn)?;
        // Tokens keep growing across restarts: start above anything issued before.
        let start = u64::try_from(crate::clock::wall_now_ms()).unwrap_or(0) * 1000;
        Ok(Self {
            writer: Arc::new(tokio::sync::Mutex::new(conn)),
            readers: None,
            write_seq: Arc::new(AtomicU64::new(start)),
        })
    }

    /// Runs `f` on the writer connection.
    async fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        self.run_with(f).await
    }

    async fn run_with<R, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        // Waiting for the writer happens here, on the async side: a queue of
        // writes holds no blocking threads.
        let mut conn = Arc::clone(&self.writer).lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut conn))
            .await
            .map_err(|e| E::from(backend(format!("store task failed: {e}"))))?
    }

    /// Runs `f`, which only reads, on a read connection (the writer's for an
    /// in-memory store). A reader is `query_only`: a write through one fails.
    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> StoreResult<R> + Send + 'static,
    ) -> StoreResult<R> {
        self.read_with(f).await
    }

    async fn read_with<R, E>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, E> + Send + 'static,
    ) -> Result<R, E>
    where
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let Some(pool) = &self.readers else {
            return self.run_with(f).await;
        };
        let permit = Arc::clone(&pool.permits)
            .acquire_owned()
            .await
            .map_err(|_| E::from(backend("the read pool is closed")))?;
        let pool = Arc::clone(pool);
        tokio::task::spawn_blocking(move || {
            // The permit lives as long as the lent connection (dropped after
            // it, in reverse order): a caller that goes away while the query
            // runs does not hand its permit to a reader with no connection.
            let _permit = permit;
            // A permit guarantees an idle connection.
            let mut lent = pool
                .lend()
                .ok_or_else(|| E::from(backend("no idle read connection")))?;
            f(&mut lent)
        })
        .await
        .map_err(|e| E::from(backend(format!("store task failed: {e}"))))?
    }

    fn wrote(&self) {
        self.write_seq.fetch_add(1, Ordering::SeqCst);
    }
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len() as i64;
    if version > known {
        return Err(backend(format!(
            "database schema version {version} is newer than this server knows ({known}); upgrade lx-server"
        )));
    }
    for (index, script) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(script)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}

fn settlement_row(row: &Row<'_>) -> Sql<SettlementRecord> {
    let opt_u64 = |i: usize| -> Sql<Option<u64>> {
        let v: Option<i64> = row.get(i)?;
        v.map(|v| u64::try_from(v).map_err(conversion)).transpose()
    };
    let state: String = row.get(8)?;
    Ok(SettlementRecord {
        session_id: uuid_col(row, 0)?,
        consumer: address_col(row, 1)?,
        operator: address_col(row, 2)?,
        sequence: u64_col(row, 3)?,
        rate_micro_usdc: u64_col(row, 4)?,
        seconds: u64_col(row, 5)?,
        to_amount: u64_col(row, 6)?,
        fee_amount: u64_col(row, 7)?,
        state: enum_parse(&state)?,
        tx_hash: row.get(9)?,
        nonce: opt_u64(10)?,
        block: opt_u64(11)?,
        attempts: u32_col(row, 12)?,
        last_error: row.get(13)?,
        next_attempt_ms: row.get(14)?,
        queued_ms: row.get(15)?,
        updated_ms: row.get(16)?,
        verify_onchain: row.get(17)?,
    })
}

/// What the consumer owes or may owe, read inside the caller's transaction.
fn obligations_in(conn: &Connection, wallet: &Address) -> Sql<crate::credit::Obligations> {
    let wallet = wallet_text(wallet);
    let (held, unsettled): (i64, i64) = conn.query_row(
        &format!(
            // The pool on chain drops only when a charge is settled: until
            // then an ended session's charge is promised too, and so is a
            // debt. A FAILED settlement is ours to fix, not the consumer's.
            "SELECT (SELECT COALESCE(SUM(rate * max_duration_s), 0) FROM sessions
                     WHERE consumer_wallet = ?1 AND state IN {OPEN_STATES}),
                    (SELECT COALESCE(SUM(s.charged), 0) FROM sessions s
                     WHERE s.consumer_wallet = ?1 AND s.state IN ('ENDED', 'EXPIRED') AND s.charged > 0
                       AND NOT EXISTS (SELECT 1 FROM settlements x WHERE x.session_id = s.id
                                       AND x.state IN ('CONFIRMED', 'FAILED')))"
        ),
        [&wallet],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt = conn.prepare_cached(
        "SELECT session_id, sequence, to_amount + fee_amount, state, last_error FROM settlements
         WHERE consumer = ?1 AND state IN ('PENDING', 'SUBMITTED', 'UNPAID') ORDER BY sequence",
    )?;
    let mut queued = Vec::new();
    let mut debts = Vec::new();
    let mut rows = stmt.query([&wallet])?;
    while let Some(r) = rows.next()? {
        let amount = u64_col(r, 2)?;
        queued.push((u64_col(r, 1)?, amount));
        let state: String = r.get(3)?;
        if state == "UNPAID" {
            debts.push(crate::credit::Debt {
                session_id: uuid_col(r, 0)?,
                amount_micro_usdc: amount,
                last_error: r.get(4)?,
            });
        }
    }
    Ok(crate::credit::Obligations {
        held: u64::try_from(held).unwrap_or(0),
        unsettled: u64::try_from(unsettled).unwrap_or(0),
        queued,
        debts,
    })
}

// ------------------------------------------------------------- encodings

fn enum_parse<T: DeserializeOwned>(text: &str) -> Sql<T> {
    schema::enum_parse(text).map_err(conversion)
}

fn list_parse<T: DeserializeOwned>(text: &str) -> Sql<Vec<T>> {
    schema::list_parse(text).map_err(conversion)
}

fn conversion(err: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(err))
}

fn uuid_col(row: &Row<'_>, idx: usize) -> Sql<Uuid> {
    let text: String = row.get(idx)?;
    Uuid::parse_str(&text).map_err(conversion)
}

fn opt_uuid_col(row: &Row<'_>, idx: usize) -> Sql<Option<Uuid>> {
    let text: Option<String> = row.get(idx)?;
    text.map(|t| Uuid::parse_str(&t).map_err(conversion))
        .transpose()
}

fn address_col(row: &Row<'_>, idx: usize) -> Sql<Address> {
    let text: String = row.get(idx)?;
    text.parse::<Address>().map_err(conversion)
}

fn u32_col(row: &Row<'_>, idx: usize) -> Sql<u32> {
    let v: i64 = row.get(idx)?;
    u32::try_from(v).map_err(conversion)
}

fn u64_col(row: &Row<'_>, idx: usize) -> Sql<u64> {
    let v: i64 = row.get(idx)?;
    u64::try_from(v).map_err(conversion)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The row `sql` selects, if any.
fn one<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnOnce(&Row<'_>) -> Sql<T>,
) -> Sql<Option<T>> {
    c.prepare_cached(sql)?.query_row(params, map).optional()
}

/// Every row `sql` selects.
fn all<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    map: impl FnMut(&Row<'_>) -> Sql<T>,
) -> Sql<Vec<T>> {
    let mut stmt = c.prepare_cached(sql)?;
    stmt.query_map(params, map)?.collect()
}

fn workspace_row(row: &Row<'_>) -> Sql<Workspace> {
    let coverage = match (
        row.get::<_, Option<f64>>(6)?,
        row.get::<_, Option<f64>>(7)?,
        row.get::<_, Option<i64>>(8)?,
    ) {
        (Some(lat), Some(lng), Some(r)) => Some(CoverageArea {
            lat,
            lng,
            radius_m: u32::try_from(r).map_err(conversion)?,
        }),
        _ => None,
    };
    Ok(Workspace {
        id: uuid_col(row, 0)?,
        slug: row.get(1)?,
        name: row.get(2)?,
        wallet: address_col(row, 3)?,
        roles: list_parse(&row.get::<_, String>(4)?)?,
        availability: enum_parse(&row.get::<_, String>(5)?)?,
        coverage,
        device_kind: row
            .get::<_, Option<String>>(9)?
            .map(|t| enum_parse(&t))
            .transpose()?,
        auto_accept: row.get(10)?,
        offer_timeout_seconds: u32_col(row, 11)?,
        idle_since_ms: row.get(12)?,
        created_ms: row.get(13)?,
        cooling_down_until_ms: row.get(14)?,
        trust_tier: if row.get::<_, bool>(15)? {
            lx_protocol::api::TRUST_TIER_DEVICE
        } else {
            lx_protocol::api::TRUST_TIER_WORKSPACE
        },
    })
}

fn session_row(row: &Row<'_>) -> Sql<Session> {
    let offer = match (opt_uuid_col(row, 12)?, row.get::<_, Option<i64>>(13)?) {
        (Some(workspace_id), Some(expires_ms)) => Some(Offer {
            workspace_id,
            expires_ms,
        }),
        _ => None,
    };
    let media = match (
        row.get::<_, Option<String>>(19)?,
        row.get::<_, Option<String>>(20)?,
        row.get::<_, Option<String>>(21)?,
    ) {
        (Some(backend_ref), Some(whip_url), Some(whep_url)) => Some(MediaEndpoints {
            backend_ref,
            whip_url,
            whep_url,
        }),
        _ => None,
    };
    let meter = match row.get::<_, Option<i64>>(22)? {
        Some(_) => Some(Meter {
            clean_seconds: u64_col(row, 22)?,
            failed_seconds: u64_col(row, 23)?,
            charged_micro_usdc: u64_col(row, 24)?,
            fee_micro_usdc: u64_col(row, 25)?,
            operator_earned_micro_usdc: u64_col(row, 26)?,
            fee_bps: u32_col(row, 27)?,
        }),
        None => None,
    };
    Ok(Session {
        id: uuid_col(row, 0)?,
        state: enum_parse(&row.get::<_, String>(1)?)?,
        point: Point::new(row.get(2)?, row.get(3)?),
        geofence_radius_m: u32_col(row, 4)?,
        max_duration_seconds: u32_col(row, 5)?,
        wait_timeout_seconds: u32_col(row, 6)?,
        rate_micro_usdc: u64_col(row, 7)?,
        consumer_workspace_id: uuid_col(row, 8)?,
        consumer_wallet: address_col(row, 9)?,
        operator_workspace_id: opt_uuid_col(row, 10)?,
        quote_id: opt_uuid_col(row, 11)?,
        offer,
        created_ms: row.get(14)?,
        assigned_ms: row.get(15)?,
        started_ms: row.get(16)?,
        ended_ms: row.get(17)?,
        expiry_reason: row
            .get::<_, Option<String>>(18)?
            .map(|t| enum_parse(&t))
            .transpose()?,
        media,
        meter,
        operator_id: opt_uuid_col(row, 28)?,
        meter_final: row.get(29)?,
        windows: Vec::new(),
        min_trust_tier: u8::try_from(row.get::<_, i64>(30)?).map_err(conversion)?,
        trust_tier: row
            .get::<_, Option<i64>>(31)?
            .map(|t| u8::try_from(t).map_err(conversion))
            .transpose()?,
    })
}

fn load_windows(conn: &Connection, session: &mut Session) -> Sql<()> {
    let mut stmt = conn.prepare_cached(
        "SELECT reason, opened_ms, closed_ms FROM session_windows WHERE session_id = ?1 ORDER BY opened_ms, reason",
    )?;
    session.windows = stmt
        .query_map([session.id.to_string()], |row| {
            Ok(Window {
                reason: enum_parse(&row.get::<_, String>(0)?)?,
                opened_ms: row.get(1)?,
                closed_ms: row.get(2)?,
            })
        })?
        .collect::<Sql<Vec<_>>>()?;
    Ok(())
}

fn load_session(conn: &Connection, id: Uuid) -> Sql<Option<Session>> {
    let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?1");
    let mut session = one(conn, &sql, [id.to_string()], session_row)?;
    if let Some(s) = session.as_mut() {
        load_windows(conn, s)?;
    }
    Ok(session)
}

fn query_sessions(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Sql<Vec<Session>> {
    let mut sessions = conn
        .prepare_cached(sql)?
        .query_map(args, session_row)?
        .collect::<Sql<Vec<_>>>()?;
    for s in &mut sessions {
        load_windows(conn, s)?;
    }
    Ok(sessions)
}

fn load_workspace(conn: &Connection, id: Uuid) -> Sql<Option<Workspace>> {
    let sql = format!("SELECT {WORKSPACE_SELECT} FROM workspaces WHERE id = ?1");
    one(conn, &sql, [id.to_string()], workspace_row)
}

fn api_key_row(row: &Row<'_>) -> Sql<ApiKey> {
    let hash: Vec<u8> = row.get(2)?;
    Ok(ApiKey {
        id: uuid_col(row, 0)?,
        workspace_id: uuid_col(row, 1)?,
        hash: hash.try_into().map_err(|_| conversion(std::fmt::Error))?,
        prefix: row.get(3)?,
        label: row.get(4)?,
        environment: enum_parse::<KeyEnvironment>(&row.get::<_, String>(5)?)?,
        scopes: list_parse::<Scope>(&row.get::<_, String>(6)?)?,
        created_ms: row.get(7)?,
        revoked_ms: row.get(8)?,
    })
}

fn quote_row(row: &Row<'_>) -> Sql<Quote> {
    Ok(Quote {
        id: uuid_col(row, 0)?,
        workspace_id: uuid_col(row, 1)?,
        point: Point::new(row.get(2)?, row.get(3)?),
        duration_seconds: u32_col(row, 4)?,
        rate_micro_usdc: u64_col(row, 5)?,
        supply_bps: u32_col(row, 6)?,
        demand_bps: u32_col(row, 7)?,
        corridor_bps: u32_col(row, 8)?,
        created_ms: row.get(9)?,
        expires_ms: row.get(10)?,
        used_ms: row.get(11)?,
    })
}

fn operator_row(row: &Row<'_>) -> Sql<Operator> {
    let fix = match (
        row.get::<_, Option<i64>>(10)?,
        row.get::<_, Option<i64>>(11)?,
        row.get::<_, Option<i64>>(12)?,
        row.get::<_, Option<i64>>(13)?,
    ) {
        (Some(lat), Some(lng), Some(acc), Some(at)) => Some(DeviceFix {
            lat_e7: i32::try_from(lat).map_err(conversion)?,
            lng_e7: i32::try_from(lng).map_err(conversion)?,
            accuracy_cm: u32::try_from(acc).map_err(conversion)?,
            captured_ms: at,
        }),
        _ => None,
    };
    Ok(Operator {
        id: uuid_col(row, 0)?,
        workspace_id: uuid_col(row, 1)?,
        name: row.get(2)?,
        device_kind: enum_parse(&row.get::<_, String>(3)?)?,
        address: address_col(row, 4)?,
        public_key: row.get(5)?,
        availability: enum_parse(&row.get::<_, String>(6)?)?,
        battery_pct: row
            .get::<_, Option<i64>>(7)?
            .map(|b| u8::try_from(b).map_err(conversion))
            .transpose()?,
        last_seen_ms: row.get(8)?,
        last_sequence: row.get::<_, Option<i64>>(9)?.map(|v| v as u64),
        fix,
        created_ms: row.get(14)?,
        disconnected_ms: row.get(15)?,
        cooling_down_until_ms: row.get(16)?,
    })
}

fn put_mqtt_account(conn: &Connection, a: &MqttAccount) -> Sql<()> {
    conn.execute(
        "INSERT INTO mqtt_accounts (username, password_hash, workspace_id, operator_id, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, created_ms = excluded.created_ms",
        params![
            a.username,
            a.password_hash,
            a.workspace_id.to_string(),
            a.operator_id.map(|id| id.to_string()),
            a.created_ms
        ],
    )?;
    Ok(())
}

fn mqtt_account_row(row: &Row<'_>) -> Sql<MqttAccount> {
    Ok(MqttAccount {
        username: row.get(0)?,
        password_hash: row.get(1)?,
        workspace_id: uuid_col(row, 2)?,
        operator_id: row
            .get::<_, Option<String>>(3)?
            .map(|s| Uuid::parse_str(&s).map_err(conversion))
            .transpose()?,
        created_ms: row.get(4)?,
    })
}

fn load_operator(conn: &Connection, id: Uuid) -> Sql<Option<Operator>> {
    let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE id = ?1");
    one(conn, &sql, [id.to_string()], operator_row)
}

/// Stores checked samples of one device.
fn insert_samples(conn: &Connection, operator_id: Uuid, samples: &[StoredSample]) -> Sql<()> {
    let mut insert = conn.prepare_cached(
        "INSERT INTO telemetry (operator_id, sequence, session_id, captured_ms, lat_e7, lng_e7, accuracy_cm, source, signature, received_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let operator = &operator_id.as_bytes()[..];
    for stored in samples {
        let s = &stored.sample;
        insert.execute(params![
            operator,
            to_i64(s.sequence),
            &s.session_id[..],
            to_i64(s.captured_at_ms),
            i64::from(s.lat_e7),
            i64::from(s.lng_e7),
            i64::from(s.accuracy_cm),
            i64::from(s.source.code()),
            &stored.signature[..],
            stored.received_ms,
        ])?;
    }
    Ok(())
}

fn sample_row(row: &Row<'_>) -> Sql<Sample> {
    // The nil session (16 zero bytes) is a sample of no session.
    let session_id: [u8; 16] = row.get(0)?;
    let source: i64 = row.get(7)?;
    Ok(Sample {
        session_id,
        sequence: row.get::<_, i64>(1)? as u64,
        captured_at_ms: u64::try_from(row.get::<_, i64>(2)?).map_err(conversion)?,
        lat_e7: i32::try_from(row.get::<_, i64>(3)?).map_err(conversion)?,
        lng_e7: i32::try_from(row.get::<_, i64>(4)?).map_err(conversion)?,
        accuracy_cm: u32::try_from(row.get::<_, i64>(5)?).map_err(conversion)?,
        source: u8::try_from(source)
            .ok()
            .and_then(Source::from_code)
            .ok_or_else(|| conversion(std::fmt::Error))?,
    })
}

/// A contact with the device at `now`: closes its open outage, or records
/// the silence since its last contact as one when it lasted longer than
/// `silent_after_ms`.
fn note_contact(
    conn: &Connection,
    id: &str,
    last_seen_ms: Option<UnixMillis>,
    now: UnixMillis,
    silent_after_ms: i64,
) -> Sql<()> {
    let closed = conn
        .prepare_cached(
            "UPDATE operator_outages SET closed_ms = ?2
             WHERE operator_id = ?1 AND closed_ms IS NULL AND opened_ms <= ?2",
        )?
        .execute(params![id, now])?;
    if closed == 0
        && let Some(seen) = last_seen_ms.filter(|&seen| now - seen > silent_after_ms)
    {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO operator_outages (operator_id, opened_ms, closed_ms) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![id, seen, now])?;
    }
    Ok(())
}

fn subsystem_parse(text: &str) -> Sql<Subsystem> {
    enum_parse(text)
}

fn actual_state(conn: &Connection, id: Uuid) -> Result<SessionState, ApplyError> {
    let state: Option<String> = conn
        .prepare_cached("SELECT state FROM sessions WHERE id = ?1")
        .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
        .map_err(StoreError::from)?;
    match state {
        Some(text) => Ok(enum_parse(&text).map_err(StoreError::from)?),
        None => Err(ApplyError::SessionNotFound),
    }
}

fn apply_in(conn: &mut Connection, t: &Transition) -> Result<Session, ApplyError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::from)?;
    let id = t.session_id.to_string();
    let before = actual_state(&tx, t.session_id)?;
    let (set_offer_ws, set_offer_exp) = match t.set_offer {
        Some(o) => (Some(o.workspace_id.to_string()), Some(o.expires_ms)),
        None => (None, None),
    };
    let meter = t.meter;
    let changed = tx
        .prepare_cached(
            "UPDATE sessions SET
                state = COALESCE(?2, state),
                operator_ws = CASE WHEN ?21 THEN NULL ELSE COALESCE(?3, operator_ws) END,
                offer_ws = CASE WHEN ?4 THEN NULL WHEN ?5 IS NOT NULL THEN ?5 ELSE offer_ws END,
                offer_expires_ms = CASE WHEN ?4 THEN NULL WHEN ?5 IS NOT NULL THEN ?6 ELSE offer_expires_ms END,
                assigned_ms = CASE WHEN ?21 THEN NULL ELSE COALESCE(?7, assigned_ms) END,
                started_ms = COALESCE(?8, started_ms),
                ended_ms = COALESCE(?9, ended_ms),
                expiry_reason = COALESCE(?10, expiry_reason),
                clean_s = COALESCE(?11, clean_s),
                failed_s = COALESCE(?12, failed_s),
                charged = COALESCE(?13, charged),
                fee = COALESCE(?14, fee),
                earned = COALESCE(?15, earned),
                fee_bps = COALESCE(?16, fee_bps),
                operator_id = CASE WHEN ?21 THEN NULL ELSE COALESCE(?19, operator_id) END,
                meter_final = meter_final OR ?20,
                trust_tier = CASE WHEN ?21 THEN NULL ELSE COALESCE(?22, trust_tier) END,
                media_ref = CASE WHEN ?21 THEN NULL ELSE media_ref END,
                whip_url = CASE WHEN ?21 THEN NULL ELSE whip_url END,
                whep_url = CASE WHEN ?21 THEN NULL ELSE whep_url END
             WHERE id = ?1
               AND (?17 IS NULL OR state = ?17)
               AND (?18 IS NULL OR offer_ws = ?18)",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                id,
                t.to.map(|s| s.as_str()),
                t.operator_workspace_id.map(|u| u.to_string()),
                t.clear_offer,
                set_offer_ws,
                set_offer_exp,
                t.assigned_ms,
                t.started_ms,
                t.ended_ms,
                t.expiry_reason.map(|r| enum_text(&r)),
                meter.map(|m| to_i64(m.clean_seconds)),
                meter.map(|m| to_i64(m.failed_seconds)),
                meter.map(|m| to_i64(m.charged_micro_usdc)),
                meter.map(|m| to_i64(m.fee_micro_usdc)),
                meter.map(|m| to_i64(m.operator_earned_micro_usdc)),
                meter.map(|m| i64::from(m.fee_bps)),
                t.expected.map(|s| s.as_str()),
                t.expected_offer.map(|u| u.to_string()),
                t.operator_id.map(|u| u.to_string()),
                t.meter_final,
                t.unassign,
                t.trust_tier.map(i64::from),
            ])
        })
        .map_err(StoreError::from)?;
    if changed == 0 {
        return Err(ApplyError::State(actual_state(&tx, t.session_id)?));
    }
    if let Some(ws) = t.claim {
        let claimed = tx
            .execute(
                "UPDATE workspaces SET availability = 'BUSY' WHERE id = ?1 AND availability = 'ONLINE'",
                [ws.to_string()],
            )
            .map_err(StoreError::from)?;
        if claimed == 0 {
            return Err(ApplyError::SupplierUnavailable);
        }
    }
    if let Some(op) = t.claim_operator {
        let claimed = tx
            .execute(
                "UPDATE operators SET availability = 'BUSY' WHERE id = ?1 AND availability = 'ONLINE'",
                [op.to_string()],
            )
            .map_err(StoreError::from)?;
        if claimed == 0 {
            return Err(ApplyError::SupplierUnavailable);
        }
    }
    if let Some(op) = t.release_operator {
        tx.execute(
            "UPDATE operators SET availability = 'ONLINE' WHERE id = ?1 AND availability = 'BUSY'",
            [op.to_string()],
        )
        .map_err(StoreError::from)?;
    }
    if let Some(windows) = &t.derived_windows {
        tx.execute(
            "DELETE FROM session_windows WHERE session_id = ?1 AND reason IN ('STALE_TELEMETRY', 'OUTSIDE_GEOFENCE')",
            [&id],
        )
        .map_err(StoreError::from)?;
        for w in windows {
            tx.execute(
                "INSERT OR IGNORE INTO session_windows (session_id, reason, opened_ms, closed_ms) VALUES (?1, ?2, ?3, ?4)",
                params![id, enum_text(&w.reason), w.opened_ms, w.closed_ms],
            )
            .map_err(StoreError::from)?;
        }
    }
    if let Some((ws, idle_since)) = t.release {
        tx.execute(
            "UPDATE workspaces SET availability = 'ONLINE', idle_since_ms = ?2 WHERE id = ?1 AND availability = 'BUSY'",
            params![ws.to_string(), idle_since],
        )
        .map_err(StoreError::from)?;
    }
    for &(reason, at) in &t.close_windows {
        tx.execute(
            "UPDATE session_windows SET closed_ms = ?3 WHERE session_id = ?1 AND reason = ?2 AND closed_ms IS NULL",
            params![id, enum_text(&reason), at],
        )
        .map_err(StoreError::from)?;
    }
    if let Some((reason, at)) = t.open_window {
        tx.execute(
            "INSERT OR IGNORE INTO session_windows (session_id, reason, opened_ms) VALUES (?1, ?2, ?3)",
            params![id, enum_text(&reason), at],
        )
        .map_err(StoreError::from)?;
    }
    if let Some(reason) = t.reopen_window {
        tx.execute(
            "UPDATE session_windows SET closed_ms = NULL WHERE session_id = ?1 AND reason = ?2 \
             AND opened_ms = (SELECT MAX(opened_ms) FROM session_windows WHERE session_id = ?1 AND reason = ?2)",
            params![id, enum_text(&reason)],
        )
        .map_err(StoreError::from)?;
    }
    if let Some(cool) = t.cool_down {
        tx.execute(
            "UPDATE workspaces SET cooling_down_until_ms = MAX(COALESCE(cooling_down_until_ms, 0), ?2) WHERE id = ?1",
            params![cool.workspace.to_string(), cool.until],
        )
        .map_err(StoreError::from)?;
        if let Some(op) = cool.operator {
            tx.execute(
                "UPDATE operators SET cooling_down_until_ms = MAX(COALESCE(cooling_down_until_ms, 0), ?2) WHERE id = ?1",
                params![op.to_string(), cool.until],
            )
            .map_err(StoreError::from)?;
        }
    }
    if let Some(ws) = t.record_attempt {
        tx.execute(
            "INSERT OR IGNORE INTO dispatch_attempts (session_id, workspace_id) VALUES (?1, ?2)",
            params![id, ws.to_string()],
        )
        .map_err(StoreError::from)?;
    }
    let session = load_session(&tx, t.session_id)
        .map_err(StoreError::from)?
        .ok_or(ApplyError::SessionNotFound)?;
    if let Some((event, at)) = crate::store::events::session_event(before, &session) {
        let parties = [
            Some(session.consumer_workspace_id),
            session.operator_workspace_id,
        ];
        let payload = || serde_json::to_string(&crate::store::dto::session_dto(&session));
        enqueue_event(&tx, event, session.id, at, parties, payload).map_err(StoreError::from)?;
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(session)
}

/// Queues the event for every webhook of `parties` subscribed to it, once:
/// the event row is unique per (session, type), its deliveries per
/// (webhook, event). Nothing is written when no webhook wants it.
fn enqueue_event(
    tx: &Connection,
    event: WebhookEventType,
    session_id: Uuid,
    at: UnixMillis,
    parties: [Option<Uuid>; 2],
    payload: impl FnOnce() -> Result<String, serde_json::Error>,
) -> Sql<()> {
    let [first, second] = parties.map(|p| p.map(|u| u.to_string()));
    let hooks: Vec<String> = all(
        tx,
        "SELECT id FROM webhooks WHERE workspace_id IN (?1, ?2) AND disabled_ms IS NULL
           AND instr(',' || events || ',', ',' || ?3 || ',') > 0 ORDER BY created_ms, id",
        params![first, second, event.as_str()],
        |r| r.get(0),
    )?;
    if hooks.is_empty() {
        return Ok(());
    }
    let payload = payload().map_err(conversion)?;
    tx.prepare_cached(
        "INSERT INTO webhook_events (id, type, session_id, payload, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (session_id, type) DO NOTHING",
    )?
    .execute(params![
        Uuid::new_v4().to_string(),
        event.as_str(),
        session_id.to_string(),
        payload,
        at
    ])?;
    let event_id: String = tx
        .prepare_cached("SELECT id FROM webhook_events WHERE session_id = ?1 AND type = ?2")?
        .query_row(params![session_id.to_string(), event.as_str()], |r| {
            r.get(0)
        })?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO webhook_deliveries (webhook_id, event_id, state, next_attempt_ms, updated_ms)
         VALUES (?1, ?2, 'PENDING', ?3, ?3) ON CONFLICT (webhook_id, event_id) DO NOTHING",
    )?;
    for hook in hooks {
        insert.execute(params![hook, event_id, at])?;
    }
    Ok(())
}

fn webhook_row(row: &Row<'_>) -> Sql<Webhook> {
    Ok(Webhook {
        id: uuid_col(row, 0)?,
        workspace_id: uuid_col(row, 1)?,
        url: row.get(2)?,
        events: list_parse(&row.get::<_, String>(3)?)?,
        secret: row.get(4)?,
        created_ms: row.get(5)?,
        failed_in_a_row: u32_col(row, 6)?,
        disabled_ms: row.get(7)?,
    })
}

fn delivery_row(row: &Row<'_>) -> Sql<Delivery> {
    Ok(Delivery {
        seq: row.get(0)?,
        webhook_id: uuid_col(row, 1)?,
        event_id: uuid_col(row, 2)?,
        event_type: enum_parse(&row.get::<_, String>(3)?)?,
        session_id: uuid_col(row, 4)?,
        event_ms: row.get(5)?,
        state: enum_parse(&row.get::<_, String>(6)?)?,
        attempts: u32_col(row, 7)?,
        last_status: row
            .get::<_, Option<i64>>(8)?
            .map(|v| u16::try_from(v).map_err(conversion))
            .transpose()?,
        last_error: row.get(9)?,
        next_attempt_ms: row.get(10)?,
        delivered_ms: row.get(11)?,
        updated_ms: row.get(12)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn prune(&self, b: PruneBefore) -> StoreResult<u64> {
        let pruned = self
            .run(move |c| {
                let tx = c.transaction()?;
                let mut n = 0usize;
                for (sql, cutoff) in schema::prune_statements(&b, schema::HEARTBEAT_SAMPLES_NIL) {
                    n += tx.execute(sql, [cutoff])?;
                }
                tx.commit()?;
                Ok(n as u64)
            })
            .await?;
        if pruned > 0 {
            self.wrote();
        }
        Ok(pruned)
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    fn consistency_token(&self) -> String {
        self.write_seq.load(Ordering::SeqCst).to_string()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
            .await
    }

    async fn insert_workspace(&self, ws: Workspace) -> StoreResult<Workspace> {
        let out = ws.clone();
        self.run(move |c| {
            let result = c.execute(
                &format!("INSERT INTO workspaces ({WORKSPACE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
                params![
                    ws.id.to_string(),
                    ws.slug,
                    ws.name,
                    wallet_text(&ws.wallet),
                    list_text(&ws.roles),
                    enum_text(&ws.availability),
                    ws.coverage.map(|c| c.lat),
                    ws.coverage.map(|c| c.lng),
                    ws.coverage.map(|c| i64::from(c.radius_m)),
                    ws.device_kind.map(|k| enum_text(&k)),
                    ws.auto_accept,
                    i64::from(ws.offer_timeout_seconds),
                    ws.idle_since_ms,
                    ws.created_ms,
                ],
            );
            match result {
                Ok(_) => Ok(()),
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Conflict(format!("slug '{}' is taken", ws.slug)))
                }
                Err(e) => Err(e.into()),
            }
        })
        .await?;
        self.wrote();
        Ok(out)
    }

    async fn workspace(&self, id: Uuid) -> StoreResult<Option<Workspace>> {
        self.read(move |c| Ok(load_workspace(c, id)?)).await
    }

    async fn workspaces_of_wallet(&self, wallet: Address) -> StoreResult<Vec<Workspace>> {
        self.read(move |c| {
            let sql = format!("SELECT {WORKSPACE_SELECT} FROM workspaces WHERE wallet = ?1 ORDER BY created_ms, id");
            Ok(all(c, &sql, [wallet_text(&wallet)], workspace_row)?)
        })
        .await
    }

    async fn patch_workspace(
        &self,
        id: Uuid,
        patch: WorkspacePatch,
        now: UnixMillis,
    ) -> Result<Workspace, PatchError> {
        let ws = self
            .run_with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
                let mut ws = load_workspace(&tx, id).map_err(StoreError::from)?.ok_or(PatchError::NotFound)?;
                patch.apply_to(&mut ws, now)?;
                tx.execute(
                    "UPDATE workspaces SET name = ?2, availability = ?3, coverage_lat = ?4, coverage_lng = ?5,
                        coverage_radius_m = ?6, device_kind = ?7, auto_accept = ?8, offer_timeout_s = ?9,
                        idle_since_ms = ?10 WHERE id = ?1",
                    params![
                        id.to_string(),
                        ws.name,
                        enum_text(&ws.availability),
                        ws.coverage.map(|c| c.lat),
                        ws.coverage.map(|c| c.lng),
                        ws.coverage.map(|c| i64::from(c.radius_m)),
                        ws.device_kind.map(|k| enum_text(&k)),
                        ws.auto_accept,
                        i64::from(ws.offer_timeout_seconds),
                        ws.idle_since_ms,
                    ],
                )
                .map_err(StoreError::from)?;
                tx.commit().map_err(StoreError::from)?;
                Ok::<_, PatchError>(ws)
            })
            .await?;
        self.wrote();
        Ok(ws)
    }

    async fn online_suppliers(&self) -> StoreResult<Vec<Workspace>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {WORKSPACE_SELECT} FROM workspaces WHERE availability = 'ONLINE' AND coverage_lat IS NOT NULL AND instr(roles, 'SUPPLIER') > 0"
            );
            let rows = c.prepare(&sql)?.query_map([], workspace_row)?.collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn insert_challenge(&self, ch: Challenge) -> StoreResult<()> {
        self.run(move |c| {
            // Expired challenges are dead weight: drop them as new ones arrive.
            c.execute("DELETE FROM challenges WHERE expires_ms < ?1", [ch.expires_ms - 86_400_000])?;
            c.execute(
                "INSERT INTO challenges (nonce, wallet, purpose, message, expires_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![ch.nonce, wallet_text(&ch.wallet), ch.purpose.as_str(), ch.message, ch.expires_ms],
            )?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn take_challenge(
        &self,
        nonce: &str,
        purpose: ChallengePurpose,
    ) -> StoreResult<Option<Challenge>> {
        let nonce = nonce.to_owned();
        let taken = self
            .run(move |c| {
                let row = c
                    .query_row(
                        "DELETE FROM challenges WHERE nonce = ?1 AND purpose = ?2 RETURNING wallet, message, expires_ms",
                        params![nonce, purpose.as_str()],
                        |r| Ok((address_col(r, 0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)),
                    )
                    .optional()?;
                Ok(row.map(|(wallet, message, expires_ms)| Challenge { nonce, wallet, purpose, message, expires_ms }))
            })
            .await?;
        self.wrote();
        Ok(taken)
    }

    async fn revoke_cookie(
        &self,
        id: Uuid,
        expires_ms: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()> {
        self.run(move |c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO revoked_cookies (id, expires_ms) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
                params![id.to_string(), expires_ms],
            )?;
            // Rows of cookies that expired on their own are of no more use.
            tx.execute("DELETE FROM revoked_cookies WHERE expires_ms < ?1", [now])?;
            tx.commit()?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn save_device_logs(&self, logs: DeviceLogs) -> StoreResult<()> {
        let lines =
            serde_json::to_string(&logs.lines).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.run(move |c| {
            c.execute(
                "INSERT INTO device_logs (operator_id, uploaded_ms, truncated, lines) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (operator_id) DO UPDATE SET uploaded_ms = excluded.uploaded_ms, \
                 truncated = excluded.truncated, lines = excluded.lines",
                params![logs.operator_id.to_string(), logs.uploaded_ms, logs.truncated, lines],
            )?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn device_logs(&self, operator_id: Uuid) -> StoreResult<Option<DeviceLogs>> {
        let row = self
            .read(move |c| {
                Ok(one(
                    c,
                    "SELECT uploaded_ms, truncated, lines FROM device_logs WHERE operator_id = ?1",
                    [operator_id.to_string()],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    },
                )?)
            })
            .await?;
        row.map(|(uploaded_ms, truncated, lines)| {
            Ok(DeviceLogs {
                operator_id,
                uploaded_ms,
                truncated,
                lines: serde_json::from_str(&lines)
                    .map_err(|e| StoreError::Backend(e.to_string()))?,
            })
        })
        .transpose()
    }

    async fn cookie_revoked(&self, id: Uuid) -> StoreResult<bool> {
        self.read(move |c| {
            Ok(one(
                c,
                "SELECT 1 FROM revoked_cookies WHERE id = ?1",
                [id.to_string()],
                |r| r.get::<_, i64>(0),
            )?
            .is_some())
        })
        .await
    }

    async fn insert_api_key(&self, key: ApiKey) -> StoreResult<()> {
        self.run(move |c| {
            c.execute(
                &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    key.id.to_string(),
                    key.workspace_id.to_string(),
                    key.hash.to_vec(),
                    key.prefix,
                    key.label,
                    key.environment.as_str(),
                    list_text(&key.scopes),
                    key.created_ms,
                    key.revoked_ms,
                ],
            )?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: [u8; 32]) -> StoreResult<Option<ApiKey>> {
        self.read(move |c| {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = ?1");
            Ok(one(c, &sql, [hash.to_vec()], api_key_row)?)
        })
        .await
    }

    async fn api_keys_of(&self, workspace_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        self.read(move |c| {
            let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE workspace_id = ?1 ORDER BY created_ms, id");
            Ok(all(c, &sql, [workspace_id.to_string()], api_key_row)?)
        })
        .await
    }

    async fn revoke_api_key(
        &self,
        workspace_id: Uuid,
        key_id: Uuid,
        now: UnixMillis,
    ) -> StoreResult<Option<ApiKey>> {
        let key = self
            .run(move |c| {
                let tx = c.transaction()?;
                let revoked = tx.execute(
                    "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, ?3) WHERE id = ?1 AND workspace_id = ?2",
                    params![key_id.to_string(), workspace_id.to_string(), now],
                )?;
                if revoked > 0 {
                    // The locks the key holds go with it: nobody else could
                    // release them but an administrator.
                    tx.execute(
                        "DELETE FROM operator_locks WHERE holder = ?1",
                        [format!("apiKey:{key_id}")],
                    )?;
                }
                let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = ?1 AND workspace_id = ?2");
                let key = tx
                    .query_row(&sql, params![key_id.to_string(), workspace_id.to_string()], api_key_row)
                    .optional()?;
                tx.commit()?;
                Ok(key)
            })
            .await?;
        self.wrote();
        Ok(key)
    }

    async fn insert_quote(&self, q: Quote) -> StoreResult<()> {
        self.run(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO quotes ({QUOTE_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
                ),
                params![
                    q.id.to_string(),
                    q.workspace_id.to_string(),
                    q.point.lat,
                    q.point.lng,
                    i64::from(q.duration_seconds),
                    to_i64(q.rate_micro_usdc),
                    i64::from(q.supply_bps),
                    i64::from(q.demand_bps),
                    i64::from(q.corridor_bps),
                    q.created_ms,
                    q.expires_ms,
                    q.used_ms,
                ],
            )?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn quote(&self, id: Uuid) -> StoreResult<Option<Quote>> {
        self.read(move |c| {
            Ok(c.query_row(
                &format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE id = ?1"),
                [id.to_string()],
                quote_row,
            )
            .optional()?)
        })
        .await
    }

    async fn open_session_points(&self, min: Point, max: Point) -> StoreResult<Vec<Point>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT lat, lng FROM sessions WHERE state IN {OPEN_STATES} AND lat BETWEEN ?1 AND ?2 AND lng BETWEEN ?3 AND ?4"
            );
            let point = |r: &Row<'_>| Ok(Point::new(r.get(0)?, r.get(1)?));
            Ok(all(c, &sql, params![min.lat, max.lat, min.lng, max.lng], point)?)
        })
        .await
    }

    async fn demand_cells(
        &self,
        since_ms: UnixMillis,
        cell_degrees: f64,
    ) -> StoreResult<Vec<(i64, i64, u32)>> {
        self.read(move |c| {
            // CAST truncates toward zero; the offset keeps it a floor for negative coordinates.
            let rows = c
                .prepare_cached(
                    "SELECT CAST(lat / ?2 + 100000 AS INTEGER) - 100000 AS clat,
                            CAST(lng / ?2 + 100000 AS INTEGER) - 100000 AS clng,
                            COUNT(*)
                     FROM sessions WHERE created_ms >= ?1 GROUP BY clat, clng ORDER BY 3 DESC, 1, 2",
                )?
                .query_map(params![since_ms, cell_degrees], |r| Ok((r.get(0)?, r.get(1)?, u32_col(r, 2)?)))?
                .collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn create_session(
        &self,
        new: NewSession,
        credit: u64,
        _now: UnixMillis,
    ) -> Result<Session, CreateSessionError> {
        let session = self
            .run_with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
                if let Some(quote) = new.quote_id {
                    let used = tx
                        .execute(
                            "UPDATE quotes SET used_ms = ?2 WHERE id = ?1 AND used_ms IS NULL",
                            params![quote.to_string(), new.created_ms],
                        )
                        .map_err(StoreError::from)?;
                    if used == 0 {
                        return Err(CreateSessionError::QuoteUsed);
                    }
                }
                let owed = obligations_in(&tx, &new.consumer_wallet).map_err(StoreError::from)?;
                if let Some(debt) = owed.debts.into_iter().next() {
                    return Err(CreateSessionError::Unpaid(debt));
                }
                let hold = new.rate_micro_usdc.saturating_mul(u64::from(new.max_duration_seconds));
                let others = owed.held.saturating_add(owed.unsettled);
                let required = others.saturating_add(hold);
                if required > credit {
                    return Err(CreateSessionError::InsufficientCredit { required, available: credit });
                }
                tx.execute(
                    "INSERT INTO sessions (id, state, lat, lng, geofence_m, max_duration_s, wait_timeout_s, rate,
                        consumer_ws, consumer_wallet, quote_id, created_ms, min_trust_tier)
                     VALUES (?1, 'REQUESTED', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        new.id.to_string(),
                        new.point.lat,
                        new.point.lng,
                        i64::from(new.geofence_radius_m),
                        i64::from(new.max_duration_seconds),
                        i64::from(new.wait_timeout_seconds),
                        to_i64(new.rate_micro_usdc),
                        new.consumer_workspace_id.to_string(),
                        wallet_text(&new.consumer_wallet),
                        new.quote_id.map(|q| q.to_string()),
                        new.created_ms,
                        i64::from(new.min_trust_tier),
                    ],
                )
                .map_err(StoreError::from)?;
                let session = load_session(&tx, new.id)
                    .map_err(StoreError::from)?
                    .ok_or(StoreError::NotFound("session"))?;
                tx.commit().map_err(StoreError::from)?;
                Ok(session)
            })
            .await?;
        self.wrote();
        Ok(session)
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        self.read(move |c| Ok(load_session(c, id)?)).await
    }

    async fn obligations(&self, wallet: Address) -> StoreResult<crate::credit::Obligations> {
        self.read(move |c| Ok(obligations_in(c, &wallet)?)).await
    }

    async fn live_sessions(&self, limit: u32) -> StoreResult<Vec<Session>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE state IN ('LIVE','PAUSED')
                 ORDER BY consumer_wallet, started_ms LIMIT ?1"
            );
            Ok(query_sessions(c, &sql, &[&i64::from(limit)])?)
        })
        .await
    }

    async fn sessions_of(
        &self,
        workspace_id: Uuid,
        party: Party,
        filter: SessionFilter,
    ) -> StoreResult<Vec<Session>> {
        self.read(move |c| {
            let who = match party {
                Party::Consumer => "consumer_ws = ?1",
                Party::Operator => "operator_ws = ?1",
                Party::Either => "(consumer_ws = ?1 OR operator_ws = ?1)",
            };
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE {who} AND (?2 IS NULL OR instr(?2, ',' || state || ',') > 0)
                 AND (?3 IS NULL OR created_ms < ?3) ORDER BY created_ms DESC, id DESC LIMIT ?4"
            );
            Ok(query_sessions(
                c,
                &sql,
                &[
                    &workspace_id.to_string(),
                    // ",ASSIGNED,LIVE," matches any listed state with one static statement.
                    &(!filter.states.is_empty()).then(|| {
                        let names: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
                        format!(",{},", names.join(","))
                    }),
                    &filter.before_ms,
                    &i64::from(filter.limit),
                ],
            )?)
        })
        .await
    }

    async fn offers_for(&self, workspace_id: Uuid, now: UnixMillis) -> StoreResult<Vec<Session>> {
        use crate::store::MAX_OFFERS_LISTED;
        self.read(move |c| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE state = 'REQUESTED' AND offer_ws = ?1 AND offer_expires_ms > ?2 ORDER BY created_ms LIMIT {MAX_OFFERS_LISTED}"
            );
            Ok(query_sessions(c, &sql, &[&workspace_id.to_string(), &now])?)
        })
        .await
    }

    async fn apply(&self, transition: Transition) -> Result<Session, ApplyError> {
        let session = self.run_with(move |c| apply_in(c, &transition)).await?;
        self.wrote();
        Ok(session)
    }

    async fn attach_media(
        &self,
        session_id: Uuid,
        media: MediaEndpoints,
    ) -> Result<Session, ApplyError> {
        let session = self
            .run_with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
                let changed = tx
                    .execute(
                        "UPDATE sessions SET media_ref = ?2, whip_url = ?3, whep_url = ?4
                         WHERE id = ?1 AND media_ref IS NULL AND state IN ('ASSIGNED','LIVE','PAUSED')",
                        params![session_id.to_string(), media.backend_ref, media.whip_url, media.whep_url],
                    )
                    .map_err(StoreError::from)?;
                let session = load_session(&tx, session_id)
                    .map_err(StoreError::from)?
                    .ok_or(ApplyError::SessionNotFound)?;
                if changed == 0 && session.media.is_none() {
                    return Err(ApplyError::State(session.state));
                }
                tx.commit().map_err(StoreError::from)?;
                Ok(session)
            })
            .await?;
        self.wrote();
        Ok(session)
    }

    async fn replace_media(
        &self,
        session_id: Uuid,
        replaced: &str,
        media: MediaEndpoints,
    ) -> Result<Session, ApplyError> {
        let replaced = replaced.to_owned();
        let session = self
            .run_with(move |c| {
                let tx = c
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(StoreError::from)?;
                tx.execute(
                    "UPDATE sessions SET media_ref = ?3, whip_url = ?4, whep_url = ?5
                     WHERE id = ?1 AND media_ref = ?2 AND state IN ('ASSIGNED','LIVE','PAUSED')",
                    params![
                        session_id.to_string(),
                        replaced,
                        media.backend_ref,
                        media.whip_url,
                        media.whep_url
                    ],
                )
                .map_err(StoreError::from)?;
                let session = load_session(&tx, session_id)
                    .map_err(StoreError::from)?
                    .ok_or(ApplyError::SessionNotFound)?;
                tx.commit().map_err(StoreError::from)?;
                Ok::<_, ApplyError>(session)
            })
            .await?;
        self.wrote();
        Ok(session)
    }

    async fn due_sessions(
        &self,
        now: UnixMillis,
        settle_delay_ms: i64,
        live_timeout_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Session>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE (state IN {OPEN_STATES} AND (
                    (state IN ('REQUESTED','ASSIGNED') AND created_ms + wait_timeout_s * 1000 <= ?1)
                 OR (state IN ('LIVE','PAUSED') AND started_ms + max_duration_s * 1000 <= ?1)
                 OR (state = 'REQUESTED' AND offer_expires_ms <= ?1)
                 OR (state = 'ASSIGNED' AND ?4 > 0 AND assigned_ms + ?4 <= ?1)))
                 OR (state IN ('ENDED','EXPIRED') AND meter_final = 0 AND clean_s IS NOT NULL
                     AND ended_ms + ?3 <= ?1)
                 ORDER BY created_ms LIMIT ?2"
            );
            Ok(query_sessions(
                c,
                &sql,
                &[&now, &i64::from(limit), &settle_delay_ms, &live_timeout_ms],
            )?)
        })
        .await
    }

    async fn media_sessions(&self) -> StoreResult<Vec<Session>> {
        self.read(|c| {
            let sql = format!(
                "SELECT {SESSION_COLUMNS} FROM sessions
                 WHERE state IN ('ASSIGNED','LIVE','PAUSED') AND whip_url IS NOT NULL ORDER BY created_ms"
            );
            Ok(query_sessions(c, &sql, &[])?)
        })
        .await
    }

    async fn unqueued_consumers(&self) -> StoreResult<Vec<(Address, u64)>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT DISTINCT s.consumer_wallet,
                    COALESCE((SELECT MAX(x.sequence) FROM settlements x WHERE x.consumer = s.consumer_wallet), 0)
                 FROM sessions s
                 WHERE s.meter_final = 1 AND s.charged > 0 AND s.operator_ws IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM settlements x WHERE x.session_id = s.id)",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((address_col(r, 0)?, u64_col(r, 1)?)))?
                .collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn queue_settlements(
        &self,
        now: UnixMillis,
        chain_last: &[(Address, u64)],
    ) -> StoreResult<usize> {
        let floors: Vec<(String, i64)> = chain_last
            .iter()
            .map(|(wallet, last)| (wallet_text(wallet), to_i64(*last)))
            .collect();
        self.run(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(
                "CREATE TEMP TABLE IF NOT EXISTS chain_floor (consumer TEXT PRIMARY KEY, last INTEGER NOT NULL);
                 DELETE FROM temp.chain_floor;",
            )?;
            for (wallet, last) in &floors {
                tx.execute(
                    "INSERT OR REPLACE INTO temp.chain_floor (consumer, last) VALUES (?1, ?2)",
                    params![wallet, last],
                )?;
            }
            // Each consumer's new settlements follow the higher of its last
            // stored sequence and the contract's, in the order their
            // sessions ended.
            let queued = tx.execute(
                "WITH base AS (
                    SELECT s.id, s.consumer_wallet, s.ended_ms, s.rate, s.clean_s, s.earned, s.fee, w.wallet AS operator,
                        COALESCE((SELECT MAX(x.sequence) FROM settlements x WHERE x.consumer = s.consumer_wallet), 0) AS stored,
                        COALESCE((SELECT f.last FROM temp.chain_floor f WHERE f.consumer = s.consumer_wallet), 0) AS onchain
                    FROM sessions s JOIN workspaces w ON w.id = s.operator_ws
                    WHERE s.meter_final = 1 AND s.charged > 0
                      AND NOT EXISTS (SELECT 1 FROM settlements x WHERE x.session_id = s.id))
                 INSERT INTO settlements (session_id, consumer, operator, sequence, rate, seconds,
                    to_amount, fee_amount, state, next_attempt_ms, queued_ms, updated_ms, verify_onchain)
                 SELECT id, consumer_wallet, operator,
                    MAX(stored, onchain) + ROW_NUMBER() OVER (PARTITION BY consumer_wallet ORDER BY ended_ms, id),
                    rate, clean_s, earned, fee, 'PENDING', ?1, ?1, ?1, onchain > stored
                 FROM base",
                [now],
            )?;
            tx.execute_batch("DELETE FROM temp.chain_floor;")?;
            tx.commit()?;
            Ok(queued)
        })
        .await
    }

    async fn settlement(&self, session_id: Uuid) -> StoreResult<Option<SettlementRecord>> {
        self.read(move |c| {
            let sql = format!("SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE session_id = ?1");
            Ok(one(c, &sql, [session_id.to_string()], settlement_row)?)
        })
        .await
    }

    async fn open_settlements(&self, limit: u32) -> StoreResult<Vec<SettlementRecord>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE state IN ('PENDING', 'SUBMITTED', 'UNPAID')
                 ORDER BY consumer, sequence LIMIT ?1"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map([i64::from(limit)], settlement_row)?
                .collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn save_settlements(&self, records: Vec<SettlementRecord>) -> StoreResult<()> {
        self.run(move |c| {
            let tx = c.transaction()?;
            for r in &records {
                let was: Option<String> = one(
                    &tx,
                    "SELECT state FROM settlements WHERE session_id = ?1",
                    [r.session_id.to_string()],
                    |row| row.get(0),
                )?;
                let confirmed_now = r.state == SettlementState::Confirmed
                    && was.is_some_and(|w| w != enum_text(&SettlementState::Confirmed));
                tx.execute(
                    "UPDATE settlements SET state = ?2, tx_hash = ?3, nonce = ?4, block = ?5, attempts = ?6,
                        last_error = ?7, next_attempt_ms = ?8, updated_ms = ?9, verify_onchain = ?10
                     WHERE session_id = ?1",
                    params![
                        r.session_id.to_string(),
                        enum_text(&r.state),
                        r.tx_hash,
                        r.nonce.map(to_i64),
                        r.block.map(to_i64),
                        r.attempts,
                        r.last_error,
                        r.next_attempt_ms,
                        r.updated_ms,
                        r.verify_onchain,
                    ],
                )?;
                if confirmed_now {
                    let parties = one(
                        &tx,
                        "SELECT consumer_ws, operator_ws FROM sessions WHERE id = ?1",
                        [r.session_id.to_string()],
                        |row| Ok([opt_uuid_col(row, 0)?, opt_uuid_col(row, 1)?]),
                    )?
                    .unwrap_or([None, None]);
                    let payload = || serde_json::to_string(&crate::store::dto::settlement_dto(r));
                    enqueue_event(
                        &tx,
                        WebhookEventType::SettlementConfirmed,
                        r.session_id,
                        r.updated_ms,
                        parties,
                        payload,
                    )?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn insert_enrollment_token(&self, token: EnrollmentToken) -> StoreResult<()> {
        self.run(move |c| {
            c.execute(
                "INSERT INTO enrollment_tokens (hash, workspace_id, created_ms, expires_ms) VALUES (?1, ?2, ?3, ?4)",
                params![token.hash.to_vec(), token.workspace_id.to_string(), token.created_ms, token.expires_ms],
            )?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn enrollment_tokens_of(
        &self,
        workspace_id: Uuid,
    ) -> StoreResult<Vec<(EnrollmentToken, Option<UnixMillis>)>> {
        self.read(move |c| {
            Ok(all(
                c,
                "SELECT hash, workspace_id, created_ms, expires_ms, used_ms FROM enrollment_tokens
                 WHERE workspace_id = ?1 ORDER BY created_ms DESC, hash",
                [workspace_id.to_string()],
                |r| {
                    let hash: Vec<u8> = r.get(0)?;
                    Ok((
                        EnrollmentToken {
                            hash: hash.try_into().map_err(|_| conversion(std::fmt::Error))?,
                            workspace_id: uuid_col(r, 1)?,
                            created_ms: r.get(2)?,
                            expires_ms: r.get(3)?,
                        },
                        r.get(4)?,
                    ))
                },
            )?)
        })
        .await
    }

    async fn revoke_enrollment_token(
        &self,
        workspace_id: Uuid,
        hash: [u8; 32],
    ) -> StoreResult<Option<EnrollmentToken>> {
        let revoked = self
            .run(move |c| {
                Ok(one(
                    c,
                    "DELETE FROM enrollment_tokens WHERE hash = ?1 AND workspace_id = ?2 AND used_ms IS NULL
                     RETURNING created_ms, expires_ms",
                    params![hash.to_vec(), workspace_id.to_string()],
                    |r| {
                        Ok(EnrollmentToken {
                            hash,
                            workspace_id,
                            created_ms: r.get(0)?,
                            expires_ms: r.get(1)?,
                        })
                    },
                )?)
            })
            .await?;
        self.wrote();
        Ok(revoked)
    }

    async fn check_enrollment_token(
        &self,
        token_hash: [u8; 32],
        now: UnixMillis,
    ) -> Result<(), EnrollError> {
        self.read_with(move |c| {
            let token: Option<(i64, Option<i64>)> = one(
                c,
                "SELECT expires_ms, used_ms FROM enrollment_tokens WHERE hash = ?1",
                [token_hash.to_vec()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::from)?;
            match token {
                None => Err(EnrollError::UnknownToken),
                Some((_, Some(_))) => Err(EnrollError::UsedToken),
                Some((expires_ms, None)) if expires_ms <= now => Err(EnrollError::ExpiredToken),
                Some(_) => Ok(()),
            }
        })
        .await
    }

    async fn enroll_operator(
        &self,
        token_hash: [u8; 32],
        operator: Operator,
        device_token_hash: [u8; 32],
        mqtt: Option<MqttAccount>,
        now: UnixMillis,
    ) -> Result<Operator, EnrollError> {
        let op = self
            .run_with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
                let token: Option<(String, i64, Option<i64>)> = tx
                    .query_row(
                        "SELECT workspace_id, expires_ms, used_ms FROM enrollment_tokens WHERE hash = ?1",
                        [token_hash.to_vec()],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()
                    .map_err(StoreError::from)?;
                let (workspace, expires_ms, used_ms) = token.ok_or(EnrollError::UnknownToken)?;
                if used_ms.is_some() {
                    return Err(EnrollError::UsedToken);
                }
                if expires_ms <= now {
                    return Err(EnrollError::ExpiredToken);
                }
                let taken: bool = tx
                    .query_row("SELECT EXISTS (SELECT 1 FROM operators WHERE address = ?1)", [wallet_text(&operator.address)], |r| r.get(0))
                    .map_err(StoreError::from)?;
                if taken {
                    return Err(EnrollError::AddressTaken);
                }
                tx.execute("UPDATE enrollment_tokens SET used_ms = ?2 WHERE hash = ?1", params![token_hash.to_vec(), now])
                    .map_err(StoreError::from)?;
                let workspace_id = Uuid::parse_str(&workspace).map_err(backend)?;
                tx.execute(
                    "INSERT INTO operators (id, workspace_id, name, device_kind, address, public_key, token_hash, availability, created_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        operator.id.to_string(),
                        workspace_id.to_string(),
                        operator.name,
                        enum_text(&operator.device_kind),
                        wallet_text(&operator.address),
                        operator.public_key,
                        device_token_hash.to_vec(),
                        enum_text(&operator.availability),
                        now,
                    ],
                )
                .map_err(StoreError::from)?;
                if let Some(account) = mqtt {
                    let account = MqttAccount { workspace_id, operator_id: Some(operator.id), ..account };
                    put_mqtt_account(&tx, &account).map_err(StoreError::from)?;
                }
                let stored = load_operator(&tx, operator.id).map_err(StoreError::from)?.ok_or(StoreError::NotFound("operator"))?;
                tx.commit().map_err(StoreError::from)?;
                Ok(stored)
            })
            .await?;
        self.wrote();
        Ok(op)
    }

    async fn operator(&self, id: Uuid) -> StoreResult<Option<Operator>> {
        self.read(move |c| Ok(load_operator(c, id)?)).await
    }

    async fn operator_by_token(&self, token_hash: [u8; 32]) -> StoreResult<Option<Operator>> {
        self.read(move |c| {
            let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE token_hash = ?1");
            Ok(one(c, &sql, [token_hash.to_vec()], operator_row)?)
        })
        .await
    }

    async fn operators_of(&self, workspace_id: Uuid) -> StoreResult<Vec<Operator>> {
        self.read(move |c| {
            let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = ?1 ORDER BY created_ms, id");
            Ok(all(c, &sql, [workspace_id.to_string()], operator_row)?)
        })
        .await
    }

    async fn touch_operator(
        &self,
        id: Uuid,
        now: UnixMillis,
        battery_pct: Option<u8>,
        availability: Option<Availability>,
        silent_after_ms: i64,
    ) -> StoreResult<Option<Operator>> {
        let op = self
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let Some(current) = load_operator(&tx, id)? else { return Ok(None) };
                if availability.is_some() && current.availability == Availability::Busy {
                    return Ok(None);
                }
                note_contact(&tx, &id.to_string(), current.last_seen_ms, now, silent_after_ms)?;
                tx.execute(
                    "UPDATE operators SET last_seen_ms = MAX(COALESCE(last_seen_ms, 0), ?2),
                        battery_pct = COALESCE(?3, battery_pct), availability = COALESCE(?4, availability) WHERE id = ?1",
                    params![id.to_string(), now, battery_pct.map(i64::from), availability.map(|a| enum_text(&a))],
                )?;
                let op = load_operator(&tx, id)?;
                tx.commit()?;
                Ok(op)
            })
            .await?;
        self.wrote();
        Ok(op)
    }

    async fn mark_operator_disconnected(&self, id: Uuid, now: UnixMillis) -> StoreResult<bool> {
        let n = self
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "UPDATE operators SET disconnected_ms = MAX(COALESCE(disconnected_ms, 0), ?2) WHERE id = ?1",
                    params![id.to_string(), now],
                )?;
                // Out of reach since its last contact, until it is heard from again.
                tx.execute(
                    "INSERT OR IGNORE INTO operator_outages (operator_id, opened_ms)
                     SELECT id, MIN(COALESCE(last_seen_ms, ?2), ?2) FROM operators
                     WHERE id = ?1 AND NOT EXISTS (
                         SELECT 1 FROM operator_outages WHERE operator_id = ?1 AND closed_ms IS NULL)",
                    params![id.to_string(), now],
                )?;
                tx.commit()?;
                Ok(n)
            })
            .await?;
        self.wrote();
        Ok(n > 0)
    }

    async fn operator_outages(
        &self,
        id: Uuid,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> StoreResult<Vec<Outage>> {
        self.read(move |c| {
            Ok(all(
                c,
                "SELECT opened_ms, closed_ms FROM operator_outages
                 WHERE operator_id = ?1 AND opened_ms <= ?3 AND (closed_ms IS NULL OR closed_ms >= ?2)
                 ORDER BY opened_ms",
                params![id.to_string(), from_ms, to_ms],
                |r| Ok(Outage { opened_ms: r.get(0)?, closed_ms: r.get(1)? }),
            )?)
        })
        .await
    }

    async fn put_mqtt_account(&self, account: MqttAccount) -> StoreResult<()> {
        self.run(move |c| Ok(put_mqtt_account(c, &account)?))
            .await?;
        self.wrote();
        Ok(())
    }

    async fn mqtt_accounts(&self) -> StoreResult<Vec<MqttAccount>> {
        self.read(move |c| {
            Ok(all(
                c,
                &format!("SELECT {MQTT_ACCOUNT_COLUMNS} FROM mqtt_accounts ORDER BY username"),
                [],
                mqtt_account_row,
            )?)
        })
        .await
    }

    async fn rotate_operator_token(&self, id: Uuid, token_hash: [u8; 32]) -> StoreResult<bool> {
        let n = self
            .run(move |c| {
                Ok(c.execute(
                    "UPDATE operators SET token_hash = ?2 WHERE id = ?1",
                    params![id.to_string(), token_hash.to_vec()],
                )?)
            })
            .await?;
        self.wrote();
        Ok(n > 0)
    }

    async fn delete_operator(&self, id: Uuid) -> StoreResult<bool> {
        let deleted = self
            .run(move |c| {
                let tx = c.transaction()?;
                tx.execute(
                    "DELETE FROM operator_locks WHERE operator_id = ?1",
                    [id.to_string()],
                )?;
                tx.execute(
                    "DELETE FROM mqtt_accounts WHERE operator_id = ?1",
                    [id.to_string()],
                )?;
                tx.execute(
                    "DELETE FROM device_logs WHERE operator_id = ?1",
                    [id.to_string()],
                )?;
                let n = tx.execute("DELETE FROM operators WHERE id = ?1", [id.to_string()])?;
                tx.commit()?;
                Ok(n > 0)
            })
            .await?;
        self.wrote();
        Ok(deleted)
    }

    async fn lock(
        &self,
        operator_id: Uuid,
        subsystem: Subsystem,
        holder: &str,
        now: UnixMillis,
    ) -> Result<Lock, LockError> {
        let holder = holder.to_owned();
        let lock = self
            .run_with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
                if load_operator(&tx, operator_id).map_err(StoreError::from)?.is_none() {
                    return Err(LockError::NotFound);
                }
                let current: Option<(String, i64)> = tx
                    .query_row(
                        "SELECT holder, acquired_ms FROM operator_locks WHERE operator_id = ?1 AND subsystem = ?2",
                        params![operator_id.to_string(), subsystem.as_str()],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(StoreError::from)?;
                let lock = match current {
                    Some((other, _)) if other != holder => return Err(LockError::HeldBy(other)),
                    Some((same, acquired_ms)) => Lock { subsystem, holder: same, acquired_ms },
                    None => {
                        tx.execute(
                            "INSERT INTO operator_locks (operator_id, subsystem, holder, acquired_ms) VALUES (?1, ?2, ?3, ?4)",
                            params![operator_id.to_string(), subsystem.as_str(), holder, now],
                        )
                        .map_err(StoreError::from)?;
                        Lock { subsystem, holder, acquired_ms: now }
                    }
                };
                tx.commit().map_err(StoreError::from)?;
                Ok(lock)
            })
            .await?;
        self.wrote();
        Ok(lock)
    }

    async fn unlock(
        &self,
        operator_id: Uuid,
        subsystem: Subsystem,
        holder: Option<&str>,
    ) -> Result<(), LockError> {
        let holder = holder.map(str::to_owned);
        self.run_with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(StoreError::from)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT holder FROM operator_locks WHERE operator_id = ?1 AND subsystem = ?2",
                    params![operator_id.to_string(), subsystem.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(StoreError::from)?;
            match (current, holder) {
                (None, _) => return Err(LockError::NotLocked),
                (Some(other), Some(me)) if other != me => return Err(LockError::HeldBy(other)),
                _ => {}
            }
            tx.execute(
                "DELETE FROM operator_locks WHERE operator_id = ?1 AND subsystem = ?2",
                params![operator_id.to_string(), subsystem.as_str()],
            )
            .map_err(StoreError::from)?;
            tx.commit().map_err(StoreError::from)?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn locks_of(&self, operator_id: Uuid) -> StoreResult<Vec<Lock>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT subsystem, holder, acquired_ms FROM operator_locks WHERE operator_id = ?1 ORDER BY subsystem",
            )?;
            let rows = stmt
                .query_map([operator_id.to_string()], |r| {
                    Ok(Lock { subsystem: subsystem_parse(&r.get::<_, String>(0)?)?, holder: r.get(1)?, acquired_ms: r.get(2)? })
                })?
                .collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn ingest_samples(
        &self,
        operator_id: Uuid,
        samples: Vec<StoredSample>,
        now: UnixMillis,
        silent_after_ms: i64,
        max_session_samples: u64,
    ) -> Result<u64, IngestError> {
        let last = self
            .run_with(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate).map_err(StoreError::from)?;
                let op = load_operator(&tx, operator_id).map_err(StoreError::from)?.ok_or(IngestError::NotFound)?;
                let mut last = op.last_sequence;
                // The device's newest capture is its last sample's: capture
                // times grow with the sequence.
                let mut newest = op.fix;
                for (index, stored) in samples.iter().enumerate() {
                    let s = &stored.sample;
                    if let Some(prev) = last.filter(|&prev| s.sequence <= prev) {
                        return Err(IngestError::Replayed { index, sequence: s.sequence, last: prev });
                    }
                    let captured = to_i64(s.captured_at_ms);
                    if let Some(prev) = newest.map(|f| f.captured_ms).filter(|&prev| captured <= prev) {
                        return Err(IngestError::CapturedNotIncreasing { index, captured_ms: captured, last_ms: prev });
                    }
                    last = Some(s.sequence);
                    newest = Some(DeviceFix { lat_e7: s.lat_e7, lng_e7: s.lng_e7, accuracy_cm: s.accuracy_cm, captured_ms: captured });
                }
                insert_samples(&tx, operator_id, &samples).map_err(StoreError::from)?;
                // Within each session's cap, counted as stored (after the
                // replay checks above, so a replay is refused as one).
                let mut per_session: Vec<(String, i64)> = Vec::new();
                for stored in &samples {
                    if let Some(id) = stored.sample.session().map(|u| u.to_string()) {
                        match per_session.iter_mut().find(|(s, _)| *s == id) {
                            Some((_, n)) => *n += 1,
                            None => per_session.push((id, 1)),
                        }
                    }
                }
                let cap = to_i64(max_session_samples);
                for (session_id, adding) in per_session {
                    let within = tx
                        .prepare_cached(
                            "UPDATE sessions SET samples_stored = samples_stored + ?2 WHERE id = ?1 AND samples_stored + ?2 <= ?3",
                        )
                        .and_then(|mut update| update.execute(params![session_id, adding, cap]))
                        .map_err(StoreError::from)?;
                    if within == 0 {
                        let held: Option<i64> = tx
                            .query_row("SELECT samples_stored FROM sessions WHERE id = ?1", [&session_id], |r| r.get(0))
                            .optional()
                            .map_err(StoreError::from)?;
                        // A sample naming no session of ours has no cap to keep.
                        if let Some(held) = held {
                            return Err(IngestError::SessionFull {
                                held: u64::try_from(held).unwrap_or(0),
                                cap: max_session_samples,
                            });
                        }
                    }
                }
                note_contact(&tx, &operator_id.to_string(), op.last_seen_ms, now, silent_after_ms)
                    .map_err(StoreError::from)?;
                tx.prepare_cached(
                    "UPDATE operators SET last_sequence = ?2, last_seen_ms = MAX(COALESCE(last_seen_ms, 0), ?3),
                        fix_lat_e7 = ?4, fix_lng_e7 = ?5, fix_acc_cm = ?6, fix_ms = ?7 WHERE id = ?1",
                )
                .and_then(|mut update| update.execute(params![
                        operator_id.to_string(),
                        last.map(to_i64),
                        now,
                        newest.map(|f| i64::from(f.lat_e7)),
                        newest.map(|f| i64::from(f.lng_e7)),
                        newest.map(|f| i64::from(f.accuracy_cm)),
                        newest.map(|f| f.captured_ms),
                    ]))
                .map_err(StoreError::from)?;
                tx.commit().map_err(StoreError::from)?;
                Ok(last.unwrap_or(0))
            })
            .await?;
        self.wrote();
        Ok(last)
    }

    async fn record_location(
        &self,
        workspace_id: Uuid,
        sequence: u64,
        point: Point,
        accuracy_m: f64,
        session_id: Option<Uuid>,
        now: UnixMillis,
    ) -> StoreResult<bool> {
        let stored = self
            .run(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let n = tx.execute(
                    "UPDATE workspaces SET loc_lat = ?2, loc_lng = ?3, loc_accuracy_m = ?4, loc_sequence = ?5, loc_ms = ?6
                     WHERE id = ?1 AND (loc_sequence IS NULL OR loc_sequence < ?5)",
                    params![workspace_id.to_string(), point.lat, point.lng, accuracy_m, to_i64(sequence), now],
                )?;
                if n == 1 {
                    tx.execute(
                        "INSERT OR IGNORE INTO workspace_locations
                            (workspace_id, sequence, lat, lng, accuracy_m, session_id, received_ms)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                        params![
                            workspace_id.to_string(),
                            to_i64(sequence),
                            point.lat,
                            point.lng,
                            accuracy_m,
                            session_id.map(|s| s.to_string()),
                            now
                        ],
                    )?;
                }
                tx.commit()?;
                Ok(n == 1)
            })
            .await?;
        self.wrote();
        Ok(stored)
    }

    async fn workspace_locations(
        &self,
        workspace_id: Uuid,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> StoreResult<Vec<LocationFix>> {
        self.read(move |c| {
            Ok(all(
                c,
                "SELECT sequence, lat, lng, accuracy_m, received_ms FROM workspace_locations
                 WHERE workspace_id = ?1 AND received_ms BETWEEN ?2 AND ?3 ORDER BY received_ms, sequence",
                params![workspace_id.to_string(), from_ms, to_ms],
                |r| {
                    Ok(LocationFix {
                        sequence: u64_col(r, 0)?,
                        point: Point::new(r.get(1)?, r.get(2)?),
                        accuracy_m: r.get(3)?,
                        received_ms: r.get(4)?,
                    })
                },
            )?)
        })
        .await
    }

    async fn session_stored_samples(&self, session_id: Uuid) -> StoreResult<Vec<StoredSample>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SAMPLE_COLUMNS} FROM telemetry WHERE session_id = ?1 ORDER BY captured_ms, sequence"
            ))?;
            let rows = stmt
                .query_map([&session_id.as_bytes()[..]], |row| {
                    let signature: Vec<u8> = row.get(8)?;
                    Ok(StoredSample {
                        sample: sample_row(row)?,
                        signature: signature.try_into().map_err(|_| conversion(std::fmt::Error))?,
                        received_ms: row.get(9)?,
                    })
                })?
                .collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn session_samples(&self, session_id: Uuid) -> StoreResult<Vec<Sample>> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {SAMPLE_COLUMNS} FROM telemetry WHERE session_id = ?1 ORDER BY captured_ms, sequence"
            ))?;
            let rows = stmt.query_map([&session_id.as_bytes()[..]], sample_row)?.collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn insert_webhook(&self, w: Webhook) -> StoreResult<()> {
        self.run(move |c| {
            c.execute(
                &format!(
                    "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                ),
                params![
                    w.id.to_string(),
                    w.workspace_id.to_string(),
                    w.url,
                    list_text(&w.events),
                    w.secret,
                    w.created_ms,
                    w.failed_in_a_row,
                    w.disabled_ms,
                ],
            )?;
            Ok(())
        })
        .await?;
        self.wrote();
        Ok(())
    }

    async fn webhooks_of(&self, workspace_id: Uuid) -> StoreResult<Vec<Webhook>> {
        self.read(move |c| {
            let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = ?1 ORDER BY created_ms, id");
            Ok(all(c, &sql, [workspace_id.to_string()], webhook_row)?)
        })
        .await
    }

    async fn webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1 AND workspace_id = ?2"
            );
            Ok(one(
                c,
                &sql,
                [id.to_string(), workspace_id.to_string()],
                webhook_row,
            )?)
        })
        .await
    }

    async fn delete_webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let deleted = self
            .run(move |c| {
                let n = c.execute(
                    "DELETE FROM webhooks WHERE id = ?1 AND workspace_id = ?2",
                    [id.to_string(), workspace_id.to_string()],
                )?;
                Ok(n > 0)
            })
            .await?;
        self.wrote();
        Ok(deleted)
    }

    async fn webhook_deliveries(&self, webhook_id: Uuid, limit: u32) -> StoreResult<Vec<Delivery>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
                 WHERE d.webhook_id = ?1 ORDER BY d.seq DESC LIMIT ?2"
            );
            Ok(all(c, &sql, params![webhook_id.to_string(), i64::from(limit)], delivery_row)?)
        })
        .await
    }

    async fn due_deliveries(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<DueDelivery>> {
        self.read(move |c| {
            // Round robin over workspaces: every workspace's first due
            // delivery comes before any workspace's second, so one tenant's
            // backlog cannot fill a pass.
            let sql = format!(
                "SELECT {DELIVERY_COLUMNS}, w.url, w.secret, e.payload, w.workspace_id
                 FROM webhook_deliveries d
                 JOIN webhook_events e ON e.id = d.event_id
                 JOIN webhooks w ON w.id = d.webhook_id
                 WHERE d.seq IN (SELECT MIN(seq) FROM webhook_deliveries WHERE state = 'PENDING' GROUP BY webhook_id)
                   AND d.next_attempt_ms <= ?1 AND w.disabled_ms IS NULL
                 ORDER BY ROW_NUMBER() OVER (PARTITION BY w.workspace_id ORDER BY d.next_attempt_ms, d.seq),
                    d.next_attempt_ms, d.seq
                 LIMIT ?2"
            );
            let due = |row: &Row<'_>| {
                Ok(DueDelivery {
                    delivery: delivery_row(row)?,
                    url: row.get(13)?,
                    secret: row.get(14)?,
                    payload: row.get(15)?,
                    workspace_id: uuid_col(row, 16)?,
                })
            };
            Ok(all(c, &sql, params![now, i64::from(limit)], due)?)
        })
        .await
    }

    async fn save_delivery(&self, d: Delivery, disable_after: u32) -> StoreResult<bool> {
        let saved = self
            .run(move |c| {
                let tx = c.transaction()?;
                let n = tx.execute(
                    "UPDATE webhook_deliveries SET state = ?2, attempts = ?3, last_status = ?4, last_error = ?5,
                        next_attempt_ms = ?6, delivered_ms = ?7, updated_ms = ?8
                     WHERE seq = ?1 AND state = 'PENDING'",
                    params![
                        d.seq,
                        enum_text(&d.state),
                        d.attempts,
                        d.last_status,
                        d.last_error,
                        d.next_attempt_ms,
                        d.delivered_ms,
                        d.updated_ms
                    ],
                )?;
                if n > 0 {
                    match d.state {
                        DeliveryState::Delivered => {
                            tx.execute(
                                "UPDATE webhooks SET failed_in_a_row = 0 WHERE id = ?1",
                                [d.webhook_id.to_string()],
                            )?;
                        }
                        DeliveryState::Failed => {
                            tx.execute(
                                "UPDATE webhooks SET failed_in_a_row = failed_in_a_row + 1,
                                    disabled_ms = CASE WHEN disabled_ms IS NULL AND failed_in_a_row + 1 >= ?2
                                                  THEN ?3 ELSE disabled_ms END
                                 WHERE id = ?1",
                                params![d.webhook_id.to_string(), disable_after, d.updated_ms],
                            )?;
                        }
                        DeliveryState::Pending => {}
                    }
                }
                tx.commit()?;
                Ok(n > 0)
            })
            .await?;
        self.wrote();
        Ok(saved)
    }

    async fn enable_webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let enabled = self
            .run(move |c| {
                Ok(c.execute(
                    "UPDATE webhooks SET disabled_ms = NULL, failed_in_a_row = 0
                     WHERE id = ?1 AND workspace_id = ?2",
                    params![id.to_string(), workspace_id.to_string()],
                )? > 0)
            })
            .await?;
        self.wrote();
        Ok(enabled)
    }

    async fn claim_delivery(
        &self,
        seq: i64,
        due_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> StoreResult<bool> {
        let claimed = self
            .run(move |c| {
                Ok(c.execute(
                    "UPDATE webhook_deliveries SET next_attempt_ms = ?3
                     WHERE seq = ?1 AND state = 'PENDING' AND next_attempt_ms = ?2",
                    params![seq, due_ms, until_ms],
                )? > 0)
            })
            .await?;
        self.wrote();
        Ok(claimed)
    }

    async fn attempted_workspaces(&self, session_id: Uuid) -> StoreResult<Vec<Uuid>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached("SELECT workspace_id FROM dispatch_attempts WHERE session_id = ?1")?
                .query_map([session_id.to_string()], |r| uuid_col(r, 0))?
                .collect::<Sql<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{Connection, MIGRATIONS, SAMPLE_COLUMNS, SqliteStore, Uuid, migrate, params};

    crate::store_suite!((SqliteStore::in_memory().expect("in-memory store"), ()));

    /// A store on a file in a fresh directory, with its read pool.
    fn file_store() -> (SqliteStore, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store =
            SqliteStore::open_with_readers(&dir.path().join("lx.db"), 2).expect("file store");
        (store, dir)
    }

    /// The whole suite again on a file, where reads go through the pool.
    mod on_a_file {
        use super::file_store;

        crate::store_suite!(file_store());
    }

    #[tokio::test]
    async fn a_read_does_not_wait_for_the_writer() {
        use crate::store::Store;

        let (store, _dir) = file_store();
        let ws = crate::store::suite::build_workspace("reader", &[], None);
        store.insert_workspace(ws.clone()).await.unwrap();
        // A write in progress: the writer is taken and not given back.
        let writing = store.writer.clone().lock_owned().await;
        let read = tokio::time::timeout(std::time::Duration::from_secs(5), store.workspace(ws.id))
            .await
            .expect("the read finished while the writer was busy")
            .unwrap();
        assert_eq!(read.map(|w| w.id), Some(ws.id));
        // And a write does wait for it.
        let ws2 = crate::store::suite::build_workspace("writer", &[], None);
        let write = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            store.insert_workspace(ws2),
        )
        .await;
        assert!(
            write.is_err(),
            "a write went through while the writer was held"
        );
        drop(writing);
    }

    #[tokio::test]
    async fn a_reader_cannot_write() {
        let (store, _dir) = file_store();
        let err = store
            .read(|c| Ok(c.execute("DELETE FROM workspaces", [])?))
            .await
            .expect_err("a write through a read connection");
        assert!(err.to_string().contains("readonly"), "{err}");
    }

    /// A connection at the schema before the telemetry table's moves
    /// (0012, 0013), holding `rows` of telemetry as that schema stored them.
    fn telemetry_before_its_moves(rows: &[(&str, Option<&str>, i64)]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        let before = MIGRATIONS.len() - 2;
        for script in &MIGRATIONS[..before] {
            conn.execute_batch(script).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64)
            .unwrap();
        for (operator, session, sequence) in rows {
            conn.execute(
                "INSERT INTO telemetry (operator_id, sequence, session_id, captured_ms, lat_e7, lng_e7, accuracy_cm, source, signature, received_ms)
                 VALUES (?1, ?2, ?3, 1000 + ?2, 47110000, -740720000, 350, 1, x'0102', 1001)",
                params![operator, sequence, session],
            )
            .unwrap();
        }
        conn
    }

    #[test]
    fn stored_telemetry_survives_the_moves_to_a_table_keyed_by_session() {
        let (operator, session) = (Uuid::new_v4(), Uuid::new_v4());
        let mut conn = telemetry_before_its_moves(&[
            (&operator.to_string(), Some(&session.to_string()), 7),
            (&operator.to_string(), None, 8),
        ]);
        migrate(&mut conn).unwrap();
        /// session, captured, sequence, operator, latitude, signature
        type MovedRow = (Vec<u8>, i64, i64, Vec<u8>, i64, Vec<u8>);
        let rows: Vec<MovedRow> = conn
            .prepare("SELECT session_id, captured_ms, sequence, operator_id, lat_e7, signature FROM telemetry ORDER BY sequence")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let op = operator.as_bytes().to_vec();
        assert_eq!(
            rows,
            vec![
                (
                    session.as_bytes().to_vec(),
                    1007,
                    7,
                    op.clone(),
                    47_110_000,
                    vec![1, 2]
                ),
                (vec![0; 16], 1008, 8, op, 47_110_000, vec![1, 2]),
            ]
        );
        // One b-tree: no rowid, and no index beside the table's key.
        assert!(conn.prepare("SELECT rowid FROM telemetry").is_err());
        let indexes: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'telemetry' AND sql IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0);
        // A session's samples are read in key order (no sort), and the
        // heartbeat samples are one range of the key.
        for (query, wants) in [
            (
                format!(
                    "SELECT {SAMPLE_COLUMNS} FROM telemetry WHERE session_id = ?1 ORDER BY captured_ms, sequence"
                ),
                "USING PRIMARY KEY (session_id=?)",
            ),
            (
                super::schema::HEARTBEAT_SAMPLES_NIL.replace("$1", "?1"),
                "USING PRIMARY KEY (session_id=?)",
            ),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
                .unwrap()
                .query_map([session.as_bytes().to_vec()], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.contains(wants) && !plan.contains("TEMP B-TREE"),
                "{query}: {plan}"
            );
        }
    }

    #[test]
    fn a_telemetry_id_that_is_not_a_uuid_stops_the_move_and_loses_nothing() {
        for (bad, refusal) in [("not-a-uuid", "NOT NULL"), ("abcd", "CHECK")] {
            let mut conn = telemetry_before_its_moves(&[(bad, None, 7)]);
            let err = migrate(&mut conn).expect_err("a malformed id moved");
            assert!(err.to_string().contains(refusal), "{bad}: {err}");
            let version: i64 = conn
                .pragma_query_value(None, "user_version", |r| r.get(0))
                .unwrap();
            assert_eq!(
                version,
                MIGRATIONS.len() as i64 - 1,
                "0012 applied, 0013 not"
            );
            let kept: String = conn
                .query_row("SELECT operator_id FROM telemetry", [], |r| r.get(0))
                .unwrap();
            assert_eq!(kept, bad);
        }
    }

    #[test]
    fn a_file_store_reopens_with_its_schema() {
        let dir = std::env::temp_dir().join(format!("lx-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("lx.db");
        drop(SqliteStore::open(&path).unwrap());
        drop(SqliteStore::open(&path).unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
