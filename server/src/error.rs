//! Error policy.
//!
//! - Every failure a client can cause is an [`ApiError`] with a code from
//!   [`ErrorCode`], a message that names what is wrong (the field, the state,
//!   the scope) and a short `detail` label such as `session:accept:ASSIGNED`.
//!   Bad input is not logged as an error.
//! - Faults of the server itself (the store, a bug) become `500 INTERNAL`
//!   with a generic message; the cause is logged, never sent to the client.
//! - Cores return their own `thiserror` enums; handlers map them here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lx_protocol::ErrorCode;
use lx_protocol::api::ErrorBody;

use crate::clock;
use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub detail: Option<String>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// `400 INVALID_INPUT` naming the offending field.
    pub fn invalid(field: &str, problem: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidInput, format!("{field}: {problem}"))
            .with_detail(format!("input:{field}"))
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotAuthenticated, message).with_detail("auth:missing")
    }

    pub fn forbidden(message: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotAuthorized, message).with_detail(detail)
    }

    pub fn session_not_found() -> Self {
        Self::new(ErrorCode::SessionNotFound, "Session not found").with_detail("session:notFound")
    }

    pub fn operator_not_found() -> Self {
        Self::new(ErrorCode::NotFound, "Operator not found").with_detail("operator:notFound")
    }

    pub fn workspace_not_found() -> Self {
        Self::new(ErrorCode::WorkspaceNotFound, "Workspace not found")
            .with_detail("workspace:notFound")
    }

    /// `409 INVALID_STATE` for an operation refused in the session's actual state.
    pub fn invalid_state(operation: &str, actual: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidState,
            format!("Operation '{operation}' is not allowed while the session is {actual}"),
        )
        .with_detail(format!("session:{operation}:{actual}"))
    }

    /// `409 LOCKED`: another controller holds the subsystem.
    pub fn locked(holder: &str) -> Self {
        Self::new(ErrorCode::Locked, format!("locked by {holder}"))
            .with_detail(format!("lock:heldBy:{holder}"))
    }

    pub fn internal() -> Self {
        Self::new(ErrorCode::Internal, "Internal error").with_detail("internal")
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            status_code: self.code.http_status(),
            code: self.code,
            message: self.message.clone(),
            detail: self.detail.clone(),
            timestamp: lx_protocol::time::format_millis(clock::wall_now_ms()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status(), axum::Json(self.body())).into_response();
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(what) => {
                Self::new(ErrorCode::NotFound, format!("{what} not found"))
                    .with_detail(format!("{what}:notFound"))
            }
            StoreError::Conflict(what) => {
                Self::new(ErrorCode::Conflict, what.clone()).with_detail("store:conflict")
            }
            StoreError::Backend(cause) => {
                tracing::error!(error = %cause, "store failure");
                Self::internal()
            }
        }
    }
}
