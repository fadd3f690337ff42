//! The agent's client of the lx-server API: the few calls a device makes,
//! with failures split into "try again later" and "the server said no".

use std::time::Duration;

use lx_protocol::ErrorCode;
use lx_protocol::api::{
    CancelAllResponse, DeviceKind, Envelope, ErrorBody, HeartbeatRequest, OfferDto, OperatorDto,
    RegisterOperatorRequest, RegisterOperatorResponse, SessionDto, StartResponse, TelemetryAck,
};
use lx_protocol::telemetry::SampleJson;
use lx_protocol::wallet::{Address, sign_personal};
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiFailure {
    /// The server could not be reached or answered 5xx: try again later.
    #[error("server unreachable: {0}")]
    Unreachable(String),
    /// The server refused the request; retrying the same request will not help.
    #[error("{code}: {message}")]
    Refused {
        status: u16,
        code: ErrorCode,
        message: String,
        detail: Option<String>,
    },
}

impl ApiFailure {
    /// Worth trying the same request again later.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Refused { code, .. } => code.retryable(),
        }
    }

    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            Self::Unreachable(_) => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerApi {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl ServerApi {
    pub fn new(server_url: &str, token: Option<String>, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        Self {
            http,
            base: format!("{}/api/v1", server_url.trim_end_matches('/')),
            token,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, ApiFailure> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let response = req
            .send()
            .await
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| ApiFailure::Unreachable(e.to_string()))?;
        if !status.is_success() {
            // A 5xx without our error envelope came from something in between
            // (a proxy, a restart): try again. With it, the server said why.
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(e) => ApiFailure::Refused {
                    status: status.as_u16(),
                    code: e.code,
                    message: e.message,
                    detail: e.detail,
                },
                Err(_) => ApiFailure::Refused {
                    status: status.as_u16(),
                    code: ErrorCode::Internal,
                    message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                    detail: None,
                },
            });
        }
        serde_json::from_slice::<Envelope<T>>(&bytes)
            .map(|e| e.data)
            .map_err(|e| ApiFailure::Unreachable(format!("unexpected response: {e}")))
    }

    /// Enrolls this device: proves its key by signing the token.
    pub async fn register(
        &self,
        key: &k256::ecdsa::SigningKey,
        token: &str,
        name: &str,
        kind: DeviceKind,
    ) -> Result<RegisterOperatorResponse, ApiFailure> {
        let body = RegisterOperatorRequest {
            enrollment_token: token.to_owned(),
            name: name.to_owned(),
            device_kind: kind,
            address: Address::from_signing_key(key),
            proof: sign_personal(key, token.as_bytes()),
        };
        self.call(reqwest::Method::POST, "/operators/register", Some(&body))
            .await
    }

    pub async fn heartbeat(&self, body: &HeartbeatRequest) -> Result<OperatorDto, ApiFailure> {
        self.call(reqwest::Method::POST, "/operators/heartbeat", Some(body))
            .await
    }

    pub async fn telemetry(
        &self,
        session: Uuid,
        samples: &[SampleJson],
    ) -> Result<TelemetryAck, ApiFailure> {
        self.call(
            reqwest::Method::POST,
            &format!("/sessions/{session}/telemetry"),
            Some(samples),
        )
        .await
    }

    /// This device as the server sees it: availability, position, locks.
    pub async fn operator(&self, id: Uuid) -> Result<OperatorDto, ApiFailure> {
        self.call(
            reqwest::Method::GET,
            &format!("/operators/{id}"),
            None::<&()>,
        )
        .await
    }

    pub async fn offers(&self) -> Result<Vec<OfferDto>, ApiFailure> {
        self.call(reqwest::Method::GET, "/sessions/offers", None::<&()>)
            .await
    }

    /// Open sessions of the workspace on the operator side; the caller keeps its own.
    pub async fn operated_sessions(&self) -> Result<Vec<SessionDto>, ApiFailure> {
        let mut open = Vec::new();
        for state in ["ASSIGNED", "LIVE", "PAUSED"] {
            let path = format!("/sessions?side=OPERATOR&state={state}&limit=500");
            open.extend(
                self.call::<Vec<SessionDto>>(reqwest::Method::GET, &path, None::<&()>)
                    .await?,
            );
        }
        Ok(open)
    }

    pub async fn accept(&self, session: Uuid) -> Result<SessionDto, ApiFailure> {
        self.call(
            reqwest::Method::POST,
            &format!("/sessions/{session}/accept"),
            Some(&serde_json::json!({})),
        )
        .await
    }

    pub async fn start(&self, session: Uuid) -> Result<StartResponse, ApiFailure> {
        self.call(
            reqwest::Method::POST,
            &format!("/sessions/{session}/start"),
            Some(&serde_json::json!({})),
        )
        .await
    }

    pub async fn end(&self, session: Uuid) -> Result<SessionDto, ApiFailure> {
        self.call(
            reqwest::Method::POST,
            &format!("/sessions/{session}/end"),
            Some(&serde_json::json!({})),
        )
        .await
    }

    /// Hands the server this device's recent log lines (the `logs` command).
    pub async fn post_logs(
        &self,
        me: Uuid,
        upload: &lx_protocol::api::DeviceLogsUpload,
    ) -> Result<serde_json::Value, ApiFailure> {
        self.call(
            reqwest::Method::POST,
            &format!("/operators/{me}/logs"),
            Some(upload),
        )
        .await
    }

    /// Cancels the ASSIGNED sessions of this device (a reclaim after a crash).
    pub async fn cancel_assignments(&self) -> Result<CancelAllResponse, ApiFailure> {
        self.call(
            reqwest::Method::POST,
            "/sessions/cancel-all-assignments",
            Some(&serde_json::json!({})),
        )
        .await
    }
}
