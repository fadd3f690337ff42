//! Outbound webhooks: register, list and delete a workspace's webhooks, and
//! read a webhook's delivery log.

use std::collections::BTreeSet;

use axum::extract::{Path, State};
use lx_protocol::ErrorCode;
use lx_protocol::api::{
    CreateWebhookRequest, Scope, WebhookCreated, WebhookDeliveryDto, WebhookDto, WebhookEventType,
};
use lx_protocol::time::format_millis;
use serde::Deserialize;
use uuid::Uuid;

use crate::auth::{self, Caller};
use crate::error::{ApiError, ApiResult};
use crate::http::{ApiJson, ApiOk, ApiQuery, AppState, parse_id};
use crate::store::{Delivery, Webhook, Workspace};
use crate::webhooks;

fn webhook_not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "Webhook not found").with_detail("webhook:notFound")
}

/// A device token acts on the sessions its device serves; where the
/// workspace's events go is for its owner and its API keys.
fn not_a_device(caller: &Caller) -> ApiResult<()> {
    if caller.operator.is_some() {
        return Err(ApiError::forbidden(
            "a device token cannot manage webhooks: use an API key or the owner's wallet",
            "webhook:device",
        ));
    }
    Ok(())
}

fn writer(caller: &Caller) -> ApiResult<&Workspace> {
    not_a_device(caller)?;
    caller.require(Scope::WebhooksWrite)
}

fn reader(caller: &Caller) -> ApiResult<&Workspace> {
    not_a_device(caller)?;
    caller.require_any(&[Scope::WebhooksWrite, Scope::SessionsRead])
}

fn webhook_dto(w: &Webhook) -> WebhookDto {
    WebhookDto {
        id: w.id,
        url: w.url.clone(),
        events: w.events.clone(),
        created_at: format_millis(w.created_ms),
        failed_events_in_a_row: w.failed_in_a_row,
        disabled_at: w.disabled_ms.map(format_millis),
    }
}

fn delivery_dto(d: &Delivery) -> WebhookDeliveryDto {
    WebhookDeliveryDto {
        event_id: d.event_id,
        event_type: d.event_type,
        session_id: d.session_id,
        state: d.state,
        attempts: d.attempts,
        last_status_code: d.last_status,
        last_error: d.last_error.clone(),
        next_attempt_at: (d.state == lx_protocol::api::DeliveryState::Pending)
            .then(|| format_millis(d.next_attempt_ms)),
        delivered_at: d.delivered_ms.map(format_millis),
        created_at: format_millis(d.event_ms),
    }
}

/// The webhook `id` names, if it is the caller's workspace's; 404 otherwise.
async fn own(app: &AppState, ws: &Workspace, id: &str) -> ApiResult<Webhook> {
    let id = parse_id("id", id)?;
    app.store
        .webhook(ws.id, id)
        .await?
        .ok_or_else(webhook_not_found)
}

#[utoipa::path(post, path = "/api/v1/webhooks", tag = "Webhooks", request_body = CreateWebhookRequest,
    description = "Registers a URL for the events of the caller's workspace's sessions (as consumer or operator). \
        Every delivery is a signed POST of `{id, type, createdAt, data}`; the `secret` that signs them is in this \
        response only. Needs `webhooks:write`.",
    responses((status = 201, body = WebhookCreated), (status = 400, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["webhooks:write"]), ("walletCookie" = [])))]
pub(super) async fn create(
    State(app): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> ApiResult<ApiOk<WebhookCreated>> {
    let ws = writer(&caller)?;
    let url = webhooks::check_url(&req.url).map_err(|problem| ApiError::invalid("url", problem))?;
    webhooks::check_target(&webhooks::target_policy(&app.config.webhooks), &url)
        .await
        .map_err(|problem| ApiError::invalid("url", problem))?;
    let events: Vec<WebhookEventType> = match req.events {
        None => WebhookEventType::ALL.to_vec(),
        Some(list) if list.is_empty() => {
            return Err(ApiError::invalid(
                "events",
                "must name at least one event, or be left out for every event",
            ));
        }
        Some(list) => list
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect(),
    };
    let max = app.config.webhooks.max_per_workspace;
    if app.store.webhooks_of(ws.id).await?.len() >= max as usize {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("this workspace has {max} webhooks, the most it may have; delete one first"),
        )
        .with_detail("webhook:limit"));
    }
    let webhook = Webhook {
        id: Uuid::new_v4(),
        workspace_id: ws.id,
        url,
        events,
        secret: auth::generate_token(webhooks::SECRET_PREFIX),
        created_ms: app.now(),
        failed_in_a_row: 0,
        disabled_ms: None,
    };
    app.store.insert_webhook(webhook.clone()).await?;
    Ok(ApiOk::created(
        &app,
        WebhookCreated {
            webhook: webhook_dto(&webhook),
            secret: webhook.secret,
        },
    ))
}

#[utoipa::path(get, path = "/api/v1/webhooks", tag = "Webhooks",
    description = "The caller's workspace's webhooks, oldest first, without their secrets. \
        Needs `webhooks:write` or `sessions:read`.",
    responses((status = 200, body = Vec<WebhookDto>)), security(("apiKey" = ["webhooks:write"]), ("apiKey" = ["sessions:read"]), ("walletCookie" = [])))]
pub(super) async fn list(
    State(app): State<AppState>,
    caller: Caller,
) -> ApiResult<ApiOk<Vec<WebhookDto>>> {
    let ws = reader(&caller)?;
    let hooks = app.store.webhooks_of(ws.id).await?;
    Ok(ApiOk::read(hooks.iter().map(webhook_dto).collect()))
}

#[utoipa::path(delete, path = "/api/v1/webhooks/{id}", tag = "Webhooks", params(("id" = Uuid, Path)),
    description = "Deletes the webhook; its deliveries not made yet are dropped. Needs `webhooks:write`.",
    responses((status = 200, body = WebhookDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["webhooks:write"]), ("walletCookie" = [])))]
pub(super) async fn delete(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<WebhookDto>> {
    let ws = writer(&caller)?;
    let webhook = own(&app, ws, &id).await?;
    if !app.store.delete_webhook(ws.id, webhook.id).await? {
        return Err(webhook_not_found());
    }
    Ok(ApiOk::wrote(&app, webhook_dto(&webhook)))
}

#[utoipa::path(post, path = "/api/v1/webhooks/{id}/enable", tag = "Webhooks", params(("id" = Uuid, Path)),
    description = "Turns a webhook that was disabled for failing too many events in a row on again (its events \
        from now on are delivered; those queued before it was disabled are tried again). Needs `webhooks:write`.",
    responses((status = 200, body = WebhookDto), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["webhooks:write"]), ("walletCookie" = [])))]
pub(super) async fn enable(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<ApiOk<WebhookDto>> {
    let ws = writer(&caller)?;
    let webhook = own(&app, ws, &id).await?;
    if !app.store.enable_webhook(ws.id, webhook.id).await? {
        return Err(webhook_not_found());
    }
    let webhook = own(&app, ws, &id).await?;
    Ok(ApiOk::wrote(&app, webhook_dto(&webhook)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct DeliveriesQuery {
    #[serde(default)]
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/v1/webhooks/{id}/deliveries", tag = "Webhooks",
    params(("id" = Uuid, Path), ("limit" = Option<u32>, Query, description = "1 to 200; 50 by default")),
    description = "The webhook's delivery log, newest event first: each event's state (PENDING, DELIVERED, \
        FAILED), attempts, last status or error, and when it is tried next. Needs `webhooks:write` or `sessions:read`.",
    responses((status = 200, body = Vec<WebhookDeliveryDto>), (status = 404, body = lx_protocol::api::ErrorBody)),
    security(("apiKey" = ["webhooks:write"]), ("apiKey" = ["sessions:read"]), ("walletCookie" = [])))]
pub(super) async fn deliveries(
    State(app): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<ApiOk<Vec<WebhookDeliveryDto>>> {
    let ws = reader(&caller)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be 1 to 200"));
    }
    let webhook = own(&app, ws, &id).await?;
    let log = app.store.webhook_deliveries(webhook.id, limit).await?;
    Ok(ApiOk::read(log.iter().map(delivery_dto).collect()))
}
