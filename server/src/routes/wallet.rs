//! The caller's wallet on the settlement chain, and a session's settlement.

use axum::extract::{Path, State};
use lx_protocol::ErrorCode;
use lx_protocol::api::{
    DebtDto, Scope, SettlementDto, WalletDto, WalletEventDto, WalletEventType, WalletEventsDto,
};
use serde::Deserialize;

use crate::chain::WalletEventKind;
use crate::http::ApiQuery;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiOk, AppState};

/// The settlement chain, or `503 UPSTREAM_UNAVAILABLE` saying there is none.
fn chain_of(app: &AppState) -> ApiResult<&std::sync::Arc<dyn crate::chain::ChainReader>> {
    app.chain.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::UpstreamUnavailable,
            "this server has no settlement chain (chain.rpc_url)",
        )
        .with_detail("chain:none")
    })
}

fn chain_error(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%err, "chain read failed");
    ApiError::new(
        ErrorCode::UpstreamUnavailable,
        "the settlement chain did not answer; retry",
    )
    .with_detail("chain:unreachable")
}

#[utoipa::path(get, path = "/api/v1/wallet", tag = "Wallet",
    description = "The workspace wallet's pool in the settlement contract, its USDC balance, its rate cap and its \
        requested withdrawal, read from the chain now, with what the server holds against it (open sessions, \
        unsettled charges, debts) and the credit left for a new session. 503 UPSTREAM_UNAVAILABLE without a chain (chain.rpc_url) or when it does not answer.",
    responses((status = 200, body = WalletDto), (status = 503, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["wallet:read"]), ("walletCookie" = [])))]
pub(super) async fn wallet(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<WalletDto>> {
    let ws = caller.require(Scope::WalletRead)?;
    let chain = chain_of(&app)?;
    let wallet = ws.wallet;
    let (pool, balance) =
        tokio::try_join!(chain.pool(wallet), chain.usdc_balance(wallet)).map_err(chain_error)?;
    let owed = app.store.obligations(wallet).await?;
    Ok(ApiOk::read(WalletDto {
        wallet_address: wallet.to_checksum(),
        chain_id: app.config.chain.chain_id,
        pool_micro_usdc: pool.deposit_micro_usdc,
        usdc_balance_micro_usdc: balance,
        max_rate_per_second_micro_usdc: pool.max_rate_per_second,
        withdrawal_requested_micro_usdc: pool.withdrawal_requested_micro_usdc,
        withdrawable_at: pool.withdrawable_at_s.map(|s| {
            lx_protocol::time::format_millis(i64::try_from(s).unwrap_or(i64::MAX / 1000) * 1000)
        }),
        held_micro_usdc: owed.held,
        unsettled_micro_usdc: owed.unsettled_beyond(pool.last_sequence),
        available_credit_micro_usdc: crate::credit::available_micro_usdc(&pool, &owed),
        debts: owed
            .debts
            .into_iter()
            .map(|d| DebtDto {
                session_id: d.session_id,
                amount_micro_usdc: d.amount_micro_usdc,
                last_error: d.last_error,
            })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/api/v1/settlements/{sessionId}", tag = "Settlements", params(("sessionId" = Uuid, Path)),
    description = "Where the session's on-chain settlement stands: NOT_READY until its meter is final, NOT_REQUIRED \
        when it charged nothing, then PENDING → SUBMITTED → CONFIRMED; UNPAID while it is a debt of the consumer \
        (its pool no longer covers it; retried when the pool grows), FAILED for a fault on the server's side.",
    responses((status = 200, body = SettlementDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:read"]), ("apiKey" = ["wallet:read"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
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
    let (session, side) = super::sessions::visible(&app, &caller, ws, &id).await?;
    if matches!(side, super::sessions::Side::Offered) {
        return Err(ApiError::session_not_found());
    }
    let record = app.store.settlement(session.id).await?;
    let dto = crate::store::dto::settlement_view(&session, record.as_ref());
    Ok(ApiOk::read(dto))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    /// `nextCursor` of the page before.
    cursor: Option<String>,
    /// 1 to 200; 50 by default.
    limit: Option<u32>,
}

fn parse_cursor(text: &str) -> ApiResult<(u64, u64)> {
    text.split_once(':')
        .and_then(|(b, i)| Some((b.parse().ok()?, i.parse().ok()?)))
        .ok_or_else(|| {
            ApiError::invalid("cursor", "not a cursor of this endpoint (block:logIndex)")
        })
}

#[utoipa::path(get, path = "/api/v1/wallet/events", tag = "Wallet", params(EventsQuery),
    description = "The workspace wallet's DEPOSIT, WITHDRAWAL_REQUESTED, WITHDRAWAL, SETTLE and APPROVAL events from the chain, oldest \
        first, a page at a time.",
    responses((status = 200, body = WalletEventsDto), (status = 503, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["wallet:read"]), ("walletCookie" = [])))]
pub(super) async fn events(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<ApiOk<WalletEventsDto>> {
    let ws = caller.require(Scope::WalletRead)?;
    let chain = chain_of(&app)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 200"));
    }
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    // One more than asked tells whether a next page exists.
    let mut found = chain
        .wallet_events(ws.wallet, after, limit as usize + 1)
        .await
        .map_err(chain_error)?;
    let more = found.len() > limit as usize;
    found.truncate(limit as usize);
    let next_cursor = more
        .then(|| found.last().map(|e| format!("{}:{}", e.block, e.log_index)))
        .flatten();
    let events = found
        .into_iter()
        .map(|e| WalletEventDto {
            kind: match e.kind {
                WalletEventKind::Deposit => WalletEventType::Deposit,
                WalletEventKind::WithdrawalRequested => WalletEventType::WithdrawalRequested,
                WalletEventKind::Withdrawal => WalletEventType::Withdrawal,
                WalletEventKind::Settle => WalletEventType::Settle,
                WalletEventKind::Approval => WalletEventType::Approval,
            },
            tx_hash: e.tx_hash,
            block_number: e.block,
            log_index: e.log_index,
            amount_micro_usdc: e.amount_micro_usdc,
            session_id: e.session_id,
            counterparty: e.counterparty.map(|a| a.to_checksum()),
        })
        .collect();
    Ok(ApiOk::read(WalletEventsDto {
        events,
        next_cursor,
    }))
}
