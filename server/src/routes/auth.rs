//! Wallet sign-in (EIP-4361): challenge, login setting the `lx_session`
//! cookie, workspace selection, logout; and `/me`.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use lx_protocol::ErrorCode;
use lx_protocol::api::{
    CallerKind, ChallengeRequest, ChallengeResponse, MeDto, SelectWorkspaceRequest,
    WalletLoginRequest, WalletLoginResponse,
};
use lx_protocol::time::format_millis;
use lx_protocol::wallet::{Address, SiweMessage, recover_personal};

use crate::app::App;
use crate::auth::{self, Caller, CookieClaims};
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiOk, AppState};
use crate::store::{Challenge, ChallengePurpose};

/// Issues a one-time challenge: an EIP-4361 message for `purpose`.
pub(super) async fn issue_challenge(
    app: &App,
    wallet: Address,
    purpose: ChallengePurpose,
) -> ApiResult<ChallengeResponse> {
    let now = app.now();
    let expires_ms = now + i64::from(app.config.auth.challenge_ttl_seconds) * 1000;
    let public_url = &app.config.http.public_url;
    let domain = public_url
        .parse::<axum::http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".to_owned());
    let statement = match purpose {
        ChallengePurpose::SignIn => "Sign in to lx.",
        ChallengePurpose::CreateWorkspace => "Create an lx workspace owned by this wallet.",
    };
    let nonce = auth::nonce();
    let message = SiweMessage {
        domain,
        address: wallet,
        statement: Some(statement.to_owned()),
        uri: public_url.clone(),
        version: "1".to_owned(),
        chain_id: app.config.chain.chain_id,
        nonce: nonce.clone(),
        issued_at: format_millis(now),
        expiration_time: Some(format_millis(expires_ms)),
        not_before: None,
        request_id: None,
        resources: Vec::new(),
    }
    .to_message();
    app.store
        .insert_challenge(Challenge {
            nonce: nonce.clone(),
            wallet,
            purpose,
            message: message.clone(),
            expires_ms,
        })
        .await?;
    Ok(ChallengeResponse {
        nonce,
        message,
        expires_at: format_millis(expires_ms),
    })
}

/// Takes the challenge and checks the wallet signed its message.
pub(super) async fn verify_challenge(
    app: &App,
    wallet: Address,
    nonce: &str,
    signature: &lx_protocol::wallet::Signature65,
    purpose: ChallengePurpose,
) -> ApiResult<()> {
    let challenge = app
        .store
        .take_challenge(nonce, purpose)
        .await?
        .ok_or_else(|| {
            ApiError::invalid("nonce", "unknown or already used; ask for a new challenge")
        })?;
    if challenge.expires_ms <= app.now() {
        return Err(ApiError::invalid(
            "nonce",
            "expired; ask for a new challenge",
        ));
    }
    if challenge.wallet != wallet {
        return Err(ApiError::invalid(
            "walletAddress",
            "is not the wallet the challenge was issued to",
        ));
    }
    match recover_personal(challenge.message.as_bytes(), signature) {
        Ok(signer) if signer == wallet => Ok(()),
        Ok(_) => Err(ApiError::new(
            ErrorCode::NotAuthenticated,
            "the signature is not by walletAddress",
        )
        .with_detail("auth:badSignature")),
        Err(err) => Err(ApiError::invalid("signature", err)),
    }
}

#[utoipa::path(post, path = "/api/v1/auth/wallet/challenge", tag = "Authentication",
    request_body = ChallengeRequest, responses((status = 200, body = ChallengeResponse)))]
pub(super) async fn wallet_challenge(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<ChallengeRequest>,
) -> ApiResult<ApiOk<ChallengeResponse>> {
    let challenge = issue_challenge(&app, req.wallet_address, ChallengePurpose::SignIn).await?;
    Ok(ApiOk::wrote(&app, challenge))
}

fn with_cookie(mut response: Response, cookie: &str) -> Response {
    if let Ok(value) = cookie.parse() {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

#[utoipa::path(post, path = "/api/v1/auth/wallet/login", tag = "Authentication",
    request_body = WalletLoginRequest, responses((status = 200, body = WalletLoginResponse)))]
pub(super) async fn wallet_login(
    State(app): State<AppState>,
    ApiJson(req): ApiJson<WalletLoginRequest>,
) -> ApiResult<Response> {
    verify_challenge(
        &app,
        req.wallet_address,
        &req.nonce,
        &req.signature,
        ChallengePurpose::SignIn,
    )
    .await?;
    let workspaces = app.store.workspaces_of_wallet(req.wallet_address).await?;
    let ttl = app.config.auth.session_ttl_seconds;
    let expires_ms = app.now() + i64::from(ttl) * 1000;
    let workspace = workspaces.first().map(|w| w.id);
    let claims = CookieClaims {
        wallet: req.wallet_address.to_checksum(),
        workspace,
        expires_ms,
        id: Some(uuid::Uuid::new_v4()),
    };
    let cookie = auth::set_cookie_header(&app, &auth::encode_cookie(&app.cookie_key, &claims), ttl);
    let body = WalletLoginResponse {
        wallet_address: req.wallet_address,
        workspace_id: workspace,
        workspaces: workspaces.iter().map(|w| w.id).collect(),
        expires_at: format_millis(expires_ms),
    };
    Ok(with_cookie(
        ApiOk::wrote(&app, body).into_response(),
        &cookie,
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/workspace/select", tag = "Authentication",
    request_body = SelectWorkspaceRequest, responses((status = 200, body = WalletLoginResponse)), security(("walletCookie" = [])))]
pub(super) async fn select_workspace(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<SelectWorkspaceRequest>,
) -> ApiResult<Response> {
    let wallet = match (caller.kind, caller.wallet) {
        (CallerKind::Wallet, Some(w)) => w,
        _ => {
            return Err(ApiError::forbidden(
                "only a wallet sign-in can select a workspace",
                "auth:walletOnly",
            ));
        }
    };
    let workspaces = app.store.workspaces_of_wallet(wallet).await?;
    if !workspaces.iter().any(|w| w.id == req.workspace_id) {
        return Err(ApiError::workspace_not_found());
    }
    let ttl = app.config.auth.session_ttl_seconds;
    let expires_ms = app.now() + i64::from(ttl) * 1000;
    let claims = CookieClaims {
        wallet: wallet.to_checksum(),
        workspace: Some(req.workspace_id),
        expires_ms,
        id: Some(uuid::Uuid::new_v4()),
    };
    let cookie = auth::set_cookie_header(&app, &auth::encode_cookie(&app.cookie_key, &claims), ttl);
    let body = WalletLoginResponse {
        wallet_address: wallet,
        workspace_id: Some(req.workspace_id),
        workspaces: workspaces.iter().map(|w| w.id).collect(),
        expires_at: format_millis(expires_ms),
    };
    Ok(with_cookie(ApiOk::read(body).into_response(), &cookie))
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "Authentication",
    description = "Clears the `lx_session` cookie and revokes it: a copy kept elsewhere is refused from now on.",
    responses((status = 200, description = "The cookie is cleared and revoked; without one there is nothing to do, and it is still 200.")),
    security((), ("walletCookie" = [])))]
pub(super) async fn logout(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let now = app.now();
    let presented = auth::cookie_value(&headers, auth::COOKIE_NAME)
        .and_then(|value| auth::decode_cookie(&app.cookie_key, &value, now));
    if let Some(CookieClaims {
        id: Some(id),
        expires_ms,
        ..
    }) = presented
    {
        app.store.revoke_cookie(id, expires_ms, now).await?;
    }
    let cookie = auth::set_cookie_header(&app, "", 0);
    Ok(with_cookie(
        ApiOk::read(serde_json::json!({"loggedOut": true})).into_response(),
        &cookie,
    ))
}

#[utoipa::path(get, path = "/api/v1/me", tag = "Me", responses((status = 200, body = MeDto)),
    security(("apiKey" = []), ("walletCookie" = [])))]
pub(super) async fn me(caller: Caller) -> ApiOk<MeDto> {
    ApiOk::read(MeDto {
        kind: caller.kind,
        workspace_id: caller.workspace.as_ref().map(|w| w.id),
        wallet_address: caller.wallet,
        scopes: caller.scopes.clone(),
        roles: caller
            .workspace
            .as_ref()
            .map(|w| w.roles.clone())
            .unwrap_or_default(),
        api_key_id: caller.key_id,
        operator_id: caller.operator.as_ref().map(|op| op.id),
    })
}
