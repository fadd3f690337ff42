//! Workspaces (created by a wallet signature), their profile and
//! availability, and their API keys.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use lx_protocol::ErrorCode;
use lx_protocol::api::{
    ApiKeyCreated, ApiKeyDto, Availability, ChallengeRequest, ChallengeResponse,
    CreateApiKeyRequest, CreateWorkspaceRequest, Scope, UpdateWorkspaceRequest, WorkspaceDto,
};
use lx_protocol::geo::{check_lat, check_lng};
use lx_protocol::time::format_millis;
use uuid::Uuid;

use super::auth::{issue_challenge, verify_challenge};
use crate::app::App;
use crate::auth::{self, Caller};
use crate::config::CoverageCaps;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiOk, AppState, parse_id};
use crate::store::{
    ApiKey, ChallengePurpose, CoverageArea, PatchError, StoreError, Workspace, WorkspacePatch,
};

pub(super) fn workspace_dto(ws: &Workspace) -> WorkspaceDto {
    WorkspaceDto {
        id: ws.id,
        slug: ws.slug.clone(),
        name: ws.name.clone(),
        wallet_address: ws.wallet,
        roles: ws.roles.clone(),
        availability_state: ws.availability,
        coverage_lat: ws.coverage.map(|c| c.lat),
        coverage_lng: ws.coverage.map(|c| c.lng),
        coverage_radius_meters: ws.coverage.map(|c| c.radius_m),
        device_kind: ws.device_kind,
        auto_accept: ws.auto_accept,
        offer_timeout_seconds: ws.offer_timeout_seconds,
        created_at: format_millis(ws.created_ms),
        trust_tier: ws.trust_tier,
        cooling_down_until: ws.cooling_down_until_ms.map(format_millis),
    }
}

fn key_dto(key: &ApiKey) -> ApiKeyDto {
    ApiKeyDto {
        id: key.id,
        label: key.label.clone(),
        environment: key.environment,
        scopes: key.scopes.clone(),
        prefix: key.prefix.clone(),
        created_at: format_millis(key.created_ms),
        revoked_at: key.revoked_ms.map(format_millis),
    }
}

fn check_name(field: &str, name: &str) -> ApiResult<()> {
    let len = name.trim().chars().count();
    if len == 0 || len > 100 {
        return Err(ApiError::invalid(field, "must be 1 to 100 characters"));
    }
    Ok(())
}

fn check_slug(slug: &str) -> ApiResult<()> {
    let ok_chars = slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !(3..=48).contains(&slug.len()) || !ok_chars || slug.starts_with('-') || slug.ends_with('-')
    {
        return Err(ApiError::invalid(
            "slug",
            "must be 3 to 48 characters of a-z, 0-9 and '-', not starting or ending with '-'",
        ));
    }
    Ok(())
}

/// The workspace `id` if the caller may see it (its owner's wallet, or one of its keys).
async fn accessible(app: &App, caller: &Caller, id: Uuid) -> ApiResult<Workspace> {
    let ws = app
        .store
        .workspace(id)
        .await?
        .ok_or_else(ApiError::workspace_not_found)?;
    let allowed = if caller.is_wallet() {
        caller.wallet == Some(ws.wallet)
    } else {
        caller.workspace.as_ref().is_some_and(|w| w.id == id)
    };
    if allowed {
        Ok(ws)
    } else {
        Err(ApiError::workspace_not_found())
    }
}

fn require_owner(caller: &Caller) -> ApiResult<()> {
    if caller.is_wallet() {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "API keys are managed by the workspace owner's wallet sign-in",
            "apiKeys:walletOnly",
        ))
    }
}

#[utoipa::path(post, path = "/api/v1/workspaces/challenge", tag = "Workspaces",
    request_body = ChallengeRequest, responses((status = 200, body = ChallengeResponse)))]
pub(super) async fn challenge(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> ApiResult<ApiOk<ChallengeResponse>> {
    let challenge =
        issue_challenge(&app, req.wallet_address, ChallengePurpose::CreateWorkspace).await?;
    Ok(ApiOk::wrote(&app, challenge))
}

#[utoipa::path(post, path = "/api/v1/workspaces", tag = "Workspaces",
    description = "Creates a workspace. The wallet's signature over the challenge message is the only auth.",
    request_body = CreateWorkspaceRequest, responses((status = 201, body = WorkspaceDto)))]
pub(super) async fn create(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<CreateWorkspaceRequest>,
) -> ApiResult<ApiOk<WorkspaceDto>> {
    check_slug(&req.slug)?;
    check_name("name", &req.name)?;
    let roles: BTreeSet<_> = req.roles.iter().map(|r| format!("{r:?}")).collect();
    if req.roles.is_empty() || roles.len() != req.roles.len() {
        return Err(ApiError::invalid(
            "roles",
            "must list SUPPLIER and/or CONSUMER, each once",
        ));
    }
    verify_challenge(
        &app,
        req.wallet_address,
        &req.nonce,
        &req.signature,
        ChallengePurpose::CreateWorkspace,
    )
    .await?;
    let now = app.now();
    let ws = Workspace {
        id: Uuid::new_v4(),
        slug: req.slug,
        name: req.name.trim().to_owned(),
        wallet: req.wallet_address,
        roles: req.roles,
        availability: Availability::Offline,
        coverage: None,
        device_kind: None,
        auto_accept: true,
        offer_timeout_seconds: app.config.dispatch.default_offer_timeout_seconds,
        idle_since_ms: now,
        created_ms: now,
        trust_tier: lx_protocol::api::TRUST_TIER_WORKSPACE,
        cooling_down_until_ms: None,
    };
    let ws = app
        .store
        .insert_workspace(ws)
        .await
        .map_err(|err| match err {
            StoreError::Conflict(_) => ApiError::new(ErrorCode::Conflict, "slug is already taken")
                .with_detail("workspace:slugTaken"),
            other => other.into(),
        })?;
    Ok(ApiOk::created(&app, workspace_dto(&ws)))
}

#[utoipa::path(get, path = "/api/v1/workspaces", tag = "Workspaces",
    responses((status = 200, body = Vec<WorkspaceDto>)), security(("apiKey" = []), ("walletCookie" = [])))]
pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<Vec<WorkspaceDto>>> {
    let workspaces = match (caller.is_wallet(), caller.wallet) {
        (true, Some(wallet)) => app.store.workspaces_of_wallet(wallet).await?,
        _ => caller.workspace.iter().cloned().collect(),
    };
    Ok(ApiOk::read(workspaces.iter().map(workspace_dto).collect()))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{id}", tag = "Workspaces",
    params(("id" = Uuid, Path)), responses((status = 200, body = WorkspaceDto)), security(("apiKey" = []), ("walletCookie" = [])))]
pub(super) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<WorkspaceDto>> {
    let ws = accessible(&app, &caller, parse_id("id", &id)?).await?;
    Ok(ApiOk::read(workspace_dto(&ws)))
}

fn validate_patch(
    req: UpdateWorkspaceRequest,
    current: &Workspace,
    caps: &CoverageCaps,
) -> ApiResult<WorkspacePatch> {
    if let Some(name) = &req.name {
        check_name("name", name)?;
    }
    if req.availability_state == Some(Availability::Busy) {
        return Err(ApiError::invalid(
            "availabilityState",
            "BUSY is set only by the system",
        ));
    }
    let coverage = if req.coverage_lat.is_some()
        || req.coverage_lng.is_some()
        || req.coverage_radius_meters.is_some()
    {
        let old = current.coverage;
        let lat = req.coverage_lat.or(old.map(|c| c.lat)).ok_or_else(|| {
            ApiError::invalid("coverageLat", "is required with the other coverage fields")
        })?;
        let lng = req.coverage_lng.or(old.map(|c| c.lng)).ok_or_else(|| {
            ApiError::invalid("coverageLng", "is required with the other coverage fields")
        })?;
        let radius = req
            .coverage_radius_meters
            .or(old.map(|c| c.radius_m))
            .ok_or_else(|| {
                ApiError::invalid(
                    "coverageRadiusMeters",
                    "is required with the other coverage fields",
                )
            })?;
        check_lat(lat).map_err(|m| ApiError::invalid("coverageLat", m))?;
        check_lng(lng).map_err(|m| ApiError::invalid("coverageLng", m))?;
        if radius == 0 {
            return Err(ApiError::invalid(
                "coverageRadiusMeters",
                "must be at least 1",
            ));
        }
        Some(CoverageArea {
            lat,
            lng,
            radius_m: radius,
        })
    } else {
        None
    };
    // The cap of the kind the workspace will have, checked whenever either
    // changes (a radius stored before the cap counts only up to it anyway).
    if coverage.is_some() || req.device_kind.is_some() {
        let kind = req.device_kind.or(current.device_kind);
        let cap = caps.for_kind(kind);
        if let Some(radius) = coverage.or(current.coverage).map(|c| c.radius_m)
            && radius > cap
        {
            let kind = kind.map_or_else(
                || "a workspace without a deviceKind".to_owned(),
                |k| format!("deviceKind {}", k.as_str()),
            );
            return Err(ApiError::invalid(
                "coverageRadiusMeters",
                format!("{radius} is above the cap of {cap} metres for {kind}"),
            ));
        }
    }
    if let Some(t) = req.offer_timeout_seconds
        && !(5..=600).contains(&t)
    {
        return Err(ApiError::invalid("offerTimeoutSeconds", "must be 5 to 600"));
    }
    Ok(WorkspacePatch {
        name: req.name.map(|n| n.trim().to_owned()),
        availability: req.availability_state,
        coverage,
        device_kind: req.device_kind,
        auto_accept: req.auto_accept,
        offer_timeout_seconds: req.offer_timeout_seconds,
    })
}

#[utoipa::path(patch, path = "/api/v1/workspaces/{id}", tag = "Workspaces",
    params(("id" = Uuid, Path)), request_body = UpdateWorkspaceRequest,
    responses((status = 200, body = WorkspaceDto)), security(("apiKey" = ["operators:write"]), ("walletCookie" = [])))]
pub(super) async fn patch(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateWorkspaceRequest>,
) -> ApiResult<ApiOk<WorkspaceDto>> {
    let current = accessible(&app, &caller, parse_id("id", &id)?).await?;
    if !caller.is_wallet() {
        caller.require(Scope::OperatorsWrite)?;
    }
    let patch = validate_patch(
        req,
        &current,
        &app.config.dispatch.max_coverage_radius_meters,
    )?;
    let ws = app
        .store
        .patch_workspace(current.id, patch, app.now())
        .await
        .map_err(|err| match err {
            PatchError::NotFound => ApiError::workspace_not_found(),
            PatchError::Busy => ApiError::new(
                ErrorCode::InvalidState,
                "availability cannot change while a session holds the workspace (BUSY)",
            )
            .with_detail("workspace:availability:BUSY"),
            PatchError::MissingCoverage => ApiError::invalid(
                "availabilityState",
                "ONLINE needs coverageLat, coverageLng and coverageRadiusMeters",
            ),
            PatchError::Store(e) => e.into(),
        })?;
    app.dispatcher.sync(&ws);
    Ok(ApiOk::wrote(&app, workspace_dto(&ws)))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{id}/api-keys", tag = "API keys",
    params(("id" = Uuid, Path)), request_body = CreateApiKeyRequest,
    description = "Mints a key; the plaintext `secret` is in this response only.",
    responses((status = 201, body = ApiKeyCreated)), security(("walletCookie" = [])))]
pub(super) async fn create_key(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<CreateApiKeyRequest>,
) -> ApiResult<ApiOk<ApiKeyCreated>> {
    let ws = accessible(&app, &caller, parse_id("id", &id)?).await?;
    require_owner(&caller)?;
    check_name("label", &req.label)?;
    let scopes: BTreeSet<Scope> = req.scopes.iter().copied().collect();
    if scopes.is_empty() {
        return Err(ApiError::invalid("scopes", "must list at least one scope"));
    }
    let secret = auth::generate_api_key(req.environment, ws.id);
    let key = ApiKey {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        hash: auth::hash_key(&secret),
        prefix: auth::key_prefix(&secret),
        label: req.label.trim().to_owned(),
        environment: req.environment,
        scopes: scopes.into_iter().collect(),
        created_ms: app.now(),
        revoked_ms: None,
    };
    app.store.insert_api_key(key.clone()).await?;
    Ok(ApiOk::created(
        &app,
        ApiKeyCreated {
            key: key_dto(&key),
            secret,
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/workspaces/{id}/api-keys", tag = "API keys",
    params(("id" = Uuid, Path)), responses((status = 200, body = Vec<ApiKeyDto>)), security(("walletCookie" = [])))]
pub(super) async fn list_keys(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<Vec<ApiKeyDto>>> {
    let ws = accessible(&app, &caller, parse_id("id", &id)?).await?;
    require_owner(&caller)?;
    let keys = app.store.api_keys_of(ws.id).await?;
    Ok(ApiOk::read(keys.iter().map(key_dto).collect()))
}

#[utoipa::path(post, path = "/api/v1/workspaces/{id}/api-keys/{keyId}/revoke", tag = "API keys",
    params(("id" = Uuid, Path), ("keyId" = Uuid, Path)),
    description = "Revokes a key. It keeps working for the grace period (60 s by default), then answers REVOKED_API_KEY.",
    responses((status = 200, body = ApiKeyDto)), security(("walletCookie" = [])))]
pub(super) async fn revoke_key(
    State(app): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
) -> ApiResult<ApiOk<ApiKeyDto>> {
    let ws = accessible(&app, &caller, parse_id("id", &id)?).await?;
    require_owner(&caller)?;
    let key_id = parse_id("keyId", &key_id)?;
    let key = app
        .store
        .revoke_api_key(ws.id, key_id, app.now())
        .await?
        .ok_or_else(|| {
            ApiError::new(ErrorCode::NotFound, "API key not found").with_detail("apiKey:notFound")
        })?;
    Ok(ApiOk::wrote(&app, key_dto(&key)))
}
