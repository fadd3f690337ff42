//! The caller's wallet on the settlement chain.

use axum::extract::State;
use lx_protocol::ErrorCode;
use lx_protocol::api::{Scope, WalletDto};

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
