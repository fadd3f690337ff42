//! `cargo xtask demo`: build `lx-server`, start it on a free loopback port
//! with a fresh data directory under `.lx/demo/`, and walk one session
//! through the API as a consumer and a supplier would, timing every step.
//!
//! What it shows is what the server does today: wallet-signed workspaces,
//! wallet sign-in, API keys, a supplier going ONLINE, a priced quote, a
//! session and its dispatch to ASSIGNED. The server runs without a media
//! plane (`media.backend = "none"`), so `start` answers 503 VIDEO_ERROR and
//! the session is ended (cancelled) before LIVE.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k256::ecdsa::SigningKey;
use lx_protocol::wallet::{Address, sign_personal};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{cargo, header, stream_ok};

/// Bogotá: the supplier's coverage centre.
const COVERAGE: (f64, f64) = (4.711, -74.072);
/// The requested point, about 500 m from the centre.
const POINT: (f64, f64) = (4.7145, -74.069);
const COVERAGE_RADIUS_M: u32 = 2000;
const DURATION_S: u32 = 120;
const NOT_YET: &str = "\n    not in this build yet: video (WHIP/WHEP, frames), signed telemetry and the meter,\n    on-chain settlement; each arrives with its issue.";
/// The consumer's static credit line: 100 USDC.
const CREDIT_MICRO_USDC: u64 = 100_000_000;

pub(crate) fn run(keep: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let t = Instant::now();
    stream_ok(
        "cargo build -p lx-server",
        cargo().args(["build", "-p", "lx-server"]),
    )?;
    let binary = target_dir()?.join("debug").join("lx-server");
    println!("    built {} in {}", binary.display(), fmt_dur(t.elapsed()));

    let dir = fresh_dir()?;
    let port = free_port()?;
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.join("server.toml");
    write_config(&config, &dir, port)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    header("lx demo: the server core, one session from request to dispatch");
    let mut server = Server::start(&binary, &config, &dir)?;
    let outcome = runtime.block_on(async {
        let api = Api::new(&url)?;
        let ready = server.wait_ready(&api).await?;
        walk(&api, ready, &url, &server).await
    });
    match outcome {
        Ok(keys) if keep => {
            println!("{NOT_YET}");
            let pid = server.detach();
            header("server left running (--keep)");
            println!("    URL        {url}  (health: {url}/api/v1/health)");
            println!("    OpenAPI    {url}/api/v1/openapi.json");
            println!("    pid        {pid}   (stop it with: kill {pid})");
            println!("    log        {}", server.log.display());
            println!("    consumer key  {}", keys.consumer);
            println!("    supplier key  {}", keys.supplier);
            println!(
                "    try        curl -s -H 'Authorization: Bearer {}' {url}/api/v1/sessions",
                keys.consumer
            );
        }
        Ok(_) => {
            let t = Instant::now();
            server.stop()?;
            line(
                "server",
                "SIGTERM → stopped gracefully (exit 0)",
                t.elapsed(),
            );
            println!("{NOT_YET}");
            println!(
                "    demo done in {}; data and server log in {}",
                fmt_dur(started.elapsed()),
                dir.display()
            );
        }
        Err(err) => {
            server.print_log_tail(30);
            return Err(err);
        }
    }
    Ok(())
}

/// The API keys minted during the walk, printed with `--keep`.
struct Keys {
    consumer: String,
    supplier: String,
}

/// One wallet and what it accumulates on the way.
struct Party {
    who: &'static str,
    key: SigningKey,
    address: Address,
}

impl Party {
    fn new(who: &'static str) -> Self {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let address = Address::from_signing_key(&key);
        Self { who, key, address }
    }

    fn sign(&self, message: &str) -> String {
        sign_personal(&self.key, message.as_bytes()).to_string()
    }
}

async fn walk(api: &Api, ready: Duration, url: &str, server: &Server) -> anyhow::Result<Keys> {
    let health = api
        .ok(Method::GET, "/api/v1/health", Auth::None, None)
        .await?;
    line(
        "server",
        &format!(
            "{url} ready (pid {}, version {}, store {})",
            server.pid(),
            str_of(&health, "version")?,
            str_of(&health, "store")?,
        ),
        ready,
    );

    let consumer = Party::new("consumer");
    let supplier = Party::new("supplier");

    // 1. Workspaces, created by a wallet signature over a challenge.
    let t = Instant::now();
    let consumer_ws = create_workspace(api, &consumer, "bogota-consumer", "CONSUMER").await?;
    line(
        consumer.who,
        &format!(
            "wallet {} signed the challenge → workspace {} (CONSUMER)",
            short(&consumer.address.to_checksum()),
            str_of(&consumer_ws, "slug")?
        ),
        t.elapsed(),
    );
    let t = Instant::now();
    let supplier_ws = create_workspace(api, &supplier, "bogota-drone", "SUPPLIER").await?;
    line(
        supplier.who,
        &format!(
            "wallet {} signed the challenge → workspace {} (SUPPLIER)",
            short(&supplier.address.to_checksum()),
            str_of(&supplier_ws, "slug")?
        ),
        t.elapsed(),
    );
    let consumer_id = str_of(&consumer_ws, "id")?.to_owned();
    let supplier_id = str_of(&supplier_ws, "id")?.to_owned();

    // 2. Wallet sign-in (the lx_session cookie), then an API key each.
    let consumer_scopes = [
        "sessions:read",
        "sessions:create",
        "pricing:read",
        "wallet:read",
    ];
    let supplier_scopes = ["sessions:read", "sessions:operate", "operators:write"];
    let mut keys = Vec::new();
    for (party, ws_id, scopes) in [
        (&consumer, &consumer_id, &consumer_scopes[..]),
        (&supplier, &supplier_id, &supplier_scopes[..]),
    ] {
        let t = Instant::now();
        let cookie = sign_in(api, party).await?;
        let created = api
            .ok(
                Method::POST,
                &format!("/api/v1/workspaces/{ws_id}/api-keys"),
                Auth::Cookie(&cookie),
                Some(json!({
                    "label": format!("demo {}", party.who),
                    "environment": "TEST",
                    "scopes": scopes,
                })),
            )
            .await?;
        let secret = str_of(&created, "secret")?.to_owned();
        line(
            party.who,
            &format!(
                "signed in (lx_session cookie), minted API key {}… [{}]",
                str_of(&created, "prefix")?,
                scopes.join(", ")
            ),
            t.elapsed(),
        );
        keys.push(secret);
    }
    let [consumer_key, supplier_key]: [String; 2] = keys
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected two API keys"))?;

    // 3. The supplier goes ONLINE over Bogotá.
    let t = Instant::now();
    let online = api
        .ok(
            Method::PATCH,
            &format!("/api/v1/workspaces/{supplier_id}"),
            Auth::Key(&supplier_key),
            Some(json!({
                "availabilityState": "ONLINE",
                "coverageLat": COVERAGE.0,
                "coverageLng": COVERAGE.1,
                "coverageRadiusMeters": COVERAGE_RADIUS_M,
                "deviceKind": "DRONE",
                "autoAccept": true,
            })),
        )
        .await?;
    line(
        supplier.who,
        &format!(
            "{} {}: coverage {} m around {},{}, auto-accept",
            str_of(&online, "deviceKind")?,
            str_of(&online, "availabilityState")?,
            COVERAGE_RADIUS_M,
            COVERAGE.0,
            COVERAGE.1
        ),
        t.elapsed(),
    );

    // 4. The consumer prices the request and creates the session.
    let t = Instant::now();
    let quote = api
        .ok(
            Method::GET,
            &format!(
                "/api/v1/pricing/quote?lat={}&lng={}&durationSeconds={DURATION_S}",
                POINT.0, POINT.1
            ),
            Auth::Key(&consumer_key),
            None,
        )
        .await?;
    let rate = u64_of(&quote, "ratePerSecondMicroUsdc")?;
    let quote_id = str_of(&quote, "quoteId")?.to_owned();
    line(
        consumer.who,
        &format!(
            "quote at {},{} for {DURATION_S} s: {rate} µUSDC/s (supply ×{:.2}, demand ×{:.2}, corridor ×{:.2}), at most {} USDC, locked until {}",
            POINT.0,
            POINT.1,
            num_of(&quote, "supplyFactor")?,
            num_of(&quote, "demandFactor")?,
            num_of(&quote, "corridorMultiplier")?,
            usdc(u64_of(&quote, "estimatedTotalMicroUsdc")?),
            str_of(&quote, "expiresAt")?,
        ),
        t.elapsed(),
    );

    let t = Instant::now();
    let session = api
        .ok(
            Method::POST,
            "/api/v1/sessions",
            Auth::Key(&consumer_key),
            Some(json!({
                "lat": POINT.0,
                "lng": POINT.1,
                "maxDurationSeconds": DURATION_S,
                "quoteId": quote_id,
            })),
        )
        .await?;
    let session_id = str_of(&session, "id")?.to_owned();
    expect_state(&session, "REQUESTED")?;
    line(
        consumer.who,
        &format!(
            "session {session_id} REQUESTED, hold {} USDC of {} USDC credit",
            usdc(u64_of(&session, "holdMicroUsdc")?),
            usdc(CREDIT_MICRO_USDC)
        ),
        t.elapsed(),
    );

    // 5. Dispatch: the covering, longest-idle ONLINE supplier gets it.
    let t = Instant::now();
    let assigned = api
        .ok(
            Method::POST,
            &format!("/api/v1/sessions/{session_id}/dispatch"),
            Auth::Key(&consumer_key),
            None,
        )
        .await?;
    let took = t.elapsed();
    expect_state(&assigned, "ASSIGNED")?;
    let operator = assigned
        .get("operatorWorkspaceId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if operator != supplier_id {
        bail!("dispatch assigned workspace '{operator}', expected the supplier {supplier_id}");
    }
    let busy = api
        .ok(
            Method::GET,
            &format!("/api/v1/workspaces/{supplier_id}"),
            Auth::Key(&supplier_key),
            None,
        )
        .await?;
    line(
        consumer.who,
        &format!(
            "dispatch → ASSIGNED to {} (supplier now {})",
            str_of(&supplier_ws, "slug")?,
            str_of(&busy, "availabilityState")?
        ),
        took,
    );

    // 6. Video: not in this build. Show the honest answer.
    let t = Instant::now();
    let start = api
        .call(
            Method::POST,
            &format!("/api/v1/sessions/{session_id}/start"),
            Auth::Key(&supplier_key),
            None,
        )
        .await?;
    match start {
        Ok(media) => line(
            supplier.who,
            &format!(
                "start → WHIP {} (LIVE comes with the first decoded frame)",
                str_of(&media, "whipUrl")?
            ),
            t.elapsed(),
        ),
        Err(failure) if failure.code == "VIDEO_ERROR" => line(
            supplier.who,
            &format!(
                "start → {} VIDEO_ERROR: no media plane in this build yet (video arrives with the media issue)",
                failure.status
            ),
            t.elapsed(),
        ),
        Err(failure) => return Err(failure.into()),
    }

    // 7. End before LIVE: a cancel, no charge, the supplier is released.
    let t = Instant::now();
    let ended = api
        .ok(
            Method::POST,
            &format!("/api/v1/sessions/{session_id}/end"),
            Auth::Key(&consumer_key),
            None,
        )
        .await?;
    let took = t.elapsed();
    expect_state(&ended, "CANCELLED")?;
    let released = api
        .ok(
            Method::GET,
            &format!("/api/v1/workspaces/{supplier_id}"),
            Auth::Key(&supplier_key),
            None,
        )
        .await?;
    line(
        consumer.who,
        &format!(
            "end → final state {} at {} (ended before LIVE: no charge; supplier {} again)",
            str_of(&ended, "state")?,
            ended.get("endedAt").and_then(Value::as_str).unwrap_or("-"),
            str_of(&released, "availabilityState")?
        ),
        took,
    );
    Ok(Keys {
        consumer: consumer_key,
        supplier: supplier_key,
    })
}

async fn create_workspace(
    api: &Api,
    party: &Party,
    slug: &str,
    role: &str,
) -> anyhow::Result<Value> {
    let wallet = party.address.to_checksum();
    let challenge = api
        .ok(
            Method::POST,
            "/api/v1/workspaces/challenge",
            Auth::None,
            Some(json!({ "walletAddress": wallet })),
        )
        .await?;
    let signature = party.sign(str_of(&challenge, "message")?);
    api.ok(
        Method::POST,
        "/api/v1/workspaces",
        Auth::None,
        Some(json!({
            "slug": slug,
            "name": format!("Demo {}", party.who),
            "walletAddress": wallet,
            "signature": signature,
            "nonce": str_of(&challenge, "nonce")?,
            "roles": [role],
        })),
    )
    .await
}

/// Wallet sign-in; returns the `lx_session=…` cookie pair.
async fn sign_in(api: &Api, party: &Party) -> anyhow::Result<String> {
    let wallet = party.address.to_checksum();
    let challenge = api
        .ok(
            Method::POST,
            "/api/v1/auth/wallet/challenge",
            Auth::None,
            Some(json!({ "walletAddress": wallet })),
        )
        .await?;
    let signature = party.sign(str_of(&challenge, "message")?);
    let reply = api
        .send(
            Method::POST,
            "/api/v1/auth/wallet/login",
            Auth::None,
            Some(json!({
                "walletAddress": wallet,
                "nonce": str_of(&challenge, "nonce")?,
                "signature": signature,
            })),
        )
        .await?;
    let cookie = reply
        .set_cookie
        .iter()
        .filter_map(|c| c.split(';').next())
        .find(|pair| pair.starts_with("lx_session="))
        .map(str::to_owned);
    reply.into_data()?;
    cookie.context("the login answer set no lx_session cookie")
}

// ------------------------------------------------------------------ HTTP

#[derive(Clone, Copy)]
enum Auth<'a> {
    None,
    Cookie(&'a str),
    Key(&'a str),
}

struct Api {
    http: reqwest::Client,
    base: String,
}

struct Reply {
    method: Method,
    path: String,
    status: u16,
    body: Value,
    set_cookie: Vec<String>,
}

/// An error answer of the API: `{statusCode, code, message, detail, timestamp}`.
#[derive(Debug)]
struct ApiFailure {
    method: Method,
    path: String,
    status: u16,
    code: String,
    message: String,
    detail: Option<String>,
}

impl fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} → {} {}: {}",
            self.method, self.path, self.status, self.code, self.message
        )?;
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

impl Reply {
    /// `data` of a success envelope, or the error answer.
    fn into_data(self) -> Result<Value, Box<ApiFailure>> {
        if (200..300).contains(&self.status) {
            return Ok(self.body.get("data").cloned().unwrap_or(Value::Null));
        }
        let text = |key: &str| {
            self.body
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        Err(Box::new(ApiFailure {
            code: text("code").unwrap_or_else(|| "UNKNOWN".into()),
            message: text("message").unwrap_or_else(|| self.body.to_string()),
            detail: text("detail"),
            method: self.method,
            path: self.path,
            status: self.status,
        }))
    }
}

impl Api {
    fn new(base: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            base: base.to_owned(),
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Reply> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        request = match auth {
            Auth::None => request,
            Auth::Cookie(cookie) => request.header(reqwest::header::COOKIE, cookie),
            Auth::Key(key) => request.bearer_auth(key),
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {path}: no answer"))?;
        let status = response.status().as_u16();
        let set_cookie = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let bytes = response
            .bytes()
            .await
            .with_context(|| format!("{method} {path}: reading the answer"))?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({ "message": String::from_utf8_lossy(&bytes).into_owned() }));
        Ok(Reply {
            method,
            path: path.to_owned(),
            status,
            body,
            set_cookie,
        })
    }

    /// Transport errors in the outer result, API errors in the inner one.
    async fn call(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Result<Value, Box<ApiFailure>>> {
        Ok(self.send(method, path, auth, body).await?.into_data())
    }

    async fn ok(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        Ok(self.call(method, path, auth, body).await??)
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> anyhow::Result<&'a str> {
    v.get(key)
        .and_then(Value::as_str)
        .with_context(|| format!("the answer has no string '{key}': {v}"))
}

fn u64_of(v: &Value, key: &str) -> anyhow::Result<u64> {
    v.get(key)
        .and_then(Value::as_u64)
        .with_context(|| format!("the answer has no integer '{key}': {v}"))
}

fn num_of(v: &Value, key: &str) -> anyhow::Result<f64> {
    v.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("the answer has no number '{key}': {v}"))
}

fn expect_state(session: &Value, want: &str) -> anyhow::Result<()> {
    let state = str_of(session, "state")?;
    if state != want {
        bail!("session is {state}, expected {want}");
    }
    Ok(())
}

// ---------------------------------------------------------------- server

struct Server {
    child: Option<Child>,
    log: PathBuf,
}

impl Server {
    fn start(binary: &Path, config: &Path, dir: &Path) -> anyhow::Result<Self> {
        let log = dir.join("server.log");
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(binary)
            .arg("--config")
            .arg(config)
            .current_dir(dir)
            // A plain-text log file, without terminal colour codes.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            log,
        })
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Polls `GET /api/v1/health` until it answers 200; returns how long that took.
    async fn wait_ready(&mut self, api: &Api) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let deadline = t + Duration::from_secs(20);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!("lx-server exited during start-up ({status})");
            }
            if let Ok(reply) = api
                .send(Method::GET, "/api/v1/health", Auth::None, None)
                .await
                && reply.status == 200
            {
                return Ok(t.elapsed());
            }
            if Instant::now() > deadline {
                bail!("lx-server did not answer /api/v1/health within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// SIGTERM, then wait for the graceful shutdown.
    fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = terminate(&mut child, Duration::from_secs(10))?;
        if !status.success() {
            bail!("lx-server exited with {status} after SIGTERM");
        }
        Ok(())
    }

    /// Leaves the server running; returns its pid.
    fn detach(&mut self) -> u32 {
        self.child.take().map(|c| c.id()).unwrap_or_default()
    }

    fn print_log_tail(&self, lines: usize) {
        let Ok(file) = File::open(&self.log) else {
            return;
        };
        let all: Vec<String> = BufReader::new(file).lines().map_while(Result::ok).collect();
        eprintln!("\n--- last lines of {} ---", self.log.display());
        for l in &all[all.len().saturating_sub(lines)..] {
            eprintln!("{l}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(&mut child, Duration::from_secs(5));
        }
    }
}

/// Sends SIGTERM and waits up to `grace`, then kills.
fn terminate(child: &mut Child, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if sent {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child.kill()?;
    let status = child.wait()?;
    bail!("lx-server did not stop on SIGTERM within {grace:?}; killed ({status})")
}

// ----------------------------------------------------------------- setup

/// Cargo's target directory (honours CARGO_TARGET_DIR and config).
fn target_dir() -> anyhow::Result<PathBuf> {
    let out = cargo()
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!("cargo metadata failed ({})", out.status);
    }
    let meta: Value = serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    Ok(PathBuf::from(str_of(&meta, "target_directory")?))
}

/// `.lx/demo/<time>-<pid>/`: a new directory each run.
fn fresh_dir() -> anyhow::Result<PathBuf> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let dir = crate::root()
        .join(".lx")
        .join("demo")
        .join(format!("{stamp}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn write_config(path: &Path, dir: &Path, port: u16) -> anyhow::Result<()> {
    let db = dir.join("lx.db");
    let db = db
        .to_str()
        .with_context(|| format!("{} is not UTF-8", db.display()))?;
    // A JSON string is a valid TOML basic string.
    let text = format!(
        "# Written by `cargo xtask demo`.\n\
         [http]\n\
         listen = \"127.0.0.1:{port}\"\n\
         public_url = \"http://127.0.0.1:{port}\"\n\n\
         [store]\n\
         path = {db}\n\n\
         [credit]\n\
         default_micro_usdc = {CREDIT_MICRO_USDC}\n",
        db = serde_json::to_string(db)?,
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

// ---------------------------------------------------------------- output

fn line(who: &str, what: &str, took: Duration) {
    println!("  {who:<9} {what}  [{}]", fmt_dur(took));
}

fn fmt_dur(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `0.12`, `100.00`, `0.000125`: at least two decimals, no trailing zeros beyond.
fn usdc(micro: u64) -> String {
    let text = format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000);
    let keep = text.trim_end_matches('0').len().max(text.len() - 4);
    text[..keep].to_owned()
}

/// `0xAbCd…1234`.
fn short(address: &str) -> String {
    if address.len() > 12 {
        format!("{}…{}", &address[..6], &address[address.len() - 4..])
    } else {
        address.to_owned()
    }
}
