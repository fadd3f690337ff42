//! The caller's wallet on the settlement chain, and a session's settlement.

use axum::extract::{Path, State};
use lx_protocol::ErrorCode;
use lx_protocol::api::{Scope, SettlementDto, SettlementStatus, WalletDto};
use lx_protocol::time::format_millis;

use crate::store::SettlementState;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiOk, AppState};

fn chain_error(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%err, "chain read failed");
    ApiError::new(
        ErrorCode::UpstreamUnavailable,
        "the settlement chain did not answer; retry",
    )
    .with_detail("chain:unreachable")
}

#[utoipa::path(get, path = "/api/v1/wallet", tag = "Wallet",
    description = "The workspace wallet's pool in the settlement contract, its USDC balance and its rate cap, read \\
        from the chain now. 503 UPSTREAM_UNAVAILABLE without a chain (chain.rpc_url) or when it does not answer.",
    responses((status = 200, body = WalletDto), (status = 503, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = [])))]
pub(super) async fn wallet(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<WalletDto>> {
    let ws = caller.require(Scope::WalletRead)?;
    let chain = app.chain.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UpstreamUnavailable,
            "this server has no settlement chain (chain.rpc_url)",
        )
        .with_detail("chain:none")
    })?;
    let wallet = ws.wallet;
    let (pool, balance, cap) = tokio::try_join!(
        chain.deposits(wallet),
        chain.usdc_balance(wallet),
        chain.max_rate_per_second(wallet)
    )
    .map_err(chain_error)?;
    Ok(ApiOk::read(WalletDto {
        wallet_address: wallet.to_checksum(),
        chain_id: app.config.chain.chain_id,
        pool_micro_usdc: pool,
        usdc_balance_micro_usdc: balance,
        max_rate_per_second_micro_usdc: cap,
    }))
}

#[utoipa::path(get, path = "/api/v1/settlements/{sessionId}", tag = "Settlements", params(("sessionId" = Uuid, Path)),
    description = "Where the session's on-chain settlement stands: NOT_READY until its meter is final, NOT_REQUIRED \
        when it charged nothing, then PENDING → SUBMITTED → CONFIRMED (or FAILED with the contract's reason).",
    responses((status = 200, body = SettlementDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = [])))]
pub(super) async fn settlement(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SettlementDto>> {
    let ws = caller.require_any(&[
        Scope::SessionsRead,
        Scope::WalletRead,
        Scope::SessionsOperate,
    ])?;
    let (session, side) = super::sessions::visible(&app, ws, &id).await?;
    if matches!(side, super::sessions::Side::Offered) {
        return Err(ApiError::session_not_found());
    }
    let record = app.store.settlement(session.id).await?;
    let dto = match record {
        Some(r) => SettlementDto {
            session_id: session.id,
            state: match r.state {
                SettlementState::Pending => SettlementStatus::Pending,
                SettlementState::Submitted => SettlementStatus::Submitted,
                SettlementState::Confirmed => SettlementStatus::Confirmed,
                SettlementState::Failed => SettlementStatus::Failed,
            },
            sequence: Some(r.sequence),
            to_amount_micro_usdc: Some(r.to_amount),
            fee_amount_micro_usdc: Some(r.fee_amount),
            tx_hash: r.tx_hash,
            block_number: r.block,
            attempts: r.attempts,
            last_error: r.last_error,
            updated_at: Some(format_millis(r.updated_ms)),
        },
        None => {
            let nothing_due =
                session.meter_final && session.meter.is_some_and(|m| m.charged_micro_usdc == 0);
            SettlementDto {
                session_id: session.id,
                state: if nothing_due {
                    SettlementStatus::NotRequired
                } else {
                    SettlementStatus::NotReady
                },
                sequence: None,
                to_amount_micro_usdc: None,
                fee_amount_micro_usdc: None,
                tx_hash: None,
                block_number: None,
                attempts: 0,
                last_error: None,
                updated_at: None,
            }
        }
    };
    Ok(ApiOk::read(dto))
}
