//! Request and response bodies of the HTTP API (`/api/v1`), field for field
//! as clients see them (camelCase JSON).
//!
//! Money is integer micro-USDC (`…MicroUsdc`), rates are per second, factors
//! are basis points where we add them; times are RFC 3339 strings with
//! milliseconds.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ErrorCode;
use crate::wallet::{Address, Signature65};

#[cfg(feature = "openapi")]
use utoipa::ToSchema;

/// Trust tier of a supplier workspace without enrolled devices: media plus
/// its unsigned location heartbeats (`POST /workspaces/{id}/location`).
pub const TRUST_TIER_WORKSPACE: u8 = 0;
/// Trust tier of an enrolled device that signs its telemetry (EIP-712).
pub const TRUST_TIER_DEVICE: u8 = 1;
/// The highest tier there is; `minTrustTier` above it is refused.
pub const MAX_TRUST_TIER: u8 = TRUST_TIER_DEVICE;

fn device_tier() -> u8 {
    TRUST_TIER_DEVICE
}

// Design: the envelope is generic so a typed client can decode `data`
// directly; the server serializes it once per response.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope<T> {
    pub status_code: u16,
    pub message: String,
    pub data: T,
    pub timestamp: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub status_code: u16,
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub timestamp: String,
}

// ---------------------------------------------------------------- sessions

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SessionState {
    Requested,
    Assigned,
    Live,
    Paused,
    Ended,
    Cancelled,
    Expired,
}

impl SessionState {
    pub const ALL: [SessionState; 7] = [
        Self::Requested,
        Self::Assigned,
        Self::Live,
        Self::Paused,
        Self::Ended,
        Self::Cancelled,
        Self::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "REQUESTED",
            Self::Assigned => "ASSIGNED",
            Self::Live => "LIVE",
            Self::Paused => "PAUSED",
            Self::Ended => "ENDED",
            Self::Cancelled => "CANCELLED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// No transition leaves a terminal state.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ended | Self::Cancelled | Self::Expired)
    }

    /// States in which a session can still cost its consumer money.
    pub fn is_open(self) -> bool {
        !self.is_terminal()
    }
}

impl std::fmt::Display for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which of the two expiries ended a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExpiryReason {
    /// Still REQUESTED or ASSIGNED at `createdAt + waitTimeoutSeconds`: no meter, no charge.
    WaitTimeout,
    /// LIVE past `maxDurationSeconds` without `end`: metered up to the maximum and settled.
    MaxDuration,
    /// Ended by the server while LIVE: the consumer's pool, less its
    /// requested withdrawals and what it already owes, fell below the
    /// session's accrued charge. Metered up to then and settled.
    InsufficientCredit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WindowReason {
    NetworkError,
    StaleTelemetry,
    OutsideGeofence,
    Paused,
}

/// A span of a session's timeline that is not billable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WindowDto {
    pub reason: WindowReason,
    pub opened_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeterDto {
    pub clean_seconds: u64,
    pub failed_seconds: u64,
    pub charged_micro_usdc: u64,
    pub fee_micro_usdc: u64,
    pub operator_earned_micro_usdc: u64,
    pub fee_bps: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfferRef {
    pub workspace_id: Uuid,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionDto {
    pub id: Uuid,
    pub state: SessionState,
    pub lat: f64,
    pub lng: f64,
    pub geofence_radius_meters: u32,
    pub max_duration_seconds: u32,
    pub wait_timeout_seconds: u32,
    pub rate_per_second_micro_usdc: u64,
    /// `rate × maxDurationSeconds`: the worst-case charge.
    pub hold_micro_usdc: u64,
    pub consumer_workspace_id: Uuid,
    pub operator_workspace_id: Option<Uuid>,
    /// The enrolled device serving the session, if the supplier has devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quote_id: Option<Uuid>,
    /// The lowest trust tier the consumer accepts: 0 any supplier, 1 only an
    /// enrolled device signing its telemetry.
    #[serde(default)]
    pub min_trust_tier: u8,
    /// The trust tier of the supplier the session was assigned to (0 a
    /// workspace without devices, 1 an enrolled device); absent until then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_tier: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<OfferRef>,
    pub created_at: String,
    pub expires_at: String,
    pub assigned_at: Option<String>,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_reason: Option<ExpiryReason>,
    pub windows: Vec<WindowDto>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meter: Option<MeterDto>,
    /// `meter.cleanSeconds` again, where the reference's clients read it;
    /// absent until the session is metered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_seconds: Option<u64>,
    /// `meter.failedSeconds` again, at the top level as in the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_seconds: Option<u64>,
    /// `meter.chargedMicroUsdc` again, at the top level as in the reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub charged_micro_usdc: Option<u64>,
    /// False until `settleDelaySeconds` after the end: late samples may still change the meter.
    #[serde(default)]
    pub meter_final: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateSessionRequest {
    pub lat: f64,
    pub lng: f64,
    pub max_duration_seconds: u32,
    #[serde(default)]
    pub wait_timeout_seconds: Option<u32>,
    #[serde(default)]
    pub geofence_radius_meters: Option<u32>,
    #[serde(default)]
    pub quote_id: Option<Uuid>,
    /// Accepted for compatibility; must name the caller's own workspace.
    #[serde(default)]
    pub workspace_id: Option<Uuid>,
    /// The lowest trust tier to dispatch to: 0 any supplier, 1 only an
    /// enrolled device signing its telemetry. Default: the server's
    /// `dispatch.default_min_trust_tier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_trust_tier: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CancelAllResponse {
    pub count: u32,
    pub cancelled: Vec<Uuid>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StartResponse {
    pub session_id: Uuid,
    pub state: SessionState,
    pub video_backend_ref: String,
    pub whip_url: String,
    pub whep_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProducerTokenDto {
    pub video_backend_ref: String,
    pub whip_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ViewerTokenDto {
    pub whep_url: String,
}

/// Where a session's on-chain settlement stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SettlementStatus {
    /// The meter is not final yet (the session runs, or late samples may come).
    NotReady,
    /// The final meter charged nothing: nothing moves on chain.
    NotRequired,
    Pending,
    Submitted,
    Confirmed,
    /// A debt: the contract refused it for a reason the consumer caused (its
    /// pool no longer covers it). Retried when the pool grows; until then
    /// the consumer gets 402 PAYMENT_REQUIRED for new sessions.
    Unpaid,
    /// Refused for a reason on the server's side; `lastError` says which.
    Failed,
}

/// `GET /settlements/{sessionId}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SettlementDto {
    pub session_id: Uuid,
    pub state: SettlementStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_amount_micro_usdc: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_amount_micro_usdc: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_number: Option<u64>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WalletEventType {
    Deposit,
    /// The first step of a withdrawal: the amount leaves the available
    /// credit at once and can be taken after the contract's notice period.
    WithdrawalRequested,
    Withdrawal,
    Settle,
    Approval,
}

/// One on-chain event of the caller's wallet (`GET /wallet/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WalletEventDto {
    #[serde(rename = "type")]
    pub kind: WalletEventType,
    pub tx_hash: String,
    pub block_number: u64,
    pub log_index: u64,
    /// Deposited, withdrawn or approved; for SETTLE the charge when the
    /// wallet paid, its share when it was paid.
    pub amount_micro_usdc: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WalletEventsDto {
    pub events: Vec<WalletEventDto>,
    /// Pass as `cursor` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The caller's wallet on the settlement chain (`GET /wallet`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WalletDto {
    pub wallet_address: String,
    pub chain_id: u64,
    /// The consumer's pool in the settlement contract, micro-USDC.
    pub pool_micro_usdc: u64,
    /// USDC in the wallet itself, micro-USDC.
    pub usdc_balance_micro_usdc: u64,
    /// The cap the consumer set on settlement rates, if any.
    pub max_rate_per_second_micro_usdc: Option<u64>,
    /// A withdrawal requested and not yet taken, micro-USDC (0: none).
    #[serde(default)]
    pub withdrawal_requested_micro_usdc: u64,
    /// When the requested withdrawal can be taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawable_at: Option<String>,
    /// Worst cases of the consumer's open sessions, micro-USDC.
    #[serde(default)]
    pub held_micro_usdc: u64,
    /// Charges of ended sessions not settled yet (debts included), micro-USDC.
    #[serde(default)]
    pub unsettled_micro_usdc: u64,
    /// Settlements the consumer owes (UNPAID); each blocks new sessions.
    #[serde(default)]
    pub debts: Vec<DebtDto>,
    /// pool − requested withdrawal − held − unsettled, floored at zero: what
    /// a new session's worst case must fit in.
    #[serde(default)]
    pub available_credit_micro_usdc: u64,
}

/// A settlement the consumer owes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DebtDto {
    pub session_id: Uuid,
    pub amount_micro_usdc: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfferDto {
    pub session_id: Uuid,
    pub lat: f64,
    pub lng: f64,
    pub geofence_radius_meters: u32,
    pub max_duration_seconds: u32,
    pub rate_per_second_micro_usdc: u64,
    pub expires_at: String,
}

// ---------------------------------------------------------------- pricing

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct QuoteDto {
    pub quote_id: Uuid,
    pub rate_per_second_micro_usdc: u64,
    pub estimated_total_micro_usdc: u64,
    pub supply_factor: f64,
    pub demand_factor: f64,
    pub corridor_multiplier: f64,
    pub supply_factor_bps: u32,
    pub demand_factor_bps: u32,
    pub corridor_multiplier_bps: u32,
    pub base_rate_per_second_micro_usdc: u64,
    pub duration_seconds: u32,
    pub expires_at: String,
    /// The best trust tier among the available suppliers covering the point
    /// (0 a workspace without devices, 1 an enrolled device); absent when
    /// none covers it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_tier: Option<u8>,
}

// ---------------------------------------------------------------- workspaces

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Role {
    Supplier,
    Consumer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Availability {
    Online,
    Offline,
    /// Set only by the system while the supplier holds a session.
    Busy,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeviceKind {
    Phone,
    Laptop,
    Drone,
    Ptz,
    Fixed,
    Other,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phone => "PHONE",
            Self::Laptop => "LAPTOP",
            Self::Drone => "DRONE",
            Self::Ptz => "PTZ",
            Self::Fixed => "FIXED",
            Self::Other => "OTHER",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceDto {
    pub id: Uuid,
    pub slug: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wallet_address: Address,
    pub roles: Vec<Role>,
    pub availability_state: Availability,
    pub coverage_lat: Option<f64>,
    pub coverage_lng: Option<f64>,
    pub coverage_radius_meters: Option<u32>,
    pub device_kind: Option<DeviceKind>,
    pub auto_accept: bool,
    pub offer_timeout_seconds: u32,
    pub created_at: String,
    /// 0 while the workspace has no enrolled device (it serves sessions
    /// itself), 1 once it has one (its devices serve them).
    #[serde(default)]
    pub trust_tier: u8,
    /// Dispatch skips the workspace until then: it was assigned a session
    /// and did not go LIVE in time (the last such time, kept once past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling_down_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChallengeRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wallet_address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChallengeResponse {
    pub nonce: String,
    /// The exact text to sign with `personal_sign` (EIP-191).
    pub message: String,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateWorkspaceRequest {
    pub slug: String,
    pub name: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wallet_address: Address,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub signature: Signature65,
    pub nonce: String,
    pub roles: Vec<Role>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpdateWorkspaceRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub availability_state: Option<Availability>,
    #[serde(default)]
    pub coverage_lat: Option<f64>,
    #[serde(default)]
    pub coverage_lng: Option<f64>,
    #[serde(default)]
    pub coverage_radius_meters: Option<u32>,
    #[serde(default)]
    pub device_kind: Option<DeviceKind>,
    #[serde(default)]
    pub auto_accept: Option<bool>,
    #[serde(default)]
    pub offer_timeout_seconds: Option<u32>,
}

// ---------------------------------------------------------------- auth

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WalletLoginRequest {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wallet_address: Address,
    pub nonce: String,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub signature: Signature65,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WalletLoginResponse {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub wallet_address: Address,
    pub workspace_id: Option<Uuid>,
    pub workspaces: Vec<Uuid>,
    pub expires_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SelectWorkspaceRequest {
    pub workspace_id: Uuid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum Scope {
    #[serde(rename = "sessions:read")]
    SessionsRead,
    #[serde(rename = "sessions:create")]
    SessionsCreate,
    #[serde(rename = "sessions:operate")]
    SessionsOperate,
    #[serde(rename = "pricing:read")]
    PricingRead,
    #[serde(rename = "wallet:read")]
    WalletRead,
    #[serde(rename = "operators:write")]
    OperatorsWrite,
    /// Register and delete outbound webhooks.
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
}

impl Scope {
    pub const ALL: [Scope; 7] = [
        Self::SessionsRead,
        Self::SessionsCreate,
        Self::SessionsOperate,
        Self::PricingRead,
        Self::WalletRead,
        Self::OperatorsWrite,
        Self::WebhooksWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionsRead => "sessions:read",
            Self::SessionsCreate => "sessions:create",
            Self::SessionsOperate => "sessions:operate",
            Self::PricingRead => "pricing:read",
            Self::WalletRead => "wallet:read",
            Self::OperatorsWrite => "operators:write",
            Self::WebhooksWrite => "webhooks:write",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyEnvironment {
    Test,
    Live,
}

impl KeyEnvironment {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Test => "TEST",
            Self::Live => "LIVE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CreateApiKeyRequest {
    pub label: String,
    pub environment: KeyEnvironment,
    pub scopes: Vec<Scope>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyDto {
    pub id: Uuid,
    pub label: String,
    pub environment: KeyEnvironment,
    pub scopes: Vec<Scope>,
    /// The first characters of the key, enough to recognise it.
    pub prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub key: ApiKeyDto,
    /// The plaintext key. Shown once; only its SHA-256 is stored.
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CallerKind {
    ApiKey,
    Wallet,
    /// An enrolled device with its bearer token.
    Device,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MeDto {
    pub kind: CallerKind,
    pub workspace_id: Option<Uuid>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub wallet_address: Option<Address>,
    pub scopes: Vec<Scope>,
    pub roles: Vec<Role>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_id: Option<Uuid>,
    /// The device, when a device token calls: its operator id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator_id: Option<Uuid>,
}

// ---------------------------------------------------------------- webhooks

/// What an outbound webhook can be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub enum WebhookEventType {
    #[serde(rename = "session.assigned")]
    SessionAssigned,
    #[serde(rename = "session.live")]
    SessionLive,
    #[serde(rename = "session.ended")]
    SessionEnded,
    #[serde(rename = "session.expired")]
    SessionExpired,
    #[serde(rename = "session.cancelled")]
    SessionCancelled,
    #[serde(rename = "settlement.confirmed")]
    SettlementConfirmed,
}

impl WebhookEventType {
    pub const ALL: [WebhookEventType; 6] = [
        Self::SessionAssigned,
        Self::SessionLive,
        Self::SessionEnded,
        Self::SessionExpired,
        Self::SessionCancelled,
        Self::SettlementConfirmed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionAssigned => "session.assigned",
            Self::SessionLive => "session.live",
            Self::SessionEnded => "session.ended",
            Self::SessionExpired => "session.expired",
            Self::SessionCancelled => "session.cancelled",
            Self::SettlementConfirmed => "settlement.confirmed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

impl std::fmt::Display for WebhookEventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `POST /webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// Where events are POSTed: an `http://` or `https://` URL.
    pub url: String,
    /// The events to send; left out: every event type there is now.
    #[serde(default)]
    pub events: Option<Vec<WebhookEventType>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookDto {
    pub id: Uuid,
    pub url: String,
    pub events: Vec<WebhookEventType>,
    pub created_at: String,
    /// Events FAILED since the last one delivered.
    #[serde(default)]
    pub failed_events_in_a_row: u32,
    /// When the webhook was switched off for failing
    /// `webhooks.disable_after_failed_events` events in a row; absent while
    /// it is on. `POST /webhooks/{id}/enable` turns it on again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookDto,
    /// The signing secret (`whsec_…`), shown in this response only.
    pub secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum DeliveryState {
    /// Not delivered yet; tried again at `nextAttemptAt`.
    Pending,
    /// A 2xx answer came back.
    Delivered,
    /// Every attempt failed; not tried again.
    Failed,
}

/// One event's delivery to one webhook, in `GET /webhooks/{id}/deliveries`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookDeliveryDto {
    /// The event's id, the same in every attempt (`x-lx-webhook-id`).
    pub event_id: Uuid,
    pub event_type: WebhookEventType,
    pub session_id: Uuid,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The HTTP status of the last answer, if one came.
    pub last_status_code: Option<u16>,
    /// Why the last attempt failed: a non-2xx status or a network error.
    pub last_error: Option<String>,
    /// When a PENDING delivery is tried next.
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// When the event happened.
    pub created_at: String,
}

/// The body POSTed to a webhook. `data` is the session (a `SessionDto`) for
/// `session.*` events and the settlement (a `SettlementDto`) for
/// `settlement.confirmed`, as they were when the event happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEvent {
    /// Stable across retries: receivers drop an id they have seen.
    pub id: Uuid,
    #[serde(rename = "type")]
    pub event_type: WebhookEventType,
    pub created_at: String,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub data: serde_json::Value,
}

// ---------------------------------------------------------------- public reads

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HealthDto {
    pub status: String,
    pub version: String,
    pub store: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ConfigDto {
    pub version: String,
    pub chain_id: u64,
    pub settlement_contract: Option<String>,
    pub usdc_contract: Option<String>,
    /// The EIP-712 domain of the devices' signed telemetry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_domain: Option<TelemetryDomainDto>,
    pub base_rate_per_second_micro_usdc: u64,
    pub platform_fee_bps: u32,
    pub quote_ttl_seconds: u32,
    pub default_wait_timeout_seconds: u32,
    pub min_wait_timeout_seconds: u32,
    pub max_wait_timeout_seconds: u32,
    pub max_duration_seconds: u32,
    pub default_geofence_radius_meters: u32,
    pub media_backend: String,
    /// The `minTrustTier` of a session whose request names none.
    #[serde(default)]
    pub default_min_trust_tier: u8,
    /// An assigned supplier not LIVE this long after the assignment is
    /// cooled down and the session dispatched again (0: never).
    #[serde(default)]
    pub assigned_live_timeout_seconds: u32,
    /// How long a tier-0 workspace's location heartbeat keeps a second clean.
    #[serde(default)]
    pub heartbeat_fresh_seconds: u32,
    /// A sample received longer than this after its capture counts only
    /// inside a recorded outage of its device.
    #[serde(default)]
    pub late_sample_bound_seconds: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CoverageCircle {
    /// Rounded to 0.01° (about 1 km) so a supplier's site is not disclosed.
    pub lat: f64,
    pub lng: f64,
    pub radius_meters: u32,
    pub device_kind: Option<DeviceKind>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CoverageDto {
    pub circles: Vec<CoverageCircle>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DemandCell {
    /// The cell's south-west corner.
    pub lat: f64,
    pub lng: f64,
    pub requests: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DemandDto {
    pub days: u32,
    pub cell_degrees: f64,
    pub cells: Vec<DemandCell>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_states_round_trip_through_their_names() {
        for state in SessionState::ALL {
            assert_eq!(SessionState::parse(state.as_str()), Some(state));
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(json, format!("\"{state}\""));
        }
        assert_eq!(SessionState::parse("live"), None);
    }

    #[test]
    fn scopes_use_their_colon_names_on_the_wire() {
        for scope in Scope::ALL {
            let json = serde_json::to_string(&scope).unwrap();
            assert_eq!(json, format!("\"{}\"", scope.as_str()));
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
        }
    }

    #[test]
    fn webhook_event_types_use_their_dotted_names_on_the_wire() {
        for event in WebhookEventType::ALL {
            let json = serde_json::to_string(&event).unwrap();
            assert_eq!(json, format!("\"{event}\""));
            assert_eq!(WebhookEventType::parse(event.as_str()), Some(event));
        }
        let body = r#"{"url":"https://x.test/hook","events":["session.live"]}"#;
        let req: CreateWebhookRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.events, Some(vec![WebhookEventType::SessionLive]));
        assert!(
            serde_json::from_str::<CreateWebhookRequest>(
                r#"{"url":"x","events":["session.paused"]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn create_session_request_reads_reference_bodies() {
        let body = r#"{"lat":4.71,"lng":-74.07,"maxDurationSeconds":300,"waitTimeoutSeconds":300}"#;
        let req: CreateSessionRequest = serde_json::from_str(body).unwrap();
        assert_eq!(req.max_duration_seconds, 300);
        assert_eq!(req.wait_timeout_seconds, Some(300));
        assert_eq!(req.quote_id, None);
    }
}

// ---------------------------------------------------------------- operators (devices)

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentTokenDto {
    /// One-time token for `lx-agent enroll --token`. Shown once.
    pub token: String,
    /// Names the token in the list and to revoke it (its SHA-256, hex).
    #[serde(default)]
    pub id: String,
    pub workspace_id: Uuid,
    pub expires_at: String,
}

/// Where an enrollment token stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnrollmentTokenState {
    Active,
    Used,
    Expired,
    /// Revoked by its workspace: in the revocation's answer only (a revoked
    /// token is gone from the list).
    Revoked,
}

/// An enrollment token as its workspace lists it (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentTokenInfoDto {
    pub id: String,
    pub workspace_id: Uuid,
    pub state: EnrollmentTokenState,
    pub created_at: String,
    pub expires_at: String,
    pub used_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterOperatorRequest {
    pub enrollment_token: String,
    pub name: String,
    pub device_kind: DeviceKind,
    /// The device key's address.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub address: Address,
    /// The device key's `personal_sign` over the enrollment token.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub proof: Signature65,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceTokenDto {
    pub operator_id: Uuid,
    /// The device's new bearer token (`lxdv_…`), shown once; the previous
    /// one no longer works.
    pub device_token: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RegisterOperatorResponse {
    pub operator_id: Uuid,
    pub workspace_id: Uuid,
    /// Bearer token of the device (`lxdv_…`). Shown once.
    pub device_token: String,
    /// The chain id telemetry signatures are made for.
    pub chain_id: u64,
    /// The fleet link's broker and this device's account on it; absent when
    /// the server runs without MQTT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttCredentialsDto>,
}

/// A broker account for the fleet link (DESIGN.md section 6). The password
/// is shown once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MqttCredentialsDto {
    /// `mqtt://host:port` or `mqtts://host:port`.
    pub url: String,
    /// Absent when the server does not manage the broker's accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Subsystem {
    Camera,
    Gimbal,
    Stream,
}

impl Subsystem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Camera => "camera",
            Self::Gimbal => "gimbal",
            Self::Stream => "stream",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PositionDto {
    pub lat: f64,
    pub lng: f64,
    pub accuracy_meters: f64,
    pub captured_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LockDto {
    pub subsystem: Subsystem,
    /// Who holds it: `apiKey:<id>`, `wallet:<address>` or `device:<id>`.
    pub holder: String,
    pub acquired_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OperatorDto {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: String,
    pub device_kind: DeviceKind,
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub address: Address,
    pub availability_state: Availability,
    /// A heartbeat or telemetry arrived within the last 60 s.
    pub connected: bool,
    pub last_seen_at: Option<String>,
    pub battery_percent: Option<u8>,
    /// The last verified position.
    pub position: Option<PositionDto>,
    pub locks: Vec<LockDto>,
    pub created_at: String,
    /// Always 1: an enrolled device signs its telemetry.
    #[serde(default = "device_tier")]
    pub trust_tier: u8,
    /// Dispatch skips the device until then: it was assigned a session and
    /// did not go LIVE in time (the last such time, kept once past).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling_down_until: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatRequest {
    #[serde(default)]
    pub battery_percent: Option<u8>,
    /// ONLINE or OFFLINE; BUSY belongs to the system.
    #[serde(default)]
    pub availability_state: Option<Availability>,
    /// A signed position outside any session.
    #[serde(default)]
    pub sample: Option<crate::telemetry::SampleJson>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LockRequest {
    pub subsystem: Subsystem,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TelemetryAck {
    pub accepted: u32,
    pub last_sequence: u64,
}

/// `POST /workspaces/:id/location`: an unsigned location heartbeat (~5 s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LocationRequest {
    pub lat: f64,
    pub lng: f64,
    pub accuracy_meters: f64,
    pub sequence: u64,
    #[serde(default)]
    pub session_id: Option<Uuid>,
    #[serde(default)]
    pub speed_mps: Option<f64>,
}

/// A verified telemetry sample as the server stored it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TelemetryPointDto {
    pub sequence: u64,
    pub captured_at: String,
    pub lat: f64,
    pub lng: f64,
    pub accuracy_meters: f64,
    pub source: crate::telemetry::Source,
    /// The device's EIP-712 signature of `signed` (65 bytes, hex, `0x…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The device's address (EIP-55): what any EIP-712 implementation
    /// recovers from `signature` over `signed` in `GET /config`'s
    /// `telemetryDomain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// The `Telemetry` message as signed, in integers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed: Option<SignedTelemetryDto>,
}

/// The EIP-712 `Telemetry` message of a sample, field for field:
/// `Telemetry(bytes16 sessionId,uint64 sequence,uint64 capturedAtMs,int32
/// latE7,int32 lngE7,uint32 accuracyCm,uint8 source)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SignedTelemetryDto {
    /// 16 bytes, hex (`0x…`); zeros for a sample of no session.
    pub session_id: String,
    pub sequence: u64,
    pub captured_at_ms: u64,
    pub lat_e7: i32,
    pub lng_e7: i32,
    pub accuracy_cm: u32,
    pub source: u8,
}

/// The EIP-712 domain devices sign their telemetry in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct TelemetryDomainDto {
    pub name: String,
    pub version: String,
    pub chain_id: u64,
}

/// `POST /operators/{id}/logs`: a device's recent log lines, as its fleet
/// manager asked for them (the `logs` command).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceLogsUpload {
    /// Oldest first.
    pub lines: Vec<String>,
    /// Older lines of the span asked for were left out (the count cap, or
    /// the device's own buffer).
    #[serde(default)]
    pub truncated: bool,
}

/// `GET /operators/{id}/logs`: the device's latest upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeviceLogsDto {
    pub operator_id: Uuid,
    pub uploaded_at: String,
    pub lines: Vec<String>,
    pub truncated: bool,
}
