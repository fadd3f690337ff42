//! The HTTP edge: envelopes, extractors that name the bad field, and the
//! router with its fallbacks.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use lx_protocol::ErrorCode;
use lx_protocol::api::Envelope;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::app::App;
use crate::error::ApiError;

pub const CONSISTENCY_HEADER: &str = "x-lx-consistency-token";

/// A success response in the envelope `{statusCode, message, data, timestamp}`.
#[derive(Debug)]
pub struct ApiOk<T> {
    status: StatusCode,
    data: T,
    consistency_token: Option<String>,
}

impl<T: Serialize> ApiOk<T> {
    /// A read.
    pub fn read(data: T) -> Self {
        Self {
            status: StatusCode::OK,
            data,
            consistency_token: None,
        }
    }

    /// A write: carries the consistency token in the body and the header.
    pub fn wrote(app: &App, data: T) -> Self {
        Self {
            status: StatusCode::OK,
            data,
            consistency_token: Some(app.store.consistency_token()),
        }
    }

    pub fn created(app: &App, data: T) -> Self {
        Self {
            status: StatusCode::CREATED,
            ..Self::wrote(app, data)
        }
    }
}

impl<T: Serialize> IntoResponse for ApiOk<T> {
    fn into_response(self) -> Response {
        let envelope = Envelope {
            status_code: self.status.as_u16(),
            message: "Request successful".to_owned(),
            data: self.data,
            timestamp: lx_protocol::time::format_millis(crate::clock::wall_now_ms()),
            consistency_token: self.consistency_token.clone(),
        };
        let mut response = (self.status, axum::Json(envelope)).into_response();
        if let Some(token) = self
            .consistency_token
            .and_then(|t| HeaderValue::from_str(&t).ok())
        {
            response
                .headers_mut()
                .insert(HeaderName::from_static(CONSISTENCY_HEADER), token);
        }
        response
    }
}

fn path_of(err: &serde_path_to_error::Error<impl std::fmt::Display>) -> String {
    let path = err.path().to_string();
    if path == "." { "body".to_owned() } else { path }
}

/// A JSON body whose errors name the field: `lat: invalid type: string "x", expected f64`.
#[derive(Debug, Clone)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            ApiError::new(ErrorCode::InvalidInput, format!("body: {}", e.body_text()))
                .with_detail("input:body")
        })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // serde would read a struct from an array of its fields in order:
        // the document says object, and so does the server.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(ApiError::invalid("body", "must be a JSON object"));
        }
        parse_json(bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut body: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("not valid JSON ({})", strip_position(&e.to_string())),
        )
    })?;
    integral_numbers_as_integers(&mut body);
    serde_path_to_error::deserialize(body).map_err(|err| {
        let mut field = path_of(&err);
        let mut problem = strip_position(&err.inner().to_string());
        // serde names a missing field in its message, at the parent's path.
        if let Some(name) = problem
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            field = if field == "body" {
                name.to_owned()
            } else {
                format!("{field}.{name}")
            };
            problem = "is required".to_owned();
        }
        ApiError::invalid(&field, problem)
    })
}

/// `1486.0` is `1486`: clients and generators that write every number with
/// a fraction are understood. A number with a real fraction still fails an
/// integer field, by name; floats beyond 2^53 are left as they are.
fn integral_numbers_as_integers(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|f| n.is_f64() && f.fract() == 0.0)
                && f.abs() < 9_007_199_254_740_992.0
            {
                // Exact: an integral float under 2^53 converts without loss.
                *n = if f < 0.0 {
                    (f as i64).into()
                } else {
                    (f as u64).into()
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// serde_json appends " at line 1 column 9"; the field name says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Query parameters whose errors name the parameter.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|err| {
                let field = path_of(&err);
                let field = if field == "body" {
                    "query".to_owned()
                } else {
                    field
                };
                ApiError::invalid(&field, err.inner().to_string())
            })
    }
}

/// Parses a path segment that must be a UUID, naming it when it is not.
pub fn parse_id(name: &str, text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(name, "must be a UUID"))
}

pub async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "No such route").with_detail("route:notFound")
}

pub async fn method_not_allowed() -> Response {
    let err = ApiError::new(ErrorCode::NotFound, "Method not allowed on this route")
        .with_detail("route:methodNotAllowed");
    let mut body = err.body();
    body.status_code = StatusCode::METHOD_NOT_ALLOWED.as_u16();
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// A panic in a handler is a bug; the client still gets the error envelope.
pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::internal().into_response()
}

/// An API request not answered within `limit` (`http.request_timeout_ms`)
/// gets 408 `REQUEST_TIMEOUT` (retryable) instead of holding its connection:
/// a slow store or chain call cannot pile requests up without bound.
pub async fn request_timeout(
    limit: std::time::Duration,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => crate::error::ApiError::new(
            lx_protocol::ErrorCode::RequestTimeout,
            format!(
                "the request took longer than {} ms; retry",
                limit.as_millis()
            ),
        )
        .with_detail("http:timeout")
        .into_response(),
    }
}

pub type AppState = Arc<App>;

#[cfg(test)]
mod tests {
    use super::*;
    use lx_protocol::api::CreateSessionRequest;

    #[test]
    fn a_wrong_type_names_the_field() {
        let err =
            parse_json::<CreateSessionRequest>(br#"{"lat":"x","lng":1,"maxDurationSeconds":5}"#)
                .unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
        assert!(
            err.message.starts_with("lat: invalid type"),
            "{}",
            err.message
        );
        assert_eq!(err.detail.as_deref(), Some("input:lat"));
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse_json::<CreateSessionRequest>(br#"{"lat":1,"lng":1}"#).unwrap_err();
        assert!(
            err.message.contains("maxDurationSeconds"),
            "{}",
            err.message
        );
    }

    #[test]
    fn integral_numbers_are_accepted_however_written_and_fractions_refused_by_name() {
        let ok = parse_json::<CreateSessionRequest>(
            br#"{"lat":4.0,"lng":-74.0,"maxDurationSeconds":60.0,"geofenceRadiusMeters":1.5e2}"#,
        )
        .unwrap();
        assert_eq!((ok.max_duration_seconds, ok.lat, ok.lng), (60, 4.0, -74.0));
        assert_eq!(ok.geofence_radius_meters, Some(150));
        let err =
            parse_json::<CreateSessionRequest>(br#"{"lat":4,"lng":1,"maxDurationSeconds":60.5}"#)
                .unwrap_err();
        assert!(
            err.message.starts_with("maxDurationSeconds:"),
            "{}",
            err.message
        );
        // Integral but out of every integer's range: refused, not wrapped.
        for huge in ["1e20", "-60.0", "4294967296.0"] {
            let body = format!(r#"{{"lat":4,"lng":1,"maxDurationSeconds":{huge}}}"#);
            let err = parse_json::<CreateSessionRequest>(body.as_bytes()).unwrap_err();
            assert!(
                err.message.starts_with("maxDurationSeconds:"),
                "{huge}: {}",
                err.message
            );
        }
        let err = parse_json::<CreateSessionRequest>(br#"{"lat":4,"#).unwrap_err();
        assert!(
            err.message.starts_with("body: not valid JSON"),
            "{}",
            err.message
        );
        let err =
            parse_json::<CreateSessionRequest>(br#"{"lat":4,"lng":1,"maxDurationSeconds":6} x"#)
                .unwrap_err();
        assert!(
            err.message.starts_with("body: not valid JSON"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_negative_count_is_refused_with_its_name() {
        let err =
            parse_json::<CreateSessionRequest>(br#"{"lat":1,"lng":1,"maxDurationSeconds":-5}"#)
                .unwrap_err();
        assert!(
            err.message.starts_with("maxDurationSeconds:"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn a_request_past_its_time_gets_408_in_the_envelope() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;
        let limit = std::time::Duration::from_millis(50);
        let router = axum::Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/fast", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(move |request, next| {
                request_timeout(limit, request, next)
            }));
        let call = |path: &'static str| {
            let router = router.clone();
            async move {
                router
                    .oneshot(axum::http::Request::get(path).body(Body::empty()).unwrap())
                    .await
                    .unwrap()
            }
        };
        let slow = call("/slow").await;
        assert_eq!(slow.status(), 408);
        let body = axum::body::to_bytes(slow.into_body(), 1 << 16)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["code"], "REQUEST_TIMEOUT");
        assert_eq!(json["detail"], "http:timeout");
        assert_eq!(call("/fast").await.status(), 200);
    }

    #[test]
    fn broken_json_is_invalid_input() {
        let err = parse_json::<CreateSessionRequest>(b"{\"lat\":").unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidInput);
    }
}
