//! The lx tools for MCP clients (AI agents): the twelve tools of the
//! reference's MCP server, over this crate's [`Client`].
//!
//! One implementation serves both transports: `lx mcp` on stdio acts with
//! the key it was started with; the server's `/mcp` (streamable HTTP) acts
//! with the `Authorization` header of each HTTP request, so one endpoint
//! serves every consumer with its own key and scopes.
//!
//! A failed call is a tool result with `isError` and the reference's error
//! object `{code, status, message, detail, retryable}` (plus `sessionId`
//! once a session exists), so the model can read why and decide.

use std::time::Duration;

use base64::Engine;
use lx_protocol::api::{CreateSessionRequest, SessionDto, SessionState};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Implementation, ProgressNotificationParam, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Client, Error, ListSessions, WaitOptions};

/// The longest a tool waits for LIVE: MCP clients time requests out too
/// (the inspector after 60 s by default), so longer waits are `wait_for_live` calls.
const MAX_WAIT_SECONDS: u32 = 300;
const DEFAULT_WAIT_SECONDS: u32 = 45;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequestLiveViewArgs {
    /// Latitude of the point to watch, degrees.
    pub lat: f64,
    /// Longitude of the point to watch, degrees.
    pub lng: f64,
    /// How long the view may last at most, seconds (the worst-case charge is rate × this).
    pub duration_seconds: u32,
    /// How long the server looks for a supplier before the request expires, seconds (5 to 3600).
    #[serde(default)]
    pub wait_timeout_seconds: Option<u32>,
    /// A quote from get_pricing_quote, to lock its rate.
    #[serde(default)]
    pub quote_id: Option<String>,
    /// The lowest trust tier to accept: 0 any supplier (a workspace without devices is paid on media and unsigned
    /// location heartbeats), 1 only an enrolled device that signs its position. Default: the server's.
    #[serde(default)]
    pub min_trust_tier: Option<u8>,
    /// How long this call waits for the stream to go LIVE, seconds (default 45, at most 300).
    #[serde(default)]
    pub wait_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionArgs {
    /// The session id (a UUID) returned by request_live_view.
    pub session_id: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WaitArgs {
    /// The session id (a UUID) returned by request_live_view.
    pub session_id: String,
    /// How long to wait, seconds (default 45, at most 300).
    #[serde(default)]
    pub timeout_seconds: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListArgs {
    /// Only sessions in these states, comma-separated (REQUESTED, ASSIGNED, LIVE, PAUSED, ENDED, CANCELLED, EXPIRED).
    #[serde(default)]
    pub state: Option<String>,
    /// At most this many, newest first (1 to 500, default 50).
    #[serde(default)]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct QuoteArgs {
    pub lat: f64,
    pub lng: f64,
    /// The session length to price, seconds.
    pub duration_seconds: u32,
}

/// The MCP server: the tools over one [`Client`].
#[derive(Debug, Clone)]
pub struct LxTools {
    client: Client,
    tool_router: ToolRouter<Self>,
}

impl LxTools {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            tool_router: Self::tool_router(),
        }
    }

    /// The client acting for this request: over HTTP, with the caller's own
    /// `Authorization: Bearer` key; over stdio, the key `lx mcp` was given.
    fn client_for(&self, ctx: &RequestContext<RoleServer>) -> Client {
        #[cfg(feature = "mcp-http")]
        if let Some(parts) = ctx.extensions.get::<http::request::Parts>() {
            let key = parts
                .headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(lx_protocol::bearer::token)
                .map(str::to_owned);
            return self.client.with_api_key(key);
        }
        let _ = ctx;
        self.client.clone()
    }
}

fn ok_json(value: impl serde::Serialize) -> Result<CallToolResult, ErrorData> {
    let value = serde_json::to_value(value)
        .map_err(|e| ErrorData::internal_error(format!("cannot encode the result: {e}"), None))?;
    Ok(CallToolResult::success(vec![ContentBlock::text(
        value.to_string(),
    )]))
}

fn failed(error: &Error, session_id: Option<Uuid>) -> CallToolResult {
    let mut body = error.to_json();
    if let (Some(id), Some(map)) = (session_id, body.as_object_mut()) {
        map.insert("sessionId".into(), json!(id));
    }
    CallToolResult::error(vec![ContentBlock::text(body.to_string())])
}

/// A tool's answer: the value as JSON, or the error for the model to read
/// (with the session it concerns, once there is one).
fn reply(
    result: Result<impl serde::Serialize, Error>,
    session_id: Option<Uuid>,
) -> Result<CallToolResult, ErrorData> {
    match result {
        Ok(value) => ok_json(value),
        Err(e) => Ok(failed(&e, session_id)),
    }
}

fn session_id(text: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(text.trim()).map_err(|_| Error::InvalidArgument {
        field: "sessionId",
        why: format!("{text:?} is not a session id (a UUID)"),
    })
}

fn wait_options(seconds: Option<u32>) -> WaitOptions {
    let seconds = seconds
        .unwrap_or(DEFAULT_WAIT_SECONDS)
        .clamp(1, MAX_WAIT_SECONDS);
    WaitOptions {
        timeout: Duration::from_secs(u64::from(seconds)),
        poll_interval: Duration::from_millis(500),
    }
}

/// A live session as tools report it: the session and where to watch it.
fn live_view(session: &SessionDto, whep_url: Option<&str>) -> Value {
    json!({
        "sessionId": session.id,
        "state": session.state,
        "whepUrl": whep_url,
        "ratePerSecondMicroUsdc": session.rate_per_second_micro_usdc,
        "holdMicroUsdc": session.hold_micro_usdc,
        "maxDurationSeconds": session.max_duration_seconds,
        "startedAt": session.started_at,
        "operatorWorkspaceId": session.operator_workspace_id,
        "minTrustTier": session.min_trust_tier,
        "trustTier": session.trust_tier,
    })
}

/// Sends MCP progress notifications while a tool waits, when the client
/// asked for them with a progress token.
async fn wait_live_with_progress(
    client: &Client,
    ctx: &RequestContext<RoleServer>,
    id: Uuid,
    options: WaitOptions,
) -> Result<SessionDto, Error> {
    let token = ctx.meta.get_progress_token();
    let total = options.timeout.as_secs_f64();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(SessionState, f64)>();
    let mut last = None;
    let wait = client.wait_for_live(id, options, move |s, waited| {
        if last != Some(s.state) {
            last = Some(s.state);
            let _ = tx.send((s.state, waited.as_secs_f64()));
        }
    });
    let notify = async {
        while let Some((state, waited)) = rx.recv().await {
            if let Some(token) = &token {
                let param = ProgressNotificationParam::new(token.clone(), waited)
                    .with_total(total)
                    .with_message(format!("session {id} is {}", state.as_str()));
                let _ = ctx.peer.notify_progress(param).await;
            }
        }
    };
    let (waited, ()) = tokio::join!(wait, notify);
    waited.map(|w| w.session)
}

#[tool_router]
impl LxTools {
    #[tool(
        description = "Ask for live video of a point on Earth: prices and creates a session, dispatches it to the best supplier in range and waits for the stream to go LIVE. Always returns the sessionId (also in errors once the session exists); the whepUrl plays the stream; get_frame returns the latest picture. The consumer pays per clean second, at most ratePerSecondMicroUsdc × durationSeconds. End it with end_session."
    )]
    async fn request_live_view(
        &self,
        Parameters(args): Parameters<RequestLiveViewArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let client = self.client_for(&ctx);
        let quote_id = match args.quote_id.as_deref().map(|q| Uuid::parse_str(q.trim())) {
            None => None,
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => {
                let e = Error::InvalidArgument {
                    field: "quoteId",
                    why: "is not a quote id (a UUID) from get_pricing_quote".into(),
                };
                return Ok(failed(&e, None));
            }
        };
        let request = CreateSessionRequest {
            lat: args.lat,
            lng: args.lng,
            max_duration_seconds: args.duration_seconds,
            wait_timeout_seconds: args.wait_timeout_seconds,
            geofence_radius_meters: None,
            quote_id,
            workspace_id: None,
            min_trust_tier: args.min_trust_tier,
        };
        let created = match client.create_session(&request).await {
            Ok(s) => s,
            Err(e) => return Ok(failed(&e, None)),
        };
        let id = created.id;
        if created.state == SessionState::Requested
            && let Err(e) = client.dispatch(id).await
        {
            return Ok(failed(&e, Some(id)));
        }
        let session =
            match wait_live_with_progress(&client, &ctx, id, wait_options(args.wait_seconds)).await
            {
                Ok(s) => s,
                Err(e) => return Ok(failed(&e, Some(id))),
            };
        let whep = match client.viewer_token(id).await {
            Ok(t) => Some(t.whep_url),
            Err(e) => return Ok(failed(&e, Some(id))),
        };
        ok_json(live_view(&session, whep.as_deref()))
    }

    #[tool(
        description = "Wait until a session is LIVE (or fail with INVALID_STATE if it ended first, TIMEOUT when the time is up). Returns the session and its whepUrl."
    )]
    async fn wait_for_live(
        &self,
        Parameters(args): Parameters<WaitArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        let client = self.client_for(&ctx);
        let options = wait_options(args.timeout_seconds);
        match wait_live_with_progress(&client, &ctx, id, options).await {
            Ok(session) => {
                let whep = client.viewer_token(id).await.ok().map(|t| t.whep_url);
                ok_json(live_view(&session, whep.as_deref()))
            }
            Err(e) => Ok(failed(&e, Some(id))),
        }
    }

    #[tool(description = "List the caller's sessions, newest first, optionally by state.")]
    async fn list_sessions(
        &self,
        Parameters(args): Parameters<ListArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let filter = ListSessions {
            state: args.state,
            limit: args.limit,
            side: None,
        };
        reply(self.client_for(&ctx).sessions(&filter).await, None)
    }

    #[tool(
        description = "One session: its state, rate, times, disconnect windows and (once ended) the meter: clean and failed seconds and the charge in micro-USDC."
    )]
    async fn get_session(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        reply(self.client_for(&ctx).session(id).await, Some(id))
    }

    #[tool(
        description = "The latest picture of a LIVE session as a JPEG image (FRAME_NOT_AVAILABLE before the first frame is decoded)."
    )]
    async fn get_frame(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        match self.client_for(&ctx).frame(id).await {
            Ok(frame) => {
                let data = base64::engine::general_purpose::STANDARD.encode(&frame.jpeg);
                Ok(CallToolResult::success(vec![ContentBlock::image(
                    data,
                    "image/jpeg",
                )]))
            }
            Err(e) => Ok(failed(&e, Some(id))),
        }
    }

    #[tool(
        description = "The WHEP URL that plays a session's stream in any WHEP player (the URL is the credential: keep it secret)."
    )]
    async fn get_stream_url(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        let token = self.client_for(&ctx).viewer_token(id).await;
        reply(
            token.map(|t| json!({"sessionId": id, "whepUrl": t.whep_url})),
            Some(id),
        )
    }

    #[tool(
        description = "End a LIVE session now; the charge covers the clean seconds so far and settles on-chain."
    )]
    async fn end_session(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        reply(self.client_for(&ctx).end_session(id).await, Some(id))
    }

    #[tool(description = "Cancel a session that is not LIVE yet (no charge).")]
    async fn cancel_session(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        reply(self.client_for(&ctx).cancel_session(id).await, Some(id))
    }

    #[tool(
        description = "Price a session at a point: the rate per second in micro-USDC and its factors, locked for 30 s by the returned quoteId (pass it to request_live_view)."
    )]
    async fn get_pricing_quote(
        &self,
        Parameters(args): Parameters<QuoteArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let client = self.client_for(&ctx);
        reply(
            client
                .quote(args.lat, args.lng, args.duration_seconds)
                .await,
            None,
        )
    }

    #[tool(
        description = "Where live video can be had: the suppliers' coverage circles (rounded to about 1 km) and their device kinds."
    )]
    async fn get_coverage(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        reply(self.client_for(&ctx).coverage().await, None)
    }

    #[tool(
        description = "The caller's wallet on the settlement chain: its pool in the settlement contract and its USDC balance, in micro-USDC."
    )]
    async fn get_wallet(
        &self,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        reply(self.client_for(&ctx).wallet().await, None)
    }

    #[tool(
        description = "Where a session's on-chain settlement stands (NOT_READY, PENDING, SUBMITTED, CONFIRMED, UNPAID: a debt of the consumer, FAILED), with the amounts and the transaction."
    )]
    async fn get_settlement(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        reply(self.client_for(&ctx).settlement(id).await, Some(id))
    }

    #[tool(
        description = "Check an ended session's proof here, without trusting the server: fetches its bundle, recovers the device's signature on every position sample, looks for missing samples, recomputes the meter from the evidence and compares it and the settlement's amounts. Returns ok, the recomputed meter and every finding (failures name the sample or field)."
    )]
    async fn verify_session(
        &self,
        Parameters(args): Parameters<SessionArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let id = match session_id(&args.session_id) {
            Ok(id) => id,
            Err(e) => return Ok(failed(&e, None)),
        };
        let bundle = self.client_for(&ctx).proof(id).await;
        reply(bundle.map(|b| lx_protocol::proof::verify(&b)), Some(id))
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for LxTools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("lx", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Live video of any point on Earth from drones and edge cameras, paid per second in USDC. \
                 Call request_live_view with a point and a duration, then get_frame to see it; \
                 end_session when done. Prices are micro-USDC per second.",
            )
    }
}

/// The tools as a tower service for streamable HTTP (mount it at `/mcp`):
/// one MCP session per client, each call acting with that request's key.
/// `config` names the hosts and origins the endpoint answers (DNS-rebinding
/// protection) and the token that ends its streams on shutdown.
#[cfg(feature = "mcp-http")]
pub fn http_service(
    client: Client,
    config: rmcp::transport::StreamableHttpServerConfig,
) -> rmcp::transport::StreamableHttpService<
    LxTools,
    rmcp::transport::streamable_http_server::session::local::LocalSessionManager,
> {
    rmcp::transport::StreamableHttpService::new(
        move || Ok(LxTools::new(client.clone())),
        std::sync::Arc::default(),
        config,
    )
}
