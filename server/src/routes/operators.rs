//! Enrolled devices (operators) of a supplier workspace: enrollment,
//! heartbeats, the fleet list, subsystem locks; and telemetry ingest.

use axum::extract::{Path, State};
use lx_protocol::ErrorCode;
use lx_protocol::api::{
    Availability, CallerKind, EnrollmentTokenDto, HeartbeatRequest, LocationRequest, LockDto,
    LockRequest, MqttCredentialsDto, OperatorDto, PositionDto, RegisterOperatorRequest,
    RegisterOperatorResponse, Scope, TelemetryAck,
};
use lx_protocol::telemetry::SampleJson;
use lx_protocol::time::format_millis;
use lx_protocol::wallet::{Address, personal_message_hash, recover_key_prehash};
use uuid::Uuid;

use crate::app::App;
use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiOk, AppState, parse_id};
use crate::store::{EnrollError, EnrollmentToken, LockError, Operator};

async fn operator_dto(app: &App, op: &Operator) -> ApiResult<OperatorDto> {
    let connected_after =
        app.now() - i64::from(app.config.operators.connected_within_seconds) * 1000;
    let locks = app.store.locks_of(op.id).await?;
    Ok(OperatorDto {
        id: op.id,
        workspace_id: op.workspace_id,
        name: op.name.clone(),
        device_kind: op.device_kind,
        address: op.address,
        availability_state: op.availability,
        connected: op.connected(connected_after),
        last_seen_at: op.last_seen_ms.map(format_millis),
        battery_percent: op.battery_pct,
        position: op.fix.map(|f| PositionDto {
            lat: f64::from(f.lat_e7) / 1e7,
            lng: f64::from(f.lng_e7) / 1e7,
            accuracy_meters: f64::from(f.accuracy_cm) / 100.0,
            captured_at: format_millis(f.captured_ms),
        }),
        locks: locks
            .into_iter()
            .map(|l| LockDto {
                subsystem: l.subsystem,
                holder: l.holder,
                acquired_at: format_millis(l.acquired_ms),
            })
            .collect(),
        created_at: format_millis(op.created_ms),
        trust_tier: lx_protocol::api::TRUST_TIER_DEVICE,
        cooling_down_until: op.cooling_down_until_ms.map(format_millis),
    })
}

/// A workspace's trust tier follows whether it has devices: dispatch learns
/// of an enrolment or a removal at once.
async fn reindex_workspace(app: &App, workspace_id: Uuid) {
    match app.store.workspace(workspace_id).await {
        Ok(Some(ws)) => app.dispatcher.sync(&ws),
        Ok(None) => app.dispatcher.remove(workspace_id),
        Err(err) => tracing::warn!(%err, "supplier not re-indexed after a device change"),
    }
}

fn require_admin(caller: &Caller, workspace_id: Uuid) -> ApiResult<()> {
    if caller.administers(workspace_id) {
        return Ok(());
    }
    if caller
        .workspace
        .as_ref()
        .is_some_and(|w| w.id == workspace_id)
    {
        return Err(ApiError::forbidden(
            "managing devices needs the owner's wallet or the operators:write scope",
            "scope:operators:write",
        ));
    }
    Err(ApiError::workspace_not_found())
}

/// The operator `id` if it belongs to the caller's workspace.
async fn own_operator(app: &App, caller: &Caller, id: &str) -> ApiResult<Operator> {
    let id = parse_id("id", id)?;
    let op = app
        .store
        .operator(id)
        .await?
        .ok_or_else(ApiError::operator_not_found)?;
    if caller
        .workspace
        .as_ref()
        .is_some_and(|w| w.id == op.workspace_id)
    {
        Ok(op)
    } else {
        Err(ApiError::operator_not_found())
    }
}

fn enroll_error(err: EnrollError) -> ApiError {
    match err {
        EnrollError::UnknownToken => ApiError::invalid("enrollmentToken", "unknown"),
        EnrollError::UsedToken => ApiError::invalid("enrollmentToken", "already used"),
        EnrollError::ExpiredToken => ApiError::invalid("enrollmentToken", "expired"),
        EnrollError::AddressTaken => {
            ApiError::new(ErrorCode::Conflict, "this device key is already enrolled")
                .with_detail("operator:addressTaken")
        }
        EnrollError::Store(e) => e.into(),
    }
}

/// Who may take or release a device's locks: a key or wallet with
/// `operators:write`, or the device itself for its own subsystems. A
/// sibling device, or a key with some other scope, may not. Judged before
/// any lookup, so a refusal says nothing of whether the device exists.
fn may_lock(caller: &Caller, id: &str) -> ApiResult<()> {
    match &caller.operator {
        Some(device) if parse_id("id", id)? == device.id => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "a device locks only its own subsystems",
            "lock:notOwnDevice",
        )),
        None => caller.require(Scope::OperatorsWrite).map(|_| ()),
    }
}

/// Who may read a fleet's devices (their positions and locks).
const FLEET_READERS: [Scope; 2] = [Scope::OperatorsWrite, Scope::SessionsOperate];

fn device_of(caller: &Caller) -> ApiResult<&Operator> {
    caller.operator.as_ref().ok_or_else(|| {
        ApiError::forbidden(
            "this route takes a device token (lxdv_…)",
            "auth:deviceOnly",
        )
    })
}

#[utoipa::path(post, path = "/api/v1/operators/reconnect", tag = "Operators",
    description = "A device back after a restart or a lost link, with its saved token: who it is, and it counts as \
        heard from (its outage, if any, closes). 401 for a token that is missing, unknown or rotated away.",
    responses((status = 200, body = OperatorDto), (status = 401, body = lx_protocol::api::ErrorBody)),
    security(("deviceToken" = [])))]
pub(super) async fn reconnect(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<OperatorDto>> {
    let me = caller.operator.as_ref().ok_or_else(|| {
        ApiError::unauthenticated("reconnect takes the device's saved token (lxdv_…)")
    })?;
    let op = app
        .store
        .touch_operator(me.id, app.now(), None, None, app.late_sample_bound_ms())
        .await?
        .ok_or_else(ApiError::operator_not_found)?;
    Ok(ApiOk::wrote(&app, operator_dto(&app, &op).await?))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{id}/enrollment-tokens", tag = "Operators",
    params(("id" = Uuid, Path)), description = "Mints a one-time token for `lx-agent enroll --token`.",
    responses((status = 201, body = EnrollmentTokenDto)), security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn create_enrollment_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<EnrollmentTokenDto>> {
    let workspace_id = parse_id("id", &id)?;
    require_admin(&caller, workspace_id)?;
    let token = auth::generate_token(auth::ENROLLMENT_TOKEN_PREFIX);
    let now = app.now();
    let expires_ms = now + i64::from(app.config.operators.enrollment_token_ttl_seconds) * 1000;
    app.store
        .insert_enrollment_token(EnrollmentToken {
            hash: auth::hash_key(&token),
            workspace_id,
            created_ms: now,
            expires_ms,
        })
        .await?;
    Ok(ApiOk::created(
        &app,
        EnrollmentTokenDto {
            id: hex::encode(auth::hash_key(&token)),
            token,
            workspace_id,
            expires_at: format_millis(expires_ms),
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{id}/enrollment-tokens", tag = "Operators",
    params(("id" = Uuid, Path)), description = "The workspace's enrollment tokens, newest first: each by its id (never \
        the token), ACTIVE, USED or EXPIRED.",
    responses((status = 200, body = Vec<lx_protocol::api::EnrollmentTokenInfoDto>)),
    security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn list_enrollment_tokens(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<Vec<lx_protocol::api::EnrollmentTokenInfoDto>>> {
    use lx_protocol::api::EnrollmentTokenState;
    let workspace_id = parse_id("id", &id)?;
    require_admin(&caller, workspace_id)?;
    let now = app.now();
    let tokens = app
        .store
        .enrollment_tokens_of(workspace_id)
        .await?
        .into_iter()
        .map(|(t, used_ms)| lx_protocol::api::EnrollmentTokenInfoDto {
            id: hex::encode(t.hash),
            workspace_id: t.workspace_id,
            state: match used_ms {
                Some(_) => EnrollmentTokenState::Used,
                None if t.expires_ms <= now => EnrollmentTokenState::Expired,
                None => EnrollmentTokenState::Active,
            },
            created_at: format_millis(t.created_ms),
            expires_at: format_millis(t.expires_ms),
            used_at: used_ms.map(format_millis),
        })
        .collect();
    Ok(ApiOk::read(tokens))
}

#[utoipa::path(delete, path = "/api/v1/workspaces/{id}/enrollment-tokens/{tokenId}", tag = "Operators",
    params(("id" = Uuid, Path), ("tokenId" = String, Path)),
    description = "Revokes an unused enrollment token: no device can enroll with it any more. A used one has done its \
        work (remove its device instead): 404.",
    responses((status = 200, body = lx_protocol::api::EnrollmentTokenInfoDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn revoke_enrollment_token(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, token_id)): Path<(String, String)>,
) -> ApiResult<ApiOk<lx_protocol::api::EnrollmentTokenInfoDto>> {
    let workspace_id = parse_id("id", &id)?;
    require_admin(&caller, workspace_id)?;
    let not_found = || {
        ApiError::new(
            ErrorCode::NotFound,
            "No unused enrollment token with this id",
        )
        .with_detail("enrollmentToken:notFound")
    };
    let hash: [u8; 32] = hex::decode(&token_id)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| ApiError::invalid("tokenId", "must be 64 hex digits, as listed"))?;
    let revoked = app
        .store
        .revoke_enrollment_token(workspace_id, hash)
        .await?
        .ok_or_else(not_found)?;
    Ok(ApiOk::wrote(
        &app,
        lx_protocol::api::EnrollmentTokenInfoDto {
            id: hex::encode(revoked.hash),
            workspace_id,
            state: lx_protocol::api::EnrollmentTokenState::Revoked,
            created_at: format_millis(revoked.created_ms),
            expires_at: format_millis(revoked.expires_ms),
            used_at: None,
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/operators/register", tag = "Operators",
    request_body = RegisterOperatorRequest,
    description = "Enrolls a device: the enrollment token is the auth, `proof` is the device key's personal_sign over it.",
    responses((status = 201, body = RegisterOperatorResponse)))]
pub(super) async fn register(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<RegisterOperatorRequest>,
) -> ApiResult<ApiOk<RegisterOperatorResponse>> {
    let name_len = req.name.trim().chars().count();
    if name_len == 0 || name_len > 100 {
        return Err(ApiError::invalid("name", "must be 1 to 100 characters"));
    }
    // Cheap before costly: a token that cannot be used is refused before
    // any key recovery or password hashing, and those run off the async
    // workers.
    let token_hash = auth::hash_key(&req.enrollment_token);
    app.store
        .check_enrollment_token(token_hash, app.now())
        .await
        .map_err(enroll_error)?;
    let (token, proof) = (req.enrollment_token.clone(), req.proof);
    let key = tokio::task::spawn_blocking(move || {
        recover_key_prehash(&personal_message_hash(token.as_bytes()), &proof)
    })
    .await
    .map_err(|_| ApiError::internal())?
    .map_err(|e| ApiError::invalid("proof", e))?;
    if Address::from_verifying_key(&key) != req.address {
        return Err(ApiError::new(
            ErrorCode::InvalidSignature,
            "proof is not signed by the key of address",
        )
        .with_detail("operator:badProof"));
    }
    let device_token = auth::generate_token(auth::DEVICE_TOKEN_PREFIX);
    let now = app.now();
    let operator = Operator {
        id: Uuid::new_v4(),
        workspace_id: Uuid::nil(),
        name: req.name.trim().to_owned(),
        device_kind: req.device_kind,
        address: req.address,
        public_key: key.to_encoded_point(true).as_bytes().to_vec(),
        availability: Availability::Online,
        battery_pct: None,
        last_seen_ms: None,
        last_sequence: None,
        fix: None,
        created_ms: now,
        disconnected_ms: None,
        cooling_down_until_ms: None,
    };
    // The device logs in to the broker with its operator id: the ACL's
    // patterns then give it its own topics. Issuing hashes the password
    // (PBKDF2): off the async workers.
    let (account, mqtt) = match app.broker_accounts.clone() {
        Some(accounts) => {
            let id = operator.id;
            let (account, dto) = tokio::task::spawn_blocking(move || {
                accounts.issue(id.to_string(), Uuid::nil(), Some(id), now)
            })
            .await
            .map_err(|_| ApiError::internal())?;
            (account, Some(dto))
        }
        None => (None, None),
    };
    let op = app
        .store
        .enroll_operator(
            token_hash,
            operator,
            auth::hash_key(&device_token),
            account,
            now,
        )
        .await
        .map_err(enroll_error)?;
    reindex_workspace(&app, op.workspace_id).await;
    sync_broker_accounts(&app).await;
    Ok(ApiOk::created(
        &app,
        RegisterOperatorResponse {
            operator_id: op.id,
            workspace_id: op.workspace_id,
            device_token,
            chain_id: app.config.chain.chain_id,
            mqtt,
        },
    ))
}

/// Has the broker read its accounts again after one changed. The change
/// is committed: a write that fails is retried in the background (see
/// [`crate::broker::BrokerAccounts::sync_or_retry`]), so the caller still gets
/// what it was issued, a device its token.
async fn sync_broker_accounts(app: &App) {
    if let Some(accounts) = &app.broker_accounts {
        accounts.sync_or_retry(&app.store).await;
    }
}

#[utoipa::path(post, path = "/api/v1/workspaces/{id}/mqtt-credentials", tag = "Operators",
    params(("id" = Uuid, Path)),
    description = "Issues the workspace's fleet-manager account on the MQTT broker: it reads the workspace's events \
        and its devices' status, telemetry and command acks, and sends them commands. Issuing again replaces the password.",
    responses((status = 201, body = MqttCredentialsDto)), security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn fleet_credentials(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<MqttCredentialsDto>> {
    let workspace_id = parse_id("id", &id)?;
    require_admin(&caller, workspace_id)?;
    let Some(accounts) = &app.broker_accounts else {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "this server runs without MQTT (mqtt.url is empty)",
        )
        .with_detail("mqtt:disabled"));
    };
    let username = crate::broker::mosquitto::fleet_username(workspace_id);
    let (account, dto) = accounts.issue(username, workspace_id, None, app.now());
    let Some(account) = account else {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "this server does not manage the broker's accounts (mqtt.mosquitto is not set)",
        )
        .with_detail("mqtt:unmanaged"));
    };
    app.store.put_mqtt_account(account).await?;
    sync_broker_accounts(&app).await;
    Ok(ApiOk::created(&app, dto))
}

#[utoipa::path(post, path = "/api/v1/operators/heartbeat", tag = "Operators", request_body = HeartbeatRequest,
    description = "A device says it is alive (every ~5 s), with its battery, its availability and a signed position.",
    responses((status = 200, body = OperatorDto)), security(("deviceToken" = ["sessions:operate"])))]
pub(super) async fn heartbeat(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> ApiResult<ApiOk<OperatorDto>> {
    let op = device_of(&caller)?.clone();
    if req.availability_state == Some(Availability::Busy) {
        return Err(ApiError::invalid(
            "availabilityState",
            "BUSY is set only by the system",
        ));
    }
    if req.battery_percent.is_some_and(|b| b > 100) {
        return Err(ApiError::invalid("batteryPercent", "must be 0 to 100"));
    }
    if let Some(sample) = &req.sample {
        crate::ingest::verify_and_store(
            &app,
            &op,
            None,
            std::slice::from_ref(sample),
            None,
            u64::MAX,
        )
        .await?;
    }
    let now = app.now();
    let op = app
        .store
        .touch_operator(
            op.id,
            now,
            req.battery_percent,
            req.availability_state,
            app.late_sample_bound_ms(),
        )
        .await?
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::InvalidState,
                "availability cannot change while the device is BUSY",
            )
            .with_detail("operator:availability:BUSY")
        })?;
    Ok(ApiOk::wrote(&app, operator_dto(&app, &op).await?))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DevicePage {
    /// The last device id of the previous page.
    after: Option<Uuid>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/workspaces/{id}/operators", tag = "Operators",
    params(("id" = Uuid, Path), ("after" = Option<Uuid>, Query, description = "the last id of the previous page"),
        ("limit" = Option<u32>, Query, description = "1 to 1000; 500 by default")),
    description = "The workspace's devices, oldest enrollment first, a page at a time.",
    responses((status = 200, body = Vec<OperatorDto>)), security(("apiKey" = ["operators:write"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    crate::http::ApiQuery(page): crate::http::ApiQuery<DevicePage>,
) -> ApiResult<ApiOk<Vec<OperatorDto>>> {
    caller.require_any(&FLEET_READERS)?;
    let workspace_id = parse_id("id", &id)?;
    if caller
        .workspace
        .as_ref()
        .is_none_or(|w| w.id != workspace_id)
    {
        return Err(ApiError::workspace_not_found());
    }
    let limit = page.limit.unwrap_or(500);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 1000"));
    }
    // A device sees itself, not its siblings (nor whether an id is one).
    let devices: Vec<Operator> = app
        .store
        .operators_of(workspace_id)
        .await?
        .into_iter()
        .filter(|op| caller.operator.as_ref().is_none_or(|me| me.id == op.id))
        .collect();
    let start = match page.after {
        Some(after) => devices
            .iter()
            .position(|op| op.id == after)
            .map(|i| i + 1)
            .ok_or_else(|| ApiError::invalid("after", "not a device of this workspace"))?,
        None => 0,
    };
    let mut out = Vec::new();
    for op in devices[start..].iter().take(limit as usize) {
        out.push(operator_dto(&app, op).await?);
    }
    Ok(ApiOk::read(out))
}

#[utoipa::path(get, path = "/api/v1/operators/{id}", tag = "Operators", params(("id" = Uuid, Path)),
    responses((status = 200, body = OperatorDto)), security(("apiKey" = ["operators:write"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<OperatorDto>> {
    caller.require_any(&FLEET_READERS)?;
    let op = own_operator(&app, &caller, &id).await?;
    if caller.operator.as_ref().is_some_and(|me| me.id != op.id) {
        return Err(ApiError::operator_not_found());
    }
    Ok(ApiOk::read(operator_dto(&app, &op).await?))
}

#[utoipa::path(delete, path = "/api/v1/operators/{id}", tag = "Operators", params(("id" = Uuid, Path)),
    description = "Removes a device: its workspace's admin, or the device itself (its own token), while it serves no session.",
    responses((status = 200, body = OperatorDto)), security(("apiKey" = ["operators:write"]), ("walletCookie" = []), ("deviceToken" = [])))]
pub(super) async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<OperatorDto>> {
    let op = itself_or_administered(&app, &caller, &id).await?;
    if op.availability == Availability::Busy {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            "the device is serving a session; end it first",
        )
        .with_detail("operator:delete:BUSY"));
    }
    let dto = operator_dto(&app, &op).await?;
    app.store.delete_operator(op.id).await?;
    reindex_workspace(&app, op.workspace_id).await;
    sync_broker_accounts(&app).await;
    Ok(ApiOk::wrote(&app, dto))
}

/// The device `id` for the device itself (its own token, no other
/// device's), or for an admin of its workspace with `operators:write`.
async fn itself_or_administered(app: &App, caller: &Caller, id: &str) -> ApiResult<Operator> {
    if caller.operator.is_none() {
        caller.require(Scope::OperatorsWrite)?;
    }
    let op = own_operator(app, caller, id).await?;
    match &caller.operator {
        Some(me) if me.id == op.id => Ok(op),
        // A sibling device is as unknown to a device as any other.
        Some(_) => Err(ApiError::operator_not_found()),
        None => {
            require_admin(caller, op.workspace_id)?;
            Ok(op)
        }
    }
}

#[utoipa::path(post, path = "/api/v1/operators/{id}/rotate-token", tag = "Operators", params(("id" = Uuid, Path)),
    description = "Issues the device a new bearer token; the previous one stops working at once. The device itself \
        (its own token) or its workspace's admin.",
    responses((status = 200, body = lx_protocol::api::DeviceTokenDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["operators:write"]), ("walletCookie" = []), ("deviceToken" = [])))]
pub(super) async fn rotate_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<lx_protocol::api::DeviceTokenDto>> {
    let op = itself_or_administered(&app, &caller, &id).await?;
    let token = auth::generate_token(auth::DEVICE_TOKEN_PREFIX);
    if !app
        .store
        .rotate_operator_token(op.id, auth::hash_key(&token))
        .await?
    {
        return Err(ApiError::operator_not_found());
    }
    tracing::info!(operator = %op.id, "device token rotated");
    Ok(ApiOk::wrote(
        &app,
        lx_protocol::api::DeviceTokenDto {
            operator_id: op.id,
            device_token: token,
        },
    ))
}

/// A log line longer than this is cut (a stack of JSON fields, say).
const MAX_LOG_LINE_CHARS: usize = 4096;

#[utoipa::path(post, path = "/api/v1/operators/{id}/logs", tag = "Operators", params(("id" = Uuid, Path)),
    description = "A device hands in its recent log lines, as its fleet manager asked with the `logs` command. Its own \
        token only; the upload replaces the one before. At most 5000 lines; a line longer than 4096 characters is cut.",
    request_body = lx_protocol::api::DeviceLogsUpload,
    responses((status = 200, body = lx_protocol::api::DeviceLogsDto)), security(("deviceToken" = ["sessions:operate"])))]
pub(super) async fn post_logs(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(upload): ApiJson<lx_protocol::api::DeviceLogsUpload>,
) -> ApiResult<ApiOk<lx_protocol::api::DeviceLogsDto>> {
    let me = device_of(&caller)?;
    if parse_id("id", &id)? != me.id {
        return Err(ApiError::new(
            ErrorCode::WrongDevice,
            "a device hands in its own logs only",
        )
        .with_detail("logs:otherDevice"));
    }
    let max = lx_protocol::mqtt::MAX_LOG_LINES as usize;
    if upload.lines.len() > max {
        return Err(ApiError::invalid("lines", format!("at most {max} lines")));
    }
    let lines: Vec<String> = upload
        .lines
        .into_iter()
        .map(|l| match l.char_indices().nth(MAX_LOG_LINE_CHARS) {
            Some((cut, _)) => format!("{}…", &l[..cut]),
            None => l,
        })
        .collect();
    let logs = crate::store::DeviceLogs {
        operator_id: me.id,
        uploaded_ms: app.now(),
        truncated: upload.truncated,
        lines,
    };
    app.store.save_device_logs(logs.clone()).await?;
    tracing::info!(operator = %me.id, lines = logs.lines.len(), "device logs received");
    Ok(ApiOk::wrote(&app, logs_dto(logs)))
}

fn logs_dto(logs: crate::store::DeviceLogs) -> lx_protocol::api::DeviceLogsDto {
    lx_protocol::api::DeviceLogsDto {
        operator_id: logs.operator_id,
        uploaded_at: format_millis(logs.uploaded_ms),
        lines: logs.lines,
        truncated: logs.truncated,
    }
}

#[utoipa::path(get, path = "/api/v1/operators/{id}/logs", tag = "Operators", params(("id" = Uuid, Path)),
    description = "The device's latest log upload, for its workspace's admins. 404 `logs:none` until the device \
        has answered a `logs` command.",
    responses((status = 200, body = lx_protocol::api::DeviceLogsDto)),
    security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn get_logs(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<lx_protocol::api::DeviceLogsDto>> {
    if caller.operator.is_some() {
        return Err(ApiError::forbidden(
            "a device's logs are read by its workspace's admins",
            "auth:adminOnly",
        ));
    }
    caller.require(Scope::OperatorsWrite)?;
    let op = own_operator(&app, &caller, &id).await?;
    require_admin(&caller, op.workspace_id)?;
    let logs = app.store.device_logs(op.id).await?.ok_or_else(|| {
        ApiError::new(
            ErrorCode::NotFound,
            "this device has sent no logs yet; send it the `logs` command",
        )
        .with_detail("logs:none")
    })?;
    Ok(ApiOk::read(logs_dto(logs)))
}

fn lock_error(err: LockError) -> ApiError {
    match err {
        LockError::HeldBy(holder) => ApiError::locked(&holder),
        LockError::NotLocked => {
            ApiError::new(ErrorCode::InvalidState, "not locked").with_detail("lock:notLocked")
        }
        LockError::NotFound => ApiError::operator_not_found(),
        LockError::Store(e) => e.into(),
    }
}

#[utoipa::path(post, path = "/api/v1/operators/{id}/lock", tag = "Operators", params(("id" = Uuid, Path)),
    request_body = LockRequest, description = "Takes control of a subsystem; 409 LOCKED while another controller holds it.",
    responses((status = 200, body = LockDto)), security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn lock(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LockRequest>,
) -> ApiResult<ApiOk<LockDto>> {
    may_lock(&caller, &id)?;
    let op = own_operator(&app, &caller, &id).await?;
    let lock = app
        .store
        .lock(op.id, req.subsystem, &caller.holder(), app.now())
        .await
        .map_err(lock_error)?;
    Ok(ApiOk::wrote(
        &app,
        LockDto {
            subsystem: lock.subsystem,
            holder: lock.holder,
            acquired_at: format_millis(lock.acquired_ms),
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/operators/{id}/unlock", tag = "Operators", params(("id" = Uuid, Path)),
    request_body = LockRequest, responses((status = 200)), security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn unlock(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LockRequest>,
) -> ApiResult<ApiOk<serde_json::Value>> {
    may_lock(&caller, &id)?;
    let op = own_operator(&app, &caller, &id).await?;
    app.store
        .unlock(op.id, req.subsystem, Some(&caller.holder()))
        .await
        .map_err(lock_error)?;
    Ok(ApiOk::wrote(
        &app,
        serde_json::json!({"unlocked": req.subsystem}),
    ))
}

#[utoipa::path(post, path = "/api/v1/operators/{id}/force-unlock", tag = "Operators", params(("id" = Uuid, Path)),
    request_body = LockRequest, description = "An administrator releases a lock whoever holds it.",
    responses((status = 200)), security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn force_unlock(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LockRequest>,
) -> ApiResult<ApiOk<serde_json::Value>> {
    caller.require(Scope::OperatorsWrite)?;
    let op = own_operator(&app, &caller, &id).await?;
    require_admin(&caller, op.workspace_id)?;
    app.store
        .unlock(op.id, req.subsystem, None)
        .await
        .map_err(lock_error)?;
    Ok(ApiOk::wrote(
        &app,
        serde_json::json!({"unlocked": req.subsystem}),
    ))
}

/// One sample or an array of them (a store-and-forward replay), with
/// errors that name the sample and its field: `[3].point.lat: …`.
fn parse_samples(body: &[u8]) -> ApiResult<Vec<SampleJson>> {
    let many = body.trim_ascii_start().starts_with(b"[");
    // The hot path parses once, plainly; the path-tracking parser runs only
    // to name what is wrong in a body that failed.
    let fast = if many {
        serde_json::from_slice::<Vec<SampleJson>>(body).ok()
    } else {
        serde_json::from_slice::<SampleJson>(body)
            .ok()
            .map(|s| vec![s])
    };
    match fast {
        Some(samples) => Ok(samples),
        None if many => crate::http::parse_json(body),
        None => Ok(vec![crate::http::parse_json(body)?]),
    }
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/telemetry", tag = "Sessions", params(("id" = Uuid, Path)),
    request_body = SampleJson,
    description = "Signed position samples of the session's device: one, or an array in sequence order. All are \
        verified before any is stored. Accepted while ASSIGNED, LIVE or PAUSED, and up to settleDelaySeconds after the end.",
    responses((status = 200, body = TelemetryAck)), security(("deviceToken" = ["sessions:operate"])))]
pub(super) async fn telemetry(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<ApiOk<TelemetryAck>> {
    let op = device_of(&caller)?;
    let session_id = parse_id("id", &id)?;
    let samples = parse_samples(&body)?;
    let last = crate::ingest::device_samples(&app, op, Some(session_id), &samples).await?;
    Ok(ApiOk::wrote(
        &app,
        TelemetryAck {
            accepted: u32::try_from(samples.len()).unwrap_or(u32::MAX),
            last_sequence: last,
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{id}/location", tag = "Workspaces", params(("id" = Uuid, Path)),
    request_body = LocationRequest,
    description = "An unsigned location heartbeat of a workspace without devices (a phone publishing from the console), \
        stamped when received. While the workspace serves a session itself (trust tier 0), these are the meter's \
        evidence: a second is clean only with a heartbeat received within `heartbeatFreshSeconds` before its end, \
        accurate to `maxAccuracyMeters` and inside the geofence.",
    responses((status = 200)), security(("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn location(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<LocationRequest>,
) -> ApiResult<ApiOk<serde_json::Value>> {
    let workspace_id = parse_id("id", &id)?;
    let ws = caller.require(Scope::SessionsOperate)?;
    if ws.id != workspace_id || caller.kind == CallerKind::Device {
        return Err(ApiError::workspace_not_found());
    }
    lx_protocol::geo::check_lat(req.lat).map_err(|m| ApiError::invalid("lat", m))?;
    lx_protocol::geo::check_lng(req.lng).map_err(|m| ApiError::invalid("lng", m))?;
    if !(req.accuracy_meters.is_finite() && req.accuracy_meters >= 0.0) {
        return Err(ApiError::invalid(
            "accuracyMeters",
            "must be a non-negative number",
        ));
    }
    let honoured = req.accuracy_meters <= 100.0;
    let stored = app
        .store
        .record_location(
            workspace_id,
            req.sequence,
            lx_protocol::geo::Point::new(req.lat, req.lng),
            req.accuracy_meters,
            req.session_id,
            app.now(),
        )
        .await?;
    if !stored {
        return Err(ApiError::new(
            ErrorCode::ReplayedSequence,
            "sequence is not above the last location's",
        )
        .with_detail("location:replayed"));
    }
    Ok(ApiOk::wrote(
        &app,
        serde_json::json!({"sequence": req.sequence, "honoured": honoured}),
    ))
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrackQuery {
    /// Only samples with a higher sequence number (for polling).
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/telemetry", tag = "Sessions", params(("id" = Uuid, Path),
        ("after" = Option<u64>, Query), ("limit" = Option<u32>, Query)),
    description = "The session's verified positions, oldest first: where the device was, second by second. Each \
        carries the device's signature, the message it signed and the device's address: any EIP-712 implementation \
        recovers the address from the signature in `GET /config`'s `telemetryDomain`.",
    responses((status = 200, body = Vec<lx_protocol::api::TelemetryPointDto>)), security(("apiKey" = ["sessions:read"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn track(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    crate::http::ApiQuery(q): crate::http::ApiQuery<TrackQuery>,
) -> ApiResult<ApiOk<Vec<lx_protocol::api::TelemetryPointDto>>> {
    let ws = caller.require_any(&[
        lx_protocol::api::Scope::SessionsRead,
        lx_protocol::api::Scope::SessionsOperate,
    ])?;
    let session_id = parse_id("id", &id)?;
    let session = app
        .store
        .session(session_id)
        .await?
        .ok_or_else(ApiError::session_not_found)?;
    if session.consumer_workspace_id != ws.id && session.operator_workspace_id != Some(ws.id) {
        return Err(ApiError::session_not_found());
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 10000"));
    }
    let after = q.after.unwrap_or(0);
    // Whose key signed the track: anyone recovers it from each signature.
    let signer = match session.operator_id {
        Some(device) => app
            .store
            .operator(device)
            .await?
            .map(|op| op.address.to_checksum()),
        None => None,
    };
    let points = app
        .store
        .session_stored_samples(session.id)
        .await?
        .into_iter()
        .filter(|s| s.sample.sequence > after)
        .take(limit as usize)
        .map(|stored| {
            let s = &stored.sample;
            let p = s.point();
            lx_protocol::api::TelemetryPointDto {
                sequence: s.sequence,
                captured_at: format_millis(i64::try_from(s.captured_at_ms).unwrap_or(i64::MAX)),
                lat: p.lat,
                lng: p.lng,
                accuracy_meters: s.accuracy_m(),
                source: s.source,
                signature: Some(format!("0x{}", hex::encode(stored.signature))),
                signer: signer.clone(),
                signed: Some(lx_protocol::api::SignedTelemetryDto::from(s)),
            }
        })
        .collect();
    Ok(ApiOk::read(points))
}
