//! A whole server on loopback, with real HTTP, a real SQLite file, a manual
//! clock, and the media test double; plus actors that sign in with real
//! secp256k1 keys.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different part

use std::sync::Arc;

use k256::ecdsa::SigningKey;
use lx_protocol::wallet::{Address, sign_personal};
use lx_server::app::App;
use lx_server::clock::ManualClock;
use lx_server::config::Config;
use lx_server::credit::StaticCredit;
use lx_server::media::builtin::{BuiltinConfig, BuiltinMedia};
use lx_server::media::external::{ExternalConfig, ExternalMedia};
use lx_server::media::{self, MediaBackend, ScriptedMedia};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::watch;
use uuid::Uuid;

pub type RespFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Resp> + Send + 'a>>;

/// This package's directory: cargo's, at run time, before the one compiled
/// in. Clones that share a target directory share test binaries, and cargo
/// does not rebuild one for a clone at another path, so the compiled-in
/// path can name another clone (or one since deleted).
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")),
        std::path::PathBuf::from,
    )
}

pub const BOGOTA: (f64, f64) = (4.711, -74.072);

/// An HTTP client of one server, with the helpers every test needs.
#[derive(Debug, Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

pub struct TestApp {
    pub api: Api,
    pub app: Arc<App>,
    pub clock: Arc<ManualClock>,
    pub media: Arc<ScriptedMedia>,
    /// The real media plane, when the test asked for it (then `media` is idle).
    pub builtin: Option<Arc<BuiltinMedia>>,
    pub credit: Arc<StaticCredit>,
    pub dir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    /// The fleet link's counters, when the config names a broker.
    pub fleet: Option<Arc<lx_server::mqtt::BridgeStats>>,
}

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or("")
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
    #[track_caller]
    pub fn ok(self) -> Self {
        assert!(
            self.status.is_success(),
            "expected success, got {} {}",
            self.status,
            self.body
        );
        self
    }
    #[track_caller]
    pub fn expect(self, status: u16, code: &str) -> Self {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        assert_eq!(self.code(), code, "{}", self.body);
        self
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Key(String),
    Cookie(String),
}

impl From<&Auth> for Auth {
    fn from(auth: &Auth) -> Self {
        auth.clone()
    }
}

#[derive(Debug, Clone)]
pub struct Actor {
    pub key: SigningKey,
    pub wallet: Address,
    pub workspace_id: Uuid,
    pub api_key: String,
    pub cookie: String,
}

impl Actor {
    pub fn auth(&self) -> Auth {
        Auth::Key(self.api_key.clone())
    }
}

/// Which media backend a test server runs.
enum Plane {
    /// The test double: the test says when frames were "decoded".
    Scripted,
    Builtin,
    External,
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::defaults();
    config.store.path = dir.join("lx.db");
    // Tests drive the sweeper by hand with the manual clock.
    config.sessions.sweep_interval_ms = 3_600_000;
    // Every test client is 127.0.0.1 and many make dozens of accounts; the
    // rate-limit tests set their own limits.
    let r = &mut config.rate_limits;
    for limit in [
        &mut r.challenges_per_minute,
        &mut r.sign_in_per_minute,
        &mut r.workspaces_per_minute,
        &mut r.registrations_per_minute,
        &mut r.webhooks_per_minute,
        &mut r.telemetry_per_minute,
        &mut r.media_offers_per_minute,
        &mut r.media_patches_per_minute,
        &mut r.quotes_per_minute,
        &mut r.mcp_per_minute,
    ] {
        *limit = 1_000_000;
    }
    // The flood tests count refusals by the thousand; the delay before a
    // refusal has its own test.
    config.rate_limits.refusal_delay_ms = 0;
    config.rate_limits.auth_failures_per_minute = 1_000_000;
    config
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// A server on the wall clock, for tests with a real agent in the loop.
    pub async fn spawn_realtime() -> Self {
        Self::spawn_inner(|_| {}, true, Plane::Scripted).await
    }

    /// A server on the wall clock with a tweaked configuration.
    pub async fn spawn_realtime_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(tweak, true, Plane::Scripted).await
    }

    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(tweak, false, Plane::Scripted).await
    }

    /// A server on the wall clock whose sessions' media live on an edge
    /// (`media.backend = "external"`; the tweak names the edge).
    pub async fn spawn_with_external_media(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(
            |c| {
                c.media.backend = "external".into();
                c.media.ice.local_addresses = vec!["127.0.0.1".into()];
                tweak(c);
            },
            true,
            Plane::External,
        )
        .await
    }

    /// A server on the wall clock with the built-in media plane (GStreamer),
    /// ICE on 127.0.0.1 only.
    pub async fn spawn_with_media(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::spawn_inner(
            |c| {
                c.media.backend = "builtin".into();
                c.media.ice.local_addresses = vec!["127.0.0.1".into()];
                tweak(c);
            },
            true,
            Plane::Builtin,
        )
        .await
    }

    /// A server on the wall clock on a settlement chain: its credit is the
    /// consumer's pool in the contract.
    pub async fn spawn_with_chain(chain: Arc<dyn lx_server::chain::ChainReader>) -> Self {
        Self::spawn_full(|_| {}, true, Plane::Scripted, Some(chain)).await
    }

    /// The same with a tweaked configuration.
    pub async fn spawn_with_chain_and(
        chain: Arc<dyn lx_server::chain::ChainReader>,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        Self::spawn_full(tweak, true, Plane::Scripted, Some(chain)).await
    }

    async fn spawn_inner(tweak: impl FnOnce(&mut Config), realtime: bool, plane: Plane) -> Self {
        Self::spawn_full(tweak, realtime, plane, None).await
    }

    async fn spawn_full(
        tweak: impl FnOnce(&mut Config),
        realtime: bool,
        plane: Plane,
        chain: Option<Arc<dyn lx_server::chain::ChainReader>>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}/api/v1", listener.local_addr().expect("addr"));
        // A test that sets an https:// public URL keeps it (what the cookie's
        // Secure attribute follows); every other one is served where it is bound.
        if !config.http.public_url.starts_with("https://") {
            config.http.public_url = base.trim_end_matches("/api/v1").to_owned();
        }
        let config = Arc::new(config);
        let store = lx_server::store::open(&config.store).await.expect("store");
        let clock = ManualClock::new(1_800_000_000_000);
        let credit = Arc::new(StaticCredit::new(1_000_000_000));
        let (tx, rx) = media::channel();
        let media = Arc::new(ScriptedMedia::new(tx.clone()));
        let app_clock: Arc<dyn lx_server::clock::Clock> = if realtime {
            Arc::new(lx_server::clock::SystemClock)
        } else {
            clock.clone()
        };
        let (builtin, backend): (_, Arc<dyn MediaBackend>) = match plane {
            Plane::Scripted => (None, media.clone()),
            Plane::Builtin => {
                let settings = BuiltinConfig::from_config(&config).expect("media config");
                let b = Arc::new(
                    BuiltinMedia::new(settings, &[9u8; 32], app_clock.clone(), tx)
                        .expect("GStreamer"),
                );
                (Some(b.clone()), b)
            }
            Plane::External => {
                let settings = ExternalConfig::from_config(&config).expect("media config");
                let e = ExternalMedia::new(settings, app_clock.clone(), tx).expect("GStreamer");
                (None, Arc::new(e))
            }
        };
        let app = App::new(
            Arc::clone(&config),
            store,
            app_clock,
            match &chain {
                Some(c) => Arc::new(lx_server::chain::OnchainCredit::new(Arc::clone(c))),
                None => credit.clone(),
            },
            backend,
            chain,
            [9u8; 32],
        )
        .await
        .expect("app");
        let (stop, stop_rx) = watch::channel(false);
        app.spawn_background(rx, stop_rx.clone());
        tokio::spawn(lx_server::webhooks::run(Arc::clone(&app), stop_rx.clone()));
        tokio::spawn(lx_server::credit_watch::run(
            Arc::clone(&app),
            stop_rx.clone(),
        ));
        tokio::spawn(lx_server::replicas::follow(
            Arc::clone(&app),
            stop_rx.clone(),
        ));
        tokio::spawn(lx_server::replicas::say_alive(
            Arc::clone(&app),
            stop_rx.clone(),
        ));
        let fleet = if config.mqtt.enabled() {
            let (stats, _) = lx_server::mqtt::start(&app, stop_rx.clone())
                .await
                .expect("fleet link");
            Some(stats)
        } else {
            None
        };
        let router = lx_server::routes::router(Arc::clone(&app));
        let limits = lx_server::edge::EdgeLimits::from_config(&config);
        let mut shutdown = stop_rx;
        tokio::spawn(lx_server::edge::serve(
            listener,
            router,
            limits,
            async move {
                let _ = shutdown.changed().await;
            },
        ));
        Self {
            api: Api::new(base),
            app,
            clock,
            media,
            builtin,
            credit,
            dir,
            stop,
            fleet,
        }
    }

    /// Drives a session to LIVE: dispatch, start, first frame.
    /// A supplier workspace with one enrolled drone at `at`, heard from now.
    pub async fn fleet(&self, slug: &str, at: (f64, f64)) -> (Actor, Device) {
        let supplier = self.supplier(slug, at, true).await;
        let drone = self.enroll(&supplier, "drone-1").await;
        let sample = drone.sample(None, self.clock_now(), at, 3.0);
        self.post(
            "/operators/heartbeat",
            drone.auth(),
            json!({"sample": sample}),
        )
        .await
        .ok();
        (supplier, drone)
    }

    /// A 600 s session at Bogotá served by `device`, LIVE from now on the
    /// scripted media plane: its id, as text and UUID, and when it started.
    pub async fn live_device_session(
        &self,
        consumer: &Actor,
        device: &Device,
    ) -> (String, Uuid, i64) {
        let id = self.request(consumer, BOGOTA, 600).await;
        self.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        self.post(format!("/sessions/{id}/start"), device.auth(), json!({}))
            .await
            .ok();
        let started = self.clock_now();
        let sid: Uuid = id.parse().expect("uuid");
        self.media.first_frame(sid, started).await;
        self.wait_for_state(consumer, &id, "LIVE").await;
        (id, sid, started)
    }

    pub async fn make_live(&self, consumer: &Actor, supplier: &Actor, id: &str) {
        self.post(
            format!("/sessions/{id}/dispatch"),
            consumer.auth(),
            json!({}),
        )
        .await
        .ok();
        self.post(format!("/sessions/{id}/start"), supplier.auth(), json!({}))
            .await
            .ok();
        self.media
            .first_frame(id.parse().expect("uuid"), self.clock_now())
            .await;
        self.wait_for_state(consumer, id, "LIVE").await;
    }

    pub fn clock_now(&self) -> i64 {
        self.app.now()
    }

    /// Moves the manual clock on by `ms`, with `supplier` (a workspace
    /// without devices, trust tier 0) sending its location heartbeat at `at`
    /// now and every 2 s on the way: the evidence its seconds are metered by.
    pub async fn advance_heartbeating(&self, supplier: &Actor, at: (f64, f64), ms: i64) {
        let end = self.clock_now() + ms;
        self.heartbeat(supplier, at).await;
        while self.clock_now() < end {
            self.clock.set_ms((self.clock_now() + 2_000).min(end));
            self.heartbeat(supplier, at).await;
        }
    }
}

/// A background task sending a supplier's location heartbeats; stops when dropped.
pub struct Heartbeats(tokio::task::JoinHandle<()>);

impl Drop for Heartbeats {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Api {
    pub fn new(base: String) -> Self {
        Self {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request. Arguments are converted before the future is made,
    /// so callers may pass temporaries and run many calls at once.
    pub fn call(
        &self,
        method: Method,
        path: impl Into<String>,
        auth: impl Into<Auth>,
        body: Option<Value>,
    ) -> RespFuture<'_> {
        let url = format!("{}{}", self.base, path.into());
        let auth = auth.into();
        Box::pin(async move {
            let mut req = self.http.request(method, url);
            req = match auth {
                Auth::None => req,
                Auth::Key(k) => req.bearer_auth(k),
                Auth::Cookie(c) => req.header("cookie", format!("lx_session={c}")),
            };
            if let Some(body) = body {
                req = req.json(&body);
            }
            let response = req.send().await.expect("request");
            let status = response.status();
            let headers = response.headers().clone();
            let bytes = response.bytes().await.expect("body");
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Resp {
                status,
                body,
                headers,
            }
        })
    }

    pub fn get(&self, path: impl Into<String>, auth: impl Into<Auth>) -> RespFuture<'_> {
        self.call(Method::GET, path, auth, None)
    }

    pub fn post(
        &self,
        path: impl Into<String>,
        auth: impl Into<Auth>,
        body: Value,
    ) -> RespFuture<'_> {
        self.call(Method::POST, path, auth, Some(body))
    }

    /// Creates a workspace owned by `key`'s wallet, signing the challenge.
    pub async fn create_workspace(&self, key: &SigningKey, slug: &str, roles: &[&str]) -> Uuid {
        let wallet = Address::from_signing_key(key);
        let ch = self
            .post(
                "/workspaces/challenge",
                &Auth::None,
                json!({"walletAddress": wallet.to_checksum()}),
            )
            .await
            .ok();
        let message = ch.data()["message"].as_str().expect("message").to_owned();
        let signature = sign_personal(key, message.as_bytes());
        let created = self
            .post(
                "/workspaces",
                &Auth::None,
                json!({
                    "slug": slug, "name": slug, "walletAddress": wallet.to_checksum(),
                    "signature": signature.to_string(), "nonce": ch.data()["nonce"], "roles": roles,
                }),
            )
            .await
            .ok();
        created.data()["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid")
    }

    /// SIWE sign-in; returns the `lx_session` cookie value.
    pub async fn login(&self, key: &SigningKey) -> String {
        let wallet = Address::from_signing_key(key);
        let ch = self
            .post(
                "/auth/wallet/challenge",
                &Auth::None,
                json!({"walletAddress": wallet.to_checksum()}),
            )
            .await
            .ok();
        let message = ch.data()["message"].as_str().expect("message").to_owned();
        let signature = sign_personal(key, message.as_bytes());
        let resp = self
            .post(
                "/auth/wallet/login",
                &Auth::None,
                json!({"walletAddress": wallet.to_checksum(), "nonce": ch.data()["nonce"], "signature": signature.to_string()}),
            )
            .await
            .ok();
        cookie_from(&resp).expect("login sets the lx_session cookie")
    }

    pub async fn mint_key(&self, cookie: &str, workspace: Uuid, scopes: &[&str]) -> String {
        let resp = self
            .post(
                format!("/workspaces/{workspace}/api-keys"),
                Auth::Cookie(cookie.to_owned()),
                json!({"label": "test", "environment": "TEST", "scopes": scopes}),
            )
            .await
            .ok();
        resp.data()["secret"].as_str().expect("secret").to_owned()
    }

    pub async fn actor(&self, slug: &str, roles: &[&str], scopes: &[&str]) -> Actor {
        let key = SigningKey::random(&mut rand::thread_rng());
        let workspace_id = self.create_workspace(&key, slug, roles).await;
        let cookie = self.login(&key).await;
        let api_key = self.mint_key(&cookie, workspace_id, scopes).await;
        Actor {
            wallet: Address::from_signing_key(&key),
            key,
            workspace_id,
            api_key,
            cookie,
        }
    }

    pub async fn consumer(&self, slug: &str) -> Actor {
        self.actor(
            slug,
            &["CONSUMER"],
            &[
                "sessions:read",
                "sessions:create",
                "pricing:read",
                "wallet:read",
            ],
        )
        .await
    }

    /// A supplier ONLINE over `at` with a 2 km radius.
    pub async fn supplier(&self, slug: &str, at: (f64, f64), auto_accept: bool) -> Actor {
        let actor = self
            .actor(
                slug,
                &["SUPPLIER"],
                &["sessions:read", "sessions:operate", "operators:write"],
            )
            .await;
        self.call(
            Method::PATCH,
            format!("/workspaces/{}", actor.workspace_id),
            actor.auth(),
            Some(json!({
                "availabilityState": "ONLINE", "coverageLat": at.0, "coverageLng": at.1,
                "coverageRadiusMeters": 2000, "deviceKind": "DRONE", "autoAccept": auto_accept,
            })),
        )
        .await
        .ok();
        actor
    }

    /// A REQUESTED session at `at` for `consumer`; returns its id.
    pub async fn request(&self, consumer: &Actor, at: (f64, f64), max_duration: u32) -> String {
        let resp = self
            .post(
                "/sessions",
                consumer.auth(),
                json!({"lat": at.0, "lng": at.1, "maxDurationSeconds": max_duration}),
            )
            .await
            .ok();
        resp.data()["id"].as_str().expect("id").to_owned()
    }

    pub async fn session(&self, actor: &Actor, id: &str) -> Value {
        self.get(format!("/sessions/{id}"), actor.auth())
            .await
            .ok()
            .data()
            .clone()
    }

    pub async fn workspace(&self, actor: &Actor) -> Value {
        self.get(format!("/workspaces/{}", actor.workspace_id), actor.auth())
            .await
            .ok()
            .data()
            .clone()
    }

    /// One location heartbeat of `supplier`'s workspace at `at`; each is
    /// numbered above every earlier one (one counter for the process).
    pub async fn heartbeat(&self, supplier: &Actor, at: (f64, f64)) -> Resp {
        self.send_heartbeat(supplier, at).await.ok()
    }

    fn send_heartbeat(&self, supplier: &Actor, at: (f64, f64)) -> RespFuture<'_> {
        static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let sequence = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.post(
            format!("/workspaces/{}/location", supplier.workspace_id),
            supplier.auth(),
            json!({"lat": at.0, "lng": at.1, "accuracyMeters": 5.0, "sequence": sequence}),
        )
    }

    /// Heartbeats of `supplier` at `at` every second, for a server on the
    /// wall clock, until the returned guard is dropped.
    pub fn heartbeat_every_second(&self, supplier: &Actor, at: (f64, f64)) -> Heartbeats {
        let api = self.clone();
        let supplier = supplier.clone();
        Heartbeats(tokio::spawn(async move {
            loop {
                let sent = api.send_heartbeat(&supplier, at).await;
                assert!(sent.status.is_success(), "heartbeat refused: {}", sent.body);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }))
    }

    pub async fn wait_for_state(&self, actor: &Actor, id: &str, state: &str) {
        self.wait_for_state_within(actor, id, state, std::time::Duration::from_secs(2))
            .await;
    }

    pub async fn wait_for_state_within(
        &self,
        actor: &Actor,
        id: &str,
        state: &str,
        limit: std::time::Duration,
    ) {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.session(actor, id).await["state"] == state {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!(
            "session {id} never reached {state}: {}",
            self.session(actor, id).await
        );
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub fn cookie_from(resp: &Resp) -> Option<String> {
    resp.headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("lx_session="))
        .map(|v| v.split(';').next().unwrap_or("").to_owned())
}

/// An enrolled device with its own secp256k1 key.
#[derive(Debug, Clone)]
pub struct Device {
    pub key: SigningKey,
    pub operator_id: Uuid,
    pub token: String,
    pub chain_id: u64,
    pub sequence: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// The broker account enrollment issued: (username, password).
    pub mqtt: Option<(String, String)>,
}

impl Device {
    pub fn auth(&self) -> Auth {
        Auth::Key(self.token.clone())
    }

    /// A signed sample with the next sequence number.
    pub fn sample(
        &self,
        session: Option<Uuid>,
        captured_ms: i64,
        at: (f64, f64),
        accuracy_m: f64,
    ) -> Value {
        let seq = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.sample_with_sequence(session, seq, captured_ms, at, accuracy_m)
    }

    pub fn sample_with_sequence(
        &self,
        session: Option<Uuid>,
        sequence: u64,
        captured_ms: i64,
        at: (f64, f64),
        accuracy_m: f64,
    ) -> Value {
        use lx_protocol::telemetry::{Sample, SampleJson, Source};
        let sample = Sample::from_position(
            session,
            sequence,
            captured_ms as u64,
            lx_protocol::geo::Point::new(at.0, at.1),
            accuracy_m,
            Source::Gps,
        )
        .expect("valid sample");
        serde_json::to_value(SampleJson::encode(
            &sample,
            sample.sign(&self.key, self.chain_id),
        ))
        .expect("json")
    }
}

impl Api {
    /// Mints an enrollment token as `admin` and registers a fresh device key with it.
    pub async fn enroll(&self, admin: &Actor, name: &str) -> Device {
        let token = self
            .post(
                format!("/workspaces/{}/enrollment-tokens", admin.workspace_id),
                admin.auth(),
                json!({}),
            )
            .await
            .ok();
        let token = token.data()["token"].as_str().expect("token").to_owned();
        let key = SigningKey::random(&mut rand::thread_rng());
        let proof = sign_personal(&key, token.as_bytes());
        let registered = self
            .post(
                "/operators/register",
                Auth::None,
                json!({"enrollmentToken": token, "name": name, "deviceKind": "DRONE",
                    "address": Address::from_signing_key(&key).to_checksum(), "proof": proof.to_string()}),
            )
            .await
            .ok();
        let data = registered.data();
        Device {
            key,
            operator_id: data["operatorId"]
                .as_str()
                .expect("operatorId")
                .parse()
                .expect("uuid"),
            token: data["deviceToken"]
                .as_str()
                .expect("deviceToken")
                .to_owned(),
            chain_id: data["chainId"].as_u64().expect("chainId"),
            sequence: Default::default(),
            mqtt: data["mqtt"]["username"].as_str().map(|user| {
                (
                    user.to_owned(),
                    data["mqtt"]["password"]
                        .as_str()
                        .expect("password")
                        .to_owned(),
                )
            }),
        }
    }
}
