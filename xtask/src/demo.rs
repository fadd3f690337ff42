//! `cargo xtask demo`: build `lx-server`, `lx-agent` and `lx-nmea-replay`,
//! start anvil with the contracts, the server on a free loopback port with
//! a fresh data directory under `.lx/demo/`, and Mosquitto with the
//! accounts and ACL the server writes; then walk one session through the
//! API as a consumer, a supplier and its drone would, timing every step,
//! from the request through LIVE video and the meter to the settlement.
//!
//! The drone is simulated at the edges only: a real receiver's NMEA log
//! (gpsd's `ublox-neo-m9n-nmea`) is replayed into a pseudo-terminal by
//! `lx-nmea-replay`, GStreamer's test pattern stands in for the camera, and
//! an unmodified `lx-agent` reads the log as its serial GPS, enrolls with a
//! token, takes its assignment over MQTT, publishes over WHIP and signs a
//! sample a second. A fleet view (`mosquitto_sub` with the supplier's
//! fleet-manager account) prints the device's status line each time it
//! changes.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k256::ecdsa::SigningKey;
use lx_hal::gps::{Fix, Output, Quality, Tracker};
use lx_hal::sim::Pacer;
use lx_protocol::wallet::{Address, sign_personal};
use reqwest::Method;
use serde_json::{Value, json};

use crate::{cargo, header, stream_ok};

mod chain;

/// The receiver log the drone replays: a u-blox NEO-M9N with a steady DGPS
/// fix for a minute (gpsd's test/daemon; always present once fetched).
const GPS_LOG: &str = "ublox-neo-m9n-nmea.log";
/// The consumer asks for eyes this far north of the drone's first fix.
const POINT_OFFSET_M: f64 = 30.0;
const GEOFENCE_RADIUS_M: u32 = 100;
const COVERAGE_RADIUS_M: u32 = 2000;
const DURATION_S: u32 = 120;
const DEVICE_NAME: &str = "demo-drone-1";
/// How long the consumer lets the drone fly before reading its track.
const TRACK_WAIT: Duration = Duration::from_secs(8);
/// The environment variable the demo server reads its broker password from.
const MQTT_PASSWORD_ENV: &str = "LX_SERVER__MQTT__PASSWORD";
/// The demo server's settle delay: the meter is final this long after the end.
const SETTLE_DELAY_S: u64 = 3;
const VIDEO_CODEC: &str = "h264";
const VIDEO_SIZE: (u32, u32) = (640, 480);
/// The consumer's static credit line: 100 USDC.
/// The consumer's own cap on the rate, µUSDC/s: above the demo's market
/// rate (1,000 µUSDC/s at base, a few times that at most here).
const RATE_CAP_MICRO_USDC: u64 = 20_000;

/// What the consumer deposits into its pool on chain, and what it is minted.
const POOL_MICRO_USDC: u64 = 1_000_000;
const MINTED_MICRO_USDC: u64 = 10_000_000;
/// Metres per degree of latitude (mean Earth radius 6 371 008.8 m).
const M_PER_DEG_LAT: f64 = 111_195.08;

/// The names of the replicas in the step lines.
const REPLICA_NAMES: [&str; 3] = ["server", "server-b", "server-c"];

pub(crate) fn run(keep: bool, replicas: usize) -> anyhow::Result<()> {
    if !(1..=REPLICA_NAMES.len()).contains(&replicas) {
        bail!("--replicas takes 1 to {}", REPLICA_NAMES.len());
    }
    let started = Instant::now();
    crate::header("checking tools");
    if replicas > 1 {
        crate::debian::ensure("PostgreSQL (shared store)", crate::debian::POSTGRESQL)?;
    }
    crate::debian::ensure("GStreamer (media plane)", crate::debian::GSTREAMER)?;
    crate::debian::ensure("Mosquitto (MQTT broker)", crate::debian::MOSQUITTO)?;
    crate::debian::ensure(
        "the openssl command (TLS certificates)",
        crate::debian::OPENSSL_TOOL,
    )?;
    let t = Instant::now();
    stream_ok(
        "cargo build -p lx-server -p lx-agent -p lx-hal -p lx-client --features lx-hal/linux",
        cargo().args([
            "build",
            "-p",
            "lx-server",
            "-p",
            "lx-agent",
            "-p",
            "lx-hal",
            "-p",
            "lx-client",
            "--features",
            "lx-hal/linux",
        ]),
    )?;
    let bins = Bins::locate()?;
    println!(
        "    built lx-server, lx-agent and lx-nmea-replay in {} ({})",
        fmt_dur(t.elapsed()),
        bins.dir.display()
    );
    let gps_log = crate::fixtures::ensure_gpsd_logs()?.join(GPS_LOG);

    let tools = crate::npm::ensure_npm_tools()?;
    let dir = fresh_dir()?;
    let (chain_proc, chain, anvil_up, deployed) = chain::DemoChain::start(
        &dir,
        &crate::root().join(".lx/demo-cache/contracts"),
        &tools,
    )?;
    println!(
        "    anvil on {} in {}; contracts built and deployed in {} (USDC {}, LuxxonSettlement {});\n    relayer {} (encrypted keystore {}), fee wallet {}",
        chain.url,
        fmt_dur(anvil_up),
        fmt_dur(deployed),
        chain.usdc,
        chain.settlement,
        short(&chain.relayer.to_checksum()),
        chain.keystore.display(),
        short(&chain.platform.to_checksum()),
    );
    let ports = (0..replicas)
        .map(|_| free_port())
        .collect::<anyhow::Result<Vec<u16>>>()?;
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let url = urls[0].clone();
    let mqtt = Broker::new(&dir)?;
    // Several replicas share PostgreSQL and the secrets that sign cookies
    // and media tokens; one keeps its SQLite file.
    let (postgres, store) = if replicas > 1 {
        let cluster = crate::postgres::Cluster::init(&dir, free_port()?)?;
        let proc = Proc::spawn(
            "postgres",
            &mut cluster.command(),
            &dir,
            "postgres.log",
            Piped::No,
        )?;
        let up = cluster.wait_listening()?;
        println!(
            "    PostgreSQL on 127.0.0.1:{} in {} (throwaway cluster in {})",
            cluster.port,
            fmt_dur(up),
            cluster.data.display()
        );
        let secret = || {
            let bytes: [u8; 32] = rand::random();
            hex::encode(bytes)
        };
        (
            Some(proc),
            StoreSetting::Shared {
                url: cluster.url(),
                cookie_secret: secret(),
                token_secret: secret(),
            },
        )
    } else {
        (None, StoreSetting::File)
    };
    let configs: Vec<PathBuf> = (0..replicas)
        .map(|i| dir.join(format!("{}.toml", REPLICA_NAMES[i])))
        .collect();
    for (config, port) in configs.iter().zip(&ports) {
        write_config(config, &dir, *port, &chain, &mqtt, &store)?;
    }
    let config = configs[0].clone();
    mqtt.write_conf(&bins, &config)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;

    header(
        "lx demo: one session from request to its final meter, served by a simulated drone with a camera",
    );
    let mut servers = configs
        .iter()
        .enumerate()
        .map(|(i, config)| {
            Proc::spawn(
                REPLICA_NAMES[i],
                Command::new(&bins.server)
                    .arg("--config")
                    .arg(config)
                    .env(chain::PASSWORD_ENV, &chain.password)
                    .env(MQTT_PASSWORD_ENV, &mqtt.password),
                &dir,
                &format!("{}.log", REPLICA_NAMES[i]),
                Piped::No,
            )
        })
        .collect::<anyhow::Result<Vec<Proc>>>()?;
    let server = servers.remove(0);
    if replicas > 1 {
        println!(
            "    {replicas} replicas of lx-server on one PostgreSQL: {}; the demo's API calls alternate between them",
            urls.join(", ")
        );
    }
    let mut demo = Demo {
        dir,
        url,
        bins,
        gps_log,
        chain,
        procs: Procs {
            agent: None,
            replay: None,
            fleet_view: None,
            server,
            replicas: servers,
            broker: None,
            postgres,
            chain: Some(chain_proc),
        },
        mqtt,
    };
    let outcome = runtime.block_on(async {
        let mut ready = Duration::ZERO;
        for (proc, url) in std::iter::once(&mut demo.procs.server)
            .chain(demo.procs.replicas.iter_mut())
            .zip(&urls)
        {
            ready = ready.max(
                proc.wait_ready(&Api::new(std::slice::from_ref(url))?)
                    .await?,
            );
        }
        let api = Api::new(&urls)?;
        let done = walk(&api, ready, &mut demo).await?;
        if urls.len() > 1 {
            report_replicas(&api, &demo)?;
        }
        Ok::<_, anyhow::Error>(done)
    });
    let done = match outcome {
        Ok(done) => done,
        Err(err) => {
            demo.procs.print_log_tails(30);
            // Dropping `demo` stops the agent, the replay and the server.
            return Err(err);
        }
    };
    if keep {
        leave_running(&mut demo, &done);
        return Ok(());
    }
    let procs = &mut demo.procs;
    if let Some(mut view) = procs.fleet_view.take() {
        // A client with nothing to save.
        let _ = view.detach_and_kill();
    }
    for proc in [
        procs.agent.as_mut(),
        procs.replay.as_mut(),
        Some(&mut procs.server),
    ]
    .into_iter()
    .flatten()
    .chain(procs.replicas.iter_mut())
    .chain(
        [
            procs.broker.as_mut(),
            procs.postgres.as_mut(),
            procs.chain.as_mut(),
        ]
        .into_iter()
        .flatten(),
    ) {
        let t = Instant::now();
        let how = proc.stop()?;
        line(proc.who, &format!("SIGTERM → {how}"), t.elapsed());
    }
    println!(
        "    demo done in {}; data and logs (server, agent, replay) in {}",
        fmt_dur(started.elapsed()),
        demo.dir.display()
    );
    Ok(())
}

/// With `--replicas`: which replica did what, from the calls each answered
/// and what each one's log says it took on.
fn report_replicas(api: &Api, demo: &Demo) -> anyhow::Result<()> {
    header("which replica did what");
    let agent_log = std::fs::read_to_string(demo.dir.join("agent.log")).unwrap_or_default();
    for (i, url) in api.bases.iter().enumerate() {
        let name = REPLICA_NAMES[i];
        let log = std::fs::read_to_string(demo.dir.join(format!("{name}.log")))
            .with_context(|| format!("reading {name}.log"))?;
        let mut did = vec![format!(
            "answered {} of the walk's API calls",
            api.served[i].load(std::sync::atomic::Ordering::Relaxed)
        )];
        if agent_log
            .lines()
            .any(|l| l.contains("video published") && l.contains(&format!("resource={url}/")))
        {
            did.push("carried the session's media (WHIP ingest, frames)".into());
        }
        if log.contains("this replica ingests the devices' telemetry") {
            did.push(
                "held the telemetry lease: stored the drone's signed samples from MQTT".into(),
            );
        }
        if log
            .lines()
            .any(|l| l.contains("holding the lease") && l.contains("relayer"))
        {
            did.push("held the relayer lease: settled on chain".into());
        }
        println!("    {name:<9} {url}: {}", did.join("; "));
    }
    Ok(())
}

/// `--keep`: the three processes outlive us; say how to reach and stop them.
fn leave_running(demo: &mut Demo, done: &Done) {
    let url = &demo.url;
    let procs = &mut demo.procs;
    let agent = procs.agent.as_mut().map(Proc::detach).unwrap_or_default();
    let replay = procs.replay.as_mut().map(Proc::detach).unwrap_or_default();
    let server = procs.server.detach();
    let broker = procs.broker.as_mut().map(Proc::detach).unwrap_or_default();
    let fleet_view = procs
        .fleet_view
        .as_mut()
        .map(Proc::detach)
        .unwrap_or_default();
    let chain = procs.chain.as_mut().map(Proc::detach).unwrap_or_default();
    let replicas: Vec<String> = procs
        .replicas
        .iter_mut()
        .map(|p| p.detach().to_string())
        .collect();
    let postgres = procs.postgres.as_mut().map(Proc::detach);
    header("left running (--keep)");
    println!("    server     {url}  (health: {url}/api/v1/health), pid {server}");
    for (i, pid) in replicas.iter().enumerate() {
        println!(
            "    {:<10} pid {pid}, log {}.log",
            REPLICA_NAMES[i + 1],
            REPLICA_NAMES[i + 1]
        );
    }
    if let Some(pid) = postgres {
        println!("    postgres   pid {pid} (the replicas' store)");
    }
    let postgres = postgres.map(|p| p.to_string()).unwrap_or_default();
    println!("               OpenAPI {url}/api/v1/openapi.json");
    println!(
        "    agent      pid {agent}, device {}, health {}",
        done.device_id, done.agent_health
    );
    println!("               config {}", done.agent_config.display());
    println!(
        "    replay     pid {replay}, GPS on {} (log {})",
        done.pty,
        demo.gps_log.display()
    );
    println!(
        "    logs       {}/{{server,agent,replay}}.log",
        demo.dir.display()
    );
    println!("    consumer key  {}", done.consumer_key);
    println!(
        "    consumer   LX_SERVER={url} LX_API_KEY={} {}/lx session list",
        done.consumer_key,
        demo.bins.dir.display()
    );
    println!(
        "               MCP: `lx mcp` on stdio, or streamable HTTP at {url}/mcp with the key as Bearer"
    );
    println!("    supplier key  {}", done.supplier_key);
    println!(
        "    console    {url}/console/  (sign in with a browser wallet holding one of these throwaway demo keys)"
    );
    println!("               consumer wallet  {}", done.consumer_wallet);
    println!("               supplier wallet  {}", done.supplier_wallet);
    println!(
        "    try        curl -s -H 'Authorization: Bearer {}' {url}/api/v1/workspaces/{}/operators",
        done.supplier_key, done.supplier_id
    );
    println!(
        "    chain      {} (anvil, pid {chain}), LuxxonSettlement {}, USDC {}",
        demo.chain.url, demo.chain.settlement, demo.chain.usdc
    );
    println!(
        "    broker     {} (mosquitto, pid {broker}); fleet view pid {fleet_view} prints nothing more once detached",
        demo.mqtt.url()
    );
    let replicas = replicas.join(" ");
    println!(
        "    stop all   kill -TERM {agent} {fleet_view} {replay} {server} {replicas} {broker} {postgres} {chain}"
    );
}

/// What a finished walk hands back, for `--keep`.
struct Done {
    consumer_key: String,
    supplier_key: String,
    /// The wallets' private keys (fresh, local chain only), to import into
    /// a browser wallet and sign in to the web console.
    consumer_wallet: String,
    supplier_wallet: String,
    supplier_id: String,
    device_id: String,
    agent_health: String,
    agent_config: PathBuf,
    pty: String,
}

/// Everything the walk needs besides the HTTP client.
struct Demo {
    dir: PathBuf,
    url: String,
    bins: Bins,
    gps_log: PathBuf,
    chain: chain::DemoChain,
    procs: Procs,
    mqtt: Broker,
}

/// The demo's child processes. Fields drop in declaration order, so on an
/// early return the agent stops first (it talks to the server and reads the
/// pty), then the replay, then the server.
struct Procs {
    agent: Option<Proc>,
    /// `mosquitto_sub` printing the devices' status lines.
    fleet_view: Option<Proc>,
    replay: Option<Proc>,
    server: Proc,
    /// The other replicas of the server, with `--replicas`.
    replicas: Vec<Proc>,
    /// After the server, which says goodbye on it.
    broker: Option<Proc>,
    /// The replicas' shared store, after them.
    postgres: Option<Proc>,
    /// Last: the server settles on it until it stops.
    chain: Option<Proc>,
}

impl Procs {
    fn print_log_tails(&self, lines: usize) {
        for proc in [
            self.agent.as_ref(),
            self.replay.as_ref(),
            Some(&self.server),
        ]
        .into_iter()
        .flatten()
        .chain(&self.replicas)
        .chain(
            [self.broker.as_ref(), self.chain.as_ref()]
                .into_iter()
                .flatten(),
        ) {
            proc.print_log_tail(lines);
        }
    }
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

async fn walk(api: &Api, ready: Duration, demo: &mut Demo) -> anyhow::Result<Done> {
    let url = demo.url.clone();
    let health = api
        .ok(Method::GET, "/api/v1/health", Auth::None, None)
        .await?;
    line(
        "server",
        &format!(
            "{url} ready (pid {}, version {}, store {})",
            demo.procs.server.pid(),
            str_of(&health, "version")?,
            str_of(&health, "store")?,
        ),
        ready,
    );

    let t = Instant::now();
    demo.procs.broker = Some(demo.mqtt.start(&demo.dir)?);
    line(
        "broker",
        &format!(
            "mosquitto on {} with the accounts and ACL lx-server wrote to {}: each device reaches its own topics only",
            demo.mqtt.url(),
            demo.mqtt.dir.display()
        ),
        t.elapsed(),
    );

    let consumer = Party::new("consumer");
    let supplier = Party::new("supplier");

    // 1. Workspaces, created by a wallet signature over a challenge.
    let t = Instant::now();
    let consumer_ws = create_workspace(api, &consumer, "demo-consumer", "CONSUMER").await?;
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
    let supplier_ws = create_workspace(api, &supplier, "demo-drones", "SUPPLIER").await?;
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
    let supplier_slug = str_of(&supplier_ws, "slug")?.to_owned();

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

    // The consumer's pool, on chain: credit is what it holds.
    let t = Instant::now();
    demo.chain
        .fund(&consumer.key, MINTED_MICRO_USDC, POOL_MICRO_USDC)?;
    let before = Balances::read(&demo.chain, consumer.address, supplier.address)?;
    line(
        consumer.who,
        &format!(
            "on chain: gas money, {} test USDC, and deposit({}) into LuxxonSettlement: pool {} USDC",
            usdc(MINTED_MICRO_USDC),
            POOL_MICRO_USDC,
            usdc(before.pool)
        ),
        t.elapsed(),
    );

    // The consumer caps the rate any settlement of its pool may use: the
    // contract refuses a settlement above it, and the server a session.
    let t = Instant::now();
    demo.chain.set_cap(&consumer.key, RATE_CAP_MICRO_USDC)?;
    let wallet = credit_line(api, &consumer_key).await?;
    line(
        consumer.who,
        &format!("setMaxRatePerSecond({RATE_CAP_MICRO_USDC}) on chain; GET /wallet: {wallet}"),
        t.elapsed(),
    );

    // 3. The drone's GPS: a real receiver's log, read once here so that the
    //    coverage and the request sit where the drone will be.
    let t = Instant::now();
    let log = GpsLog::read(&demo.gps_log)?;
    let first = log.first_fix();
    let home = (first.lat, first.lng);
    line(
        "gps log",
        &format!(
            "{} ({}): {} fixes over {:.0} s, none lost; first {} {}",
            GPS_LOG,
            log.about(),
            log.epochs,
            log.span_s,
            fmt_pos(home.0, home.1),
            describe_fix(first),
        ),
        t.elapsed(),
    );

    // 4. The supplier goes ONLINE over the log's location.
    let t = Instant::now();
    let online = api
        .ok(
            Method::PATCH,
            &format!("/api/v1/workspaces/{supplier_id}"),
            Auth::Key(&supplier_key),
            Some(json!({
                "availabilityState": "ONLINE",
                "coverageLat": home.0,
                "coverageLng": home.1,
                "coverageRadiusMeters": COVERAGE_RADIUS_M,
                "deviceKind": "DRONE",
                "autoAccept": true,
            })),
        )
        .await?;
    line(
        supplier.who,
        &format!(
            "{} {}: coverage {} m around the log's first fix, auto-accept",
            str_of(&online, "deviceKind")?,
            str_of(&online, "availabilityState")?,
            COVERAGE_RADIUS_M,
        ),
        t.elapsed(),
    );

    // 5. The drone: its GPS replayed into a pty, an agent enrolled and running.
    let device = bring_up_device(api, demo, &supplier_id, &supplier_key).await?;

    // 6. The consumer prices the request and creates the session.
    let point = (home.0 + POINT_OFFSET_M / M_PER_DEG_LAT, home.1);
    let t = Instant::now();
    let quote = api
        .ok(
            Method::GET,
            &format!(
                "/api/v1/pricing/quote?lat={}&lng={}&durationSeconds={DURATION_S}",
                point.0, point.1
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
            "quote at {} ({POINT_OFFSET_M:.0} m north of the drone) for {DURATION_S} s: {rate} µUSDC/s (supply ×{:.2}, demand ×{:.2}, corridor ×{:.2}), at most {} USDC, locked until {}",
            fmt_pos(point.0, point.1),
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
                "lat": point.0,
                "lng": point.1,
                "maxDurationSeconds": DURATION_S,
                "geofenceRadiusMeters": GEOFENCE_RADIUS_M,
                "quoteId": quote_id,
            })),
        )
        .await?;
    let session_id = str_of(&session, "id")?.to_owned();
    expect_state(&session, "REQUESTED")?;
    line(
        consumer.who,
        &format!(
            "session {session_id} REQUESTED, geofence {} m, hold {} USDC of the {} USDC pool (read on chain); {}",
            u64_of(&session, "geofenceRadiusMeters")?,
            usdc(u64_of(&session, "holdMicroUsdc")?),
            usdc(before.pool),
            credit_line(api, &consumer_key).await?,
        ),
        t.elapsed(),
    );

    // 7. Dispatch: the covering supplier, and in its fleet the nearest
    //    connected ONLINE device.
    let t = Instant::now();
    let assigned = api
        .ok(
            Method::POST,
            &format!("/api/v1/sessions/{session_id}/dispatch"),
            Auth::Key(&consumer_key),
            None,
        )
        .await?;
    let dispatched_at = Instant::now();
    let took = t.elapsed();
    let dispatched_by = api.by();
    expect_state(&assigned, "ASSIGNED")?;
    let operator_ws = assigned
        .get("operatorWorkspaceId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if operator_ws != supplier_id {
        bail!("dispatch assigned workspace '{operator_ws}', expected the supplier {supplier_id}");
    }
    let operator = assigned
        .get("operatorId")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if operator != device.id {
        bail!(
            "dispatch gave the session to device '{operator}', expected {DEVICE_NAME} ({})",
            device.id
        );
    }
    let busy = api
        .ok(
            Method::GET,
            &format!("/api/v1/workspaces/{supplier_id}"),
            Auth::Key(&supplier_key),
            None,
        )
        .await?;
    let drone = operator_by_id(api, &supplier_id, &supplier_key, &device.id).await?;
    line(
        consumer.who,
        &format!(
            "dispatch{dispatched_by} → ASSIGNED to {supplier_slug}, device {DEVICE_NAME} (operatorId {operator}), its nearest connected ONLINE drone; supplier now {}, drone {}",
            str_of(&busy, "availabilityState")?,
            str_of(&drone, "availabilityState")?,
        ),
        took,
    );

    // 8. Video: the agent starts the session and publishes its camera over
    //    WHIP; the server turns it LIVE on the first decoded frame.
    let t = Instant::now();
    let published = wait_for_log(
        &demo.procs.agent_log()?,
        &[
            "video published",
            "start refused",
            "video: publishing again",
        ],
        Duration::from_secs(15),
    )
    .await?;
    if !published.starts_with("video published") {
        bail!("the agent did not publish its video; agent.log: \"{published}\"");
    }
    let live = wait_for_session(
        api,
        &consumer_key,
        &session_id,
        Duration::from_secs(15),
        "LIVE",
        |s| s.get("state").and_then(Value::as_str) == Some("LIVE"),
    )
    .await?;
    let to_live = dispatched_at.elapsed();
    line(
        "agent",
        &format!(
            "started the session and published its test camera over WHIP ({VIDEO_CODEC}, {}x{} at 30 fps)",
            VIDEO_SIZE.0, VIDEO_SIZE.1
        ),
        t.elapsed(),
    );
    line(
        consumer.who,
        &format!(
            "session LIVE at {} on the first decoded frame, {} after dispatch",
            str_of(&live, "startedAt")?,
            fmt_dur(to_live)
        ),
        Duration::ZERO,
    );
    let t = Instant::now();
    let viewer = api
        .ok(
            Method::GET,
            &format!("/api/v1/sessions/{session_id}/viewer-token"),
            Auth::Key(&consumer_key),
            None,
        )
        .await?;
    let whep_url = str_of(&viewer, "whepUrl")?.to_owned();
    line(
        consumer.who,
        &format!("watch it over WHEP (any WHEP player; the URL is the credential): {whep_url}"),
        t.elapsed(),
    );

    // 9. The latest frame, as an agent that speaks no WebRTC reads it: with
    // the consumer's command line, `lx frame`.
    let t = Instant::now();
    let frame_path = demo.dir.join("frame.jpg");
    let out = tokio::process::Command::new(&demo.bins.lx)
        .args(["frame", &session_id, "-o"])
        .arg(&frame_path)
        .env("LX_SERVER", &demo.url)
        .env("LX_API_KEY", &consumer_key)
        .output()
        .await
        .with_context(|| format!("running {}", demo.bins.lx.display()))?;
    if !out.status.success() {
        bail!(
            "`lx frame` failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let jpeg =
        std::fs::read(&frame_path).with_context(|| format!("reading {}", frame_path.display()))?;
    let size = jpeg_size(&jpeg)
        .map(|(w, h)| format!("{w}x{h}"))
        .unwrap_or_else(|| "unknown size".into());
    line(
        consumer.who,
        &format!(
            "lx frame {{id}} -o frame.jpg (GET /sessions/{{id}}/frame) → {} bytes of JPEG, {size}, saved to {}",
            jpeg.len(),
            frame_path.display()
        ),
        t.elapsed(),
    );

    // 10. The consumer reads the drone's verified track.
    let rest = TRACK_WAIT.saturating_sub(dispatched_at.elapsed());
    tokio::time::sleep(rest).await;
    let t = Instant::now();
    let track = api
        .ok(
            Method::GET,
            &format!("/api/v1/sessions/{session_id}/telemetry?limit=1000"),
            Auth::Key(&consumer_key),
            None,
        )
        .await?;
    report_track(&track, &log, point, dispatched_at.elapsed(), t.elapsed())?;
    let t = Instant::now();
    let health = AgentHealth::fetch(api, &device.health).await?;
    let refusal = if health.refused > 0 {
        let log = demo.procs.agent_log()?;
        let needle = ["server refused telemetry"];
        match wait_for_log(&log, &needle, Duration::from_secs(2)).await {
            Ok(said) => format!("; agent.log: \"{said}\""),
            Err(_) => format!("; see {}", log.display()),
        }
    } else {
        String::new()
    };
    line("agent", &format!("{health}{refusal}"), t.elapsed());

    // 11. The end: the meter over every second from LIVE, final once late
    //     samples have had `settle_delay_seconds` to arrive.
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
    expect_state(&ended, "ENDED")?;
    let released = api
        .ok(
            Method::GET,
            &format!("/api/v1/workspaces/{supplier_id}"),
            Auth::Key(&supplier_key),
            None,
        )
        .await?;
    let drone = operator_by_id(api, &supplier_id, &supplier_key, &device.id).await?;
    line(
        consumer.who,
        &format!(
            "end → ENDED at {}; supplier {}, drone {} again",
            ended.get("endedAt").and_then(Value::as_str).unwrap_or("-"),
            str_of(&released, "availabilityState")?,
            str_of(&drone, "availabilityState")?,
        ),
        took,
    );
    let t = Instant::now();
    let settled = wait_for_session(
        api,
        &consumer_key,
        &session_id,
        Duration::from_secs(SETTLE_DELAY_S + 10),
        "metered for good",
        |s| s.get("meterFinal").and_then(Value::as_bool) == Some(true),
    )
    .await?;
    let meter = settled
        .get("meter")
        .filter(|m| !m.is_null())
        .context("an ENDED session without a meter")?;
    line(
        consumer.who,
        &format!(
            "final meter ({SETTLE_DELAY_S} s after the end): {} clean s, {} failed s → charged {} USDC at {rate} µUSDC/s; fee {} USDC ({} bps), operator earns {} USDC{}",
            u64_of(meter, "cleanSeconds")?,
            u64_of(meter, "failedSeconds")?,
            usdc(u64_of(meter, "chargedMicroUsdc")?),
            usdc(u64_of(meter, "feeMicroUsdc")?),
            u64_of(meter, "feeBps")?,
            usdc(u64_of(meter, "operatorEarnedMicroUsdc")?),
            describe_windows(&settled),
        ),
        t.elapsed(),
    );

    // 12. The relayer settles the final meter on chain.
    let t = Instant::now();
    let settled =
        wait_for_settlement(api, &consumer_key, &session_id, Duration::from_secs(30)).await?;
    line(
        "relayer",
        &format!(
            "settlement CONFIRMED: tx {} in block {} (sequence {}), {} USDC to the operator and {} USDC fee",
            str_of(&settled, "txHash")?,
            u64_of(&settled, "blockNumber")?,
            u64_of(&settled, "sequence")?,
            usdc(u64_of(&settled, "toAmountMicroUsdc")?),
            usdc(u64_of(&settled, "feeAmountMicroUsdc")?),
        ),
        t.elapsed(),
    );
    let after = Balances::read(&demo.chain, consumer.address, supplier.address)?;
    line(
        consumer.who,
        &format!(
            "after the settlement, GET /wallet: {}",
            credit_line(api, &consumer_key).await?
        ),
        Duration::ZERO,
    );
    for (who, was, is) in [
        ("consumer pool", before.pool, after.pool),
        ("operator USDC", before.operator, after.operator),
        ("fee wallet   ", before.fee_wallet, after.fee_wallet),
    ] {
        println!(
            "            {who}  {} → {} USDC ({}{})",
            usdc(was),
            usdc(is),
            if is >= was { "+" } else { "-" },
            usdc(is.abs_diff(was))
        );
    }

    Ok(Done {
        consumer_key,
        supplier_key,
        consumer_wallet: chain::hex_key(&consumer.key),
        supplier_wallet: chain::hex_key(&supplier.key),
        supplier_id,
        device_id: device.id,
        agent_health: device.health,
        agent_config: device.config,
        pty: device.pty,
    })
}

/// The enrolled, running, connected drone.
struct Device {
    id: String,
    health: String,
    config: PathBuf,
    pty: String,
}

/// Starts the replay, enrolls and runs the agent on it, and waits until the
/// server sees the device connected with a verified position.
async fn bring_up_device(
    api: &Api,
    demo: &mut Demo,
    supplier_id: &str,
    supplier_key: &str,
) -> anyhow::Result<Device> {
    let t = Instant::now();
    let minted = api
        .ok(
            Method::POST,
            &format!("/api/v1/workspaces/{supplier_id}/enrollment-tokens"),
            Auth::Key(supplier_key),
            None,
        )
        .await?;
    let token = str_of(&minted, "token")?.to_owned();
    line(
        "supplier",
        &format!(
            "enrollment token {}… for one device, valid until {}",
            token.chars().take(10).collect::<String>(),
            str_of(&minted, "expiresAt")?
        ),
        t.elapsed(),
    );

    let t = Instant::now();
    let mut replay = Proc::spawn(
        "replay",
        Command::new(&demo.bins.replay)
            .arg(&demo.gps_log)
            .arg("--loop"),
        &demo.dir,
        "replay.log",
        Piped::Stdout,
    )?
    // It has nothing to save, so it keeps the default action of SIGTERM.
    .ends_by_signal();
    let pty = replay.first_stdout_line(Duration::from_secs(10))?;
    let replay_pid = replay.pid();
    demo.procs.replay = Some(replay);
    line(
        "replay",
        &format!("lx-nmea-replay {GPS_LOG} --loop → GPS on {pty} (pid {replay_pid}), real time"),
        t.elapsed(),
    );

    let t = Instant::now();
    let health_port = free_port()?;
    let config = demo.dir.join("agent.toml");
    write_agent_config(&config, &demo.dir, &demo.url, &pty, health_port)?;
    let enroll_log = demo.dir.join("agent-enroll.log");
    let out =
        File::create(&enroll_log).with_context(|| format!("creating {}", enroll_log.display()))?;
    let status = Command::new(&demo.bins.agent)
        .arg("--config")
        .arg(&config)
        .args(["enroll", "--token", &token])
        .current_dir(&demo.dir)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("running lx-agent enroll")?;
    let said = std::fs::read_to_string(&enroll_log).unwrap_or_default();
    if !status.success() {
        bail!("lx-agent enroll failed ({status}):\n{said}");
    }
    let enrolled = said
        .lines()
        .find(|l| l.starts_with("enrolled as"))
        .unwrap_or("enrolled")
        .to_owned();
    line(
        "agent",
        &format!(
            "lx-agent enroll --token … → {enrolled} (device key in {})",
            demo.dir.join("agent-state").display()
        ),
        t.elapsed(),
    );

    demo.procs.fleet_view = Some(start_fleet_view(api, demo, supplier_id, supplier_key).await?);

    let t = Instant::now();
    let agent = Proc::spawn(
        "agent",
        Command::new(&demo.bins.agent)
            .arg("--config")
            .arg(&config)
            .arg("run"),
        &demo.dir,
        "agent.log",
        Piped::No,
    )?;
    let agent_pid = agent.pid();
    demo.procs.agent = Some(agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    let op = loop {
        if let Some(agent) = demo.procs.agent.as_mut() {
            agent.check_running()?;
        }
        if let Some(replay) = demo.procs.replay.as_mut() {
            replay.check_running()?;
        }
        let list = api
            .ok(
                Method::GET,
                &format!("/api/v1/workspaces/{supplier_id}/operators"),
                Auth::Key(supplier_key),
                None,
            )
            .await?;
        let found = list
            .as_array()
            .into_iter()
            .flatten()
            .find(|op| {
                op.get("name").and_then(Value::as_str) == Some(DEVICE_NAME)
                    && op.get("connected").and_then(Value::as_bool) == Some(true)
                    && op.get("position").is_some_and(|p| !p.is_null())
            })
            .cloned();
        if let Some(op) = found {
            break op;
        }
        if Instant::now() > deadline {
            bail!(
                "{DEVICE_NAME} was not connected with a position within 30 s of `lx-agent run` (see {})",
                demo.dir.join("agent.log").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = t.elapsed();
    let position = op.get("position").unwrap_or(&Value::Null);
    let health = format!("http://127.0.0.1:{health_port}/healthz");
    let healthz = AgentHealth::fetch(api, &health).await?;
    line(
        "device",
        &format!(
            "lx-agent run (pid {agent_pid}) → {DEVICE_NAME} {} and connected: signed position {} ±{:.1} m at {}, key {}; agent {healthz}",
            str_of(&op, "availabilityState")?,
            fmt_pos(num_of(position, "lat")?, num_of(position, "lng")?),
            num_of(position, "accuracyMeters")?,
            str_of(position, "capturedAt")?,
            short(str_of(&op, "address")?),
        ),
        took,
    );
    Ok(Device {
        id: str_of(&op, "id")?.to_owned(),
        health,
        config,
        pty,
    })
}

/// The demo's Mosquitto: a free loopback port, its files under `mqtt/`.
struct Broker {
    dir: PathBuf,
    port: u16,
    password: String,
}

impl Broker {
    fn new(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.join("mqtt");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let password = hex::encode(rand::random::<[u8; 16]>());
        Ok(Self {
            dir,
            port: free_port()?,
            password,
        })
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// `lx-server mosquitto-config`: the broker's config for the server's files.
    fn write_conf(&self, bins: &Bins, server_config: &Path) -> anyhow::Result<()> {
        let user = Command::new("id").arg("-un").output()?;
        let user = String::from_utf8_lossy(&user.stdout).trim().to_owned();
        let out = Command::new(&bins.server)
            .arg("--config")
            .arg(server_config)
            .arg("mosquitto-config")
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--persistence-dir")
            .arg(&self.dir)
            .args(["--user", &user])
            .env(MQTT_PASSWORD_ENV, &self.password)
            .output()
            .context("running lx-server mosquitto-config")?;
        if !out.status.success() {
            bail!(
                "lx-server mosquitto-config failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(&conf, &out.stdout).with_context(|| format!("writing {}", conf.display()))
    }

    /// Starts Mosquitto once the server has written its accounts.
    fn start(&self, demo_dir: &Path) -> anyhow::Result<Proc> {
        let passwords = self.dir.join("passwords");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !passwords.exists() {
            if Instant::now() > deadline {
                bail!("lx-server wrote no {} within 10 s", passwords.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let proc = Proc::spawn(
            "broker",
            Command::new("mosquitto")
                .arg("-c")
                .arg(self.dir.join("mosquitto.conf")),
            demo_dir,
            "mosquitto.log",
            Piped::No,
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("mosquitto did not listen on {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(proc)
    }
}

/// The fleet manager's view: its own broker account, and `mosquitto_sub`
/// on every device's retained status, a line each time one changes.
async fn start_fleet_view(
    api: &Api,
    demo: &Demo,
    supplier_id: &str,
    supplier_key: &str,
) -> anyhow::Result<Proc> {
    let t = Instant::now();
    let account = api
        .ok(
            Method::POST,
            &format!("/api/v1/workspaces/{supplier_id}/mqtt-credentials"),
            Auth::Key(supplier_key),
            None,
        )
        .await?;
    let user = str_of(&account, "username")?.to_owned();
    let mut view = Proc::spawn(
        "fleet",
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &demo.mqtt.port.to_string()])
            .args(["-u", &user, "-P", str_of(&account, "password")?])
            .args(["-q", "1", "-v", "-t", "lx/v1/operators/+/status"]),
        &demo.dir,
        "fleet-view.log",
        Piped::Stdout,
    )?
    .ends_by_signal();
    let stdout = view.take_stdout()?;
    std::thread::spawn(move || print_fleet_view(stdout));
    line(
        "fleet",
        &format!(
            "account {user} issued; mosquitto_sub follows lx/v1/operators/+/status (each change below)"
        ),
        t.elapsed(),
    );
    Ok(view)
}

/// Prints a device's status line whenever what it is doing changes.
fn print_fleet_view(stdout: std::process::ChildStdout) {
    let mut last: std::collections::HashMap<String, String> = Default::default();
    for text in BufReader::new(stdout).lines().map_while(Result::ok) {
        let Some((topic, payload)) = text.split_once(' ') else {
            continue;
        };
        let Ok(status) = serde_json::from_str::<lx_protocol::mqtt::StatusMessage>(payload) else {
            continue;
        };
        let device = topic.split('/').nth(3).unwrap_or("?").to_owned();
        let key = format!(
            "{} {:?} {:?}",
            status.state.as_str(),
            status.session_id,
            status.availability
        );
        if last.get(&device) == Some(&key) {
            continue;
        }
        last.insert(device.clone(), key);
        println!(
            "  {:<9} {}… {}",
            "fleet",
            device.chars().take(8).collect::<String>(),
            status.summary()
        );
    }
}

/// The agent's own account, from its `GET /healthz`.
struct AgentHealth {
    status: u16,
    state: String,
    has_fix: bool,
    signed: u64,
    sent: u64,
    refused: u64,
}

impl AgentHealth {
    async fn fetch(api: &Api, url: &str) -> anyhow::Result<Self> {
        let response = api
            .http
            .get(url)
            .send()
            .await
            .with_context(|| format!("GET {url}: no answer"))?;
        let status = response.status().as_u16();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("GET {url}: not JSON"))?;
        let telemetry = body.get("telemetry").unwrap_or(&Value::Null);
        Ok(Self {
            status,
            state: str_of(&body, "status")?.to_owned(),
            has_fix: body.get("hasFix").and_then(Value::as_bool) == Some(true),
            signed: u64_of(telemetry, "signed")?,
            sent: u64_of(telemetry, "sent")?,
            refused: u64_of(telemetry, "refused")?,
        })
    }
}

impl fmt::Display for AgentHealth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/healthz {} {} ({}, samples signed {}, sent {}, refused {})",
            self.status,
            self.state,
            if self.has_fix { "has a fix" } else { "no fix" },
            self.signed,
            self.sent,
            self.refused
        )
    }
}

async fn operator_by_id(
    api: &Api,
    workspace_id: &str,
    key: &str,
    id: &str,
) -> anyhow::Result<Value> {
    let list = api
        .ok(
            Method::GET,
            &format!("/api/v1/workspaces/{workspace_id}/operators"),
            Auth::Key(key),
            None,
        )
        .await?;
    list.as_array()
        .into_iter()
        .flatten()
        .find(|op| op.get("id").and_then(Value::as_str) == Some(id))
        .cloned()
        .with_context(|| format!("device {id} is not in the fleet list: {list}"))
}

/// Prints what the consumer sees of the track, and checks it against the log
/// and the geofence.
fn report_track(
    track: &Value,
    log: &GpsLog,
    point: (f64, f64),
    flown: Duration,
    took: Duration,
) -> anyhow::Result<()> {
    let samples = track.as_array().map(Vec::as_slice).unwrap_or_default();
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        bail!(
            "no verified telemetry for the session {} after dispatch (see agent.log)",
            fmt_dur(flown)
        );
    };
    let mut accuracy = (f64::INFINITY, 0.0_f64);
    let mut distance = (f64::INFINITY, 0.0_f64);
    let mut from_log = 0;
    let mut sources = Vec::new();
    for s in samples {
        let (lat, lng) = (num_of(s, "lat")?, num_of(s, "lng")?);
        let acc = num_of(s, "accuracyMeters")?;
        accuracy = (accuracy.0.min(acc), accuracy.1.max(acc));
        let d = metres_between((lat, lng), point);
        distance = (distance.0.min(d), distance.1.max(d));
        if log.has_position(lat, lng) {
            from_log += 1;
        }
        let source = str_of(s, "source")?;
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    let at = |s: &Value| -> anyhow::Result<String> {
        Ok(format!(
            "{} at {}",
            fmt_pos(num_of(s, "lat")?, num_of(s, "lng")?),
            str_of(s, "capturedAt")?
        ))
    };
    line(
        "consumer",
        &format!(
            "verified track {} after dispatch: {} samples (sequence {}–{}), source {}, accuracy {:.1}–{:.1} m",
            fmt_dur(flown),
            samples.len(),
            u64_of(first, "sequence")?,
            u64_of(last, "sequence")?,
            sources.join(", "),
            accuracy.0,
            accuracy.1,
        ),
        took,
    );
    println!("{:12}first {}", "", at(first)?);
    println!("{:12}last  {}", "", at(last)?);
    let fence = f64::from(GEOFENCE_RADIUS_M);
    println!(
        "{:12}{} {:.1}–{:.1} m from the requested point (geofence {GEOFENCE_RADIUS_M} m); {}/{} are positions of the log to 1e-7°",
        "",
        if distance.1 <= fence {
            "all inside the geofence,"
        } else {
            "NOT all inside the geofence:"
        },
        distance.0,
        distance.1,
        from_log,
        samples.len(),
    );
    Ok(())
}

/// Waits until `log` has a line containing one of `needles`; returns that
/// line from the needle on (without the timestamp and level).
/// The three balances a settlement moves.
struct Balances {
    pool: u64,
    operator: u64,
    fee_wallet: u64,
}

impl Balances {
    fn read(
        chain: &chain::DemoChain,
        consumer: Address,
        operator: Address,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            pool: chain.pool_of(consumer)?,
            operator: chain.usdc_of(operator)?,
            fee_wallet: chain.usdc_of(chain.platform)?,
        })
    }
}

/// Polls `GET /settlements/{id}` until CONFIRMED; a FAILED one is an error.
/// The consumer's credit as `GET /wallet` tells it, on one line.
async fn credit_line(api: &Api, key: &str) -> anyhow::Result<String> {
    let w = api
        .ok(Method::GET, "/api/v1/wallet", Auth::Key(key), None)
        .await?;
    let cap = match w.get("maxRatePerSecondMicroUsdc").and_then(Value::as_u64) {
        Some(cap) => format!("{cap} µUSDC/s"),
        None => "none".to_owned(),
    };
    Ok(format!(
        "pool {} USDC, cap {cap}, held {} USDC, unsettled {} USDC, debts {}, available credit {} USDC",
        usdc(u64_of(&w, "poolMicroUsdc")?),
        usdc(u64_of(&w, "heldMicroUsdc")?),
        usdc(u64_of(&w, "unsettledMicroUsdc")?),
        w.get("debts").and_then(Value::as_array).map_or(0, Vec::len),
        usdc(u64_of(&w, "availableCreditMicroUsdc")?),
    ))
}

async fn wait_for_settlement(
    api: &Api,
    key: &str,
    id: &str,
    within: Duration,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let s = api
            .ok(
                Method::GET,
                &format!("/api/v1/settlements/{id}"),
                Auth::Key(key),
                None,
            )
            .await?;
        match s.get("state").and_then(Value::as_str) {
            Some("CONFIRMED") => return Ok(s),
            Some(state @ ("FAILED" | "UNPAID")) => bail!("the settlement of {id} is {state}: {s}"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("the settlement of {id} is not CONFIRMED after {within:?}: {s}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Polls the session until `done` holds for it; `what` names the wait.
async fn wait_for_session(
    api: &Api,
    key: &str,
    id: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + within;
    loop {
        let session = api
            .ok(
                Method::GET,
                &format!("/api/v1/sessions/{id}"),
                Auth::Key(key),
                None,
            )
            .await?;
        if done(&session) {
            return Ok(session);
        }
        if Instant::now() > deadline {
            bail!(
                "session {id} is {} after {within:?}, still not {what}",
                session.get("state").and_then(Value::as_str).unwrap_or("?")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `; not billed: …` for a session's windows, or nothing.
fn describe_windows(session: &Value) -> String {
    let windows: Vec<String> = session
        .get("windows")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|w| {
            format!(
                "{} {}–{}",
                w.get("reason").and_then(Value::as_str).unwrap_or("?"),
                w.get("openedAt").and_then(Value::as_str).unwrap_or("?"),
                w.get("closedAt").and_then(Value::as_str).unwrap_or("end"),
            )
        })
        .collect();
    if windows.is_empty() {
        String::new()
    } else {
        format!("; not billed: {}", windows.join(", "))
    }
}

/// Width and height from a JPEG's start-of-frame segment.
fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    let mut at = 2;
    while at + 9 < jpeg.len() {
        if jpeg[at] != 0xFF {
            return None;
        }
        let marker = jpeg[at + 1];
        let len = usize::from(u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]));
        if matches!(marker, 0xC0..=0xC3) {
            let h = u16::from_be_bytes([jpeg[at + 5], jpeg[at + 6]]);
            let w = u16::from_be_bytes([jpeg[at + 7], jpeg[at + 8]]);
            return Some((w, h));
        }
        at += 2 + len;
    }
    None
}

async fn wait_for_log(log: &Path, needles: &[&str], within: Duration) -> anyhow::Result<String> {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text.lines().find_map(|l| {
            needles
                .iter()
                .find_map(|n| l.find(n))
                .map(|at| l[at..].trim().to_owned())
        });
        if let Some(found) = found {
            return Ok(found);
        }
        if Instant::now() > deadline {
            bail!(
                "{} has no line with {needles:?} after {within:?}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// --------------------------------------------------------------- GPS log

/// The replayed log as lx-hal's tracker reads it.
struct GpsLog {
    /// `# Chipset:` (else `# Name:`) of gpsd's log header.
    receiver: Option<String>,
    /// `# Location:` of the header.
    place: Option<String>,
    /// Every fix the tracker output, in order (an epoch may update its fix).
    fixes: Vec<Fix>,
    /// Receiver epochs (distinct UTC times) with a fix.
    epochs: usize,
    /// From the first fix's UTC time to the last one's.
    span_s: f64,
}

impl GpsLog {
    /// Reads `path` at its own pace (a virtual clock, nothing sleeps) and
    /// insists on a steady fix: one at least every epoch, never lost.
    fn read(path: &Path) -> anyhow::Result<Self> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut tracker = Tracker::default();
        let mut pacer = Pacer::new(1.0, Duration::from_secs(5))?;
        let mut now = Instant::now();
        let (mut receiver, mut place) = (None, None);
        let mut fixes = Vec::new();
        let mut lost = 0;
        for line in bytes.split_inclusive(|b| *b == b'\n') {
            if let Some(comment) = line.strip_prefix(b"#") {
                let text = String::from_utf8_lossy(comment);
                let field =
                    |name: &str| text.trim().strip_prefix(name).map(|v| v.trim().to_owned());
                receiver = receiver.or_else(|| field("Chipset:"));
                place = place.or_else(|| field("Location:"));
                continue;
            }
            now += pacer.delay_before(line);
            tracker.feed(line, now);
            while let Some(output) = tracker.poll_output() {
                match output {
                    Output::Fix(fix) => fixes.push(fix),
                    Output::FixLost { .. } => lost += 1,
                }
            }
        }
        let mut epochs: Vec<u64> = fixes.iter().filter_map(|f| f.utc_ms).collect();
        epochs.dedup();
        let span_s = match (epochs.first(), epochs.last()) {
            (Some(a), Some(b)) => (b - a) as f64 / 1000.0,
            _ => 0.0,
        };
        let epochs = epochs.len();
        if fixes.is_empty() || lost > 0 || epochs < 30 || span_s > 1.5 * epochs as f64 {
            bail!(
                "{} has no steady fix ({} fixes in {epochs} epochs over {span_s:.0} s, lost {lost} times)",
                path.display(),
                fixes.len()
            );
        }
        if let Some(odd) = fixes.iter().find(|f| !f.quality.is_measured()) {
            bail!(
                "{} has a fix that was not measured ({})",
                path.display(),
                quality_name(odd.quality)
            );
        }
        Ok(Self {
            receiver,
            place,
            fixes,
            epochs,
            span_s,
        })
    }

    /// The first epoch's fix once all of its sentences are in.
    fn first_fix(&self) -> &Fix {
        let first = &self.fixes[0];
        self.fixes
            .iter()
            .take_while(|f| f.utc_ms == first.utc_ms)
            .last()
            .unwrap_or(first)
    }

    fn about(&self) -> String {
        match (&self.receiver, &self.place) {
            (Some(r), Some(p)) => format!("{r}, {p}"),
            (Some(one), None) | (None, Some(one)) => one.clone(),
            (None, None) => "gpsd test log".to_owned(),
        }
    }

    /// True when a fix of the log is at (`lat`, `lng`) within 1e-7 degrees
    /// (the server keeps degrees × 1e7 as integers).
    fn has_position(&self, lat: f64, lng: f64) -> bool {
        const TOLERANCE: f64 = 1e-7 + 1e-12;
        self.fixes
            .iter()
            .any(|f| (f.lat - lat).abs() <= TOLERANCE && (f.lng - lng).abs() <= TOLERANCE)
    }
}

fn quality_name(q: Quality) -> &'static str {
    match q {
        Quality::NoFix => "no fix",
        Quality::Gps => "GPS",
        Quality::Dgps => "DGPS",
        Quality::Pps => "PPS",
        Quality::Rtk => "RTK fixed",
        Quality::FloatRtk => "RTK float",
        Quality::Estimated => "dead reckoning",
        Quality::Manual => "manual",
        Quality::Simulation => "simulation",
    }
}

/// `(DGPS, 12 satellites, ±1.3 m)`.
fn describe_fix(fix: &Fix) -> String {
    let mut parts = vec![quality_name(fix.quality).to_owned()];
    if let Some(n) = fix.satellites {
        parts.push(format!("{n} satellites"));
    }
    if let Some(acc) = fix.accuracy_m {
        parts.push(format!("±{acc:.1} m"));
    }
    format!("({})", parts.join(", "))
}

/// Great-circle distance (haversine, mean Earth radius).
fn metres_between(a: (f64, f64), b: (f64, f64)) -> f64 {
    const R: f64 = 6_371_008.8;
    let (la1, la2) = (a.0.to_radians(), b.0.to_radians());
    let dla = la2 - la1;
    let dlo = (b.1 - a.1).to_radians();
    let h = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
    2.0 * R * h.sqrt().asin()
}

fn fmt_pos(lat: f64, lng: f64) -> String {
    format!("{lat:.7},{lng:.7}")
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

/// The API of one server, or of several replicas taken in turn.
struct Api {
    http: reqwest::Client,
    bases: Vec<String>,
    next: std::sync::atomic::AtomicUsize,
    /// Which replica answered the latest call.
    last: std::sync::atomic::AtomicUsize,
    /// Calls each replica answered.
    served: Vec<std::sync::atomic::AtomicUsize>,
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
    fn new(bases: &[String]) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            http,
            bases: bases.to_vec(),
            next: std::sync::atomic::AtomicUsize::new(0),
            last: std::sync::atomic::AtomicUsize::new(0),
            served: bases
                .iter()
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
        })
    }

    /// " (by server-b)" after a call with several replicas; nothing with one.
    fn by(&self) -> String {
        if self.bases.len() < 2 {
            return String::new();
        }
        let last = self.last.load(std::sync::atomic::Ordering::Relaxed);
        format!(" (by {})", REPLICA_NAMES[last])
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Auth<'_>,
        body: Option<Value>,
    ) -> anyhow::Result<Reply> {
        let turn = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.bases.len();
        self.last.store(turn, std::sync::atomic::Ordering::Relaxed);
        self.served[turn].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.bases[turn]));
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

// ------------------------------------------------------------- processes

/// Where a child's stdout goes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Piped {
    /// Into its log, with stderr.
    No,
    /// A pipe we read (`lx-nmea-replay` prints its pty there); stderr to the log.
    Stdout,
}

/// A child process that is stopped with SIGTERM when dropped.
struct Proc {
    /// The name in the step lines.
    who: &'static str,
    child: Option<Child>,
    log: PathBuf,
    /// SIGTERM ends it by the signal rather than with exit 0.
    ends_by_signal: bool,
}

impl Proc {
    fn spawn(
        who: &'static str,
        cmd: &mut Command,
        dir: &Path,
        log_name: &str,
        piped: Piped,
    ) -> anyhow::Result<Self> {
        let log = dir.join(log_name);
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let stdout = match piped {
            Piped::No => Stdio::from(out.try_clone()?),
            Piped::Stdout => Stdio::piped(),
        };
        let child = cmd
            .current_dir(dir)
            // Plain-text logs, without terminal colour codes, at their
            // configured level.
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", crate::display(cmd)))?;
        Ok(Self {
            who,
            child: Some(child),
            log,
            ends_by_signal: false,
        })
    }

    fn ends_by_signal(mut self) -> Self {
        self.ends_by_signal = true;
        self
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or_default()
    }

    /// Fails if the process has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut()
            && let Some(status) = child.try_wait()?
        {
            self.child = None;
            bail!("{} exited ({status}); see {}", self.who, self.log.display());
        }
        Ok(())
    }

    /// Its piped stdout, to read elsewhere.
    fn take_stdout(&mut self) -> anyhow::Result<std::process::ChildStdout> {
        self.child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .with_context(|| format!("{}'s stdout is not piped", self.who))
    }

    /// Kills it without waiting for anything it might save.
    fn detach_and_kill(&mut self) -> std::io::Result<()> {
        match self.child.take() {
            Some(mut child) => {
                child.kill()?;
                child.wait().map(|_| ())
            }
            None => Ok(()),
        }
    }

    /// The first line the process prints on its piped stdout.
    fn first_stdout_line(&mut self, within: Duration) -> anyhow::Result<String> {
        let stdout = self
            .child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .with_context(|| format!("{}'s stdout is not piped", self.who))?;
        let (tx, rx) = std::sync::mpsc::channel();
        // A thread, so that a silent process cannot hang the demo; the pipe
        // closes when it ends (the replay prints nothing more there).
        std::thread::spawn(move || {
            let mut first = String::new();
            let read = BufReader::new(stdout).read_line(&mut first).map(|_| first);
            let _ = tx.send(read);
        });
        let first = match rx.recv_timeout(within) {
            Ok(read) => read.with_context(|| format!("reading {}'s stdout", self.who))?,
            Err(_) => bail!("{} printed nothing within {within:?}", self.who),
        };
        let first = first.trim().to_owned();
        if first.is_empty() {
            self.check_running()?;
            bail!("{} closed its stdout without a line", self.who);
        }
        Ok(first)
    }

    /// Polls `GET /api/v1/health` until it answers 200; returns how long that took.
    async fn wait_ready(&mut self, api: &Api) -> anyhow::Result<Duration> {
        let t = Instant::now();
        let deadline = t + Duration::from_secs(20);
        loop {
            self.check_running()
                .context("lx-server exited during start-up")?;
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

    /// SIGTERM, then wait for the graceful shutdown: exit 0, or the signal
    /// itself for a process that [ends by it](Self::ends_by_signal).
    fn stop(&mut self) -> anyhow::Result<String> {
        let Some(mut child) = self.child.take() else {
            bail!("{} was not running", self.who);
        };
        let status = terminate(self.who, &mut child, Duration::from_secs(10))?;
        if status.success() {
            return Ok("stopped gracefully (exit 0)".to_owned());
        }
        if self.ends_by_signal && status.signal() == Some(15) {
            return Ok("stopped (ended by the signal; nothing to save)".to_owned());
        }
        bail!("{} exited with {status} after SIGTERM", self.who)
    }

    /// Leaves the process running; returns its pid.
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

impl Procs {
    fn agent_log(&self) -> anyhow::Result<PathBuf> {
        self.agent
            .as_ref()
            .map(|a| a.log.clone())
            .context("the agent is not running")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = terminate(self.who, &mut child, Duration::from_secs(5));
        }
    }
}

/// Sends SIGTERM and waits up to `grace`, then kills.
fn terminate(who: &str, child: &mut Child, grace: Duration) -> anyhow::Result<ExitStatus> {
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
    bail!("{who} did not stop on SIGTERM within {grace:?}; killed ({status})")
}

// ----------------------------------------------------------------- setup

/// The three binaries, in Cargo's target directory.
struct Bins {
    dir: PathBuf,
    server: PathBuf,
    agent: PathBuf,
    replay: PathBuf,
    /// The consumer's command line.
    lx: PathBuf,
}

impl Bins {
    fn locate() -> anyhow::Result<Self> {
        let dir = crate::target_dir()?.join("debug");
        Ok(Self {
            server: dir.join("lx-server"),
            agent: dir.join("lx-agent"),
            replay: dir.join("lx-nmea-replay"),
            lx: dir.join("lx"),
            dir,
        })
    }
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

/// A path as a TOML basic string (a JSON string is one).
fn toml_str(path: &Path) -> anyhow::Result<String> {
    let text = path
        .to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))?;
    Ok(serde_json::to_string(text)?)
}

/// Where the demo's servers keep their facts.
enum StoreSetting {
    /// One server, one SQLite file.
    File,
    /// Replicas on one PostgreSQL database, with the secrets they share.
    Shared {
        url: String,
        cookie_secret: String,
        token_secret: String,
    },
}

fn write_config(
    path: &Path,
    dir: &Path,
    port: u16,
    chain: &chain::DemoChain,
    mqtt: &Broker,
    store: &StoreSetting,
) -> anyhow::Result<()> {
    // Replicas share one PostgreSQL and the secrets of cookies and media
    // tokens; one server keeps its SQLite file and draws its own.
    let (store_url, cookie_secret, token_secret) = match store {
        StoreSetting::File => ("", "", ""),
        StoreSetting::Shared {
            url,
            cookie_secret,
            token_secret,
        } => (url.as_str(), cookie_secret.as_str(), token_secret.as_str()),
    };
    let text = format!(
        "# Written by `cargo xtask demo`.\n\
         [http]\n\
         listen = \"127.0.0.1:{port}\"\n\
         public_url = \"http://127.0.0.1:{port}\"\n\n\
         [store]\n\
         path = {db}\n\
         url = \"{store_url}\"\n\n\
         [auth]\n\
         cookie_secret = \"{cookie_secret}\"\n\n\
         [credit]\n\
         # The consumer's pool in the settlement contract.\n\
         source = \"onchain\"\n\n\
         [chain]\n\
         chain_id = {chain_id}\n\
         rpc_url = \"{rpc}\"\n\
         settlement_address = \"{settlement}\"\n\
         relayer_keystore = {keystore}\n\
         relayer_password_env = \"{password_env}\"\n\
         settle_interval_ms = 250\n\n\
         [telemetry]\n\
         # The meter is final this long after the end (default 15 s).\n\
         settle_delay_seconds = {SETTLE_DELAY_S}\n\n\
         [media]\n\
         backend = \"builtin\"\n\
         token_secret = \"{token_secret}\"\n\n\
         [media.ice]\n\
         # Hermetic: ICE on loopback only.\n\
         local_addresses = [\"127.0.0.1\"]\n\n\
         [mqtt]\n\
         # The fleet link; the password comes from {MQTT_PASSWORD_ENV}.\n\
         url = \"{mqtt_url}\"\n\n\
         [mqtt.mosquitto]\n\
         password_file = {passwords}\n\
         acl_file = {acl}\n\
         pid_file = {pid}\n",
        db = toml_str(&dir.join("lx.db"))?,
        chain_id = chain::CHAIN_ID,
        rpc = chain.url,
        settlement = chain.settlement,
        keystore = toml_str(&chain.keystore)?,
        password_env = chain::PASSWORD_ENV,
        mqtt_url = mqtt.url(),
        passwords = toml_str(&mqtt.dir.join("passwords"))?,
        acl = toml_str(&mqtt.dir.join("acl"))?,
        pid = toml_str(&mqtt.dir.join("mosquitto.pid"))?,
    );
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// The agent's configuration: configs/agent-drone.toml's defaults but for
/// these keys.
fn write_agent_config(
    path: &Path,
    dir: &Path,
    url: &str,
    pty: &str,
    health_port: u16,
) -> anyhow::Result<()> {
    let text = format!(
        "# Written by `cargo xtask demo`: a simulated drone whose receiver is\n\
         # lx-nmea-replay. Every other key keeps its default (configs/agent-drone.toml).\n\
         [server]\n\
         url = {url}\n\n\
         [device]\n\
         name = \"{DEVICE_NAME}\"\n\
         kind = \"DRONE\"\n\
         state_dir = {state}\n\n\
         [gps]\n\
         source = \"serial\"\n\
         port = {pty}\n\n\
         [telemetry]\n\
         # A heartbeat a second rather than every 5 s, so the device shows up at once.\n\
         idle_interval_ms = 1000\n\n\
         [lifecycle]\n\
         # Sees its assignment within half a second rather than one.\n\
         poll_interval_ms = 500\n\n\
         [video]\n\
         # GStreamer's test pattern stands in for the camera.\n\
         source = \"test\"\n\
         codec = \"{VIDEO_CODEC}\"\n\
         width = {w}\n\
         height = {h}\n\
         bitrate_kbps = 1000\n\n\
         [video.ice]\n\
         local_addresses = [\"127.0.0.1\"]\n\n\
         [health]\n\
         listen = \"127.0.0.1:{health_port}\"\n",
        url = serde_json::to_string(url)?,
        state = toml_str(&dir.join("agent-state"))?,
        pty = serde_json::to_string(pty)?,
        w = VIDEO_SIZE.0,
        h = VIDEO_SIZE.1,
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
