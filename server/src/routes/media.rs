//! The WHIP (RFC 9725) and WHEP endpoints of a media backend that serves
//! them itself: `/media/{whip|whep}/{token}` takes an SDP offer and answers
//! `201 Created` with the SDP answer, the resource in `Location` and its ICE
//! session's tag in `ETag`; `PATCH` on the resource trickles candidates or
//! restarts ICE; `DELETE` hangs up. The URL is the bearer: its token names
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
use crate::media::{Endpoint, IcePatch, MediaError, Trickled};

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
        MediaError::StaleIceSession { .. } => {
            return with_status(
                ApiError::new(ErrorCode::InvalidInput, err.to_string())
                    .with_detail(format!("{kind}:staleIceSession")),
                StatusCode::PRECONDITION_FAILED,
            );
        }
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
    let mut response = (
        StatusCode::CREATED,
        [
            (header::CONTENT_TYPE, "application/sdp".to_string()),
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        negotiated.answer,
    )
        .into_response();
    if let Some(etag) = negotiated
        .etag
        .and_then(|tag| HeaderValue::from_str(&format!("\"{tag}\"")).ok())
    {
        response.headers_mut().insert(header::ETAG, etag);
    }
    Ok(response)
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

/// `PATCH` on a resource (RFC 9725 §4.3): late candidates for the ICE
/// session its `If-Match` names (`204`), or, with `If-Match: "*"` and new
/// credentials, an ICE restart answered with our fragment and a new `ETag`
/// (`200`). A backend that does not serve the resource answers `405`.
pub(super) async fn patch(
    State(app): State<AppState>,
    Path((kind, token, resource)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, Response> {
    use lx_protocol::sdpfrag::{self, SdpFrag};
    let endpoint = endpoint(&kind).map_err(IntoResponse::into_response)?;
    let session_id = app
        .media
        .session_of_token(endpoint, &token)
        .ok_or_else(|| unknown_url().into_response())?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with(sdpfrag::CONTENT_TYPE)
    {
        return Err(with_status(
            ApiError::new(
                ErrorCode::InvalidInput,
                format!(
                    "Content-Type must be {}, not '{content_type}'",
                    sdpfrag::CONTENT_TYPE
                ),
            )
            .with_detail(format!("{kind}:contentType")),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ));
    }
    let Some(if_match) = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return Err(with_status(
            ApiError::new(
                ErrorCode::InvalidInput,
                "a trickle ICE PATCH needs If-Match: the resource's ETag for candidates, \"*\" for an ICE restart",
            )
            .with_detail(format!("{kind}:ifMatch")),
            StatusCode::PRECONDITION_REQUIRED,
        ));
    };
    let fragment = std::str::from_utf8(&body)
        .map_err(|_| "not UTF-8".to_string())
        .and_then(|text| SdpFrag::parse(text).map_err(|e| e.to_string()))
        .map_err(|why| {
            ApiError::new(ErrorCode::InvalidInput, format!("bad ICE fragment: {why}"))
                .with_detail(format!("{kind}:sdpfrag"))
                .into_response()
        })?;
    let patch = if if_match == "*" {
        IcePatch::Restart { fragment }
    } else {
        IcePatch::Candidates {
            if_match: if_match
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_string(),
            fragment,
        }
    };
    match app
        .media
        .trickle(endpoint, session_id, &resource, patch)
        .await
    {
        Ok(Trickled::Added) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(Trickled::Restarted { answer, etag }) => Ok((
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, sdpfrag::CONTENT_TYPE.to_string()),
                (header::ETAG, format!("\"{etag}\"")),
                (header::CACHE_CONTROL, "no-store".to_string()),
            ],
            answer,
        )
            .into_response()),
        Err(MediaError::NotServed(_)) => {
            let mut response = with_status(
                ApiError::new(
                    ErrorCode::InvalidInput,
                    "this media backend takes no trickle ICE: send every candidate in the offer, and POST again to restart",
                )
                .with_detail(format!("{kind}:noTrickle")),
                StatusCode::METHOD_NOT_ALLOWED,
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
            Err(response)
        }
        Err(MediaError::Refused(why)) => Err(ApiError::new(
            ErrorCode::InvalidInput,
            format!("ICE fragment refused: {why}"),
        )
        .with_detail(format!("{kind}:sdpfrag"))
        .into_response()),
        Err(err) => Err(media_error(endpoint, &err)),
    }
}

/// An error in the API's envelope with an HTTP status of its own.
fn with_status(error: ApiError, status: StatusCode) -> Response {
    let mut response = error.into_response();
    *response.status_mut() = status;
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
