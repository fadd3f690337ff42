//! The store: every durable fact of the server behind one trait.
//!
//! SQLite (one file, WAL) is the embedded backend; PostgreSQL is the store
//! several replicas share; both pass the same suite (`store::suite`). Nothing
//! outside this module knows which backend runs: the cores hand the store a
//! [`Transition`] and the store applies it as one compare-and-swap, with the
//! supplier's BUSY flip or release in the same transaction.

pub mod dto;
pub mod events;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod schema;
pub mod sqlite;
#[cfg(any(test, feature = "test-support"))]
pub mod suite;

use async_trait::async_trait;
use lx_protocol::api::{
    Availability, DeliveryState, DeviceKind, ExpiryReason, KeyEnvironment, Role, Scope,
    SessionState, Subsystem, WebhookEventType, WindowReason,
};
use lx_protocol::geo::Point;
use lx_protocol::telemetry::Sample;
use lx_protocol::time::UnixMillis;
use lx_protocol::wallet::Address;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("store backend: {0}")]
    Backend(String),
}

/// Offers listed to a supplier at once (`GET /sessions/offers`).
pub const MAX_OFFERS_LISTED: u32 = 500;

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CoverageArea {
    pub lat: f64,
    pub lng: f64,
    pub radius_m: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Workspace {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    pub wallet: Address,
    pub roles: Vec<Role>,
    pub availability: Availability,
    pub coverage: Option<CoverageArea>,
    pub device_kind: Option<DeviceKind>,
    pub auto_accept: bool,
    pub offer_timeout_seconds: u32,
    /// When the supplier last became free; the longest idle wins dispatch.
    pub idle_since_ms: UnixMillis,
    pub created_ms: UnixMillis,
    /// Derived, not written: 1 while the workspace has an enrolled device
    /// (its devices serve its sessions), else 0 (it serves them itself).
    pub trust_tier: u8,
    /// Dispatch skips the workspace until then (it did not go LIVE in time).
    pub cooling_down_until_ms: Option<UnixMillis>,
}

impl Workspace {
    pub fn has_role(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn cooling_down(&self, now: UnixMillis) -> bool {
        self.cooling_down_until_ms.is_some_and(|until| until > now)
    }
}

/// A validated change to a workspace's profile.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkspacePatch {
    pub name: Option<String>,
    /// Only ONLINE or OFFLINE: BUSY belongs to the system.
    pub availability: Option<Availability>,
    pub coverage: Option<CoverageArea>,
    pub device_kind: Option<DeviceKind>,
    pub auto_accept: Option<bool>,
    pub offer_timeout_seconds: Option<u32>,
}

impl WorkspacePatch {
    /// The patch applied to `ws` as stored, at `now`: a BUSY workspace's
    /// availability is the system's, and ONLINE takes a coverage area.
    pub fn apply_to(self, ws: &mut Workspace, now: UnixMillis) -> Result<(), PatchError> {
        if let Some(name) = self.name {
            ws.name = name;
        }
        if let Some(coverage) = self.coverage {
            ws.coverage = Some(coverage);
        }
        if let Some(kind) = self.device_kind {
            ws.device_kind = Some(kind);
        }
        if let Some(auto) = self.auto_accept {
            ws.auto_accept = auto;
        }
        if let Some(t) = self.offer_timeout_seconds {
            ws.offer_timeout_seconds = t;
        }
        if let Some(target) = self.availability {
            if ws.availability == Availability::Busy {
                return Err(PatchError::Busy);
            }
            if target == Availability::Online && ws.availability != Availability::Online {
                ws.idle_since_ms = now;
            }
            ws.availability = target;
        }
        if ws.availability == Availability::Online && ws.coverage.is_none() {
            return Err(PatchError::MissingCoverage);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("workspace not found")]
    NotFound,
    #[error("availability is BUSY while a session holds the workspace")]
    Busy,
    #[error("ONLINE needs coverageLat, coverageLng and coverageRadiusMeters")]
    MissingCoverage,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub nonce: String,
    pub wallet: Address,
    pub purpose: ChallengePurpose,
    pub message: String,
    pub expires_ms: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengePurpose {
    SignIn,
    CreateWorkspace,
}

impl ChallengePurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "SIGN_IN",
            Self::CreateWorkspace => "CREATE_WORKSPACE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    pub id: Uuid,
    pub workspace_id: Uuid,
    /// SHA-256 of the plaintext key.
    pub hash: [u8; 32],
    pub prefix: String,
    pub label: String,
    pub environment: KeyEnvironment,
    pub scopes: Vec<Scope>,
    pub created_ms: UnixMillis,
    pub revoked_ms: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Quote {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub point: Point,
    pub duration_seconds: u32,
    pub rate_micro_usdc: u64,
    pub supply_bps: u32,
    pub demand_bps: u32,
    pub corridor_bps: u32,
    pub created_ms: UnixMillis,
    pub expires_ms: UnixMillis,
    pub used_ms: Option<UnixMillis>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaEndpoints {
    pub backend_ref: String,
    pub whip_url: String,
    pub whep_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    pub workspace_id: Uuid,
    pub expires_ms: UnixMillis,
}

pub use lx_protocol::evidence::Outage;
pub use lx_protocol::meter::{Meter, Window};

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: Uuid,
    pub state: SessionState,
    pub point: Point,
    pub geofence_radius_m: u32,
    pub max_duration_seconds: u32,
    pub wait_timeout_seconds: u32,
    pub rate_micro_usdc: u64,
    pub consumer_workspace_id: Uuid,
    pub consumer_wallet: Address,
    pub operator_workspace_id: Option<Uuid>,
    /// The enrolled device serving the session, when the supplier has devices.
    pub operator_id: Option<Uuid>,
    pub quote_id: Option<Uuid>,
    pub offer: Option<Offer>,
    pub created_ms: UnixMillis,
    pub assigned_ms: Option<UnixMillis>,
    pub started_ms: Option<UnixMillis>,
    pub ended_ms: Option<UnixMillis>,
    pub expiry_reason: Option<ExpiryReason>,
    pub media: Option<MediaEndpoints>,
    pub meter: Option<Meter>,
    /// The meter no longer changes: late samples are past `settleDelaySeconds`.
    pub meter_final: bool,
    pub windows: Vec<Window>,
    /// The lowest trust tier the consumer accepts.
    pub min_trust_tier: u8,
    /// The tier of the supplier it was assigned to, from the assignment.
    pub trust_tier: Option<u8>,
}

impl Session {
    /// The worst-case charge: `rate × maxDurationSeconds`.
    pub fn hold_micro_usdc(&self) -> u64 {
        self.rate_micro_usdc
            .saturating_mul(u64::from(self.max_duration_seconds))
    }

    pub fn wait_deadline_ms(&self) -> UnixMillis {
        self.created_ms + i64::from(self.wait_timeout_seconds) * 1000
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewSession {
    pub id: Uuid,
    pub point: Point,
    pub geofence_radius_m: u32,
    pub max_duration_seconds: u32,
    pub wait_timeout_seconds: u32,
    pub rate_micro_usdc: u64,
    pub consumer_workspace_id: Uuid,
    pub consumer_wallet: Address,
    pub quote_id: Option<Uuid>,
    pub created_ms: UnixMillis,
    pub min_trust_tier: u8,
}

/// Where a session's on-chain settlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SettlementState {
    /// Queued; not sent yet (or to be sent again).
    Pending,
    /// In a transaction not yet confirmed.
    Submitted,
    Confirmed,
    /// A debt: refused for a reason the consumer caused (its pool does not
    /// cover it, or it capped its rate below the session's). Kept, tried
    /// again while the consumer's lowest open sequence, and blocking its new
    /// sessions until paid.
    Unpaid,
    /// Refused by the contract for good for a reason on our side;
    /// `last_error` says why.
    Failed,
}

/// One session's settlement: what the relayer sends, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettlementRecord {
    pub session_id: Uuid,
    /// The consumer's wallet: the pool paid from.
    pub consumer: Address,
    /// The supplier's wallet: paid `to_amount`.
    pub operator: Address,
    pub sequence: u64,
    pub rate_micro_usdc: u64,
    pub seconds: u64,
    pub to_amount: u64,
    pub fee_amount: u64,
    pub state: SettlementState,
    pub tx_hash: Option<String>,
    pub nonce: Option<u64>,
    pub block: Option<u64>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_ms: UnixMillis,
    pub queued_ms: UnixMillis,
    pub updated_ms: UnixMillis,
    /// Queued after the chain was found ahead of the store (a restore): its
    /// `Settled` event is looked for before it is sent.
    pub verify_onchain: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreateSessionError {
    #[error("the quote was already used")]
    QuoteUsed,
    #[error("the consumer owes {} µUSDC for session {}", .0.amount_micro_usdc, .0.session_id)]
    Unpaid(crate::credit::Debt),
    #[error("credit {available} µUSDC does not cover {required} µUSDC")]
    InsufficientCredit { required: u64, available: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One compare-and-swap on a session, planned by the lifecycle core.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transition {
    pub session_id: Uuid,
    /// The state the plan was made from; the write happens only if it still holds.
    pub expected: Option<SessionState>,
    /// When set, the session must also still be offered to this workspace.
    pub expected_offer: Option<Uuid>,
    pub to: Option<SessionState>,
    pub operator_workspace_id: Option<Uuid>,
    pub operator_id: Option<Uuid>,
    pub set_offer: Option<Offer>,
    pub clear_offer: bool,
    pub assigned_ms: Option<UnixMillis>,
    pub started_ms: Option<UnixMillis>,
    pub ended_ms: Option<UnixMillis>,
    pub expiry_reason: Option<ExpiryReason>,
    pub meter: Option<Meter>,
    pub meter_final: bool,
    /// Replaces the session's STALE_TELEMETRY and OUTSIDE_GEOFENCE windows.
    pub derived_windows: Option<Vec<Window>>,
    pub open_window: Option<(WindowReason, UnixMillis)>,
    /// Opens the latest closed window of this reason again (a session at
    /// its cap of recorded windows: the new gap joins the last one).
    pub reopen_window: Option<WindowReason>,
    /// Closes the open window of each reason at its instant.
    pub close_windows: Vec<(WindowReason, UnixMillis)>,
    /// Flip this supplier ONLINE → BUSY in the same transaction, or fail.
    pub claim: Option<Uuid>,
    /// Put this supplier back ONLINE (from BUSY), idle since the given time.
    pub release: Option<(Uuid, UnixMillis)>,
    /// Flip this device ONLINE → BUSY in the same transaction, or fail.
    pub claim_operator: Option<Uuid>,
    /// Put this device back ONLINE (from BUSY).
    pub release_operator: Option<Uuid>,
    /// Remember that this workspace was offered the session.
    pub record_attempt: Option<Uuid>,
    /// The trust tier of the supplier being assigned.
    pub trust_tier: Option<u8>,
    /// Undo the assignment: no operator workspace, device, assignment time,
    /// tier or media endpoints any more.
    pub unassign: bool,
    /// Media endpoints the shell tears down once this is committed (the
    /// store forgets them with `unassign`).
    pub release_media: Option<MediaEndpoints>,
    /// Mark a supplier (and its device) cooling down.
    pub cool_down: Option<CoolDown>,
}

/// A supplier that was assigned a session and did not go LIVE in time:
/// dispatch skips the workspace, and the device if one was assigned, until
/// `until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoolDown {
    pub workspace: Uuid,
    pub operator: Option<Uuid>,
    pub until: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The session was no longer in the expected state: this is the actual one.
    #[error("session is {0}")]
    State(SessionState),
    #[error("session not found")]
    SessionNotFound,
    /// The supplier to claim was not ONLINE (another session took it).
    #[error("supplier is not available")]
    SupplierUnavailable,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrollmentToken {
    pub hash: [u8; 32],
    pub workspace_id: Uuid,
    pub created_ms: UnixMillis,
    pub expires_ms: UnixMillis,
}

/// A device's last verified position, in the signed integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFix {
    pub lat_e7: i32,
    pub lng_e7: i32,
    pub accuracy_cm: u32,
    pub captured_ms: UnixMillis,
}

impl DeviceFix {
    pub fn point(&self) -> Point {
        Point::new(f64::from(self.lat_e7) / 1e7, f64::from(self.lng_e7) / 1e7)
    }
}

/// An enrolled device of a supplier workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct Operator {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub device_kind: DeviceKind,
    pub address: Address,
    /// SEC1-compressed public key, recovered once at enrollment.
    pub public_key: Vec<u8>,
    pub availability: Availability,
    pub battery_pct: Option<u8>,
    pub last_seen_ms: Option<UnixMillis>,
    pub last_sequence: Option<u64>,
    pub fix: Option<DeviceFix>,
    pub created_ms: UnixMillis,
    /// When the broker last announced the device gone (its last will).
    pub disconnected_ms: Option<UnixMillis>,
    /// Dispatch skips the device until then (it did not go LIVE in time).
    pub cooling_down_until_ms: Option<UnixMillis>,
}

impl Operator {
    pub fn cooling_down(&self, now: UnixMillis) -> bool {
        self.cooling_down_until_ms.is_some_and(|until| until > now)
    }

    /// Seen at or after `seen_after`, and not announced gone since.
    pub fn connected(&self, seen_after: UnixMillis) -> bool {
        self.last_seen_ms
            .is_some_and(|seen| seen >= seen_after && self.disconnected_ms.is_none_or(|d| d < seen))
    }
}

/// A broker account: a device's (its own topics) or a workspace's fleet
/// manager's (`operator_id` empty: every device of the workspace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttAccount {
    pub username: String,
    /// Mosquitto's `$7$…` PBKDF2-SHA512 hash.
    pub password_hash: String,
    pub workspace_id: Uuid,
    pub operator_id: Option<Uuid>,
    pub created_ms: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    #[error("the enrollment token is unknown")]
    UnknownToken,
    #[error("the enrollment token was already used")]
    UsedToken,
    #[error("the enrollment token expired")]
    ExpiredToken,
    #[error("this device key is already enrolled")]
    AddressTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    pub subsystem: Subsystem,
    pub holder: String,
    pub acquired_ms: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("held by {0}")]
    HeldBy(String),
    #[error("not locked")]
    NotLocked,
    #[error("operator not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An unsigned location heartbeat of a workspace, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocationFix {
    pub sequence: u64,
    pub point: Point,
    pub accuracy_m: f64,
    pub received_ms: UnixMillis,
}

/// A device's latest log upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLogs {
    pub operator_id: Uuid,
    pub uploaded_ms: UnixMillis,
    pub truncated: bool,
    pub lines: Vec<String>,
}

/// A verified telemetry sample as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSample {
    pub sample: Sample,
    pub signature: [u8; 65],
    pub received_ms: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngestError {
    /// The sequence at this index of the batch is not above the device's last.
    #[error("sequence {sequence} is not above the last accepted {last}")]
    Replayed {
        index: usize,
        sequence: u64,
        last: u64,
    },
    /// The sample at this index of the batch has a higher sequence but was
    /// not captured after the device's last stored sample.
    #[error("captured at {captured_ms}, not after the last stored sample ({last_ms})")]
    CapturedNotIncreasing {
        index: usize,
        captured_ms: UnixMillis,
        last_ms: UnixMillis,
    },
    /// The session already holds as many samples as it may.
    #[error("the session holds {held} samples; it may hold {cap}")]
    SessionFull { held: u64, cap: u64 },
    #[error("operator not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// An outbound webhook of a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    /// Signs each delivery; kept as given because signing needs it.
    pub secret: String,
    pub created_ms: UnixMillis,
    /// Events FAILED since the last one DELIVERED.
    pub failed_in_a_row: u32,
    /// Switched off after too many failed events in a row; its workspace
    /// enables it again.
    pub disabled_ms: Option<UnixMillis>,
}

/// One event's delivery to one webhook: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Orders a webhook's deliveries: the order their events happened in.
    pub seq: i64,
    pub webhook_id: Uuid,
    pub event_id: Uuid,
    pub event_type: WebhookEventType,
    pub session_id: Uuid,
    /// When the event happened.
    pub event_ms: UnixMillis,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_ms: UnixMillis,
    pub delivered_ms: Option<UnixMillis>,
    pub updated_ms: UnixMillis,
}

/// A delivery due now, with what sending it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub delivery: Delivery,
    pub url: String,
    pub secret: String,
    /// The event's `data`, as JSON text.
    pub payload: String,
    /// The webhook's workspace: in-flight deliveries are shared between
    /// workspaces.
    pub workspace_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Consumer,
    Operator,
    Either,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionFilter {
    /// Only sessions in one of these states; empty: any state.
    pub states: Vec<SessionState>,
    pub limit: u32,
    /// Only sessions created strictly before this (for paging, newest first).
    pub before_ms: Option<UnixMillis>,
}

/// What a retention pass may drop: rows older than each cutoff (unix ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneBefore {
    pub challenges_ms: UnixMillis,
    pub quotes_ms: UnixMillis,
    pub heartbeat_samples_ms: UnixMillis,
    pub locations_ms: UnixMillis,
    pub dispatch_attempts_ms: UnixMillis,
    pub enrollment_tokens_ms: UnixMillis,
    pub webhook_rows_ms: UnixMillis,
    pub outages_ms: UnixMillis,
    /// Revoked cookies expired before this are of no more use.
    pub cookies_ms: UnixMillis,
}

/// The SQLite file `store.path`, or the PostgreSQL database `store.url`
/// names.
pub async fn open(c: &crate::config::StoreConfig) -> StoreResult<std::sync::Arc<dyn Store>> {
    if !c.postgres() {
        let store =
            sqlite::SqliteStore::open_with_readers(&c.path, usize::from(c.read_connections))?;
        return Ok(std::sync::Arc::new(store));
    }
    #[cfg(feature = "postgres")]
    {
        let store = postgres::PgStore::connect(&c.url, usize::from(c.max_connections)).await?;
        Ok(std::sync::Arc::new(store))
    }
    #[cfg(not(feature = "postgres"))]
    Err(StoreError::Backend(
        "store.url names PostgreSQL, but lx-server was built without the postgres feature".into(),
    ))
}

/// Work only one replica does at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lease {
    /// Sending settlements: one relayer key, one nonce sequence.
    Relayer,
    /// Ingesting the telemetry devices publish over MQTT: every replica
    /// receives it, one stores it, in the order each device sent it.
    TelemetryIngest,
}

impl Lease {
    pub fn name(self) -> &'static str {
        match self {
            Self::Relayer => "relayer",
            Self::TelemetryIngest => "telemetry ingest",
        }
    }
}

/// A change another replica committed to a workspace, as dispatch reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceChange {
    /// This workspace changed: read it again.
    Changed(Uuid),
    /// Changes may have been missed (the feed was (re)connected): read
    /// every supplier again.
    Missed,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend_name(&self) -> &'static str;
    /// Notes that the replica at `origin` (its `http.public_url`'s) is
    /// alive at `now`; a store no other replica shares keeps nothing.
    async fn replica_alive(&self, _origin: &str, _now: UnixMillis) -> StoreResult<()> {
        Ok(())
    }
    /// When the replica at `origin` last said it was alive.
    async fn replica_seen(&self, _origin: &str) -> StoreResult<Option<UnixMillis>> {
        Ok(None)
    }
    /// Whether other replicas may share this store.
    fn shared(&self) -> bool {
        false
    }
    /// The workspace changes other replicas sharing this store commit;
    /// `None` for a store no other process shares.
    fn workspace_changes(&self) -> Option<tokio::sync::broadcast::Receiver<WorkspaceChange>> {
        None
    }
    /// Drops the rows past their retention; returns how many.
    async fn prune(&self, before: PruneBefore) -> StoreResult<u64>;
    /// A token that orders writes; a read presenting it sees at least that write.
    fn consistency_token(&self) -> String;
    async fn ping(&self) -> StoreResult<()>;

    // workspaces
    async fn insert_workspace(&self, ws: Workspace) -> StoreResult<Workspace>;
    async fn workspace(&self, id: Uuid) -> StoreResult<Option<Workspace>>;
    async fn workspaces_of_wallet(&self, wallet: Address) -> StoreResult<Vec<Workspace>>;
    async fn patch_workspace(
        &self,
        id: Uuid,
        patch: WorkspacePatch,
        now: UnixMillis,
    ) -> Result<Workspace, PatchError>;
    /// ONLINE suppliers with a coverage area: what the dispatch index holds.
    async fn online_suppliers(&self) -> StoreResult<Vec<Workspace>>;

    // auth
    async fn insert_challenge(&self, challenge: Challenge) -> StoreResult<()>;
    /// Removes and returns the challenge: a nonce is good for one use.
    async fn take_challenge(
        &self,
        nonce: &str,
        purpose: ChallengePurpose,
    ) -> StoreResult<Option<Challenge>>;
    /// A logged-out sign-in cookie: refused from now on. Rows of cookies
    /// expired before `now` are dropped on the way.
    async fn revoke_cookie(
        &self,
        id: Uuid,
        expires_ms: UnixMillis,
        now: UnixMillis,
    ) -> StoreResult<()>;
    async fn cookie_revoked(&self, id: Uuid) -> StoreResult<bool>;
    async fn insert_api_key(&self, key: ApiKey) -> StoreResult<()>;
    async fn api_key_by_hash(&self, hash: [u8; 32]) -> StoreResult<Option<ApiKey>>;
    async fn api_keys_of(&self, workspace_id: Uuid) -> StoreResult<Vec<ApiKey>>;
    /// Marks the key revoked at `now` unless it already was, and releases
    /// the device locks it holds; returns it.
    async fn revoke_api_key(
        &self,
        workspace_id: Uuid,
        key_id: Uuid,
        now: UnixMillis,
    ) -> StoreResult<Option<ApiKey>>;

    // pricing
    async fn insert_quote(&self, quote: Quote) -> StoreResult<()>;
    async fn quote(&self, id: Uuid) -> StoreResult<Option<Quote>>;
    /// Open sessions whose point lies in the box (for demand).
    async fn open_session_points(&self, min: Point, max: Point) -> StoreResult<Vec<Point>>;
    /// Requests per cell of `cell_degrees` since `since_ms`: (cell lat index, cell lng index, count).
    async fn demand_cells(
        &self,
        since_ms: UnixMillis,
        cell_degrees: f64,
    ) -> StoreResult<Vec<(i64, i64, u32)>>;

    // sessions
    /// Inserts the session, consuming its quote, if the consumer owes no
    /// debt and its committed pool (deposit less the requested withdrawal)
    /// covers the session's hold plus the holds of its other open sessions
    /// plus the charges of its ended sessions not settled yet; one
    /// transaction, so parallel requests cannot each pass on the same pool.
    async fn create_session(
        &self,
        new: NewSession,
        committed_micro_usdc: u64,
        now: UnixMillis,
    ) -> Result<Session, CreateSessionError>;
    /// What the consumer owes or may owe: holds, unsettled charges, debts.
    async fn obligations(&self, wallet: Address) -> StoreResult<crate::credit::Obligations>;
    /// LIVE and PAUSED sessions: what the credit watch follows.
    async fn live_sessions(&self, limit: u32) -> StoreResult<Vec<Session>>;
    async fn session(&self, id: Uuid) -> StoreResult<Option<Session>>;
    async fn sessions_of(
        &self,
        workspace_id: Uuid,
        party: Party,
        filter: SessionFilter,
    ) -> StoreResult<Vec<Session>>;
    /// The sessions offered to the workspace and not expired, oldest first,
    /// at most [`MAX_OFFERS_LISTED`].
    async fn offers_for(&self, workspace_id: Uuid, now: UnixMillis) -> StoreResult<Vec<Session>>;
    /// Applies the transition; the webhook event it causes (see
    /// [`crate::store::events::session_event`]) is queued for every subscribed
    /// webhook of the session's consumer and operator in the same transaction.
    async fn apply(&self, transition: Transition) -> Result<Session, ApplyError>;
    /// Moves the session's media from `replaced` (its backend ref) to
    /// `media`, once: a second call, or one after another replica's move,
    /// returns the session with the media it holds.
    async fn replace_media(
        &self,
        session_id: Uuid,
        replaced: &str,
        media: MediaEndpoints,
    ) -> Result<Session, ApplyError>;
    /// Stores the media endpoints once; a second call returns the first ones.
    async fn attach_media(
        &self,
        session_id: Uuid,
        media: MediaEndpoints,
    ) -> Result<Session, ApplyError>;
    /// Sessions the sweeper must act on at `now`; `settle_delay_ms` after
    /// their end, metered sessions are due for their final meter, and
    /// `live_timeout_ms` (when positive) after their assignment ASSIGNED
    /// sessions are due to be taken back.
    async fn due_sessions(
        &self,
        now: UnixMillis,
        settle_delay_ms: i64,
        live_timeout_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Session>>;
    async fn attempted_workspaces(&self, session_id: Uuid) -> StoreResult<Vec<Uuid>>;
    // settlements
    /// Consumers with sessions whose final meter charged something and that
    /// are not queued yet, with the highest sequence the store gave each.
    async fn unqueued_consumers(&self) -> StoreResult<Vec<(Address, u64)>>;
    /// Queues every session whose final meter charged something and that is
    /// not queued yet; each consumer's take its next sequences in the order
    /// they ended, after the higher of its last stored sequence and its
    /// floor in `chain_last` (the contract's `lastSequence`). A consumer
    /// whose floor is above the store's gets `verify_onchain` records.
    /// Returns how many were queued.
    async fn queue_settlements(
        &self,
        now: UnixMillis,
        chain_last: &[(Address, u64)],
    ) -> StoreResult<usize>;
    async fn settlement(&self, session_id: Uuid) -> StoreResult<Option<SettlementRecord>>;
    /// PENDING, SUBMITTED and UNPAID settlements, each consumer's in sequence order.
    async fn open_settlements(&self, limit: u32) -> StoreResult<Vec<SettlementRecord>>;
    /// Writes back the state, transaction, attempts and timing of each. A
    /// record that becomes CONFIRMED queues `settlement.confirmed` for the
    /// subscribed webhooks of its session's parties, in the same transaction.
    async fn save_settlements(&self, records: Vec<SettlementRecord>) -> StoreResult<()>;

    /// Sessions that carry media now: ASSIGNED, LIVE or PAUSED with their
    /// endpoints provisioned (the media plane adopts them after a restart).
    async fn media_sessions(&self) -> StoreResult<Vec<Session>>;

    // operators (devices)
    async fn insert_enrollment_token(&self, token: EnrollmentToken) -> StoreResult<()>;
    /// A workspace's enrollment tokens, newest first, with when each was
    /// used.
    async fn enrollment_tokens_of(
        &self,
        workspace_id: Uuid,
    ) -> StoreResult<Vec<(EnrollmentToken, Option<UnixMillis>)>>;
    /// Revokes an unused token of the workspace; the token revoked, or
    /// `None` when there is no such unused token.
    async fn revoke_enrollment_token(
        &self,
        workspace_id: Uuid,
        hash: [u8; 32],
    ) -> StoreResult<Option<EnrollmentToken>>;
    /// Whether an enrollment token could be used at `now`, without using
    /// it: the cheap check made before any signature or hash work.
    async fn check_enrollment_token(
        &self,
        token_hash: [u8; 32],
        now: UnixMillis,
    ) -> Result<(), EnrollError>;
    /// Consumes the token and inserts the operator, atomically.
    async fn enroll_operator(
        &self,
        token_hash: [u8; 32],
        operator: Operator,
        device_token_hash: [u8; 32],
        mqtt: Option<MqttAccount>,
        now: UnixMillis,
    ) -> Result<Operator, EnrollError>;
    async fn operator(&self, id: Uuid) -> StoreResult<Option<Operator>>;
    async fn operator_by_token(&self, token_hash: [u8; 32]) -> StoreResult<Option<Operator>>;
    async fn operators_of(&self, workspace_id: Uuid) -> StoreResult<Vec<Operator>>;
    /// Records that the device is alive; optionally its battery and
    /// ONLINE/OFFLINE (refused with `Ok(None)` while BUSY). A contact closes
    /// the device's open outage, or records one from its last contact when
    /// it was silent for longer than `silent_after_ms`.
    async fn touch_operator(
        &self,
        id: Uuid,
        now: UnixMillis,
        battery_pct: Option<u8>,
        availability: Option<Availability>,
        silent_after_ms: i64,
    ) -> StoreResult<Option<Operator>>;
    /// The broker said the device is gone: an outage opens at its last
    /// contact; `false` when it is unknown.
    async fn mark_operator_disconnected(&self, id: Uuid, now: UnixMillis) -> StoreResult<bool>;
    /// A device's log lines, replacing its upload before.
    async fn save_device_logs(&self, logs: DeviceLogs) -> StoreResult<()>;
    async fn device_logs(&self, operator_id: Uuid) -> StoreResult<Option<DeviceLogs>>;
    /// The device's outages that overlap `[from_ms, to_ms]`, oldest first.
    async fn operator_outages(
        &self,
        id: Uuid,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> StoreResult<Vec<Outage>>;
    /// Inserts an account, or replaces the password of one by that name.
    async fn put_mqtt_account(&self, account: MqttAccount) -> StoreResult<()>;
    /// Every broker account, by username.
    async fn mqtt_accounts(&self) -> StoreResult<Vec<MqttAccount>>;
    /// Deletes the device, its locks and its broker account.
    async fn delete_operator(&self, id: Uuid) -> StoreResult<bool>;
    /// Replaces the device's token (by its hash): the old one stops working
    /// at once. False when there is no such device.
    async fn rotate_operator_token(&self, id: Uuid, token_hash: [u8; 32]) -> StoreResult<bool>;
    async fn lock(
        &self,
        operator_id: Uuid,
        subsystem: Subsystem,
        holder: &str,
        now: UnixMillis,
    ) -> Result<Lock, LockError>;
    async fn unlock(
        &self,
        operator_id: Uuid,
        subsystem: Subsystem,
        holder: Option<&str>,
    ) -> Result<(), LockError>;
    async fn locks_of(&self, operator_id: Uuid) -> StoreResult<Vec<Lock>>;
    /// Stores verified samples of one device, all or none: every sequence
    /// must exceed the device's last, and every capture time the capture
    /// time of its last stored sample, and a session may hold at most
    /// `max_session_samples`. Updates its last fix and last seen, and its
    /// outages as [`Store::touch_operator`] does.
    async fn ingest_samples(
        &self,
        operator_id: Uuid,
        samples: Vec<StoredSample>,
        now: UnixMillis,
        silent_after_ms: i64,
        max_session_samples: u64,
    ) -> Result<u64, IngestError>;
    /// Records a workspace's unsigned location, received at `now`, if
    /// `sequence` is above the last one; `false` when it is not (a replay
    /// or out of order).
    async fn record_location(
        &self,
        workspace_id: Uuid,
        sequence: u64,
        point: Point,
        accuracy_m: f64,
        session_id: Option<Uuid>,
        now: UnixMillis,
    ) -> StoreResult<bool>;
    /// The workspace's location heartbeats received in `[from_ms, to_ms]`,
    /// oldest first.
    async fn workspace_locations(
        &self,
        workspace_id: Uuid,
        from_ms: UnixMillis,
        to_ms: UnixMillis,
    ) -> StoreResult<Vec<LocationFix>>;
    /// The session's samples, oldest capture first.
    async fn session_samples(&self, session_id: Uuid) -> StoreResult<Vec<Sample>>;
    /// The same with their signatures and when each was received.
    async fn session_stored_samples(&self, session_id: Uuid) -> StoreResult<Vec<StoredSample>>;

    // webhooks
    async fn insert_webhook(&self, webhook: Webhook) -> StoreResult<()>;
    /// The workspace's webhooks, oldest first.
    async fn webhooks_of(&self, workspace_id: Uuid) -> StoreResult<Vec<Webhook>>;
    /// The webhook, if it belongs to the workspace.
    async fn webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<Option<Webhook>>;
    /// Deletes the webhook and its deliveries; `false` if the workspace has no such webhook.
    async fn delete_webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// The webhook's deliveries, newest first.
    async fn webhook_deliveries(&self, webhook_id: Uuid, limit: u32) -> StoreResult<Vec<Delivery>>;
    /// For each enabled webhook, its oldest PENDING delivery if that is due
    /// at `now`: a later event waits until the one before is delivered or
    /// FAILED. Round robin over workspaces: each workspace's first before
    /// any workspace's second.
    async fn due_deliveries(&self, now: UnixMillis, limit: u32) -> StoreResult<Vec<DueDelivery>>;
    /// Writes back a PENDING delivery's outcome; `false` if it is gone or no
    /// longer PENDING (its webhook was deleted meanwhile). A FAILED one
    /// counts against its webhook, which is disabled at `disable_after`
    /// failed events in a row; a DELIVERED one clears the count.
    async fn save_delivery(&self, delivery: Delivery, disable_after: u32) -> StoreResult<bool>;
    /// Enables the workspace's webhook again; `false` if it has no such webhook.
    async fn enable_webhook(&self, workspace_id: Uuid, id: Uuid) -> StoreResult<bool>;
    /// Takes the delivery `seq`, due at `due_ms`, for one attempt: it is not
    /// due again before `until_ms`, by when the attempt's outcome is saved
    /// (or, if the worker died with it, another worker tries again). False
    /// when another worker took it first.
    async fn claim_delivery(
        &self,
        seq: i64,
        due_ms: UnixMillis,
        until_ms: UnixMillis,
    ) -> StoreResult<bool>;
    /// Whether this replica holds `lease`, taking it if it is free: at most
    /// one replica sharing the store holds a lease, and it passes to another
    /// when its holder dies. A store no other process shares grants it.
    async fn hold_lease(&self, _lease: Lease) -> StoreResult<bool> {
        Ok(true)
    }
}
