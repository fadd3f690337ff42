//! Who is calling: API keys (`Authorization: Bearer lxxn_…`, stored as
//! SHA-256, scoped, revocable with a grace window) and wallet sign-in
//! cookies (`lx_session`, HMAC-signed and stateless).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use lx_protocol::ErrorCode;
use lx_protocol::api::{CallerKind, KeyEnvironment, Scope};
use lx_protocol::time::UnixMillis;
use lx_protocol::wallet::Address;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::app::App;
use crate::error::{ApiError, ApiResult};
use crate::store::{Operator, Workspace};

pub const COOKIE_NAME: &str = "lx_session";
const KEY_PREFIX: &str = "lxxn_";
pub const DEVICE_TOKEN_PREFIX: &str = "lxdv_";
pub const ENROLLMENT_TOKEN_PREFIX: &str = "lxen_";
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

type HmacSha256 = Hmac<Sha256>;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub kind: CallerKind,
    pub wallet: Option<Address>,
    /// The workspace the caller acts for: the key's, or the one a wallet selected.
    pub workspace: Option<Workspace>,
    pub scopes: Vec<Scope>,
    pub key_id: Option<Uuid>,
    /// The enrolled device, for a device token.
    pub operator: Option<Operator>,
}

impl Caller {
    /// Who holds a lock taken by this caller.
    pub fn holder(&self) -> String {
        match (&self.operator, self.key_id, self.wallet) {
            (Some(op), _, _) => format!("device:{}", op.id),
            (None, Some(key), _) => format!("apiKey:{key}"),
            (None, None, Some(wallet)) => format!("wallet:{}", wallet.to_checksum()),
            (None, None, None) => "unknown".to_owned(),
        }
    }

    /// Whether the caller administers workspace `id`: its owner's wallet, or
    /// an API key of it with `operators:write`.
    pub fn administers(&self, id: Uuid) -> bool {
        let own = self.workspace.as_ref().is_some_and(|w| w.id == id);
        match self.kind {
            CallerKind::Wallet => own,
            CallerKind::ApiKey => own && self.scopes.contains(&Scope::OperatorsWrite),
            CallerKind::Device => false,
        }
    }

    /// The caller's workspace, if the caller holds `scope` on it.
    pub fn require(&self, scope: Scope) -> ApiResult<&Workspace> {
        self.require_any(&[scope])
    }

    pub fn require_any(&self, scopes: &[Scope]) -> ApiResult<&Workspace> {
        let ws = self.workspace()?;
        if scopes.iter().any(|s| self.scopes.contains(s)) {
            Ok(ws)
        } else {
            let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            Err(ApiError::forbidden(
                format!("this API key lacks the scope {}", names.join(" or ")),
                format!("scope:{}", names.join("|")),
            ))
        }
    }

    pub fn workspace(&self) -> ApiResult<&Workspace> {
        self.workspace.as_ref().ok_or_else(|| {
            ApiError::forbidden(
                "no workspace selected: POST /auth/workspace/select first",
                "auth:noWorkspace",
            )
        })
    }

    pub fn is_wallet(&self) -> bool {
        self.kind == CallerKind::Wallet
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Self, Self::Rejection> {
        let now = app.clock.now_ms();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let text = value
                .to_str()
                .map_err(|_| ApiError::unauthenticated("Authorization header is not text"))?;
            let token = lx_protocol::bearer::token(text)
                .ok_or_else(|| ApiError::unauthenticated("Authorization must be 'Bearer <key>'"))?;
            return api_key_caller(app, token, now).await;
        }
        if let Some(cookie) = cookie_value(&parts.headers, COOKIE_NAME) {
            return wallet_caller(app, &cookie, now).await;
        }
        Err(ApiError::unauthenticated(
            "Session expired or missing: send an API key or sign in with a wallet",
        ))
    }
}

async fn device_caller(app: &App, token: &str) -> ApiResult<Caller> {
    let operator = app
        .store
        .operator_by_token(hash_key(token))
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown device token"))?;
    let workspace = app.store.workspace(operator.workspace_id).await?;
    Ok(Caller {
        kind: CallerKind::Device,
        wallet: None,
        workspace,
        scopes: vec![Scope::SessionsRead, Scope::SessionsOperate],
        key_id: None,
        operator: Some(operator),
    })
}

async fn api_key_caller(app: &App, token: &str, now: UnixMillis) -> ApiResult<Caller> {
    if token.starts_with(DEVICE_TOKEN_PREFIX) {
        return device_caller(app, token).await;
    }
    if !token.starts_with(KEY_PREFIX) {
        return Err(ApiError::unauthenticated("unrecognised bearer token"));
    }
    let key = app
        .store
        .api_key_by_hash(hash_key(token))
        .await?
        .ok_or_else(|| ApiError::unauthenticated("unknown API key"))?;
    if let Some(revoked) = key.revoked_ms {
        let grace = i64::from(app.config.auth.revoke_grace_seconds) * 1000;
        if now >= revoked + grace {
            return Err(
                ApiError::new(ErrorCode::RevokedApiKey, "this API key was revoked")
                    .with_detail("auth:revoked"),
            );
        }
    }
    let workspace = app.store.workspace(key.workspace_id).await?;
    Ok(Caller {
        kind: CallerKind::ApiKey,
        wallet: workspace.as_ref().map(|w| w.wallet),
        workspace,
        scopes: key.scopes,
        key_id: Some(key.id),
        operator: None,
    })
}

async fn wallet_caller(app: &App, cookie: &str, now: UnixMillis) -> ApiResult<Caller> {
    let claims = decode_cookie(&app.cookie_key, cookie, now)
        .ok_or_else(|| ApiError::unauthenticated("Session expired or missing"))?;
    if let Some(id) = claims.id
        && app.store.cookie_revoked(id).await?
    {
        return Err(ApiError::unauthenticated("Session ended by a logout"));
    }
    let wallet: Address = claims
        .wallet
        .parse()
        .map_err(|_| ApiError::unauthenticated("Session expired or missing"))?;
    let workspace = match claims.workspace {
        Some(id) => app
            .store
            .workspace(id)
            .await?
            .filter(|ws| ws.wallet == wallet),
        None => None,
    };
    Ok(Caller {
        kind: CallerKind::Wallet,
        wallet: Some(wallet),
        workspace,
        // The owner's wallet holds every scope on its own workspace.
        scopes: Scope::ALL.to_vec(),
        key_id: None,
        operator: None,
    })
}

/// The value of the cookie `name` the request carries.
pub(crate) fn cookie_value(headers: &header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

// ------------------------------------------------------------- API keys

pub fn hash_key(plaintext: &str) -> [u8; 32] {
    Sha256::digest(plaintext.as_bytes()).into()
}

/// A fresh key `lxxn_{test|live}_<6 hex of the workspace id>_<32 random bytes in base62>`.
pub fn generate_api_key(environment: KeyEnvironment, workspace_id: Uuid) -> String {
    let env = match environment {
        KeyEnvironment::Test => "test",
        KeyEnvironment::Live => "live",
    };
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    let ws = workspace_id.simple().to_string();
    format!("{KEY_PREFIX}{env}_{}_{}", &ws[..6], base62(&bytes))
}

/// A fresh secret with `prefix`: 32 random bytes in base62.
pub fn generate_token(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::thread_rng().r#gen();
    format!("{prefix}{}", base62(&bytes))
}

fn base62(bytes: &[u8]) -> String {
    let mut digits = Vec::new();
    let mut number = bytes.to_vec();
    while number.iter().any(|&b| b != 0) {
        let mut rem = 0u32;
        for byte in &mut number {
            let acc = (rem << 8) | u32::from(*byte);
            *byte = (acc / 62) as u8;
            rem = acc % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8(digits).unwrap_or_default()
}

/// Enough of a key to recognise it in a list: `lxxn_live_abc123_XyZ1…`.
pub fn key_prefix(plaintext: &str) -> String {
    plaintext.chars().take(22).collect()
}

// ------------------------------------------------------------- cookies

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CookieClaims {
    #[serde(rename = "w")]
    pub wallet: String,
    #[serde(rename = "ws", default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Uuid>,
    #[serde(rename = "exp")]
    pub expires_ms: UnixMillis,
    /// Names the cookie so that a logout can revoke it; cookies issued
    /// before ids existed have none and live out their time.
    #[serde(rename = "id", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Uuid>,
}

pub fn encode_cookie(key: &[u8; 32], claims: &CookieClaims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload.as_bytes());
    let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{tag}")
}

pub fn decode_cookie(key: &[u8; 32], value: &str, now: UnixMillis) -> Option<CookieClaims> {
    let (payload, tag) = value.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(payload.as_bytes());
    mac.verify_slice(&tag).ok()?;
    let claims: CookieClaims =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
    (claims.expires_ms > now).then_some(claims)
}

/// `Secure` whenever the server is reached over HTTPS (its public URL says
/// so), or when `auth.secure_cookie` insists (a TLS proxy in front of a
/// server whose public URL is not set).
pub fn set_cookie_header(app: &App, value: &str, max_age_seconds: u32) -> String {
    let https = app.config.http.public_url.starts_with("https://");
    let secure = if https || app.config.auth.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    format!(
        "{COOKIE_NAME}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_seconds}{secure}"
    )
}

/// A random nonce of letters and digits (EIP-4361 wants at least 8).
pub fn nonce() -> String {
    let mut rng = rand::thread_rng();
    (0..20)
        .map(|_| BASE62[rng.gen_range(0..62)] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_reference_shape_and_differ() {
        let ws = Uuid::parse_str("abcdef12-0000-4000-8000-000000000000").unwrap();
        let a = generate_api_key(KeyEnvironment::Live, ws);
        let b = generate_api_key(KeyEnvironment::Live, ws);
        assert!(a.starts_with("lxxn_live_abcdef_"), "{a}");
        assert_ne!(a, b);
        let secret = a.rsplit('_').next().unwrap();
        assert!(
            secret.len() >= 40 && secret.bytes().all(|c| c.is_ascii_alphanumeric()),
            "{secret}"
        );
    }

    #[test]
    fn base62_encodes_numbers() {
        assert_eq!(base62(&[0]), "0");
        assert_eq!(base62(&[61]), "z");
        assert_eq!(base62(&[62]), "10");
        assert_eq!(base62(&[1, 0]), "48");
    }

    #[test]
    fn a_cookie_verifies_only_with_its_key_and_before_expiry() {
        let key = [7u8; 32];
        let claims = CookieClaims {
            wallet: "0xab".into(),
            workspace: Some(Uuid::from_u128(5)),
            expires_ms: 1000,
            id: Some(Uuid::from_u128(6)),
        };
        let cookie = encode_cookie(&key, &claims);
        assert_eq!(decode_cookie(&key, &cookie, 999), Some(claims.clone()));
        assert_eq!(decode_cookie(&key, &cookie, 1000), None);
        assert_eq!(decode_cookie(&[8u8; 32], &cookie, 0), None);
        let tampered = cookie.replacen('e', "f", 1);
        assert_eq!(decode_cookie(&key, &tampered, 0), None);
    }
}
