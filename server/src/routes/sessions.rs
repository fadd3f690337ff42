//! Sessions: pricing quotes, create, read, dispatch, accept, start, pause,
//! resume, end, cancel, the media tokens and the frame.

use axum::extract::{Path, State};
use lx_protocol::ErrorCode;
use lx_protocol::api::{
    CancelAllResponse, CreateSessionRequest, ExpiryReason, MAX_TRUST_TIER, OfferDto,
    ProducerTokenDto, QuoteDto, Role, Scope, SessionDto, SessionState, StartResponse, Subsystem,
    ViewerTokenDto,
};
use lx_protocol::geo::{METRES_PER_DEGREE, Point, check_lat, check_lng};
use lx_protocol::time::format_millis;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::{ActError, App, DevicePick, DispatchError};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiOk, ApiQuery, AppState, parse_id};
use crate::pricing::{self, Price, PriceInputs};
use crate::session::lifecycle::{Action, LifecycleError};
use crate::store::{
    ApplyError, CreateSessionError, NewSession, Party, Quote, Session, SessionFilter, Workspace,
};

pub(super) const MAX_GEOFENCE_RADIUS_M: u32 = 100_000;

pub(super) use crate::store::dto::session_dto;

/// How the caller's workspace relates to a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    Consumer,
    Operator,
    /// The session is offered to the caller's workspace.
    Offered,
}

fn side_of(session: &Session, ws: &Workspace) -> Option<Side> {
    if session.consumer_workspace_id == ws.id {
        Some(Side::Consumer)
    } else if session.operator_workspace_id == Some(ws.id) {
        Some(Side::Operator)
    } else if session.state == SessionState::Requested
        && session.offer.is_some_and(|o| o.workspace_id == ws.id)
    {
        Some(Side::Offered)
    } else {
        None
    }
}

/// Loads a session the caller's workspace may see; anyone else gets 404.
/// A device token sees less than its workspace: the sessions it serves and
/// those offered to its workspace (so that it can accept one), never the
/// workspace's consumer sessions or another device's.
pub(super) async fn visible(
    app: &App,
    caller: &Caller,
    ws: &Workspace,
    id: &str,
) -> ApiResult<(Session, Side)> {
    let id = parse_id("id", id)?;
    let session = app
        .store
        .session(id)
        .await?
        .ok_or_else(ApiError::session_not_found)?;
    let side = side_of(&session, ws).ok_or_else(ApiError::session_not_found)?;
    if let Some(device) = &caller.operator {
        let serves = side == Side::Operator && session.operator_id == Some(device.id);
        if !(serves || side == Side::Offered) {
            return Err(ApiError::session_not_found());
        }
    }
    Ok((session, side))
}

/// A device acts only on the sessions it serves, not on its fleet's others.
fn own_device(caller: &Caller, session: &Session) -> ApiResult<()> {
    match (&caller.operator, session.operator_id) {
        (Some(op), Some(device)) if op.id != device => Err(ApiError::new(
            ErrorCode::WrongDevice,
            "another device of this workspace serves the session",
        )
        .with_detail("session:wrongDevice")),
        _ => Ok(()),
    }
}

/// A `stream` lock on the device serving the session covers the supplier
/// side's stream actions (start, the WHIP URL, end): while a controller
/// holds it, anyone else of the fleet gets `409 LOCKED`. The holder acts,
/// and so does the device itself, whose stream it is. The consumer's own
/// actions are never locked out: it pays for the session.
async fn stream_unlocked(
    app: &App,
    caller: &Caller,
    session: &Session,
    side: Side,
) -> ApiResult<()> {
    let Some(device) = session.operator_id else {
        return Ok(());
    };
    if side != Side::Operator || caller.operator.as_ref().is_some_and(|op| op.id == device) {
        return Ok(());
    }
    let me = caller.holder();
    let held = app
        .store
        .locks_of(device)
        .await?
        .into_iter()
        .find(|lock| lock.subsystem == Subsystem::Stream && lock.holder != me);
    match held {
        Some(lock) => Err(ApiError::locked(&lock.holder)),
        None => Ok(()),
    }
}

fn only(side: Side, wanted: Side, operation: &str) -> ApiResult<()> {
    if side == wanted {
        return Ok(());
    }
    let (message, label) = match wanted {
        Side::Consumer => (
            "only the consumer of the session may do this",
            "notConsumer",
        ),
        Side::Operator | Side::Offered => (
            "only the operator of the session may do this",
            "notOperator",
        ),
    };
    Err(ApiError::forbidden(
        message,
        format!("session:{operation}:{label}"),
    ))
}

fn act_error(operation: &str, err: ActError) -> ApiError {
    match err {
        ActError::Lifecycle(LifecycleError::NotAllowed { state, .. })
        | ActError::Apply(ApplyError::State(state)) => ApiError::invalid_state(operation, state),
        ActError::Lifecycle(LifecycleError::NotOffered) => ApiError::session_not_found(),
        ActError::Lifecycle(LifecycleError::OfferExpired) => {
            ApiError::new(ErrorCode::InvalidState, "the offer expired")
                .with_detail(format!("session:{operation}:OFFER_EXPIRED"))
        }
        ActError::Lifecycle(LifecycleError::NotDue) => {
            ApiError::invalid_state(operation, "NOT_DUE")
        }
        ActError::Lifecycle(LifecycleError::BelowMinTrustTier { required, offered }) => {
            ApiError::new(
                ErrorCode::InvalidState,
                format!(
                    "the session asks for trust tier {required} (an enrolled device signing its telemetry); \
                     this workspace is tier {offered}"
                ),
            )
            .with_detail(format!("session:{operation}:BELOW_MIN_TRUST_TIER"))
        }
        ActError::Lifecycle(err @ LifecycleError::TooManyWindows(_)) => {
            ApiError::new(ErrorCode::InvalidState, err.to_string())
                .with_detail(format!("session:{operation}:TOO_MANY_WINDOWS"))
        }
        ActError::Apply(ApplyError::SupplierUnavailable) => ApiError::new(
            ErrorCode::InvalidState,
            "the workspace is not ONLINE (it is BUSY with another session or OFFLINE)",
        )
        .with_detail(format!("session:{operation}:SUPPLIER_UNAVAILABLE")),
        ActError::Apply(ApplyError::SessionNotFound) => ApiError::session_not_found(),
        ActError::Apply(ApplyError::Store(e)) => e.into(),
    }
}

fn dispatch_error(err: DispatchError) -> ApiError {
    match err {
        DispatchError::NoCoverage => ApiError::new(
            ErrorCode::NoCoverage,
            "no ONLINE supplier of the session's trust tier covers this point",
        )
        .with_detail("dispatch:noCoverage"),
        DispatchError::State(state) => ApiError::invalid_state("dispatch", state),
        DispatchError::NotFound => ApiError::session_not_found(),
        DispatchError::Store(e) => e.into(),
    }
}

fn check_point(lat: f64, lng: f64) -> ApiResult<Point> {
    check_lat(lat).map_err(|m| ApiError::invalid("lat", m))?;
    check_lng(lng).map_err(|m| ApiError::invalid("lng", m))?;
    Ok(Point::new(lat, lng))
}

fn check_duration(app: &App, field: &str, seconds: u32) -> ApiResult<()> {
    let max = app.config.sessions.max_duration_seconds;
    if seconds == 0 || seconds > max {
        return Err(ApiError::invalid(field, format!("must be 1 to {max}")));
    }
    Ok(())
}

/// The consumer's pool in the settlement contract (or its static line).
pub(super) async fn consumer_pool(
    app: &App,
    wallet: lx_protocol::wallet::Address,
) -> ApiResult<crate::credit::PoolState> {
    app.credit.pool(wallet).await.map_err(|err| {
        tracing::warn!(%err, "credit source failed");
        ApiError::new(
            ErrorCode::UpstreamUnavailable,
            "could not read the consumer's credit; retry",
        )
        .with_detail("credit:unavailable")
    })
}

/// A rate above the consumer's own on-chain cap is refused before anything
/// is promised: the contract would refuse its settlement.
fn check_cap(pool: &crate::credit::PoolState, rate_micro_usdc: u64) -> ApiResult<()> {
    match pool.max_rate_per_second {
        Some(cap) if rate_micro_usdc > cap => Err(ApiError::new(
            ErrorCode::RateAboveCap,
            format!(
                "the rate {rate_micro_usdc} µUSDC/s is above your maxRatePerSecond cap of {cap} µUSDC/s \
                 set in the settlement contract; the market rate here is higher than you allowed"
            ),
        )
        .with_detail(format!("credit:rateAboveCap:{cap}"))),
        _ => Ok(()),
    }
}

/// The spot price at `point` now.
async fn current_price(app: &App, point: Point) -> ApiResult<Price> {
    let radius = f64::from(app.config.pricing.demand_radius_meters);
    let dlat = radius / METRES_PER_DEGREE;
    let dlng = (dlat / point.lat.to_radians().cos().max(0.01)).min(360.0);
    let min = Point::new(point.lat - dlat, point.lng - dlng);
    let max = Point::new(point.lat + dlat, point.lng + dlng);
    let open = app
        .store
        .open_session_points(min, max)
        .await?
        .into_iter()
        .filter(|p| p.distance_m(point) <= radius)
        .count();
    Ok(pricing::price(PriceInputs {
        base_rate_micro_usdc: app.config.pricing.base_rate_micro_usdc,
        suppliers_in_range: u32::try_from(app.dispatcher.count_covering(point)).unwrap_or(u32::MAX),
        open_sessions_nearby: u32::try_from(open).unwrap_or(u32::MAX),
        corridor_bps: pricing::corridor_bps(point, &app.config.pricing.corridors),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct QuoteQuery {
    lat: f64,
    lng: f64,
    duration_seconds: u32,
}

fn bps_factor(bps: u32) -> f64 {
    f64::from(bps) / 10_000.0
}

#[utoipa::path(get, path = "/api/v1/pricing/quote", tag = "Pricing",
    params(("lat" = f64, Query), ("lng" = f64, Query), ("durationSeconds" = u32, Query)),
    description = "Prices a session at a point and locks the rate for a single use within 30 s. `trustTier` is the best \
        tier among the suppliers covering the point now (absent when none does).",
    responses((status = 200, body = QuoteDto)), security(("apiKey" = ["pricing:read"]), ("walletCookie" = [])))]
pub(super) async fn quote(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<QuoteQuery>,
) -> ApiResult<ApiOk<QuoteDto>> {
    let ws = caller.require(Scope::PricingRead)?;
    let point = check_point(q.lat, q.lng)?;
    check_duration(&app, "durationSeconds", q.duration_seconds)?;
    let price = current_price(&app, point).await?;
    if ws.has_role(Role::Consumer) {
        check_cap(
            &consumer_pool(&app, ws.wallet).await?,
            price.rate_micro_usdc,
        )?;
    }
    let now = app.now();
    let quote = Quote {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        point,
        duration_seconds: q.duration_seconds,
        rate_micro_usdc: price.rate_micro_usdc,
        supply_bps: price.supply_bps,
        demand_bps: price.demand_bps,
        corridor_bps: price.corridor_bps,
        created_ms: now,
        expires_ms: now + i64::from(app.config.pricing.quote_ttl_seconds) * 1000,
        used_ms: None,
    };
    app.store.insert_quote(quote.clone()).await?;
    Ok(ApiOk::wrote(
        &app,
        QuoteDto {
            quote_id: quote.id,
            rate_per_second_micro_usdc: quote.rate_micro_usdc,
            estimated_total_micro_usdc: quote
                .rate_micro_usdc
                .saturating_mul(u64::from(q.duration_seconds)),
            supply_factor: bps_factor(price.supply_bps),
            demand_factor: bps_factor(price.demand_bps),
            corridor_multiplier: bps_factor(price.corridor_bps),
            supply_factor_bps: price.supply_bps,
            demand_factor_bps: price.demand_bps,
            corridor_multiplier_bps: price.corridor_bps,
            base_rate_per_second_micro_usdc: app.config.pricing.base_rate_micro_usdc,
            duration_seconds: q.duration_seconds,
            expires_at: format_millis(quote.expires_ms),
            trust_tier: app.dispatcher.best_tier_covering(point, now),
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/sessions", tag = "Sessions", request_body = CreateSessionRequest,
    description = "Creates a REQUESTED session at a locked rate, after checking that the consumer's credit covers \
        its worst case plus the worst case of the consumer's other open sessions. `minTrustTier` (0 or 1, default \
        `dispatch.default_min_trust_tier`) bounds who may serve it: 1 only an enrolled device signing its telemetry.",
    responses((status = 201, body = SessionDto)), security(("apiKey" = ["sessions:create"]), ("walletCookie" = [])))]
pub(super) async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> ApiResult<ApiOk<SessionDto>> {
    let ws = caller.require(Scope::SessionsCreate)?;
    if !ws.has_role(Role::Consumer) {
        return Err(ApiError::forbidden(
            "the workspace does not have the CONSUMER role",
            "session:notConsumer",
        ));
    }
    if req.workspace_id.is_some_and(|id| id != ws.id) {
        return Err(ApiError::forbidden(
            "workspaceId is not the caller's workspace",
            "session:workspaceMismatch",
        ));
    }
    let point = check_point(req.lat, req.lng)?;
    check_duration(&app, "maxDurationSeconds", req.max_duration_seconds)?;
    let s = &app.config.sessions;
    let wait = req
        .wait_timeout_seconds
        .unwrap_or(s.default_wait_timeout_seconds)
        .clamp(s.min_wait_timeout_seconds, s.max_wait_timeout_seconds);
    let geofence = req
        .geofence_radius_meters
        .unwrap_or(s.default_geofence_radius_meters);
    if geofence == 0 || geofence > MAX_GEOFENCE_RADIUS_M {
        return Err(ApiError::invalid(
            "geofenceRadiusMeters",
            format!("must be 1 to {MAX_GEOFENCE_RADIUS_M}"),
        ));
    }
    let min_trust_tier = req
        .min_trust_tier
        .unwrap_or(app.config.dispatch.default_min_trust_tier);
    if min_trust_tier > MAX_TRUST_TIER {
        return Err(ApiError::invalid(
            "minTrustTier",
            format!(
                "must be 0 (any supplier) or {MAX_TRUST_TIER} (an enrolled device signing its telemetry)"
            ),
        ));
    }
    let now = app.now();
    let rate = match req.quote_id {
        Some(id) => {
            let quote = app
                .store
                .quote(id)
                .await?
                .filter(|q| q.workspace_id == ws.id)
                .ok_or_else(|| ApiError::invalid("quoteId", "no such quote for this workspace"))?;
            if quote.used_ms.is_some() {
                return Err(
                    ApiError::new(ErrorCode::QuoteExpired, "the quote was already used")
                        .with_detail("quote:used"),
                );
            }
            if quote.expires_ms <= now {
                return Err(ApiError::new(ErrorCode::QuoteExpired, "the quote expired")
                    .with_detail("quote:expired"));
            }
            if quote.point.distance_m(point) > 1.0 {
                return Err(ApiError::invalid(
                    "quoteId",
                    "the quote was made for another point",
                ));
            }
            quote.rate_micro_usdc
        }
        None => current_price(&app, point).await?.rate_micro_usdc,
    };
    let pool = consumer_pool(&app, ws.wallet).await?;
    check_cap(&pool, rate)?;
    let new = NewSession {
        id: Uuid::new_v4(),
        point,
        geofence_radius_m: geofence,
        max_duration_seconds: req.max_duration_seconds,
        wait_timeout_seconds: wait,
        rate_micro_usdc: rate,
        consumer_workspace_id: ws.id,
        consumer_wallet: ws.wallet,
        quote_id: req.quote_id,
        created_ms: now,
        min_trust_tier,
    };
    let committed = pool.committed_micro_usdc();
    let session = app.store.create_session(new, committed, now).await.map_err(|err| match err {
        CreateSessionError::QuoteUsed => {
            ApiError::new(ErrorCode::QuoteExpired, "the quote was already used").with_detail("quote:used")
        }
        CreateSessionError::Unpaid(debt) => ApiError::new(
            ErrorCode::PaymentRequired,
            format!(
                "you owe {} µUSDC for session {}, whose settlement your pool no longer covered; deposit at \
                 least that much and it is settled within seconds, then new sessions are taken again",
                debt.amount_micro_usdc, debt.session_id
            ),
        )
        .with_detail(format!("credit:debt:{}:{}", debt.session_id, debt.amount_micro_usdc)),
        CreateSessionError::InsufficientCredit { required, available } => {
            let requested = pool.withdrawal_requested_micro_usdc;
            let withdrawal = if requested > 0 {
                format!(" (a deposit of {} less a requested withdrawal of {requested})", pool.deposit_micro_usdc)
            } else {
                String::new()
            };
            ApiError::new(
                ErrorCode::InsufficientCredit,
                format!(
                    "the pool holds {available} µUSDC{withdrawal} but this session's worst case plus the consumer's \
                     other open sessions and unsettled charges need {required} µUSDC; deposit and retry"
                ),
            )
            .with_detail("session:insufficientCredit")
        }
        CreateSessionError::Store(e) => e.into(),
    })?;
    Ok(ApiOk::created(&app, session_dto(&session)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ListQuery {
    /// One state, or several separated by commas.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
    /// RFC 3339: only sessions created before this.
    #[serde(default)]
    before: Option<String>,
    /// CONSUMER, OPERATOR or ALL (default).
    #[serde(default)]
    side: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/sessions", tag = "Sessions",
    params(("state" = Option<String>, Query, description = "One or more states, comma-separated"), ("limit" = Option<u32>, Query),
        ("before" = Option<String>, Query), ("side" = Option<String>, Query, description = "CONSUMER, OPERATOR or ALL")),
    responses((status = 200, body = Vec<SessionDto>)), security(("apiKey" = ["sessions:read"]), ("walletCookie" = [])))]
pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<ApiOk<Vec<SessionDto>>> {
    let ws = caller.require(Scope::SessionsRead)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 500"));
    }
    let before_ms = match q.before.as_deref() {
        Some(text) => Some(
            lx_protocol::time::parse_millis(text)
                .ok_or_else(|| ApiError::invalid("before", "must be an RFC 3339 time"))?,
        ),
        None => None,
    };
    let states = match q.state.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|name| {
                SessionState::parse(name.trim()).ok_or_else(|| {
                    ApiError::invalid("state", format!("unknown state '{name}'; one or more of REQUESTED, ASSIGNED, LIVE, PAUSED, ENDED, CANCELLED, EXPIRED, comma-separated"))
                })
            })
            .collect::<ApiResult<Vec<_>>>()?,
    };
    let party = match q.side.as_deref() {
        None | Some("ALL") => Party::Either,
        Some("CONSUMER") => Party::Consumer,
        Some("OPERATOR") => Party::Operator,
        Some(_) => {
            return Err(ApiError::invalid(
                "side",
                "must be CONSUMER, OPERATOR or ALL",
            ));
        }
    };
    let sessions = app
        .store
        .sessions_of(
            ws.id,
            party,
            SessionFilter {
                states,
                limit,
                before_ms,
            },
        )
        .await?;
    // A device lists the sessions it serves, not its workspace's others
    // (nor, if the workspace also consumes, its consumer sessions).
    let device = caller.operator.as_ref().map(|op| op.id);
    Ok(ApiOk::read(
        sessions
            .iter()
            .filter(|s| {
                device.is_none()
                    || (device == s.operator_id && s.operator_workspace_id == Some(ws.id))
            })
            .map(session_dto)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/sessions/offers", tag = "Sessions",
    description = "Sessions offered to the caller's supplier workspace and not yet expired, oldest first, at most 500.",
    responses((status = 200, body = Vec<OfferDto>)), security(("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn offers(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<Vec<OfferDto>>> {
    let ws = caller.require(Scope::SessionsOperate)?;
    let offers = app.store.offers_for(ws.id, app.now()).await?;
    Ok(ApiOk::read(
        offers
            .iter()
            .filter_map(|s| {
                s.offer.map(|o| OfferDto {
                    session_id: s.id,
                    lat: s.point.lat,
                    lng: s.point.lng,
                    geofence_radius_meters: s.geofence_radius_m,
                    max_duration_seconds: s.max_duration_seconds,
                    rate_per_second_micro_usdc: s.rate_micro_usdc,
                    expires_at: format_millis(o.expires_ms),
                })
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/sessions/cancel-all-assignments", tag = "Sessions",
    description = "Cancels every ASSIGNED session the caller's workspace operates (a device token: the device's own) and \
        frees the supplier. LIVE sessions are not touched.",
    responses((status = 200, body = CancelAllResponse)), security(("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn cancel_all(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<CancelAllResponse>> {
    let ws = caller.require(Scope::SessionsOperate)?;
    let assigned = app
        .store
        .sessions_of(
            ws.id,
            Party::Operator,
            SessionFilter {
                states: vec![SessionState::Assigned],
                limit: 10_000,
                before_ms: None,
            },
        )
        .await?;
    // A device reclaims only its own assignments, not its fleet's.
    let device = caller.operator.as_ref().map(|op| op.id);
    let mut cancelled = Vec::new();
    for session in assigned
        .into_iter()
        .filter(|s| device.is_none() || s.operator_id == device)
    {
        match app.act(&session, Action::Cancel { now: app.now() }).await {
            Ok(s) => cancelled.push(s.id),
            Err(ActError::Apply(ApplyError::State(_))) | Err(ActError::Lifecycle(_)) => {}
            Err(err) => return Err(act_error("cancelAll", err)),
        }
    }
    Ok(ApiOk::wrote(
        &app,
        CancelAllResponse {
            count: u32::try_from(cancelled.len()).unwrap_or(u32::MAX),
            cancelled,
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}", tag = "Sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:read"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn get_one(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    let ws = caller.require_any(&[Scope::SessionsRead, Scope::SessionsOperate])?;
    let (session, _) = visible(&app, &caller, ws, &id).await?;
    let mut dto = session_dto(&session);
    // While LIVE the meter runs: what ending now would charge, not final.
    if let Some(meter) = app
        .running_meter(&session, app.now())
        .await
        .map_err(|e| act_error("read", e))?
    {
        dto.meter = Some(meter.into());
        dto.clean_seconds = Some(meter.clean_seconds);
        dto.failed_seconds = Some(meter.failed_seconds);
        dto.charged_micro_usdc = Some(meter.charged_micro_usdc);
        dto.meter_final = false;
    }
    Ok(ApiOk::read(dto))
}

/// Consumer-side transitions share one shape.
async fn consumer_action(
    app: &App,
    caller: &Caller,
    id: &str,
    operation: &str,
    action: impl FnOnce(&App) -> Action,
) -> ApiResult<ApiOk<SessionDto>> {
    let ws = caller.require(Scope::SessionsCreate)?;
    let (session, side) = visible(app, caller, ws, id).await?;
    only(side, Side::Consumer, operation)?;
    let session = app
        .act(&session, action(app))
        .await
        .map_err(|e| act_error(operation, e))?;
    Ok(ApiOk::wrote(app, session_dto(&session)))
}

#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "Cancels a REQUESTED or ASSIGNED session (no charge). A LIVE session is ended with POST /end instead.",
    responses((status = 200, body = SessionDto), (status = 409, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:create"]), ("walletCookie" = [])))]
pub(super) async fn cancel(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    consumer_action(&app, &caller, &id, "cancel", |app| Action::Cancel {
        now: app.now(),
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/pause", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "LIVE → PAUSED: the meter stops until resume.",
    responses((status = 200, body = SessionDto)), security(("apiKey" = ["sessions:create"]), ("walletCookie" = [])))]
pub(super) async fn pause(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    consumer_action(&app, &caller, &id, "pause", |app| Action::Pause {
        now: app.now(),
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/resume", tag = "Sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = SessionDto)), security(("apiKey" = ["sessions:create"]), ("walletCookie" = [])))]
pub(super) async fn resume(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    consumer_action(&app, &caller, &id, "resume", |app| Action::Resume {
        now: app.now(),
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/dispatch", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "Gives the session to the longest idle ONLINE supplier covering its point, of at least the session's \
        minTrustTier and not cooling down: assigned at once if the \
        supplier auto-accepts, else offered to it. 503 NO_COVERAGE when nobody can take it.",
    responses((status = 200, body = SessionDto), (status = 503, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:create"]), ("walletCookie" = [])))]
pub(super) async fn dispatch(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    let ws = caller.require(Scope::SessionsCreate)?;
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    only(side, Side::Consumer, "dispatch")?;
    // The cap can have been set since the session was created.
    check_cap(
        &consumer_pool(&app, ws.wallet).await?,
        session.rate_micro_usdc,
    )?;
    let session = app
        .dispatch(session.id, true)
        .await
        .map_err(dispatch_error)?;
    Ok(ApiOk::wrote(&app, session_dto(&session)))
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/accept", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "The offered supplier takes the session: REQUESTED → ASSIGNED, the workspace turns BUSY.",
    responses((status = 200, body = SessionDto), (status = 409, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn accept(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    let ws = caller.require(Scope::SessionsOperate)?;
    if !ws.has_role(Role::Supplier) {
        return Err(ApiError::forbidden(
            "the workspace does not have the SUPPLIER role",
            "session:notSupplier",
        ));
    }
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    if side == Side::Consumer {
        return Err(ApiError::forbidden(
            "only the operator of the session may do this",
            "session:accept:notOperator",
        ));
    }
    let device = match &caller.operator {
        Some(op) => Some(op.id),
        None => match app.pick_device(ws.id, session.point).await? {
            DevicePick::NoDevices => None,
            DevicePick::Device(id) => Some(id),
            DevicePick::NoneFree => {
                return Err(ApiError::new(
                    ErrorCode::InvalidState,
                    "no enrolled device of this workspace is connected, ONLINE and located",
                )
                .with_detail("session:accept:NO_FREE_DEVICE"));
            }
        },
    };
    let action = Action::Accept {
        workspace: ws.id,
        device,
        now: app.now(),
    };
    let session = app
        .act(&session, action)
        .await
        .map_err(|e| act_error("accept", e))?;
    Ok(ApiOk::wrote(&app, session_dto(&session)))
}

/// The media backend's own words (an edge's URL, its answer) go to the
/// server's log; the client gets a fixed message and the code.
fn media_unavailable(err: impl std::fmt::Display) -> ApiError {
    tracing::warn!(%err, "media provisioning failed");
    ApiError::new(ErrorCode::VideoError, "Video service unavailable; retry")
        .with_detail("video:unavailable")
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/start", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "Provisions the session's media and returns the WHIP and WHEP URLs. Idempotent; the state stays \
        ASSIGNED until the server decodes the first frame.",
    responses((status = 200, body = StartResponse), (status = 503, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn start(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<StartResponse>> {
    let ws = caller.require(Scope::SessionsOperate)?;
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    own_device(&caller, &session)?;
    only(side, Side::Operator, "start")?;
    stream_unlocked(&app, &caller, &session, side).await?;
    if !matches!(
        session.state,
        SessionState::Assigned | SessionState::Live | SessionState::Paused
    ) {
        return Err(ApiError::invalid_state("start", session.state));
    }
    let session = match session.media.clone() {
        // Its replica is gone: the device asks again, the media move here.
        Some(media) => match crate::replicas::media_owner(&app, &media) {
            Some(owner) if !crate::replicas::answers(&owner).await => {
                crate::replicas::take_over_media(&app, session, &media)
                    .await
                    .map_err(|e| match e {
                        crate::replicas::TakeOverError::Media(e) => media_unavailable(e),
                        crate::replicas::TakeOverError::Store(e) => act_error("start", e.into()),
                    })?
            }
            _ => session,
        },
        None => {
            let media = app
                .media
                .provision(session.id)
                .await
                .map_err(media_unavailable)?;
            let stored = app
                .store
                .attach_media(session.id, media.clone())
                .await
                .map_err(|e| act_error("start", e.into()))?;
            if stored.media.as_ref() != Some(&media) {
                // A concurrent start won; give back what this one provisioned.
                let _ = app.media.release(session.id, &media).await;
            }
            stored
        }
    };
    let media = session
        .media
        .clone()
        .ok_or_else(|| media_unavailable("no endpoints"))?;
    Ok(ApiOk::wrote(
        &app,
        StartResponse {
            session_id: session.id,
            state: session.state,
            video_backend_ref: media.backend_ref,
            whip_url: media.whip_url,
            whep_url: media.whep_url,
        },
    ))
}

#[utoipa::path(post, path = "/api/v1/sessions/{id}/end", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "Either side ends the session. LIVE or PAUSED → ENDED with the meter; before LIVE it is a cancel.",
    responses((status = 200, body = SessionDto), (status = 409, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:operate"]), ("apiKey" = ["sessions:create"]), ("walletCookie" = [])))]
pub(super) async fn end(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<SessionDto>> {
    let ws = caller.require_any(&[Scope::SessionsOperate, Scope::SessionsCreate])?;
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    own_device(&caller, &session)?;
    if side == Side::Offered {
        return Err(ApiError::session_not_found());
    }
    stream_unlocked(&app, &caller, &session, side).await?;
    let action = Action::End {
        now: app.now(),
        fee_bps: app.fee_bps(),
    };
    let session = app
        .act(&session, action)
        .await
        .map_err(|e| act_error("end", e))?;
    Ok(ApiOk::wrote(&app, session_dto(&session)))
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/producer-token", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "The WHIP URL again, for the operator only.",
    responses((status = 200, body = ProducerTokenDto), (status = 409, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn producer_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<ProducerTokenDto>> {
    let ws = caller.require(Scope::SessionsOperate)?;
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    own_device(&caller, &session)?;
    only(side, Side::Operator, "producerToken")?;
    stream_unlocked(&app, &caller, &session, side).await?;
    match (&session.media, session.state) {
        (Some(m), SessionState::Assigned | SessionState::Live | SessionState::Paused) => {
            Ok(ApiOk::read(ProducerTokenDto {
                video_backend_ref: m.backend_ref.clone(),
                whip_url: m.whip_url.clone(),
            }))
        }
        _ => Err(ApiError::invalid_state("producerToken", session.state)),
    }
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/viewer-token", tag = "Sessions", params(("id" = Uuid, Path)),
    responses((status = 200, body = ViewerTokenDto), (status = 409, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:read"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn viewer_token(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<ViewerTokenDto>> {
    let ws = caller.require_any(&[Scope::SessionsRead, Scope::SessionsOperate])?;
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    if side == Side::Offered {
        return Err(ApiError::session_not_found());
    }
    match (&session.media, session.state) {
        (Some(m), SessionState::Assigned | SessionState::Live | SessionState::Paused) => {
            Ok(ApiOk::read(ViewerTokenDto {
                whep_url: m.whep_url.clone(),
            }))
        }
        _ => Err(ApiError::invalid_state("viewerToken", session.state)),
    }
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/proof", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "Everything the session's meter judged it by, in one self-contained bundle: the terms, the device's \
        signed track (each sample's EIP-712 message, signature and when it was received), the recorded PAUSED and \
        NETWORK_ERROR windows, the device's outages, the meter's rules and result, and the settlement. \
        `lx verify` recomputes every signature and the meter from it offline. 409 INVALID_STATE until the session \
        has ended after going LIVE.",
    responses((status = 200, body = lx_protocol::proof::ProofBundle), (status = 404, body = lx_protocol::api::ErrorBody),
        (status = 409, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:read"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn proof(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<lx_protocol::proof::ProofBundle>> {
    let ws = caller.require_any(&[Scope::SessionsRead, Scope::SessionsOperate])?;
    let (session, side) = visible(&app, &caller, ws, &id).await?;
    if side == Side::Offered {
        return Err(ApiError::session_not_found());
    }
    match app.proof_bundle(&session, app.clock.now_ms()).await {
        Ok(bundle) => Ok(ApiOk::read(bundle)),
        Err(crate::proof::ProofError::NotEnded) => {
            Err(ApiError::invalid_state("proof", session.state))
        }
        Err(crate::proof::ProofError::Store(err)) => Err(err.into()),
    }
}

#[utoipa::path(get, path = "/api/v1/sessions/{id}/frame", tag = "Sessions", params(("id" = Uuid, Path)),
    description = "The latest decoded frame as image/jpeg (`Cache-Control: no-store`; `x-lx-frame-decoded-at` tells \
        when it was decoded). 404 FRAME_NOT_AVAILABLE until the session is LIVE and the media plane has a frame.",
    responses((status = 200, content_type = "image/jpeg", body = Vec<u8>), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["sessions:read"]), ("apiKey" = ["sessions:operate"]), ("walletCookie" = [])))]
pub(super) async fn frame(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: axum::http::HeaderMap,
) -> ApiResult<axum::response::Response> {
    use axum::http::header;
    use axum::response::IntoResponse;
    let ws = caller.require_any(&[Scope::SessionsRead, Scope::SessionsOperate])?;
    let (session, _) = visible(&app, &caller, ws, &id).await?;
    let live = matches!(session.state, SessionState::Live | SessionState::Paused);
    if let Some(frame) = live.then(|| app.media.latest_frame(session.id)).flatten() {
        return Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg".to_string()),
                (header::CACHE_CONTROL, "no-store".to_string()),
                (
                    header::HeaderName::from_static("x-lx-frame-decoded-at"),
                    format_millis(frame.decoded_ms),
                ),
            ],
            frame.jpeg.as_ref().clone(),
        )
            .into_response());
    }
    // Another replica carries the media: its frame, asked of it.
    let forwarded = headers.contains_key(crate::replicas::FORWARDED_HEADER);
    if let (true, false, Some(media)) = (live, forwarded, &session.media)
        && let Some(owner) = crate::replicas::media_owner(&app, media)
    {
        let by = app.config.http.public_url.clone();
        match crate::replicas::frame_from_owner(&owner, session.id, &headers, &by).await {
            Ok(response) => return Ok(response),
            Err(err) => {
                tracing::warn!(session = %session.id, %owner, %err, "the media's replica did not answer for the frame");
                return Err(ApiError::new(
                    ErrorCode::FrameNotAvailable,
                    "the replica carrying this session's media did not answer",
                )
                .with_detail("frame:ownerUnreachable"));
            }
        }
    }
    let detail = if session.expiry_reason == Some(ExpiryReason::WaitTimeout) {
        "expired"
    } else if live {
        "noFrame"
    } else {
        "notLive"
    };
    Err(ApiError::new(
        ErrorCode::FrameNotAvailable,
        "no decoded frame is available for this session",
    )
    .with_detail(format!("frame:{detail}")))
}
