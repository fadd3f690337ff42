//! A typed client over the lx REST API (`/api/v1`), for consumers: price a
//! point, request a live view, wait for it, read frames and the stream URL,
//! end it, read the wallet and the settlement.
//!
//! Errors keep the server's machine `code` and `detail` and say whether a
//! retry can help, as the reference SDK does (`retryable`: 408, 429, 5xx).

#[cfg(feature = "mcp")]
pub mod mcp;
mod wait;

use std::time::Duration;

use lx_protocol::api::{
    CoverageDto, CreateSessionRequest, QuoteDto, SessionDto, SessionState, SettlementDto,
    ViewerTokenDto, WalletDto,
};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

pub use wait::{WaitOptions, Waited};

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with its error envelope.
    #[error("{code} ({status}): {message}{}", detail.as_ref().map(|d| format!(" [{d}]")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        detail: Option<String>,
    },
    /// The session reached a state the wait can no longer be satisfied from.
    #[error("session {session_id} is {state}, not what was waited for")]
    UnexpectedState {
        session_id: Uuid,
        state: SessionState,
    },
    #[error("session {session_id} still {state} after {waited:?}")]
    Timeout {
        session_id: Uuid,
        state: SessionState,
        waited: Duration,
    },
    /// The server could not be reached, or the connection broke.
    #[error("cannot reach the server at {url}: {why}")]
    Transport { url: String, why: String },
    /// The server answered something that is not the lx API.
    #[error("unexpected answer from {url} ({status}): {why}")]
    Protocol {
        url: String,
        status: u16,
        why: String,
    },
    #[error("invalid argument {field}: {why}")]
    InvalidArgument { field: &'static str, why: String },
}

impl Error {
    /// The machine code: the server's, or one of this client's
    /// (`INVALID_STATE`, `TIMEOUT`, `UNREACHABLE`, `BAD_RESPONSE`, `INVALID_INPUT`).
    pub fn code(&self) -> &str {
        match self {
            Self::Api { code, .. } => code,
            Self::UnexpectedState { .. } => "INVALID_STATE",
            Self::Timeout { .. } => "TIMEOUT",
            Self::Transport { .. } => "UNREACHABLE",
            Self::Protocol { .. } => "BAD_RESPONSE",
            Self::InvalidArgument { .. } => "INVALID_INPUT",
        }
    }

    /// The HTTP status, when the server answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Protocol { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn detail(&self) -> Option<String> {
        match self {
            Self::Api { detail, .. } => detail.clone(),
            Self::UnexpectedState { state, .. } | Self::Timeout { state, .. } => {
                Some(format!("session:{}", state.as_str()))
            }
            Self::InvalidArgument { field, .. } => Some((*field).to_owned()),
            _ => None,
        }
    }

    /// Whether the same call may succeed later: timeouts, rate limits,
    /// server faults and a server that could not be reached.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Api { status, .. } | Self::Protocol { status, .. } => {
                matches!(status, 408 | 429) || *status >= 500
            }
            Self::Timeout { .. } | Self::Transport { .. } => true,
            Self::UnexpectedState { .. } | Self::InvalidArgument { .. } => false,
        }
    }

    /// `{code, status, message, detail, retryable}`, the reference's error shape.
    pub fn to_json(&self) -> serde_json::Value {
        let message = match self {
            Self::Api { message, .. } => message.clone(),
            other => other.to_string(),
        };
        serde_json::json!({
            "code": self.code(),
            "status": self.status(),
            "message": message,
            "detail": self.detail(),
            "retryable": self.retryable(),
        })
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A consumer's view of the server: one base URL, one API key.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Ends in `/api/v1`, without a trailing slash.
    api: String,
    api_key: Option<String>,
    /// The newest consistency token the server returned, sent back on every
    /// later call, as the reference's SDK does, so a read sees the write.
    consistency: std::sync::Arc<std::sync::Mutex<Option<reqwest::header::HeaderValue>>>,
}

/// The header a write's consistency token comes in and goes back in.
pub const CONSISTENCY_HEADER: &str = "x-lx-consistency-token";

/// The latest frame the server decoded, as a JPEG.
#[derive(Debug, Clone)]
pub struct Frame {
    pub jpeg: Vec<u8>,
}

/// `GET /sessions` filters.
#[derive(Debug, Clone, Default)]
pub struct ListSessions {
    /// One state or several, comma-separated.
    pub state: Option<String>,
    pub limit: Option<u32>,
    /// CONSUMER, OPERATOR or ALL.
    pub side: Option<String>,
}

impl Client {
    /// `server` is the server's origin (`http://host:port`) or its API base
    /// (`…/api/v1`).
    pub fn new(server: &str, api_key: Option<String>) -> Result<Self> {
        let trimmed = server.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed).map_err(|e| Error::InvalidArgument {
            field: "server",
            why: format!("{trimmed:?} is not a URL: {e}"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Error::InvalidArgument {
                field: "server",
                why: format!("{trimmed:?} must be http:// or https://"),
            });
        }
        let api = if trimmed.ends_with("/api/v1") {
            trimmed.to_owned()
        } else {
            format!("{trimmed}/api/v1")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("lx-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| transport(api.clone(), &e))?;
        Ok(Self {
            http,
            api,
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            consistency: std::sync::Arc::default(),
        })
    }

    /// The consistency token the next call sends, if a call returned one.
    pub fn consistency_token(&self) -> Option<String> {
        self.consistency
            .lock()
            .ok()?
            .as_ref()
            .and_then(|v| v.to_str().ok().map(str::to_owned))
    }

    /// The same server with another key (the MCP endpoint acts for each
    /// caller with the caller's own key).
    pub fn with_api_key(&self, api_key: Option<String>) -> Self {
        Self {
            api_key: api_key.filter(|k| !k.trim().is_empty()),
            ..self.clone()
        }
    }

    pub fn api_base(&self) -> &str {
        &self.api
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut builder = self
            .http
            .request(method, format!("{}{path}", self.api))
            .header(ACCEPT, "application/json");
        if let Some(token) = self.consistency.lock().ok().and_then(|t| t.clone()) {
            builder = builder.header(CONSISTENCY_HEADER, token);
        }
        match &self.api_key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let request = builder
            .build()
            .map_err(|e| transport(self.api.clone(), &e))?;
        let url = request.url().to_string();
        let response = self
            .http
            .execute(request)
            .await
            .map_err(|e| transport(url.clone(), &e))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            if let (Some(token), Ok(mut kept)) = (
                response.headers().get(CONSISTENCY_HEADER),
                self.consistency.lock(),
            ) {
                *kept = Some(token.clone());
            }
            return Ok(response);
        }
        let body = response.bytes().await.unwrap_or_default();
        Err(api_error(&url, status, &body))
    }

    async fn call<T: DeserializeOwned>(&self, builder: reqwest::RequestBuilder) -> Result<T> {
        let response = self.send(builder).await?;
        let url = response.url().to_string();
        let status = response.status().as_u16();
        let body = response
            .bytes()
            .await
            .map_err(|e| transport(url.clone(), &e))?;
        let envelope: lx_protocol::api::Envelope<T> =
            serde_json::from_slice(&body).map_err(|e| Error::Protocol {
                url,
                status,
                why: format!("the body is not the API's envelope: {e}"),
            })?;
        Ok(envelope.data)
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        self.call(self.request(reqwest::Method::GET, path)).await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        self.call(self.request(reqwest::Method::POST, path).json(body))
            .await
    }

    pub async fn quote(&self, lat: f64, lng: f64, duration_seconds: u32) -> Result<QuoteDto> {
        check_point(lat, lng)?;
        self.get(&format!(
            "/pricing/quote?lat={lat}&lng={lng}&durationSeconds={duration_seconds}"
        ))
        .await
    }

    pub async fn create_session(&self, request: &CreateSessionRequest) -> Result<SessionDto> {
        check_point(request.lat, request.lng)?;
        self.post("/sessions", request).await
    }

    pub async fn dispatch(&self, id: Uuid) -> Result<SessionDto> {
        self.post(&format!("/sessions/{id}/dispatch"), &serde_json::json!({}))
            .await
    }

    pub async fn session(&self, id: Uuid) -> Result<SessionDto> {
        self.get(&format!("/sessions/{id}")).await
    }

    pub async fn sessions(&self, filter: &ListSessions) -> Result<Vec<SessionDto>> {
        let query = list_query(filter);
        self.get(&format!("/sessions{query}")).await
    }

    pub async fn end_session(&self, id: Uuid) -> Result<SessionDto> {
        self.post(&format!("/sessions/{id}/end"), &serde_json::json!({}))
            .await
    }

    /// `DELETE /sessions/{id}`: cancels a session that is not LIVE yet.
    pub async fn cancel_session(&self, id: Uuid) -> Result<SessionDto> {
        self.call(self.request(reqwest::Method::DELETE, &format!("/sessions/{id}")))
            .await
    }

    pub async fn viewer_token(&self, id: Uuid) -> Result<ViewerTokenDto> {
        self.get(&format!("/sessions/{id}/viewer-token")).await
    }

    /// The latest decoded frame (`FRAME_NOT_AVAILABLE` before the first one).
    pub async fn frame(&self, id: Uuid) -> Result<Frame> {
        let builder = self
            .request(reqwest::Method::GET, &format!("/sessions/{id}/frame"))
            .header(ACCEPT, "image/jpeg");
        let response = self.send(builder).await?;
        let url = response.url().to_string();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !kind.starts_with("image/jpeg") {
            return Err(Error::Protocol {
                url,
                status,
                why: format!("a frame of type {kind:?}, not image/jpeg"),
            });
        }
        let jpeg = response
            .bytes()
            .await
            .map_err(|e| transport(url.clone(), &e))?;
        Ok(Frame {
            jpeg: jpeg.to_vec(),
        })
    }

    pub async fn coverage(&self) -> Result<CoverageDto> {
        self.get("/coverage").await
    }

    pub async fn wallet(&self) -> Result<WalletDto> {
        self.get("/wallet").await
    }

    pub async fn settlement(&self, id: Uuid) -> Result<SettlementDto> {
        self.get(&format!("/settlements/{id}")).await
    }

    /// The session's proof bundle, for [`lx_protocol::proof::verify`].
    pub async fn proof(&self, id: Uuid) -> Result<lx_protocol::proof::ProofBundle> {
        self.get(&format!("/sessions/{id}/proof")).await
    }
}

/// The error and its causes on one line: reqwest's own message rarely says
/// why ("connection refused" is two causes down).
fn transport(url: impl Into<String>, error: &reqwest::Error) -> Error {
    let mut why = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        why.push_str(": ");
        why.push_str(&c.to_string());
        cause = c.source();
    }
    Error::Transport {
        url: url.into(),
        why,
    }
}

fn check_point(lat: f64, lng: f64) -> Result<()> {
    if !(-90.0..=90.0).contains(&lat) || lat.is_nan() {
        return Err(Error::InvalidArgument {
            field: "lat",
            why: format!("{lat} is not a latitude in [-90, 90]"),
        });
    }
    if !(-180.0..=180.0).contains(&lng) || lng.is_nan() {
        return Err(Error::InvalidArgument {
            field: "lng",
            why: format!("{lng} is not a longitude in [-180, 180]"),
        });
    }
    Ok(())
}

fn list_query(filter: &ListSessions) -> String {
    let mut pairs = Vec::new();
    if let Some(state) = &filter.state {
        pairs.push(format!("state={}", encode(state)));
    }
    if let Some(limit) = filter.limit {
        pairs.push(format!("limit={limit}"));
    }
    if let Some(side) = &filter.side {
        pairs.push(format!("side={}", encode(side)));
    }
    if pairs.is_empty() {
        String::new()
    } else {
        format!("?{}", pairs.join("&"))
    }
}

/// Percent-encodes a query value (states and sides are ASCII words, but a
/// user may type anything).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b',' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The error envelope, or as much as can be said about a body that is not one.
fn api_error(url: &str, status: u16, body: &[u8]) -> Error {
    #[derive(serde::Deserialize)]
    struct Body {
        code: String,
        #[serde(default)]
        message: String,
        #[serde(default)]
        detail: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(b) => Error::Api {
            status,
            code: b.code,
            message: b.message,
            detail: b.detail,
        },
        Err(_) => Error::Protocol {
            url: url.to_owned(),
            status,
            why: format!(
                "not the API's error envelope: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ),
        },
    }
}

#[cfg(test)]
mod tests {

    #[tokio::test]
    async fn a_calls_consistency_token_goes_back_on_the_next_call() {
        use std::sync::{Arc, Mutex};
        let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let heard = Arc::clone(&seen);
        let app = axum::Router::new().route(
            "/api/v1/coverage",
            axum::routing::get(move |headers: axum::http::HeaderMap| {
                let heard = Arc::clone(&heard);
                async move {
                    let mut heard = heard.lock().unwrap();
                    heard.push(
                        headers
                            .get(CONSISTENCY_HEADER)
                            .map(|v| v.to_str().unwrap().to_owned()),
                    );
                    let token = format!("t{}", heard.len());
                    (
                        [(CONSISTENCY_HEADER, token)],
                        axum::Json(serde_json::json!({"statusCode": 200, "message": "ok",
                            "data": {"circles": []}, "timestamp": "2026-01-01T00:00:00.000Z"})),
                    )
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = Client::new(&url, None).unwrap();
        for _ in 0..3 {
            client.coverage().await.unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec![None, Some("t1".into()), Some("t2".into())]
        );
        assert_eq!(client.consistency_token().as_deref(), Some("t3"));
    }

    use super::*;

    #[test]
    fn an_error_envelope_keeps_its_code_and_detail() {
        let body = br#"{"statusCode":409,"code":"INVALID_STATE","message":"no","detail":"session:end:ENDED","timestamp":"t"}"#;
        let e = api_error("u", 409, body);
        assert_eq!(e.code(), "INVALID_STATE");
        assert_eq!(e.detail().as_deref(), Some("session:end:ENDED"));
        assert!(!e.retryable());
        assert_eq!(e.to_json()["status"], 409);
    }

    #[test]
    fn retryable_follows_the_status() {
        for (status, retry) in [
            (400, false),
            (404, false),
            (408, true),
            (429, true),
            (503, true),
        ] {
            let body = br#"{"code":"X","message":"m"}"#;
            assert_eq!(api_error("u", status, body).retryable(), retry, "{status}");
        }
        let proxy = api_error("u", 502, b"<html>bad gateway</html>");
        assert_eq!(proxy.code(), "BAD_RESPONSE");
        assert!(proxy.retryable());
    }

    #[test]
    fn the_base_url_takes_an_origin_or_the_api_base() {
        let a = Client::new("http://127.0.0.1:8080/", None).unwrap();
        let b = Client::new("http://127.0.0.1:8080/api/v1", None).unwrap();
        assert_eq!(a.api_base(), "http://127.0.0.1:8080/api/v1");
        assert_eq!(a.api_base(), b.api_base());
        assert_eq!(
            Client::new("ftp://x", None).unwrap_err().code(),
            "INVALID_INPUT"
        );
        assert_eq!(
            Client::new("not a url", None).unwrap_err().code(),
            "INVALID_INPUT"
        );
    }

    #[test]
    fn points_are_checked_before_any_request() {
        assert!(check_point(4.6, -74.0).is_ok());
        assert_eq!(
            check_point(91.0, 0.0).unwrap_err().detail().as_deref(),
            Some("lat")
        );
        assert_eq!(
            check_point(0.0, f64::NAN).unwrap_err().detail().as_deref(),
            Some("lng")
        );
    }

    #[test]
    fn list_filters_are_encoded() {
        let q = list_query(&ListSessions {
            state: Some("LIVE,ENDED".into()),
            limit: Some(5),
            side: Some("a b".into()),
        });
        assert_eq!(q, "?state=LIVE,ENDED&limit=5&side=a%20b");
        assert_eq!(list_query(&ListSessions::default()), "");
    }
}
