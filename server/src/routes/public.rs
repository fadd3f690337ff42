//! Unauthenticated reads: health, public configuration, coverage, demand.

use axum::extract::State;
use lx_protocol::api::{ConfigDto, CoverageCircle, CoverageDto, DemandCell, DemandDto, HealthDto};

use crate::error::{ApiError, ApiResult};
use crate::http::{ApiOk, AppState};

/// About 5 km of latitude.
const DEMAND_CELL_DEGREES: f64 = 0.045;
const DEMAND_DAYS: u32 = 30;

#[utoipa::path(get, path = "/api/v1/health", tag = "Health",
    responses((status = 200, body = HealthDto), (status = 503, body = lx_protocol::api::ErrorBody)))]
pub(super) async fn health(State(app): State<AppState>) -> ApiResult<ApiOk<HealthDto>> {
    app.store.ping().await.map_err(|err| {
        tracing::error!(%err, "health: store unreachable");
        ApiError::new(
            lx_protocol::ErrorCode::UpstreamUnavailable,
            "store unreachable",
        )
        .with_detail("health:store")
    })?;
    Ok(ApiOk::read(HealthDto {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        store: app.store.backend_name().into(),
    }))
}

#[utoipa::path(get, path = "/api/v1/config", tag = "Health", responses((status = 200, body = ConfigDto)))]
pub(super) async fn config(State(app): State<AppState>) -> ApiOk<ConfigDto> {
    let c = &app.config;
    let contracts = app.chain.as_ref().and_then(|chain| chain.contracts());
    ApiOk::read(ConfigDto {
        version: env!("CARGO_PKG_VERSION").into(),
        chain_id: c.chain.chain_id,
        settlement_contract: contracts.map(|(settlement, _)| settlement.to_checksum()),
        usdc_contract: contracts.map(|(_, usdc)| usdc.to_checksum()),
        telemetry_domain: Some(lx_protocol::api::TelemetryDomainDto {
            name: lx_protocol::telemetry::DOMAIN_NAME.into(),
            version: lx_protocol::telemetry::DOMAIN_VERSION.into(),
            chain_id: c.chain.chain_id,
        }),
        base_rate_per_second_micro_usdc: c.pricing.base_rate_micro_usdc,
        platform_fee_bps: c.pricing.platform_fee_bps,
        quote_ttl_seconds: c.pricing.quote_ttl_seconds,
        default_wait_timeout_seconds: c.sessions.default_wait_timeout_seconds,
        min_wait_timeout_seconds: c.sessions.min_wait_timeout_seconds,
        max_wait_timeout_seconds: c.sessions.max_wait_timeout_seconds,
        max_duration_seconds: c.sessions.max_duration_seconds,
        default_geofence_radius_meters: c.sessions.default_geofence_radius_meters,
        media_backend: app.media.name().into(),
        default_min_trust_tier: c.dispatch.default_min_trust_tier,
        assigned_live_timeout_seconds: c.dispatch.assigned_live_timeout_seconds,
        heartbeat_fresh_seconds: c.telemetry.heartbeat_fresh_seconds,
        late_sample_bound_seconds: c.telemetry.late_sample_bound_seconds,
    })
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[utoipa::path(get, path = "/api/v1/coverage", tag = "Health",
    description = "Anonymised coverage of the ONLINE suppliers: centres rounded to 0.01°, radii as far as dispatch \
        reaches (at most the cap of the supplier's deviceKind).",
    responses((status = 200, body = CoverageDto)))]
pub(super) async fn coverage(State(app): State<AppState>) -> ApiResult<ApiOk<CoverageDto>> {
    let caps = &app.config.dispatch.max_coverage_radius_meters;
    let circles = app
        .store
        .online_suppliers()
        .await?
        .into_iter()
        .filter_map(|ws| {
            ws.coverage.map(|c| CoverageCircle {
                lat: round2(c.lat),
                lng: round2(c.lng),
                radius_meters: c.radius_m.min(caps.for_kind(ws.device_kind)),
                device_kind: ws.device_kind,
            })
        })
        .collect();
    Ok(ApiOk::read(CoverageDto { circles }))
}

#[utoipa::path(get, path = "/api/v1/demand", tag = "Health",
    description = "Session requests of the last 30 days per cell of about 5 km.",
    responses((status = 200, body = DemandDto)))]
pub(super) async fn demand(State(app): State<AppState>) -> ApiResult<ApiOk<DemandDto>> {
    let since = app.now() - i64::from(DEMAND_DAYS) * 86_400_000;
    let cells = app
        .store
        .demand_cells(since, DEMAND_CELL_DEGREES)
        .await?
        .into_iter()
        .map(|(lat, lng, requests)| DemandCell {
            lat: lat as f64 * DEMAND_CELL_DEGREES,
            lng: lng as f64 * DEMAND_CELL_DEGREES,
            requests,
        })
        .collect();
    Ok(ApiOk::read(DemandDto {
        days: DEMAND_DAYS,
        cell_degrees: DEMAND_CELL_DEGREES,
        cells,
    }))
}
