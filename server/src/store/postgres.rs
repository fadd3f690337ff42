//! PostgreSQL, the store several replicas share (issue 16): a pool of
//! connections (tokio-postgres under deadpool) and the schema's embedded
//! migrations, applied once under an advisory lock however many replicas
//! start at the same moment. The schema is the SQLite store's, table for
//! table and column for column (a test holds them together), so the two
//! stores run the same `store::suite`.
//!
//! Where SQLite serializes every write, PostgreSQL runs them side by side,
//! so each write takes the row locks it depends on, always in one order —
//! sessions, then workspaces, then devices — so that two writes never wait
//! for each other: a transition locks its session (`FOR UPDATE`) before it
//! claims or frees a supplier; a telemetry batch locks the sessions it
//! counts into before its device. What has no row to lock (a wallet's
//! credit, a consumer's settlement sequence) is taken under an advisory
//! transaction lock.

mod changes;
#[cfg(any(test, feature = "test-support"))]
pub mod cluster;
mod leases;
mod rows;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use deadpool_postgres::{GenericClient, Manager, ManagerConfig, Pool, RecyclingMethod};
use lx_protocol::api::{Availability, DeliveryState, Subsystem, WebhookEventType};
use lx_protocol::geo::Point;
use lx_protocol::telemetry::Sample;
use lx_protocol::time::UnixMillis;
use lx_protocol::wallet::Address;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use super::schema::{
    API_KEY_COLUMNS, DELIVERY_COLUMNS, MQTT_ACCOUNT_COLUMNS, OPEN_STATES, OPERATOR_COLUMNS,
    QUOTE_COLUMNS, SAMPLE_COLUMNS, SESSION_COLUMNS, SETTLEMENT_COLUMNS, WEBHOOK_COLUMNS,
    WORKSPACE_COLUMNS, WORKSPACE_SELECT, enum_text, list_text, wallet_text,
};
use super::*;

/// The migrations, in order: (version, SQL).
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("postgres/0001_schema.sql")),
    (2, include_str!("postgres/0002_replicas.sql")),
    (3, include_str!("postgres/0003_device_logs.sql")),
];

/// Tables only a store shared by replicas has.
#[cfg(test)]
const REPLICA_TABLES: &[&str] = &["replicas"];

/// The advisory lock migrations run under ("lxmigr" in ASCII).
const MIGRATION_LOCK: i64 = 0x6c78_6d69_6772;

/// The advisory lock settlements are queued under ("lxsettle"): each
/// consumer's sequence continues from the last one stored.
const SETTLEMENT_QUEUE_LOCK: i64 = 0x6c78_7365_7474_6c65;

/// The class of advisory locks of one wallet's credit ("lxcr", then the
/// hash of the wallet).
const CREDIT_LOCK_CLASS: i32 = 0x6c78_6372;

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

fn sql_error(e: tokio_postgres::Error) -> StoreError {
    match e.as_db_error() {
        Some(db) => backend(format!("{}: {}", db.code().code(), db.message())),
        None => backend(e),
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Every row `sql` selects.
async fn query(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(sql_error)?;
    c.query(&statement, params).await.map_err(sql_error)
}

/// The row `sql` selects, if any.
async fn query_opt(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
) -> StoreResult<Option<Row>> {
    let statement = c.prepare_cached(sql).await.map_err(sql_error)?;
    c.query_opt(&statement, params).await.map_err(sql_error)
}

/// How many rows `sql` wrote.
async fn execute(c: &impl GenericClient, sql: &str, params: Params<'_>) -> StoreResult<u64> {
    let statement = c.prepare_cached(sql).await.map_err(sql_error)?;
    c.execute(&statement, params).await.map_err(sql_error)
}

async fn all<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    read: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    query(c, sql, params).await?.iter().map(read).collect()
}

async fn one<T>(
    c: &impl GenericClient,
    sql: &str,
    params: Params<'_>,
    read: fn(&Row) -> StoreResult<T>,
) -> StoreResult<Option<T>> {
    query_opt(c, sql, params)
        .await?
        .as_ref()
        .map(read)
        .transpose()
}

pub struct PgStore {
    pool: Pool,
    /// Names this replica in the changes it announces.
    replica: Uuid,
    workspace_changes: tokio::sync::broadcast::Sender<WorkspaceChange>,
    leases: leases::Leases,
    /// The task following the other replicas' changes; stopped with the store.
    follower: tokio::task::AbortHandle,
    /// Orders this replica's writes for its clients; every replica reads
    /// the one primary, so a read always sees every committed write.
    write_seq: AtomicU64,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.follower.abort();
    }
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
        let replica = Uuid::new_v4();
        let workspace_changes = tokio::sync::broadcast::channel(1024).0;
        let follower = tokio::spawn(changes::follow(
            config.clone(),
            replica,
            workspace_changes.clone(),
        ))
        .abort_handle();
        let leases = leases::Leases::new(config.clone());
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
        // Tokens keep growing across restarts: start above anything issued before.
        let start = u64::try_from(crate::clock::wall_now_ms()).unwrap_or(0) * 1000;
        let store = Self {
            pool,
            replica,
            workspace_changes,
            leases,
            follower,
            write_seq: AtomicU64::new(start),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> StoreResult<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| backend(format!("no store connection: {e}")))
    }

    /// Applies the migrations not yet applied, in one transaction under the
    /// migration lock: a replica starting beside another waits for it and
    /// then finds them applied.
    async fn migrate(&self) -> StoreResult<()> {
        // A database starting beside the replicas takes a moment to accept
        // connections: wait for it rather than fail the start.
        let patience = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut said = false;
        let mut client = loop {
            match self.client().await {
                Ok(client) => break client,
                Err(err) if std::time::Instant::now() < patience => {
                    if !std::mem::replace(&mut said, true) {
                        tracing::info!(%err, "waiting up to 30 s for the database");
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(err) => return Err(err),
            }
        };
        let tx = client.transaction().await.map_err(sql_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(sql_error)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )
        .await
        .map_err(sql_error)?;
        let applied: Vec<i32> = tx
            .query("SELECT version FROM schema_migrations", &[])
            .await
            .map_err(sql_error)?
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
            .map_err(sql_error)?;
        }
        tx.commit().await.map_err(sql_error)
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
            .map_err(sql_error)?
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
            .map_err(sql_error)?;
        let mut tables: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            tables.entry(row.get(0)).or_default().insert(row.get(1));
        }
        Ok(tables)
    }
}

// ------------------------------------------------------------ reads inside a write

async fn load_workspace(c: &impl GenericClient, id: Uuid) -> StoreResult<Option<Workspace>> {
    let sql = format!("SELECT {WORKSPACE_SELECT} FROM workspaces WHERE id = $1");
    one(c, &sql, &[&id.to_string()], rows::workspace).await
}

async fn load_operator(
    c: &impl GenericClient,
    id: Uuid,
    lock: bool,
) -> StoreResult<Option<Operator>> {
    let sql = format!(
        "SELECT {OPERATOR_COLUMNS} FROM operators WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    one(c, &sql, &[&id.to_string()], rows::operator).await
}

/// A session's windows as three arrays in order (reasons, opened, closed),
/// aggregated beside its row: one round trip, one scan of its windows.
const WINDOWS_JOIN: &str = "LEFT JOIN LATERAL (
        SELECT array_agg(w.reason ORDER BY w.opened_ms, w.reason) AS reasons,
               array_agg(w.opened_ms ORDER BY w.opened_ms, w.reason) AS opened,
               array_agg(w.closed_ms ORDER BY w.opened_ms, w.reason) AS closed
        FROM session_windows w WHERE w.session_id = sessions.id) windows ON true";

async fn sessions_where(
    c: &impl GenericClient,
    condition: &str,
    params: Params<'_>,
) -> StoreResult<Vec<Session>> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, COALESCE(windows.reasons, '{{}}'), COALESCE(windows.opened, '{{}}'),
                COALESCE(windows.closed, '{{}}')
         FROM sessions {WINDOWS_JOIN} WHERE {condition}"
    );
    query(c, &sql, params)
        .await?
        .iter()
        .map(rows::session_with_windows)
        .collect()
}

async fn load_session(c: &impl GenericClient, id: Uuid) -> StoreResult<Option<Session>> {
    Ok(sessions_where(c, "id = $1", &[&id.to_string()])
        .await?
        .into_iter()
        .next())
}

/// What the consumer owes or may owe, read inside the caller's transaction.
async fn obligations_in(
    c: &impl GenericClient,
    wallet: &Address,
) -> StoreResult<crate::credit::Obligations> {
    let wallet = wallet_text(wallet);
    // As in the SQLite store: an ended session's charge is promised until
    // it is settled, and so is a debt; a FAILED settlement is ours to fix.
    let sums = query_opt(
        c,
        &format!(
            "SELECT (SELECT COALESCE(SUM(rate * max_duration_s), 0)::BIGINT FROM sessions
                     WHERE consumer_wallet = $1 AND state IN {OPEN_STATES}),
                    (SELECT COALESCE(SUM(s.charged), 0)::BIGINT FROM sessions s
                     WHERE s.consumer_wallet = $1 AND s.state IN ('ENDED', 'EXPIRED') AND s.charged > 0
                       AND NOT EXISTS (SELECT 1 FROM settlements x WHERE x.session_id = s.id
                                       AND x.state IN ('CONFIRMED', 'FAILED')))"
        ),
        &[&wallet],
    )
    .await?
    .ok_or_else(|| backend("no obligations row"))?;
    let (held, unsettled): (i64, i64) = (rows::get(&sums, 0)?, rows::get(&sums, 1)?);
    let mut queued = Vec::new();
    let mut debts = Vec::new();
    for r in query(
        c,
        "SELECT session_id, sequence, to_amount + fee_amount, state, last_error FROM settlements
         WHERE consumer = $1 AND state IN ('PENDING', 'SUBMITTED', 'UNPAID') ORDER BY sequence",
        &[&wallet],
    )
    .await?
    {
        let amount: u64 = rows::int(&r, 2)?;
        queued.push((rows::int(&r, 1)?, amount));
        if rows::get::<&str>(&r, 3)? == "UNPAID" {
            debts.push(crate::credit::Debt {
                session_id: rows::uuid(&r, 0)?,
                amount_micro_usdc: amount,
                last_error: rows::get(&r, 4)?,
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

/// A contact with the device at `now`: closes its open outage, or records
/// the silence since its last contact as one when it lasted longer than
/// `silent_after_ms`. The caller holds the device's row.
async fn note_contact(
    c: &impl GenericClient,
    id: &str,
    last_seen_ms: Option<UnixMillis>,
    now: UnixMillis,
    silent_after_ms: i64,
) -> StoreResult<()> {
    let closed = execute(
        c,
        "UPDATE operator_outages SET closed_ms = $2
         WHERE operator_id = $1 AND closed_ms IS NULL AND opened_ms <= $2",
        &[&id, &now],
    )
    .await?;
    if closed == 0
        && let Some(seen) = last_seen_ms.filter(|&seen| now - seen > silent_after_ms)
    {
        execute(
            c,
            "INSERT INTO operator_outages (operator_id, opened_ms, closed_ms) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&id, &seen, &now],
        )
        .await?;
    }
    Ok(())
}

async fn put_mqtt_account(c: &impl GenericClient, a: &MqttAccount) -> StoreResult<()> {
    execute(
        c,
        &format!(
            "INSERT INTO mqtt_accounts ({MQTT_ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash,
                 created_ms = excluded.created_ms"
        ),
        &[
            &a.username,
            &a.password_hash,
            &a.workspace_id.to_string(),
            &a.operator_id.map(|id| id.to_string()),
            &a.created_ms,
        ],
    )
    .await?;
    Ok(())
}

/// Queues the event for every webhook of `parties` subscribed to it, once:
/// the event row is unique per (session, type), its deliveries per
/// (webhook, event). Nothing is written when no webhook wants it.
async fn enqueue_event(
    c: &impl GenericClient,
    event: WebhookEventType,
    session_id: Uuid,
    at: UnixMillis,
    parties: [Option<Uuid>; 2],
    payload: impl FnOnce() -> Result<String, serde_json::Error>,
) -> StoreResult<()> {
    let [first, second] = parties.map(|p| p.map(|u| u.to_string()));
    let hooks: Vec<String> = query(
        c,
        "SELECT id FROM webhooks WHERE workspace_id IN ($1, $2) AND disabled_ms IS NULL
           AND position(',' || $3::text || ',' IN ',' || events || ',') > 0 ORDER BY created_ms, id",
        &[&first, &second, &event.as_str()],
    )
    .await?
    .iter()
    .map(|r| rows::get(r, 0))
    .collect::<StoreResult<_>>()?;
    if hooks.is_empty() {
        return Ok(());
    }
    let payload = payload().map_err(backend)?;
    let session = session_id.to_string();
    execute(
        c,
        "INSERT INTO webhook_events (id, type, session_id, payload, created_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (session_id, type) DO NOTHING",
        &[&Uuid::new_v4().to_string(), &event.as_str(), &session, &payload, &at],
    )
    .await?;
    execute(
        c,
        "INSERT INTO webhook_deliveries (webhook_id, event_id, state, next_attempt_ms, updated_ms)
         SELECT hook, e.id, 'PENDING', $3, $3
         FROM unnest($4::text[]) WITH ORDINALITY AS h (hook, n)
         JOIN webhook_events e ON e.session_id = $1 AND e.type = $2
         ORDER BY n
         ON CONFLICT (webhook_id, event_id) DO NOTHING",
        &[&session, &event.as_str(), &at, &hooks],
    )
    .await?;
    Ok(())
}

async fn apply_in(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &Transition,
    replica: Uuid,
) -> Result<Session, ApplyError> {
    let id = t.session_id.to_string();
    let (set_offer_ws, set_offer_exp) = match t.set_offer {
        Some(o) => (Some(o.workspace_id.to_string()), Some(o.expires_ms)),
        None => (None, None),
    };
    let meter = t.meter;
    // One statement locks the session's row (held until this transaction
    // ends), reads what it was and changes it if it still is what the
    // transition expects.
    let updated = query_opt(
        tx,
        "WITH before AS (SELECT state AS was FROM sessions WHERE id = $1 FOR UPDATE)
         UPDATE sessions SET
            state = COALESCE($2, state),
            operator_ws = CASE WHEN $21 THEN NULL ELSE COALESCE($3, operator_ws) END,
            offer_ws = CASE WHEN $4 THEN NULL WHEN $5::text IS NOT NULL THEN $5 ELSE offer_ws END,
            offer_expires_ms = CASE WHEN $4 THEN NULL WHEN $5::text IS NOT NULL THEN $6 ELSE offer_expires_ms END,
            assigned_ms = CASE WHEN $21 THEN NULL ELSE COALESCE($7, assigned_ms) END,
            started_ms = COALESCE($8, started_ms),
            ended_ms = COALESCE($9, ended_ms),
            expiry_reason = COALESCE($10, expiry_reason),
            clean_s = COALESCE($11, clean_s),
            failed_s = COALESCE($12, failed_s),
            charged = COALESCE($13, charged),
            fee = COALESCE($14, fee),
            earned = COALESCE($15, earned),
            fee_bps = COALESCE($16, fee_bps),
            operator_id = CASE WHEN $21 THEN NULL ELSE COALESCE($19, operator_id) END,
            meter_final = meter_final OR $20,
            trust_tier = CASE WHEN $21 THEN NULL ELSE COALESCE($22, trust_tier) END,
            media_ref = CASE WHEN $21 THEN NULL ELSE media_ref END,
            whip_url = CASE WHEN $21 THEN NULL ELSE whip_url END,
            whep_url = CASE WHEN $21 THEN NULL ELSE whep_url END
         FROM before
         WHERE id = $1
           AND ($17::text IS NULL OR sessions.state = $17)
           AND ($18::text IS NULL OR offer_ws = $18)
         RETURNING before.was",
        &[
            &id,
            &t.to.map(|s| s.as_str()),
            &t.operator_workspace_id.map(|u| u.to_string()),
            &t.clear_offer,
            &set_offer_ws,
            &set_offer_exp,
            &t.assigned_ms,
            &t.started_ms,
            &t.ended_ms,
            &t.expiry_reason.map(|r| enum_text(&r)),
            &meter.map(|m| to_i64(m.clean_seconds)),
            &meter.map(|m| to_i64(m.failed_seconds)),
            &meter.map(|m| to_i64(m.charged_micro_usdc)),
            &meter.map(|m| to_i64(m.fee_micro_usdc)),
            &meter.map(|m| to_i64(m.operator_earned_micro_usdc)),
            &meter.map(|m| i64::from(m.fee_bps)),
            &t.expected.map(|s| s.as_str()),
            &t.expected_offer.map(|u| u.to_string()),
            &t.operator_id.map(|u| u.to_string()),
            &t.meter_final,
            &t.unassign,
            &t.trust_tier.map(i64::from),
        ],
    )
    .await?;
    let before: SessionState = match updated {
        Some(row) => rows::enumeration(&row, 0)?,
        None => {
            // Not changed: the session is not what was expected, or is gone.
            let now = query_opt(tx, "SELECT state FROM sessions WHERE id = $1", &[&id]).await?;
            return match now {
                Some(row) => Err(ApplyError::State(rows::enumeration(&row, 0)?)),
                None => Err(ApplyError::SessionNotFound),
            };
        }
    };
    // The supplier's claim, the attempt and the other replicas' notice are
    // independent of each other: sent together, they cost one round trip.
    let claim_workspace = async {
        match t.claim {
            Some(ws) => {
                execute(
                    tx,
                    "UPDATE workspaces SET availability = 'BUSY' WHERE id = $1 AND availability = 'ONLINE'",
                    &[&ws.to_string()],
                )
                .await
            }
            None => Ok(1),
        }
    };
    let record_attempt = async {
        match t.record_attempt {
            Some(ws) => {
                execute(
                    tx,
                    "INSERT INTO dispatch_attempts (session_id, workspace_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    &[&id, &ws.to_string()],
                )
                .await
            }
            None => Ok(0),
        }
    };
    // The other replicas' dispatch indexes follow the suppliers taken,
    // freed and cooled down here.
    let announce = async {
        let touched = [
            t.claim,
            t.release.map(|(ws, _)| ws),
            t.cool_down.map(|c| c.workspace),
        ];
        for ws in touched.into_iter().flatten() {
            changes::announce(tx, replica, ws).await?;
        }
        Ok::<_, StoreError>(())
    };
    let (claimed, _, ()) = tokio::try_join!(claim_workspace, record_attempt, announce)?;
    if claimed == 0 {
        return Err(ApplyError::SupplierUnavailable);
    }
    if let Some(windows) = &t.derived_windows {
        execute(
            tx,
            "DELETE FROM session_windows WHERE session_id = $1 AND reason IN ('STALE_TELEMETRY', 'OUTSIDE_GEOFENCE')",
            &[&id],
        )
        .await?;
        let reasons: Vec<String> = windows.iter().map(|w| enum_text(&w.reason)).collect();
        let opened: Vec<i64> = windows.iter().map(|w| w.opened_ms).collect();
        let closed: Vec<Option<i64>> = windows.iter().map(|w| w.closed_ms).collect();
        execute(
            tx,
            "INSERT INTO session_windows (session_id, reason, opened_ms, closed_ms)
             SELECT $1, * FROM unnest($2::text[], $3::bigint[], $4::bigint[])
             ON CONFLICT DO NOTHING",
            &[&id, &reasons, &opened, &closed],
        )
        .await?;
    }
    if let Some((ws, idle_since)) = t.release {
        execute(
            tx,
            "UPDATE workspaces SET availability = 'ONLINE', idle_since_ms = $2 WHERE id = $1 AND availability = 'BUSY'",
            &[&ws.to_string(), &idle_since],
        )
        .await?;
    }
    for &(reason, at) in &t.close_windows {
        execute(
            tx,
            "UPDATE session_windows SET closed_ms = $3 WHERE session_id = $1 AND reason = $2 AND closed_ms IS NULL",
            &[&id, &enum_text(&reason), &at],
        )
        .await?;
    }
    if let Some((reason, at)) = t.open_window {
        execute(
            tx,
            "INSERT INTO session_windows (session_id, reason, opened_ms) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
            &[&id, &enum_text(&reason), &at],
        )
        .await?;
    }
    if let Some(reason) = t.reopen_window {
        execute(
            tx,
            "UPDATE session_windows SET closed_ms = NULL WHERE session_id = $1 AND reason = $2
               AND opened_ms = (SELECT MAX(opened_ms) FROM session_windows WHERE session_id = $1 AND reason = $2)",
            &[&id, &enum_text(&reason)],
        )
        .await?;
    }
    if let Some(cool) = t.cool_down {
        execute(
            tx,
            "UPDATE workspaces SET cooling_down_until_ms = GREATEST(COALESCE(cooling_down_until_ms, 0), $2) WHERE id = $1",
            &[&cool.workspace.to_string(), &cool.until],
        )
        .await?;
        if let Some(op) = cool.operator {
            execute(
                tx,
                "UPDATE operators SET cooling_down_until_ms = GREATEST(COALESCE(cooling_down_until_ms, 0), $2) WHERE id = $1",
                &[&op.to_string(), &cool.until],
            )
            .await?;
        }
    }
    // Devices after workspaces: the lock order of every write here.
    if let Some(op) = t.claim_operator {
        let claimed = execute(
            tx,
            "UPDATE operators SET availability = 'BUSY' WHERE id = $1 AND availability = 'ONLINE'",
            &[&op.to_string()],
        )
        .await?;
        if claimed == 0 {
            return Err(ApplyError::SupplierUnavailable);
        }
    }
    if let Some(op) = t.release_operator {
        execute(
            tx,
            "UPDATE operators SET availability = 'ONLINE' WHERE id = $1 AND availability = 'BUSY'",
            &[&op.to_string()],
        )
        .await?;
    }
    let session = load_session(tx, t.session_id)
        .await?
        .ok_or(ApplyError::SessionNotFound)?;
    if let Some((event, at)) = crate::store::events::session_event(before, &session) {
        let parties = [
            Some(session.consumer_workspace_id),
            session.operator_workspace_id,
        ];
        let payload = || serde_json::to_string(&crate::store::dto::session_dto(&session));
        enqueue_event(tx, event, session.id, at, parties, payload).await?;
    }
    Ok(session)
}

#[async_trait]
impl Store for PgStore {
    fn backend_name(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    async fn replica_alive(&self, origin: &str, now: UnixMillis) -> StoreResult<()> {
        execute(
            &self.client().await?,
            "INSERT INTO replicas (origin, seen_ms) VALUES ($1, $2)
             ON CONFLICT (origin) DO UPDATE SET seen_ms = GREATEST(replicas.seen_ms, excluded.seen_ms)",
            &[&origin, &now],
        )
        .await
        .map(drop)
    }

    async fn replica_seen(&self, origin: &str) -> StoreResult<Option<UnixMillis>> {
        one(
            &self.client().await?,
            "SELECT seen_ms FROM replicas WHERE origin = $1",
            &[&origin],
            |r| rows::get(r, 0),
        )
        .await
    }

    fn workspace_changes(&self) -> Option<tokio::sync::broadcast::Receiver<WorkspaceChange>> {
        Some(self.workspace_changes.subscribe())
    }

    async fn prune(&self, b: PruneBefore) -> StoreResult<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let mut n = 0;
        for (sql, cutoff) in
            super::schema::prune_statements(&b, super::schema::HEARTBEAT_SAMPLES_NULL)
        {
            n += execute(&tx, sql, &[&cutoff]).await?;
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(n)
    }

    fn consistency_token(&self) -> String {
        (self.write_seq.fetch_add(1, Ordering::SeqCst) + 1).to_string()
    }

    async fn ping(&self) -> StoreResult<()> {
        let client = self.client().await?;
        query(&client, "SELECT 1", &[]).await.map(drop)
    }

    async fn insert_workspace(&self, ws: Workspace) -> StoreResult<Workspace> {
        let client = self.client().await?;
        let sql = format!(
            "INSERT INTO workspaces ({WORKSPACE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        let statement = client.prepare_cached(&sql).await.map_err(sql_error)?;
        let inserted = client
            .execute(
                &statement,
                &[
                    &ws.id.to_string(),
                    &ws.slug,
                    &ws.name,
                    &wallet_text(&ws.wallet),
                    &list_text(&ws.roles),
                    &enum_text(&ws.availability),
                    &ws.coverage.map(|c| c.lat),
                    &ws.coverage.map(|c| c.lng),
                    &ws.coverage.map(|c| i64::from(c.radius_m)),
                    &ws.device_kind.map(|k| enum_text(&k)),
                    &ws.auto_accept,
                    &i64::from(ws.offer_timeout_seconds),
                    &ws.idle_since_ms,
                    &ws.created_ms,
                ],
            )
            .await;
        match inserted {
            Ok(_) => Ok(ws),
            Err(e) if is_unique_violation(&e) => {
                Err(StoreError::Conflict(format!("slug '{}' is taken", ws.slug)))
            }
            Err(e) => Err(sql_error(e)),
        }
    }

    async fn workspace(&self, id: Uuid) -> StoreResult<Option<Workspace>> {
        load_workspace(&self.client().await?, id).await
    }

    async fn workspaces_of_wallet(&self, wallet: Address) -> StoreResult<Vec<Workspace>> {
        let sql = format!(
            "SELECT {WORKSPACE_SELECT} FROM workspaces WHERE wallet = $1 ORDER BY created_ms, id"
        );
        all(
            &self.client().await?,
            &sql,
            &[&wallet_text(&wallet)],
            rows::workspace,
        )
        .await
    }

    async fn patch_workspace(
        &self,
        id: Uuid,
        patch: WorkspacePatch,
        now: UnixMillis,
    ) -> Result<Workspace, PatchError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        execute(
            &tx,
            "SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE",
            &[&id.to_string()],
        )
        .await?;
        let mut ws = load_workspace(&tx, id).await?.ok_or(PatchError::NotFound)?;
        patch.apply_to(&mut ws, now)?;
        execute(
            &tx,
            "UPDATE workspaces SET name = $2, availability = $3, coverage_lat = $4, coverage_lng = $5,
                coverage_radius_m = $6, device_kind = $7, auto_accept = $8, offer_timeout_s = $9,
                idle_since_ms = $10 WHERE id = $1",
            &[
                &id.to_string(),
                &ws.name,
                &enum_text(&ws.availability),
                &ws.coverage.map(|c| c.lat),
                &ws.coverage.map(|c| c.lng),
                &ws.coverage.map(|c| i64::from(c.radius_m)),
                &ws.device_kind.map(|k| enum_text(&k)),
                &ws.auto_accept,
                &i64::from(ws.offer_timeout_seconds),
                &ws.idle_since_ms,
            ],
        )
        .await?;
        changes::announce(&tx, self.replica, id).await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(ws)
    }

    async fn online_suppliers(&self) -> StoreResult<Vec<Workspace>> {
        let sql = format!(
            "SELECT {WORKSPACE_SELECT} FROM workspaces WHERE availability = 'ONLINE'
               AND coverage_lat IS NOT NULL AND position('SUPPLIER' IN roles) > 0"
        );
        all(&self.client().await?, &sql, &[], rows::workspace).await
    }

    async fn insert_challenge(&self, ch: Challenge) -> StoreResult<()> {
        let client = self.client().await?;
        // Expired challenges are dead weight: drop them as new ones arrive.
        execute(
            &client,
            "DELETE FROM challenges WHERE expires_ms < $1",
            &[&(ch.expires_ms - 86_400_000)],
        )
        .await?;
        execute(
            &client,
            "INSERT INTO challenges (nonce, wallet, purpose, message, expires_ms) VALUES ($1, $2, $3, $4, $5)",
            &[
                &ch.nonce,
                &wallet_text(&ch.wallet),
                &ch.purpose.as_str(),
                &ch.message,
                &ch.expires_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn take_challenge(
        &self,
        nonce: &str,
        purpose: ChallengePurpose,
    ) -> StoreResult<Option<Challenge>> {
        let client = self.client().await?;
        let Some(row) = query_opt(
            &client,
            "DELETE FROM challenges WHERE nonce = $1 AND purpose = $2 RETURNING wallet, message, expires_ms",
            &[&nonce, &purpose.as_str()],
        )
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(Challenge {
            nonce: nonce.to_owned(),
            wallet: rows::address(&row, 0)?,
            purpose,
            message: rows::get(&row, 1)?,
            expires_ms: rows::get(&row, 2)?,
        }))
    }

    async fn revoke_cookie(
        &self,
        id: Uuid,
        expires_ms: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()> {
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO revoked_cookies (id, expires_ms) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            &[&id.to_string(), &expires_ms],
        )
        .await?;
        // Rows of cookies that expired on their own are of no more use.
        execute(
            &client,
            "DELETE FROM revoked_cookies WHERE expires_ms < $1",
            &[&now],
        )
        .await?;
        Ok(())
    }

    async fn save_device_logs(&self, logs: DeviceLogs) -> StoreResult<()> {
        let lines =
            serde_json::to_string(&logs.lines).map_err(|e| StoreError::Backend(e.to_string()))?;
        let client = self.client().await?;
        execute(
            &client,
            "INSERT INTO device_logs (operator_id, uploaded_ms, truncated, lines) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (operator_id) DO UPDATE SET uploaded_ms = excluded.uploaded_ms, \
             truncated = excluded.truncated, lines = excluded.lines",
            &[&logs.operator_id.to_string(), &logs.uploaded_ms, &logs.truncated, &lines],
        )
        .await?;
        Ok(())
    }

    async fn device_logs(&self, operator_id: Uuid) -> StoreResult<Option<DeviceLogs>> {
        let client = self.client().await?;
        let Some(row) = query_opt(
            &client,
            "SELECT uploaded_ms, truncated, lines FROM device_logs WHERE operator_id = $1",
            &[&operator_id.to_string()],
        )
        .await?
        else {
            return Ok(None);
        };
        let lines: String = row.get(2);
        Ok(Some(DeviceLogs {
            operator_id,
            uploaded_ms: row.get(0),
            truncated: row.get(1),
            lines: serde_json::from_str(&lines).map_err(|e| StoreError::Backend(e.to_string()))?,
        }))
    }

    async fn cookie_revoked(&self, id: Uuid) -> StoreResult<bool> {
        let client = self.client().await?;
        Ok(query_opt(
            &client,
            "SELECT 1 FROM revoked_cookies WHERE id = $1",
            &[&id.to_string()],
        )
        .await?
        .is_some())
    }

    async fn insert_api_key(&self, key: ApiKey) -> StoreResult<()> {
        let client = self.client().await?;
        execute(
            &client,
            &format!("INSERT INTO api_keys ({API_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            &[
                &key.id.to_string(),
                &key.workspace_id.to_string(),
                &key.hash.as_slice(),
                &key.prefix,
                &key.label,
                &key.environment.as_str(),
                &list_text(&key.scopes),
                &key.created_ms,
                &key.revoked_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn api_key_by_hash(&self, hash: [u8; 32]) -> StoreResult<Option<ApiKey>> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE hash = $1");
        one(
            &self.client().await?,
            &sql,
            &[&hash.as_slice()],
            rows::api_key,
        )
        .await
    }

    async fn api_keys_of(&self, workspace_id: Uuid) -> StoreResult<Vec<ApiKey>> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE workspace_id = $1 ORDER BY created_ms, id"
        );
        all(
            &self.client().await?,
            &sql,
            &[&workspace_id.to_string()],
            rows::api_key,
        )
        .await
    }

    async fn revoke_api_key(
        &self,
        workspace_id: Uuid,
        key_id: Uuid,
        now: UnixMillis,
    ) -> StoreResult<Option<ApiKey>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let (key, workspace) = (key_id.to_string(), workspace_id.to_string());
        let revoked = execute(
            &tx,
            "UPDATE api_keys SET revoked_ms = COALESCE(revoked_ms, $3) WHERE id = $1 AND workspace_id = $2",
            &[&key, &workspace, &now],
        )
        .await?;
        if revoked > 0 {
            // The locks the key holds go with it: nobody else could release
            // them but an administrator.
            execute(
                &tx,
                "DELETE FROM operator_locks WHERE holder = $1",
                &[&format!("apiKey:{key_id}")],
            )
            .await?;
        }
        let sql =
            format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1 AND workspace_id = $2");
        let found = one(&tx, &sql, &[&key, &workspace], rows::api_key).await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(found)
    }

    async fn insert_quote(&self, q: Quote) -> StoreResult<()> {
        let client = self.client().await?;
        execute(
            &client,
            &format!(
                "INSERT INTO quotes ({QUOTE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &q.id.to_string(),
                &q.workspace_id.to_string(),
                &q.point.lat,
                &q.point.lng,
                &i64::from(q.duration_seconds),
                &to_i64(q.rate_micro_usdc),
                &i64::from(q.supply_bps),
                &i64::from(q.demand_bps),
                &i64::from(q.corridor_bps),
                &q.created_ms,
                &q.expires_ms,
                &q.used_ms,
            ],
        )
        .await?;
        Ok(())
    }

    async fn quote(&self, id: Uuid) -> StoreResult<Option<Quote>> {
        let sql = format!("SELECT {QUOTE_COLUMNS} FROM quotes WHERE id = $1");
        one(&self.client().await?, &sql, &[&id.to_string()], rows::quote).await
    }

    async fn open_session_points(&self, min: Point, max: Point) -> StoreResult<Vec<Point>> {
        let sql = format!(
            "SELECT lat, lng FROM sessions WHERE state IN {OPEN_STATES}
               AND lat BETWEEN $1 AND $2 AND lng BETWEEN $3 AND $4"
        );
        all(
            &self.client().await?,
            &sql,
            &[&min.lat, &max.lat, &min.lng, &max.lng],
            |r| Ok(Point::new(rows::get(r, 0)?, rows::get(r, 1)?)),
        )
        .await
    }

    async fn demand_cells(
        &self,
        since_ms: UnixMillis,
        cell_degrees: f64,
    ) -> StoreResult<Vec<(i64, i64, u32)>> {
        let client = self.client().await?;
        all(
            &client,
            "SELECT floor(lat / $2)::BIGINT AS clat, floor(lng / $2)::BIGINT AS clng, COUNT(*)
             FROM sessions WHERE created_ms >= $1 GROUP BY clat, clng ORDER BY 3 DESC, 1, 2",
            &[&since_ms, &cell_degrees],
            |r| Ok((rows::get(r, 0)?, rows::get(r, 1)?, rows::int(r, 2)?)),
        )
        .await
    }

    async fn create_session(
        &self,
        new: NewSession,
        credit: u64,
        _now: UnixMillis,
    ) -> Result<Session, CreateSessionError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let wallet = wallet_text(&new.consumer_wallet);
        // Two sessions of one wallet created at once must see each other's
        // hold: the wallet's credit is taken until this one commits.
        execute(
            &tx,
            "SELECT pg_advisory_xact_lock($1, hashtext($2))",
            &[&CREDIT_LOCK_CLASS, &wallet],
        )
        .await?;
        if let Some(quote) = new.quote_id {
            let used = execute(
                &tx,
                "UPDATE quotes SET used_ms = $2 WHERE id = $1 AND used_ms IS NULL",
                &[&quote.to_string(), &new.created_ms],
            )
            .await?;
            if used == 0 {
                return Err(CreateSessionError::QuoteUsed);
            }
        }
        let owed = obligations_in(&tx, &new.consumer_wallet).await?;
        if let Some(debt) = owed.debts.into_iter().next() {
            return Err(CreateSessionError::Unpaid(debt));
        }
        let hold = new
            .rate_micro_usdc
            .saturating_mul(u64::from(new.max_duration_seconds));
        let required = owed
            .held
            .saturating_add(owed.unsettled)
            .saturating_add(hold);
        if required > credit {
            return Err(CreateSessionError::InsufficientCredit {
                required,
                available: credit,
            });
        }
        execute(
            &tx,
            "INSERT INTO sessions (id, state, lat, lng, geofence_m, max_duration_s, wait_timeout_s, rate,
                consumer_ws, consumer_wallet, quote_id, created_ms, min_trust_tier)
             VALUES ($1, 'REQUESTED', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &new.id.to_string(),
                &new.point.lat,
                &new.point.lng,
                &i64::from(new.geofence_radius_m),
                &i64::from(new.max_duration_seconds),
                &i64::from(new.wait_timeout_seconds),
                &to_i64(new.rate_micro_usdc),
                &new.consumer_workspace_id.to_string(),
                &wallet,
                &new.quote_id.map(|q| q.to_string()),
                &new.created_ms,
                &i64::from(new.min_trust_tier),
            ],
        )
        .await?;
        let session = load_session(&tx, new.id)
            .await?
            .ok_or(StoreError::NotFound("session"))?;
        tx.commit().await.map_err(sql_error)?;
        Ok(session)
    }

    async fn obligations(&self, wallet: Address) -> StoreResult<crate::credit::Obligations> {
        obligations_in(&self.client().await?, &wallet).await
    }

    async fn live_sessions(&self, limit: u32) -> StoreResult<Vec<Session>> {
        sessions_where(
            &self.client().await?,
            "state IN ('LIVE','PAUSED') ORDER BY consumer_wallet, started_ms LIMIT $1",
            &[&i64::from(limit)],
        )
        .await
    }

    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>> {
        load_session(&self.client().await?, id).await
    }

    async fn sessions_of(
        &self,
        workspace_id: Uuid,
        party: Party,
        filter: SessionFilter,
    ) -> StoreResult<Vec<Session>> {
        let who = match party {
            Party::Consumer => "consumer_ws = $1",
            Party::Operator => "operator_ws = $1",
            Party::Either => "(consumer_ws = $1 OR operator_ws = $1)",
        };
        // ",ASSIGNED,LIVE," matches any listed state with one statement.
        let states = (!filter.states.is_empty()).then(|| {
            let names: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
            format!(",{},", names.join(","))
        });
        sessions_where(
            &self.client().await?,
            &format!(
                "{who} AND ($2::text IS NULL OR position(',' || state || ',' IN $2::text) > 0)
                 AND ($3::bigint IS NULL OR created_ms < $3) ORDER BY created_ms DESC, id DESC LIMIT $4"
            ),
            &[
                &workspace_id.to_string(),
                &states,
                &filter.before_ms,
                &i64::from(filter.limit),
            ],
        )
        .await
    }

    async fn offers_for(&self, workspace_id: Uuid, now: UnixMillis) -> StoreResult<Vec<Session>> {
        use crate::store::MAX_OFFERS_LISTED;
        sessions_where(
            &self.client().await?,
            &format!(
                "state = 'REQUESTED' AND offer_ws = $1 AND offer_expires_ms > $2
                 ORDER BY created_ms LIMIT {MAX_OFFERS_LISTED}"
            ),
            &[&workspace_id.to_string(), &now],
        )
        .await
    }

    async fn apply(&self, transition: Transition) -> Result<Session, ApplyError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let session = apply_in(&tx, &transition, self.replica).await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(session)
    }

    async fn attach_media(
        &self,
        session_id: Uuid,
        media: MediaEndpoints,
    ) -> Result<Session, ApplyError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let changed = execute(
            &tx,
            "UPDATE sessions SET media_ref = $2, whip_url = $3, whep_url = $4
             WHERE id = $1 AND media_ref IS NULL AND state IN ('ASSIGNED','LIVE','PAUSED')",
            &[
                &session_id.to_string(),
                &media.backend_ref,
                &media.whip_url,
                &media.whep_url,
            ],
        )
        .await?;
        let session = load_session(&tx, session_id)
            .await?
            .ok_or(ApplyError::SessionNotFound)?;
        if changed == 0 && session.media.is_none() {
            return Err(ApplyError::State(session.state));
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(session)
    }

    async fn replace_media(
        &self,
        session_id: Uuid,
        replaced: &str,
        media: MediaEndpoints,
    ) -> Result<Session, ApplyError> {
        let client = self.client().await?;
        execute(
            &client,
            "UPDATE sessions SET media_ref = $3, whip_url = $4, whep_url = $5
             WHERE id = $1 AND media_ref = $2 AND state IN ('ASSIGNED','LIVE','PAUSED')",
            &[
                &session_id.to_string(),
                &replaced,
                &media.backend_ref,
                &media.whip_url,
                &media.whep_url,
            ],
        )
        .await?;
        load_session(&client, session_id)
            .await?
            .ok_or(ApplyError::SessionNotFound)
    }

    async fn due_sessions(
        &self,
        now: UnixMillis,
        settle_delay_ms: i64,
        live_timeout_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Session>> {
        sessions_where(
            &self.client().await?,
            &format!(
                "(state IN {OPEN_STATES} AND (
                    (state IN ('REQUESTED','ASSIGNED') AND created_ms + wait_timeout_s * 1000 <= $1)
                 OR (state IN ('LIVE','PAUSED') AND started_ms + max_duration_s * 1000 <= $1)
                 OR (state = 'REQUESTED' AND offer_expires_ms <= $1)
                 OR (state = 'ASSIGNED' AND $4::bigint > 0 AND assigned_ms + $4::bigint <= $1)))
                 OR (state IN ('ENDED','EXPIRED') AND NOT meter_final AND clean_s IS NOT NULL
                     AND ended_ms + $3::bigint <= $1)
                 ORDER BY created_ms LIMIT $2"
            ),
            &[&now, &i64::from(limit), &settle_delay_ms, &live_timeout_ms],
        )
        .await
    }

    async fn attempted_workspaces(&self, session_id: Uuid) -> StoreResult<Vec<Uuid>> {
        all(
            &self.client().await?,
            "SELECT workspace_id FROM dispatch_attempts WHERE session_id = $1",
            &[&session_id.to_string()],
            |r| rows::uuid(r, 0),
        )
        .await
    }

    async fn unqueued_consumers(&self) -> StoreResult<Vec<(Address, u64)>> {
        all(
            &self.client().await?,
            "SELECT DISTINCT s.consumer_wallet,
                COALESCE((SELECT MAX(x.sequence) FROM settlements x WHERE x.consumer = s.consumer_wallet), 0)
             FROM sessions s
             WHERE s.meter_final AND s.charged > 0 AND s.operator_ws IS NOT NULL
               AND NOT EXISTS (SELECT 1 FROM settlements x WHERE x.session_id = s.id)",
            &[],
            |r| Ok((rows::address(r, 0)?, rows::int(r, 1)?)),
        )
        .await
    }

    async fn queue_settlements(
        &self,
        now: UnixMillis,
        chain_last: &[(Address, u64)],
    ) -> StoreResult<usize> {
        // One floor per wallet, the last given winning.
        let floors: BTreeMap<String, i64> = chain_last
            .iter()
            .map(|(wallet, last)| (wallet_text(wallet), to_i64(*last)))
            .collect();
        let (wallets, lasts): (Vec<String>, Vec<i64>) = floors.into_iter().unzip();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        execute(
            &tx,
            "SELECT pg_advisory_xact_lock($1)",
            &[&SETTLEMENT_QUEUE_LOCK],
        )
        .await?;
        // Each consumer's new settlements follow the higher of its last
        // stored sequence and the contract's, in the order their sessions
        // ended.
        let queued = execute(
            &tx,
            "WITH chain_floor AS (SELECT * FROM unnest($2::text[], $3::bigint[]) AS f (consumer, last)),
             base AS (
                SELECT s.id, s.consumer_wallet, s.ended_ms, s.rate, s.clean_s, s.earned, s.fee, w.wallet AS operator,
                    COALESCE((SELECT MAX(x.sequence) FROM settlements x WHERE x.consumer = s.consumer_wallet), 0) AS stored,
                    COALESCE((SELECT f.last FROM chain_floor f WHERE f.consumer = s.consumer_wallet), 0) AS onchain
                FROM sessions s JOIN workspaces w ON w.id = s.operator_ws
                WHERE s.meter_final AND s.charged > 0
                  AND NOT EXISTS (SELECT 1 FROM settlements x WHERE x.session_id = s.id))
             INSERT INTO settlements (session_id, consumer, operator, sequence, rate, seconds,
                to_amount, fee_amount, state, next_attempt_ms, queued_ms, updated_ms, verify_onchain)
             SELECT id, consumer_wallet, operator,
                GREATEST(stored, onchain) + ROW_NUMBER() OVER (PARTITION BY consumer_wallet ORDER BY ended_ms, id),
                rate, clean_s, earned, fee, 'PENDING', $1, $1, $1, onchain > stored
             FROM base",
            &[&now, &wallets, &lasts],
        )
        .await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(usize::try_from(queued).unwrap_or(usize::MAX))
    }

    async fn settlement(&self, session_id: Uuid) -> StoreResult<Option<SettlementRecord>> {
        let sql = format!("SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE session_id = $1");
        one(
            &self.client().await?,
            &sql,
            &[&session_id.to_string()],
            rows::settlement,
        )
        .await
    }

    async fn open_settlements(&self, limit: u32) -> StoreResult<Vec<SettlementRecord>> {
        let sql = format!(
            "SELECT {SETTLEMENT_COLUMNS} FROM settlements WHERE state IN ('PENDING', 'SUBMITTED', 'UNPAID')
             ORDER BY consumer, sequence LIMIT $1"
        );
        all(
            &self.client().await?,
            &sql,
            &[&i64::from(limit)],
            rows::settlement,
        )
        .await
    }

    async fn save_settlements(&self, records: Vec<SettlementRecord>) -> StoreResult<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        for r in &records {
            let session = r.session_id.to_string();
            let was: Option<String> = query_opt(
                &tx,
                "SELECT state FROM settlements WHERE session_id = $1 FOR UPDATE",
                &[&session],
            )
            .await?
            .map(|row| rows::get(&row, 0))
            .transpose()?;
            let confirmed_now = r.state == SettlementState::Confirmed
                && was.is_some_and(|w| w != enum_text(&SettlementState::Confirmed));
            execute(
                &tx,
                "UPDATE settlements SET state = $2, tx_hash = $3, nonce = $4, block = $5, attempts = $6,
                    last_error = $7, next_attempt_ms = $8, updated_ms = $9, verify_onchain = $10
                 WHERE session_id = $1",
                &[
                    &session,
                    &enum_text(&r.state),
                    &r.tx_hash,
                    &r.nonce.map(to_i64),
                    &r.block.map(to_i64),
                    &i64::from(r.attempts),
                    &r.last_error,
                    &r.next_attempt_ms,
                    &r.updated_ms,
                    &r.verify_onchain,
                ],
            )
            .await?;
            if confirmed_now {
                let parties = query_opt(
                    &tx,
                    "SELECT consumer_ws, operator_ws FROM sessions WHERE id = $1",
                    &[&session],
                )
                .await?
                .map(|row| {
                    Ok::<_, StoreError>([rows::opt_uuid(&row, 0)?, rows::opt_uuid(&row, 1)?])
                })
                .transpose()?
                .unwrap_or([None, None]);
                let payload = || serde_json::to_string(&crate::store::dto::settlement_dto(r));
                enqueue_event(
                    &tx,
                    WebhookEventType::SettlementConfirmed,
                    r.session_id,
                    r.updated_ms,
                    parties,
                    payload,
                )
                .await?;
            }
        }
        tx.commit().await.map_err(sql_error)
    }

    async fn media_sessions(&self) -> StoreResult<Vec<Session>> {
        sessions_where(
            &self.client().await?,
            "state IN ('ASSIGNED','LIVE','PAUSED') AND whip_url IS NOT NULL ORDER BY created_ms",
            &[],
        )
        .await
    }

    async fn insert_enrollment_token(&self, token: EnrollmentToken) -> StoreResult<()> {
        execute(
            &self.client().await?,
            "INSERT INTO enrollment_tokens (hash, workspace_id, created_ms, expires_ms) VALUES ($1, $2, $3, $4)",
            &[
                &token.hash.as_slice(),
                &token.workspace_id.to_string(),
                &token.created_ms,
                &token.expires_ms,
            ],
        )
        .await
        .map(drop)
    }

    async fn enrollment_tokens_of(
        &self,
        workspace_id: Uuid,
    ) -> StoreResult<Vec<(EnrollmentToken, Option<UnixMillis>)>> {
        all(
            &self.client().await?,
            "SELECT hash, workspace_id, created_ms, expires_ms, used_ms FROM enrollment_tokens
             WHERE workspace_id = $1 ORDER BY created_ms DESC, hash",
            &[&workspace_id.to_string()],
            |r| {
                let hash: Vec<u8> = rows::get(r, 0)?;
                Ok((
                    EnrollmentToken {
                        hash: hash
                            .try_into()
                            .map_err(|_| backend("a token hash is not 32 bytes"))?,
                        workspace_id: rows::uuid(r, 1)?,
                        created_ms: rows::get(r, 2)?,
                        expires_ms: rows::get(r, 3)?,
                    },
                    rows::get(r, 4)?,
                ))
            },
        )
        .await
    }

    async fn revoke_enrollment_token(
        &self,
        workspace_id: Uuid,
        hash: [u8; 32],
    ) -> StoreResult<Option<EnrollmentToken>> {
        let revoked = query_opt(
            &self.client().await?,
            "DELETE FROM enrollment_tokens WHERE hash = $1 AND workspace_id = $2 AND used_ms IS NULL
             RETURNING created_ms, expires_ms",
            &[&hash.as_slice(), &workspace_id.to_string()],
        )
        .await?;
        revoked
            .map(|r| {
                Ok(EnrollmentToken {
                    hash,
                    workspace_id,
                    created_ms: rows::get(&r, 0)?,
                    expires_ms: rows::get(&r, 1)?,
                })
            })
            .transpose()
    }

    async fn check_enrollment_token(
        &self,
        token_hash: [u8; 32],
        now: UnixMillis,
    ) -> Result<(), EnrollError> {
        let token = query_opt(
            &self.client().await?,
            "SELECT expires_ms, used_ms FROM enrollment_tokens WHERE hash = $1",
            &[&token_hash.as_slice()],
        )
        .await?;
        let Some(row) = token else {
            return Err(EnrollError::UnknownToken);
        };
        let (expires_ms, used_ms): (i64, Option<i64>) = (rows::get(&row, 0)?, rows::get(&row, 1)?);
        match used_ms {
            Some(_) => Err(EnrollError::UsedToken),
            None if expires_ms <= now => Err(EnrollError::ExpiredToken),
            None => Ok(()),
        }
    }

    async fn enroll_operator(
        &self,
        token_hash: [u8; 32],
        operator: Operator,
        device_token_hash: [u8; 32],
        mqtt: Option<MqttAccount>,
        now: UnixMillis,
    ) -> Result<Operator, EnrollError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let token = query_opt(
            &tx,
            "SELECT workspace_id, expires_ms, used_ms FROM enrollment_tokens WHERE hash = $1 FOR UPDATE",
            &[&token_hash.as_slice()],
        )
        .await?
        .ok_or(EnrollError::UnknownToken)?;
        let workspace_id = rows::uuid(&token, 0)?;
        let (expires_ms, used_ms): (i64, Option<i64>) =
            (rows::get(&token, 1)?, rows::get(&token, 2)?);
        if used_ms.is_some() {
            return Err(EnrollError::UsedToken);
        }
        if expires_ms <= now {
            return Err(EnrollError::ExpiredToken);
        }
        execute(
            &tx,
            "UPDATE enrollment_tokens SET used_ms = $2 WHERE hash = $1",
            &[&token_hash.as_slice(), &now],
        )
        .await?;
        let insert = "INSERT INTO operators (id, workspace_id, name, device_kind, address, public_key, token_hash, availability, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
        let statement = tx.prepare_cached(insert).await.map_err(sql_error)?;
        // The address is unique: a device enrolled twice at once loses here.
        match tx
            .execute(
                &statement,
                &[
                    &operator.id.to_string(),
                    &workspace_id.to_string(),
                    &operator.name,
                    &enum_text(&operator.device_kind),
                    &wallet_text(&operator.address),
                    &operator.public_key,
                    &device_token_hash.as_slice(),
                    &enum_text(&operator.availability),
                    &now,
                ],
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(EnrollError::AddressTaken),
            Err(e) => return Err(sql_error(e).into()),
        }
        if let Some(account) = mqtt {
            let account = MqttAccount {
                workspace_id,
                operator_id: Some(operator.id),
                ..account
            };
            put_mqtt_account(&tx, &account).await?;
        }
        let stored = load_operator(&tx, operator.id, false)
            .await?
            .ok_or(StoreError::NotFound("operator"))?;
        // Its workspace's trust tier is a device's now.
        changes::announce(&tx, self.replica, workspace_id).await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(stored)
    }

    async fn operator(&self, id: Uuid) -> StoreResult<Option<Operator>> {
        load_operator(&self.client().await?, id, false).await
    }

    async fn operator_by_token(&self, token_hash: [u8; 32]) -> StoreResult<Option<Operator>> {
        let sql = format!("SELECT {OPERATOR_COLUMNS} FROM operators WHERE token_hash = $1");
        one(
            &self.client().await?,
            &sql,
            &[&token_hash.as_slice()],
            rows::operator,
        )
        .await
    }

    async fn operators_of(&self, workspace_id: Uuid) -> StoreResult<Vec<Operator>> {
        let sql = format!(
            "SELECT {OPERATOR_COLUMNS} FROM operators WHERE workspace_id = $1 ORDER BY created_ms, id"
        );
        all(
            &self.client().await?,
            &sql,
            &[&workspace_id.to_string()],
            rows::operator,
        )
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let Some(current) = load_operator(&tx, id, true).await? else {
            return Ok(None);
        };
        if availability.is_some() && current.availability == Availability::Busy {
            return Ok(None);
        }
        let key = id.to_string();
        note_contact(&tx, &key, current.last_seen_ms, now, silent_after_ms).await?;
        execute(
            &tx,
            "UPDATE operators SET last_seen_ms = GREATEST(COALESCE(last_seen_ms, 0), $2),
                battery_pct = COALESCE($3, battery_pct), availability = COALESCE($4, availability) WHERE id = $1",
            &[
                &key,
                &now,
                &battery_pct.map(i64::from),
                &availability.map(|a| enum_text(&a)),
            ],
        )
        .await?;
        let op = load_operator(&tx, id, false).await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(op)
    }

    async fn mark_operator_disconnected(&self, id: Uuid, now: UnixMillis) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let key = id.to_string();
        let n = execute(
            &tx,
            "UPDATE operators SET disconnected_ms = GREATEST(COALESCE(disconnected_ms, 0), $2) WHERE id = $1",
            &[&key, &now],
        )
        .await?;
        // Out of reach since its last contact, until it is heard from again.
        execute(
            &tx,
            "INSERT INTO operator_outages (operator_id, opened_ms)
             SELECT id, LEAST(COALESCE(last_seen_ms, $2), $2) FROM operators
             WHERE id = $1 AND NOT EXISTS (
                 SELECT 1 FROM operator_outages WHERE operator_id = $1 AND closed_ms IS NULL)
             ON CONFLICT DO NOTHING",
            &[&key, &now],
        )
        .await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(n > 0)
    }

    async fn operator_outages(
        &self,
        id: Uuid,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> StoreResult<Vec<Outage>> {
        all(
            &self.client().await?,
            "SELECT opened_ms, closed_ms FROM operator_outages
             WHERE operator_id = $1 AND opened_ms <= $3 AND (closed_ms IS NULL OR closed_ms >= $2)
             ORDER BY opened_ms",
            &[&id.to_string(), &from_ms, &to_ms],
            |r| {
                Ok(Outage {
                    opened_ms: rows::get(r, 0)?,
                    closed_ms: rows::get(r, 1)?,
                })
            },
        )
        .await
    }

    async fn put_mqtt_account(&self, account: MqttAccount) -> StoreResult<()> {
        put_mqtt_account(&self.client().await?, &account).await
    }

    async fn mqtt_accounts(&self) -> StoreResult<Vec<MqttAccount>> {
        let sql = format!("SELECT {MQTT_ACCOUNT_COLUMNS} FROM mqtt_accounts ORDER BY username");
        all(&self.client().await?, &sql, &[], rows::mqtt_account).await
    }

    async fn rotate_operator_token(&self, id: Uuid, token_hash: [u8; 32]) -> StoreResult<bool> {
        let n = execute(
            &self.client().await?,
            "UPDATE operators SET token_hash = $2 WHERE id = $1",
            &[&id.to_string(), &token_hash.as_slice()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn delete_operator(&self, id: Uuid) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let key = id.to_string();
        execute(
            &tx,
            "DELETE FROM operator_locks WHERE operator_id = $1",
            &[&key],
        )
        .await?;
        execute(
            &tx,
            "DELETE FROM mqtt_accounts WHERE operator_id = $1",
            &[&key],
        )
        .await?;
        execute(
            &tx,
            "DELETE FROM device_logs WHERE operator_id = $1",
            &[&key],
        )
        .await?;
        let deleted = query_opt(
            &tx,
            "DELETE FROM operators WHERE id = $1 RETURNING workspace_id",
            &[&key],
        )
        .await?;
        if let Some(row) = &deleted {
            // Its workspace may have no device left: its trust tier falls.
            changes::announce(&tx, self.replica, rows::uuid(row, 0)?).await?;
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(deleted.is_some())
    }

    async fn lock(
        &self,
        operator_id: Uuid,
        subsystem: Subsystem,
        holder: &str,
        now: UnixMillis,
    ) -> Result<Lock, LockError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        // The device's row is held: two callers locking at once take turns.
        if load_operator(&tx, operator_id, true).await?.is_none() {
            return Err(LockError::NotFound);
        }
        let key = operator_id.to_string();
        let current = query_opt(
            &tx,
            "SELECT holder, acquired_ms FROM operator_locks WHERE operator_id = $1 AND subsystem = $2",
            &[&key, &subsystem.as_str()],
        )
        .await?;
        let lock = match current {
            Some(row) => {
                let other: String = rows::get(&row, 0)?;
                if other != holder {
                    return Err(LockError::HeldBy(other));
                }
                Lock {
                    subsystem,
                    holder: other,
                    acquired_ms: rows::get(&row, 1)?,
                }
            }
            None => {
                execute(
                    &tx,
                    "INSERT INTO operator_locks (operator_id, subsystem, holder, acquired_ms) VALUES ($1, $2, $3, $4)",
                    &[&key, &subsystem.as_str(), &holder, &now],
                )
                .await?;
                Lock {
                    subsystem,
                    holder: holder.to_owned(),
                    acquired_ms: now,
                }
            }
        };
        tx.commit().await.map_err(sql_error)?;
        Ok(lock)
    }

    async fn unlock(
        &self,
        operator_id: Uuid,
        subsystem: Subsystem,
        holder: Option<&str>,
    ) -> Result<(), LockError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let key = operator_id.to_string();
        let current: Option<String> = query_opt(
            &tx,
            "SELECT holder FROM operator_locks WHERE operator_id = $1 AND subsystem = $2 FOR UPDATE",
            &[&key, &subsystem.as_str()],
        )
        .await?
        .map(|row| rows::get(&row, 0))
        .transpose()?;
        match (current, holder) {
            (None, _) => return Err(LockError::NotLocked),
            (Some(other), Some(me)) if other != me => return Err(LockError::HeldBy(other)),
            _ => {}
        }
        execute(
            &tx,
            "DELETE FROM operator_locks WHERE operator_id = $1 AND subsystem = $2",
            &[&key, &subsystem.as_str()],
        )
        .await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(())
    }

    async fn locks_of(&self, operator_id: Uuid) -> StoreResult<Vec<Lock>> {
        all(
            &self.client().await?,
            "SELECT subsystem, holder, acquired_ms FROM operator_locks WHERE operator_id = $1 ORDER BY subsystem",
            &[&operator_id.to_string()],
            |r| {
                Ok(Lock {
                    subsystem: rows::enumeration(r, 0)?,
                    holder: rows::get(r, 1)?,
                    acquired_ms: rows::get(r, 2)?,
                })
            },
        )
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
        // Each session's count of the batch, sessions in id order: the
        // order their rows are locked in.
        let mut per_session: BTreeMap<String, i64> = BTreeMap::new();
        for stored in &samples {
            if let Some(id) = stored.sample.session() {
                *per_session.entry(id.to_string()).or_default() += 1;
            }
        }
        let sessions: Vec<String> = per_session.keys().cloned().collect();
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        if !sessions.is_empty() {
            execute(
                &tx,
                "SELECT 1 FROM sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE",
                &[&sessions],
            )
            .await?;
        }
        let op = load_operator(&tx, operator_id, true)
            .await?
            .ok_or(IngestError::NotFound)?;
        let mut last = op.last_sequence;
        // The device's newest capture is its last sample's: capture times
        // grow with the sequence.
        let mut newest = op.fix;
        let n = samples.len();
        let (mut sequences, mut session_ids, mut captured_at) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut lats, mut lngs, mut accuracies, mut sources) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut signatures, mut received) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (index, stored) in samples.iter().enumerate() {
            let s = &stored.sample;
            if let Some(prev) = last.filter(|&prev| s.sequence <= prev) {
                return Err(IngestError::Replayed {
                    index,
                    sequence: s.sequence,
                    last: prev,
                });
            }
            let captured = to_i64(s.captured_at_ms);
            if let Some(prev) = newest
                .map(|f| f.captured_ms)
                .filter(|&prev| captured <= prev)
            {
                return Err(IngestError::CapturedNotIncreasing {
                    index,
                    captured_ms: captured,
                    last_ms: prev,
                });
            }
            sequences.push(to_i64(s.sequence));
            session_ids.push(s.session().map(|u| u.to_string()));
            captured_at.push(captured);
            lats.push(i64::from(s.lat_e7));
            lngs.push(i64::from(s.lng_e7));
            accuracies.push(i64::from(s.accuracy_cm));
            sources.push(i64::from(s.source.code()));
            signatures.push(stored.signature.as_slice());
            received.push(stored.received_ms);
            last = Some(s.sequence);
            newest = Some(DeviceFix {
                lat_e7: s.lat_e7,
                lng_e7: s.lng_e7,
                accuracy_cm: s.accuracy_cm,
                captured_ms: captured,
            });
        }
        // Within each session's cap, counted after the replay checks above
        // (a replay is refused as one).
        let cap = to_i64(max_session_samples);
        for (session_id, adding) in &per_session {
            let within = execute(
                &tx,
                "UPDATE sessions SET samples_stored = samples_stored + $2 WHERE id = $1 AND samples_stored + $2 <= $3",
                &[session_id, adding, &cap],
            )
            .await?;
            if within == 0 {
                let held = query_opt(
                    &tx,
                    "SELECT samples_stored FROM sessions WHERE id = $1",
                    &[session_id],
                )
                .await?;
                // A sample naming no session of ours has no cap to keep.
                if let Some(row) = held {
                    return Err(IngestError::SessionFull {
                        held: rows::int(&row, 0)?,
                        cap: max_session_samples,
                    });
                }
            }
        }
        let key = operator_id.to_string();
        execute(
            &tx,
            "INSERT INTO telemetry (operator_id, sequence, session_id, captured_ms, lat_e7, lng_e7, accuracy_cm,
                source, signature, received_ms)
             SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::bigint[], $8::bigint[], $9::bytea[], $10::bigint[])",
            &[
                &key,
                &sequences,
                &session_ids,
                &captured_at,
                &lats,
                &lngs,
                &accuracies,
                &sources,
                &signatures,
                &received,
            ],
        )
        .await?;
        note_contact(&tx, &key, op.last_seen_ms, now, silent_after_ms).await?;
        execute(
            &tx,
            "UPDATE operators SET last_sequence = $2, last_seen_ms = GREATEST(COALESCE(last_seen_ms, 0), $3),
                fix_lat_e7 = $4, fix_lng_e7 = $5, fix_acc_cm = $6, fix_ms = $7 WHERE id = $1",
            &[
                &key,
                &last.map(to_i64),
                &now,
                &newest.map(|f| i64::from(f.lat_e7)),
                &newest.map(|f| i64::from(f.lng_e7)),
                &newest.map(|f| i64::from(f.accuracy_cm)),
                &newest.map(|f| f.captured_ms),
            ],
        )
        .await?;
        tx.commit().await.map_err(sql_error)?;
        Ok(last.unwrap_or(0))
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
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let key = workspace_id.to_string();
        let sequence = to_i64(sequence);
        let n = execute(
            &tx,
            "UPDATE workspaces SET loc_lat = $2, loc_lng = $3, loc_accuracy_m = $4, loc_sequence = $5, loc_ms = $6
             WHERE id = $1 AND (loc_sequence IS NULL OR loc_sequence < $5)",
            &[&key, &point.lat, &point.lng, &accuracy_m, &sequence, &now],
        )
        .await?;
        if n == 1 {
            execute(
                &tx,
                "INSERT INTO workspace_locations
                    (workspace_id, sequence, lat, lng, accuracy_m, session_id, received_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &key,
                    &sequence,
                    &point.lat,
                    &point.lng,
                    &accuracy_m,
                    &session_id.map(|s| s.to_string()),
                    &now,
                ],
            )
            .await?;
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(n == 1)
    }

    async fn workspace_locations(
        &self,
        workspace_id: Uuid,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> StoreResult<Vec<LocationFix>> {
        all(
            &self.client().await?,
            "SELECT sequence, lat, lng, accuracy_m, received_ms FROM workspace_locations
             WHERE workspace_id = $1 AND received_ms BETWEEN $2 AND $3 ORDER BY received_ms, sequence",
            &[&workspace_id.to_string(), &from_ms, &to_ms],
            |r| {
                Ok(LocationFix {
                    sequence: rows::int(r, 0)?,
                    point: Point::new(rows::get(r, 1)?, rows::get(r, 2)?),
                    accuracy_m: rows::get(r, 3)?,
                    received_ms: rows::get(r, 4)?,
                })
            },
        )
        .await
    }

    async fn session_samples(&self, session_id: Uuid) -> StoreResult<Vec<Sample>> {
        Ok(self
            .session_stored_samples(session_id)
            .await?
            .into_iter()
            .map(|s| s.sample)
            .collect())
    }

    async fn session_stored_samples(&self, session_id: Uuid) -> StoreResult<Vec<StoredSample>> {
        let sql = format!(
            "SELECT {SAMPLE_COLUMNS} FROM telemetry WHERE session_id = $1 ORDER BY captured_ms, sequence"
        );
        all(
            &self.client().await?,
            &sql,
            &[&session_id.to_string()],
            rows::stored_sample,
        )
        .await
    }

    async fn insert_webhook(&self, w: Webhook) -> StoreResult<()> {
        execute(
            &self.client().await?,
            &format!(
                "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &w.id.to_string(),
                &w.workspace_id.to_string(),
                &w.url,
                &list_text(&w.events),
                &w.secret,
                &w.created_ms,
                &i64::from(w.failed_in_a_row),
                &w.disabled_ms,
            ],
        )
        .await
        .map(drop)
    }

    async fn webhooks_of(&self, workspace_id: Uuid) -> StoreResult<Vec<Webhook>> {
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE workspace_id = $1 ORDER BY created_ms, id"
        );
        all(
            &self.client().await?,
            &sql,
            &[&workspace_id.to_string()],
            rows::webhook,
        )
        .await
    }

    async fn webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<Option<Webhook>> {
        let sql =
            format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1 AND workspace_id = $2");
        one(
            &self.client().await?,
            &sql,
            &[&id.to_string(), &workspace_id.to_string()],
            rows::webhook,
        )
        .await
    }

    async fn delete_webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let n = execute(
            &self.client().await?,
            "DELETE FROM webhooks WHERE id = $1 AND workspace_id = $2",
            &[&id.to_string(), &workspace_id.to_string()],
        )
        .await?;
        Ok(n > 0)
    }

    async fn webhook_deliveries(&self, webhook_id: Uuid, limit: u32) -> StoreResult<Vec<Delivery>> {
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id
             WHERE d.webhook_id = $1 ORDER BY d.seq DESC LIMIT $2"
        );
        all(
            &self.client().await?,
            &sql,
            &[&webhook_id.to_string(), &i64::from(limit)],
            rows::delivery,
        )
        .await
    }

    async fn due_deliveries(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<DueDelivery>> {
        // Round robin over workspaces: every workspace's first due delivery
        // comes before any workspace's second, so one tenant's backlog
        // cannot fill a pass.
        let sql = format!(
            "SELECT {DELIVERY_COLUMNS}, w.url, w.secret, e.payload, w.workspace_id
             FROM webhook_deliveries d
             JOIN webhook_events e ON e.id = d.event_id
             JOIN webhooks w ON w.id = d.webhook_id
             WHERE d.seq IN (SELECT MIN(seq) FROM webhook_deliveries WHERE state = 'PENDING' GROUP BY webhook_id)
               AND d.next_attempt_ms <= $1 AND w.disabled_ms IS NULL
             ORDER BY ROW_NUMBER() OVER (PARTITION BY w.workspace_id ORDER BY d.next_attempt_ms, d.seq),
                d.next_attempt_ms, d.seq
             LIMIT $2"
        );
        all(
            &self.client().await?,
            &sql,
            &[&now, &i64::from(limit)],
            |row| {
                Ok(DueDelivery {
                    delivery: rows::delivery(row)?,
                    url: rows::get(row, 13)?,
                    secret: rows::get(row, 14)?,
                    payload: rows::get(row, 15)?,
                    workspace_id: rows::uuid(row, 16)?,
                })
            },
        )
        .await
    }

    async fn save_delivery(&self, d: Delivery, disable_after: u32) -> StoreResult<bool> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(sql_error)?;
        let n = execute(
            &tx,
            "UPDATE webhook_deliveries SET state = $2, attempts = $3, last_status = $4, last_error = $5,
                next_attempt_ms = $6, delivered_ms = $7, updated_ms = $8
             WHERE seq = $1 AND state = 'PENDING'",
            &[
                &d.seq,
                &enum_text(&d.state),
                &i64::from(d.attempts),
                &d.last_status.map(i64::from),
                &d.last_error,
                &d.next_attempt_ms,
                &d.delivered_ms,
                &d.updated_ms,
            ],
        )
        .await?;
        let hook = d.webhook_id.to_string();
        if n > 0 {
            match d.state {
                DeliveryState::Delivered => {
                    execute(
                        &tx,
                        "UPDATE webhooks SET failed_in_a_row = 0 WHERE id = $1",
                        &[&hook],
                    )
                    .await?;
                }
                DeliveryState::Failed => {
                    execute(
                        &tx,
                        "UPDATE webhooks SET failed_in_a_row = failed_in_a_row + 1,
                            disabled_ms = CASE WHEN disabled_ms IS NULL AND failed_in_a_row + 1 >= $2
                                          THEN $3 ELSE disabled_ms END
                         WHERE id = $1",
                        &[&hook, &i64::from(disable_after), &d.updated_ms],
                    )
                    .await?;
                }
                DeliveryState::Pending => {}
            }
        }
        tx.commit().await.map_err(sql_error)?;
        Ok(n > 0)
    }

    async fn claim_delivery(
        &self,
        seq: i64,
        due_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> StoreResult<bool> {
        let n = execute(
            &self.client().await?,
            "UPDATE webhook_deliveries SET next_attempt_ms = $3
             WHERE seq = $1 AND state = 'PENDING' AND next_attempt_ms = $2",
            &[&seq, &due_ms, &until_ms],
        )
        .await?;
        Ok(n > 0)
    }

    async fn hold_lease(&self, lease: Lease) -> StoreResult<bool> {
        self.leases.hold(lease).await
    }

    async fn enable_webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<bool> {
        let n = execute(
            &self.client().await?,
            "UPDATE webhooks SET disabled_ms = NULL, failed_in_a_row = 0 WHERE id = $1 AND workspace_id = $2",
            &[&id.to_string(), &workspace_id.to_string()],
        )
        .await?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    crate::store_suite!({
        let url = cluster::shared().fresh_database().await;
        (
            PgStore::connect(&url, 4).await.expect("PostgreSQL store"),
            (),
        )
    });

    #[tokio::test]
    async fn replicas_starting_together_migrate_once_to_the_sqlite_stores_schema() {
        let url = cluster::shared().fresh_database().await;
        let (a, b, c) = tokio::join!(
            PgStore::connect(&url, 2),
            PgStore::connect(&url, 2),
            PgStore::connect(&url, 2)
        );
        let (a, _b, _c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a.applied_migrations().await.unwrap(), vec![1, 2, 3]);
        let sqlite = SqliteStore::in_memory().unwrap().columns().await.unwrap();
        assert_eq!(sqlite.len(), 20, "{:?}", sqlite.keys());
        let mut pg = a.columns().await.unwrap();
        for table in REPLICA_TABLES {
            assert!(pg.remove(*table).is_some(), "{table}");
        }
        assert_eq!(pg, sqlite);
        // A restart finds everything applied.
        let again = PgStore::connect(&url, 1).await.unwrap();
        assert_eq!(again.applied_migrations().await.unwrap(), vec![1, 2, 3]);
    }

    #[tokio::test]
    async fn a_lease_has_one_holder_and_passes_on_when_it_dies() {
        let url = cluster::shared().fresh_database().await;
        let first = PgStore::connect(&url, 1).await.unwrap();
        let second = PgStore::connect(&url, 1).await.unwrap();
        assert!(first.hold_lease(Lease::Relayer).await.unwrap());
        assert!(
            first.hold_lease(Lease::Relayer).await.unwrap(),
            "still held"
        );
        assert!(!second.hold_lease(Lease::Relayer).await.unwrap());
        // The holder gone, its connection closes and the lock with it.
        drop(first);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !second.hold_lease(Lease::Relayer).await.unwrap() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the lease never passed on"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    #[tokio::test]
    async fn a_replica_hears_of_the_suppliers_others_change_but_not_its_own() {
        let url = cluster::shared().fresh_database().await;
        let (here, there) = (
            PgStore::connect(&url, 2).await.unwrap(),
            PgStore::connect(&url, 2).await.unwrap(),
        );
        let mut heard_here = here.workspace_changes().unwrap();
        let mut heard_there = there.workspace_changes().unwrap();
        let ws = crate::store::suite::build_workspace("changed", &[], None);
        here.insert_workspace(ws.clone()).await.unwrap();
        // Renamed until the other replica, listening by then, hears of it.
        let mut heard = false;
        for attempt in 0..20 {
            let patch = WorkspacePatch {
                name: Some(format!("renamed {attempt}")),
                ..WorkspacePatch::default()
            };
            here.patch_workspace(ws.id, patch, 5).await.unwrap();
            let wait = tokio::time::sleep(std::time::Duration::from_millis(500));
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    change = heard_there.recv() => match change.unwrap() {
                        WorkspaceChange::Changed(id) => {
                            assert_eq!(id, ws.id);
                            heard = true;
                            break;
                        }
                        WorkspaceChange::Missed => {}
                    },
                    _ = &mut wait => break,
                }
            }
            if heard {
                break;
            }
        }
        assert!(heard, "the other replica never heard of the change");
        while let Ok(change) = heard_here.try_recv() {
            assert_eq!(change, WorkspaceChange::Missed, "nothing of its own");
        }
        while heard_there.try_recv().is_ok() {}
        // A rolled-back change is never heard of.
        let online = WorkspacePatch {
            availability: Some(lx_protocol::api::Availability::Online),
            ..WorkspacePatch::default()
        };
        assert!(here.patch_workspace(ws.id, online, 6).await.is_err());
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        assert!(heard_there.try_recv().is_err(), "only the committed change");
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_by_name() {
        let err = PgStore::connect("mysql://x", 1).await.unwrap_err();
        assert!(err.to_string().contains("store.url"), "{err}");
    }
}
