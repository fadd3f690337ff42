//! The machine-readable error codes of the API. Clients branch on these.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    InvalidInput,
    NotAuthenticated,
    NotAuthorized,
    SessionNotFound,
    WorkspaceNotFound,
    NotFound,
    InvalidState,
    Conflict,
    InsufficientCredit,
    /// The consumer owes a settlement it caused to fail (its pool was
    /// emptied); no new session until it is paid.
    PaymentRequired,
    /// The session's rate is above the consumer's own on-chain cap.
    RateAboveCap,
    NoCoverage,
    FrameNotAvailable,
    VideoError,
    RevokedApiKey,
    RateLimited,
    /// The request was not answered in the server's request timeout.
    RequestTimeout,
    QuoteExpired,
    /// A telemetry sample's signature does not verify against the device key.
    InvalidSignature,
    /// A device sent telemetry for a session it does not operate.
    WrongDevice,
    /// A telemetry sequence number not above the device's last one.
    ReplayedSequence,
    /// A telemetry sample captured in the future (beyond 2 s of skew).
    FutureTimestamp,
    /// A telemetry sample captured before its session was assigned.
    StaleTimestamp,
    /// A device subsystem is locked by another controller.
    Locked,
    /// A service the server depends on (the chain, the media plane) did not answer.
    UpstreamUnavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, in declaration order.
    pub const ALL: [ErrorCode; 26] = [
        Self::InvalidInput,
        Self::NotAuthenticated,
        Self::NotAuthorized,
        Self::SessionNotFound,
        Self::WorkspaceNotFound,
        Self::NotFound,
        Self::InvalidState,
        Self::Conflict,
        Self::InsufficientCredit,
        Self::PaymentRequired,
        Self::RateAboveCap,
        Self::NoCoverage,
        Self::FrameNotAvailable,
        Self::VideoError,
        Self::RevokedApiKey,
        Self::RateLimited,
        Self::RequestTimeout,
        Self::QuoteExpired,
        Self::InvalidSignature,
        Self::WrongDevice,
        Self::ReplayedSequence,
        Self::FutureTimestamp,
        Self::StaleTimestamp,
        Self::Locked,
        Self::UpstreamUnavailable,
        Self::Internal,
    ];

    /// The HTTP status that carries this code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidInput
            | Self::InsufficientCredit
            | Self::RateAboveCap
            | Self::QuoteExpired
            | Self::InvalidSignature
            | Self::FutureTimestamp
            | Self::StaleTimestamp => 400,
            Self::NotAuthenticated | Self::RevokedApiKey => 401,
            Self::PaymentRequired => 402,
            Self::NotAuthorized | Self::WrongDevice => 403,
            Self::SessionNotFound
            | Self::WorkspaceNotFound
            | Self::NotFound
            | Self::FrameNotAvailable => 404,
            Self::InvalidState | Self::Conflict | Self::ReplayedSequence | Self::Locked => 409,
            Self::RateLimited => 429,
            Self::RequestTimeout => 408,
            Self::Internal => 500,
            Self::NoCoverage | Self::VideoError | Self::UpstreamUnavailable => 503,
        }
    }

    /// Whether a client may retry the same call unchanged (408, 429 and 5xx).
    pub fn retryable(self) -> bool {
        let status = self.http_status();
        status == 408 || status == 429 || status >= 500
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidInput => "INVALID_INPUT",
            Self::NotAuthenticated => "NOT_AUTHENTICATED",
            Self::NotAuthorized => "NOT_AUTHORIZED",
            Self::SessionNotFound => "SESSION_NOT_FOUND",
            Self::WorkspaceNotFound => "WORKSPACE_NOT_FOUND",
            Self::NotFound => "NOT_FOUND",
            Self::InvalidState => "INVALID_STATE",
            Self::Conflict => "CONFLICT",
            Self::InsufficientCredit => "INSUFFICIENT_CREDIT",
            Self::PaymentRequired => "PAYMENT_REQUIRED",
            Self::RateAboveCap => "RATE_ABOVE_CAP",
            Self::NoCoverage => "NO_COVERAGE",
            Self::FrameNotAvailable => "FRAME_NOT_AVAILABLE",
            Self::VideoError => "VIDEO_ERROR",
            Self::RevokedApiKey => "REVOKED_API_KEY",
            Self::RateLimited => "RATE_LIMITED",
            Self::RequestTimeout => "REQUEST_TIMEOUT",
            Self::QuoteExpired => "QUOTE_EXPIRED",
            Self::InvalidSignature => "INVALID_SIGNATURE",
            Self::WrongDevice => "WRONG_DEVICE",
            Self::ReplayedSequence => "REPLAYED_SEQUENCE",
            Self::FutureTimestamp => "FUTURE_TIMESTAMP",
            Self::StaleTimestamp => "STALE_TIMESTAMP",
            Self::Locked => "LOCKED",
            Self::UpstreamUnavailable => "UPSTREAM_UNAVAILABLE",
            Self::Internal => "INTERNAL",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_code_once() {
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }

    #[test]
    fn codes_serialize_as_their_wire_names() {
        for code in [
            ErrorCode::InvalidState,
            ErrorCode::RevokedApiKey,
            ErrorCode::NoCoverage,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }

    #[test]
    fn only_throttling_and_server_faults_are_retryable() {
        assert!(ErrorCode::RateLimited.retryable());
        assert!(ErrorCode::NoCoverage.retryable());
        assert!(!ErrorCode::InvalidState.retryable());
        assert!(!ErrorCode::InsufficientCredit.retryable());
    }
}
