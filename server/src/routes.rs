//! The `/api/v1` routes and the OpenAPI document generated from them.

mod auth;
mod media;
pub mod openapi;
mod operators;
mod public;
mod sessions;
mod wallet;
mod webhooks;
mod workspaces;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, header};
use axum::routing::{delete, get, post};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;

use crate::http::{self, AppState};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "lx API",
        description = "On-demand live video from drones and edge cameras. Every success is wrapped in \
            `{statusCode, message, data, timestamp}`; every error is `{statusCode, code, message, detail, timestamp}`. \
            The schemas below describe `data`.",
        version = env!("CARGO_PKG_VERSION"),
    ),
    paths(
        public::health, public::config, public::coverage, public::demand,
        auth::wallet_challenge, auth::wallet_login, auth::select_workspace, auth::logout, auth::me,
        workspaces::challenge, workspaces::create, workspaces::list, workspaces::get_one, workspaces::patch,
        workspaces::create_key, workspaces::list_keys, workspaces::revoke_key,
        sessions::quote,
        sessions::create, sessions::list, sessions::offers, sessions::cancel_all, sessions::get_one,
        sessions::cancel, sessions::dispatch, sessions::accept, sessions::start, sessions::end,
        sessions::pause, sessions::resume, sessions::producer_token, sessions::viewer_token, sessions::frame, sessions::proof,
        operators::create_enrollment_token, operators::list_enrollment_tokens,
        operators::revoke_enrollment_token, operators::rotate_token, operators::reconnect,
        operators::register, operators::heartbeat, operators::list,
        operators::get_one, operators::delete, operators::lock, operators::unlock, operators::force_unlock,
        operators::fleet_credentials, operators::post_logs, operators::get_logs,
        operators::telemetry, operators::track, operators::location,
        wallet::wallet, wallet::events, wallet::settlement,
        webhooks::create, webhooks::list, webhooks::delete, webhooks::enable, webhooks::deliveries,
    ),
    components(schemas(lx_protocol::api::ErrorBody, lx_protocol::ErrorCode, lx_protocol::api::WebhookEvent)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        // Each operation names the scopes it takes (any one of its
        // requirements); a device token (lxdv_…) holds sessions:read and
        // sessions:operate, the wallet's cookie every scope.
        components.add_security_scheme(
            "apiKey",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("lxxn_* (API key) or lxdv_* (device token)")
                    .description(Some(
                        "An API key, which holds the scopes it was minted with, or a device token",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "deviceToken",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("lxdv_*")
                    .description(Some(
                        "An enrolled device's token: its own device and the sessions it serves",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "walletCookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::auth::COOKIE_NAME,
                "The workspace owner's wallet, signed in with SIWE: every scope",
            ))),
        );
    }
}

/// Keeps the limiters' maps to the addresses seen lately (a task ended when
/// the router is dropped, with the last clone of the limits).
fn spawn_forgetting(limits: &Arc<crate::limits::RateLimits>) {
    let weak = Arc::downgrade(limits);
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                match weak.upgrade() {
                    Some(limits) => limits.forget_idle(),
                    None => break,
                }
            }
        });
    }
}

/// The whole HTTP surface of `state`; `/mcp` reaches the API through the
/// configured public URL.
pub fn router(state: AppState) -> Router {
    router_with_mcp(state, &Arc::default())
}

/// [`router`], with `/mcp` reaching the API where `mcp` says (`serve` tells
/// it the bound address, and closes its streams at shutdown).
pub fn router_with_mcp(state: AppState, mcp: &Arc<crate::mcp::McpEndpoint>) -> Router {
    let max_body = state.config.http.max_body_bytes;
    let request_limit =
        std::time::Duration::from_millis(state.config.http.request_timeout_ms.max(100));
    let api = Router::new()
        .route("/health", get(public::health))
        .route("/config", get(public::config))
        .route("/coverage", get(public::coverage))
        .route("/demand", get(public::demand))
        .route("/openapi.json", {
            let document = Arc::new(openapi::document(&state.config));
            get(move || async move { axum::Json(document.as_ref().clone()) })
        })
        .route("/auth/wallet/challenge", post(auth::wallet_challenge))
        .route("/auth/wallet/login", post(auth::wallet_login))
        .route("/auth/workspace/select", post(auth::select_workspace))
        .route("/auth/logout", post(auth::logout))
        .route("/me", get(auth::me))
        .route("/workspaces/challenge", post(workspaces::challenge))
        .route(
            "/workspaces",
            post(workspaces::create).get(workspaces::list),
        )
        .route(
            "/workspaces/{id}",
            get(workspaces::get_one).patch(workspaces::patch),
        )
        .route(
            "/workspaces/{id}/api-keys",
            post(workspaces::create_key).get(workspaces::list_keys),
        )
        .route(
            "/workspaces/{id}/api-keys/{key_id}/revoke",
            post(workspaces::revoke_key),
        )
        .route("/pricing/quote", get(sessions::quote))
        .route("/wallet", get(wallet::wallet))
        .route("/wallet/events", get(wallet::events))
        .route("/settlements/{sessionId}", get(wallet::settlement))
        .route("/sessions", post(sessions::create).get(sessions::list))
        .route("/sessions/offers", get(sessions::offers))
        .route(
            "/sessions/cancel-all-assignments",
            post(sessions::cancel_all),
        )
        .route(
            "/sessions/{id}",
            get(sessions::get_one).delete(sessions::cancel),
        )
        .route("/sessions/{id}/dispatch", post(sessions::dispatch))
        .route("/sessions/{id}/accept", post(sessions::accept))
        .route("/sessions/{id}/start", post(sessions::start))
        .route("/sessions/{id}/end", post(sessions::end))
        .route("/sessions/{id}/pause", post(sessions::pause))
        .route("/sessions/{id}/resume", post(sessions::resume))
        .route(
            "/sessions/{id}/producer-token",
            get(sessions::producer_token),
        )
        .route("/sessions/{id}/viewer-token", get(sessions::viewer_token))
        .route("/sessions/{id}/frame", get(sessions::frame))
        .route("/sessions/{id}/proof", get(sessions::proof))
        .route(
            "/sessions/{id}/telemetry",
            post(operators::telemetry).get(operators::track),
        )
        .route("/workspaces/{id}/location", post(operators::location))
        .route(
            "/workspaces/{id}/enrollment-tokens",
            post(operators::create_enrollment_token).get(operators::list_enrollment_tokens),
        )
        .route(
            "/workspaces/{id}/enrollment-tokens/{token_id}",
            delete(operators::revoke_enrollment_token),
        )
        .route("/workspaces/{id}/operators", get(operators::list))
        .route(
            "/workspaces/{id}/mqtt-credentials",
            post(operators::fleet_credentials),
        )
        .route("/operators/register", post(operators::register))
        .route("/operators/reconnect", post(operators::reconnect))
        .route("/operators/heartbeat", post(operators::heartbeat))
        .route(
            "/operators/{id}",
            get(operators::get_one).delete(operators::delete),
        )
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/webhooks/{id}", delete(webhooks::delete))
        .route("/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/webhooks/{id}/enable", post(webhooks::enable))
        .route(
            "/operators/{id}/rotate-token",
            post(operators::rotate_token),
        )
        .route("/operators/{id}/lock", post(operators::lock))
        .route("/operators/{id}/unlock", post(operators::unlock))
        .route(
            "/operators/{id}/logs",
            post(operators::post_logs).get(operators::get_logs),
        )
        .route(
            "/operators/{id}/force-unlock",
            post(operators::force_unlock),
        )
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::console::same_origin_cookie_writes,
        ))
        .layer(axum::middleware::from_fn(move |request, next| {
            http::request_timeout(request_limit, request, next)
        }));
    // Browsers publish and play from pages of any origin (WHIP and WHEP
    // players); the URL is the credential, so no cookie is involved.
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::POST, Method::PATCH, Method::DELETE, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::IF_MATCH,
        ])
        .expose_headers([header::LOCATION, header::LINK, header::ETAG]);
    // The media routes are one service behind their CORS layer: a preflight
    // is answered before any route is matched (nested as routes, a method a
    // route lacks would reach the root's 405 fallback, outside the layer).
    let media = Router::new()
        .route("/live_inputs", post(media::create_live_input))
        .route("/live_inputs/{uid}", delete(media::delete_live_input))
        .route(
            "/{kind}/{token}",
            post(media::offer).layer(DefaultBodyLimit::max(media::MAX_OFFER_BYTES)),
        )
        .route(
            "/{kind}/{token}/{resource}",
            delete(media::hang_up).patch(media::patch),
        )
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .with_state(state.clone());
    let media = tower::Layer::layer(&cors, media);
    let console = crate::console::router(&state.config);
    let mut root = Router::new()
        .nest("/api/v1", api)
        .merge(console)
        .nest_service("/media", media);
    if state.config.mcp.enabled {
        root = root.nest_service("/mcp", crate::mcp::service(&state, mcp));
    }
    let limits = Arc::new(crate::limits::RateLimits::from_config(
        &state.config.rate_limits,
    ));
    spawn_forgetting(&limits);
    root.fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn(move |request, next| {
            crate::limits::enforce(Arc::clone(&limits), request, next)
        }))
        .layer(CatchPanicLayer::custom(http::panic_response))
        .layer(
            TraceLayer::new_for_http()
                // Tower's default span names the whole URI, and a WHIP or
                // WHEP URI is a bearer token.
                .make_span_with(|request: &axum::http::Request<axum::body::Body>| {
                    tracing::info_span!(
                        "request",
                        method = %request.method(),
                        uri = %lx_protocol::redact::media_url(&request.uri().to_string()),
                        version = ?request.version(),
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::DEBUG))
                // 503 NO_COVERAGE or VIDEO_ERROR are answers, not faults; real
                // faults are logged where they happen (store, media, panics).
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}
