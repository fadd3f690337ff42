//! The WHIP (RFC 9725) and WHEP endpoints of a media backend that serves
//! them itself: `/media/{whip|whep}/{token}` takes an SDP offer and answers
//! `201 Created` with the SDP answer and the resource in `Location`;
//! `DELETE` on the resource hangs up. The URL is the bearer: its token names
//! the session and carries a MAC. A URL is good while its session is
//! ASSIGNED, LIVE or PAUSED. Errors use the API's envelope.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lx_protocol::ErrorCode;
use lx_protocol::api::SessionState;
use uuid::Uuid;

use crate::error::{ApiError, ApiResult};
use crate::http::AppState;
use crate::media::{Endpoint, MediaError};

fn endpoint(kind: &str) -> ApiResult<Endpoint> {
    match kind {
        "whip" => Ok(Endpoint::Whip),
        "whep" => Ok(Endpoint::Whep),
        _ => Err(ApiError::new(ErrorCode::NotFound, "no such media endpoint")
            .with_detail("media:notFound")),
    }
}

fn unknown_url() -> ApiError {
    ApiError::new(ErrorCode::SessionNotFound, "no session has this media URL")
        .with_detail("media:unknownToken")
}

/// The session behind a token, while it may still carry media (or a live
/// input, when this server is another's edge).
async fn active_session(app: &AppState, endpoint: Endpoint, token: &str) -> ApiResult<Uuid> {
    let id = app
        .media
        .session_of_token(endpoint, token)
        .ok_or_else(unknown_url)?;
    if app.media.is_live_input(id) {
        return Ok(id);
    }
    let session = app.store.session(id).await?.ok_or_else(unknown_url)?;
    if !matches!(
        session.state,
        SessionState::Assigned | SessionState::Live | SessionState::Paused
    ) || session.media.is_none()
    {
        return Err(ApiError::new(
            ErrorCode::SessionNotFound,
            format!(
                "the session is {}: its media URLs are closed",
                session.state
            ),
        )
        .with_detail(format!("media:closed:{}", session.state)));
    }
    Ok(id)
}

fn media_error(endpoint: Endpoint, err: &MediaError) -> Response {
    let kind = endpoint.path();
    let api = match err {
        MediaError::Refused(why) => {
            ApiError::new(ErrorCode::InvalidInput, format!("offer refused: {why}"))
                .with_detail(format!("{kind}:offer"))
        }
        MediaError::NoResource => ApiError::new(ErrorCode::NotFound, err.to_string())
            .with_detail(format!("{kind}:noResource")),
        MediaError::NotServed(_) => ApiError::new(ErrorCode::NotFound, err.to_string())
            .with_detail(format!("{kind}:notServed")),
        MediaError::NoPublisher => ApiError::new(
            ErrorCode::VideoError,
            "the session has no video yet; try again shortly",
        )
        .with_detail(format!("{kind}:noPublisher")),
        MediaError::TooManyViewers(_) => ApiError::new(ErrorCode::VideoError, err.to_string())
            .with_detail(format!("{kind}:tooManyViewers")),
        MediaError::Unavailable(why) => {
            tracing::warn!(endpoint = kind, %why, "media negotiation failed");
            ApiError::new(ErrorCode::VideoError, "Video service unavailable")
                .with_detail(format!("{kind}:unavailable"))
        }
    };
    let mut response = api.into_response();
    if matches!(err, MediaError::NoPublisher) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// The largest WHIP/WHEP offer taken, bytes; a real one is a few KiB.
pub(super) const MAX_OFFER_BYTES: usize = 64 * 1024;
/// m-sections an offer may carry.
const MAX_MEDIA_SECTIONS: usize = 8;

pub(super) async fn offer(
    State(app): State<AppState>,
    Path((kind, token)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    let endpoint = endpoint(&kind).map_err(IntoResponse::into_response)?;
    let session_id = active_session(&app, endpoint, &token)
        .await
        .map_err(IntoResponse::into_response)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("application/sdp")
    {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!("Content-Type must be application/sdp, not '{content_type}'"),
        )
        .with_detail(format!("{kind}:contentType"))
        .into_response());
    }
    let offer = std::str::from_utf8(&body).map_err(|_| {
        ApiError::new(ErrorCode::InvalidInput, "the SDP offer is not UTF-8")
            .with_detail(format!("{kind}:offer"))
            .into_response()
    })?;
    // A publisher sends video (and maybe audio and data): thousands of
    // m-sections are work for webrtcbin and nothing for the session.
    let sections = offer.lines().filter(|l| l.starts_with("m=")).count();
    if sections > MAX_MEDIA_SECTIONS {
        return Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!(
                "the SDP offer has {sections} m-sections; at most {MAX_MEDIA_SECTIONS} are taken"
            ),
        )
        .with_detail(format!("{kind}:offer"))
        .into_response());
    }
    let negotiated = app
        .media
        .negotiate(endpoint, session_id, offer)
        .await
        .map_err(|e| media_error(endpoint, &e))?;
    let location = format!("/media/{kind}/{token}/{}", negotiated.resource);
    Ok((
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        negotiated.answer,
    )
        .into_response())
}

pub(super) async fn hang_up(
    State(app): State<AppState>,
    Path((kind, token, resource)): Path<(String, String, String)>,
) -> Result<StatusCode, Response> {
    let endpoint = endpoint(&kind).map_err(IntoResponse::into_response)?;
    let session_id = app
        .media
        .session_of_token(endpoint, &token)
        .ok_or_else(|| unknown_url().into_response())?;
    app.media
        .hang_up(endpoint, session_id, &resource)
        .await
        .map_err(|e| media_error(endpoint, &e))?;
    Ok(StatusCode::OK)
}

/// Trickle ICE and ICE restarts are not offered: every offer and answer
/// carries all candidates, and a publisher recovers by POSTing again.
pub(super) async fn patch(Path((kind, _, _)): Path<(String, String, String)>) -> Response {
    let mut response = ApiError::new(
        ErrorCode::InvalidInput,
        "trickle ICE is not supported: send every candidate in the offer, and POST again to restart",
    )
    .with_detail(format!("{kind}:noTrickle"))
    .into_response();
    *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    response
}

/// Edge mode: only a caller with `media.edge_api_token` makes live inputs.
fn edge_caller(app: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    use sha2::{Digest, Sha256};
    let expected = &app.config.media.edge_api_token;
    if expected.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this server is no media edge (media.edge_api_token is empty)",
        )
        .with_detail("edge:off"));
    }
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(lx_protocol::bearer::token)
        .unwrap_or("");
    // Hashes of equal length compare in time independent of the token.
    if Sha256::digest(given) != Sha256::digest(expected.as_bytes()) {
        return Err(ApiError::new(
            ErrorCode::NotAuthenticated,
            "live inputs need the edge's API token (media.edge_api_token)",
        )
        .with_detail("edge:token"));
    }
    Ok(())
}

/// `POST /media/live_inputs`, in the shape of Cloudflare Stream's API.
pub(super) async fn create_live_input(
    State(app): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    edge_caller(&app, &headers).map_err(IntoResponse::into_response)?;
    let input = app
        .media
        .create_live_input()
        .await
        .map_err(|e| media_error(Endpoint::Whip, &e))?;
    let body = serde_json::json!({
        "success": true,
        "errors": [],
        "messages": [],
        "result": {
            "uid": input.uid.simple().to_string(),
            "created": lx_protocol::time::format_millis(app.now()),
            "webRTC": { "url": input.whip_url },
            "webRTCPlayback": { "url": input.whep_url },
        },
    });
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// `DELETE /media/live_inputs/{uid}`.
pub(super) async fn delete_live_input(
    State(app): State<AppState>,
    Path(uid): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Response> {
    edge_caller(&app, &headers).map_err(IntoResponse::into_response)?;
    let uid = Uuid::try_parse(&uid)
        .map_err(|_| ApiError::invalid("uid", "not a live input id").into_response())?;
    app.media
        .delete_live_input(uid)
        .await
        .map_err(|e| media_error(Endpoint::Whip, &e))?;
    Ok(axum::Json(
        serde_json::json!({"success": true, "errors": [], "messages": [], "result": null}),
    )
    .into_response())
}
