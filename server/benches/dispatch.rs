//! Dispatch benchmark (`cargo xtask bench dispatch`).
//!
//! (a) The in-memory coverage index: `Dispatcher::pick` latency over 10 000
//!     random points with 100 000 and with 1 000 000 ONLINE suppliers loaded
//!     (circles of 2-25 km, centres uniform over lat 35..60, lng -10..30).
//! (b) The full assignment path, `App::dispatch`, on a SQLite file store:
//!     store reads, the index pick and the compare-and-swap that assigns the
//!     session and flips the supplier ONLINE → BUSY in one transaction. One
//!     client, sequential.
//! (c) With `--store postgres` (`cargo xtask bench dispatch --store
//!     postgres`), (b) again on PostgreSQL (a throwaway cluster on loopback),
//!     its figures prefixed `pg_`; the SQLite figures of the same run beside
//!     them.
//!
//! Besides the human-readable lines it prints one `BENCH dispatch.<metric>=<n>`
//! line per figure, the unit in the metric's name.

use std::collections::HashSet;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lx_protocol::api::{Availability, DeviceKind, Role, SessionState};
use lx_protocol::geo::Point;
use lx_protocol::wallet::Address;
use lx_server::app::{App, DispatchError};
use lx_server::clock::{SystemClock, wall_now_ms};
use lx_server::config::Config;
use lx_server::credit::StaticCredit;
use lx_server::dispatch::Dispatcher;
use lx_server::media::NoMedia;
use lx_server::store::sqlite::SqliteStore;
use lx_server::store::{CoverageArea, NewSession, Store, Workspace};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

/// Query points per index size.
const PICKS: usize = 10_000;
/// Suppliers in the store for the assignment run, and sessions assigned.
const STORE_SUPPLIERS: usize = 10_000;
const ASSIGNS: usize = 5_000;
/// Concurrent dispatching clients on PostgreSQL.
const PG_CLIENTS: usize = 8;

/// A rectangle of the Earth, degrees.
#[derive(Clone, Copy)]
struct Region {
    lat: (f64, f64),
    lng: (f64, f64),
}

/// Europe, for the index run.
const EUROPE: Region = Region {
    lat: (35.0, 60.0),
    lng: (-10.0, 30.0),
};
/// Around Bogotá (about 170 × 220 km), for the store run: dense enough that
/// every request still has free candidates after half the suppliers are BUSY.
const BOGOTA: Region = Region {
    lat: (4.0, 5.5),
    lng: (-75.0, -73.0),
};

impl Region {
    fn point(self, rng: &mut StdRng) -> Point {
        Point::new(
            rng.gen_range(self.lat.0..self.lat.1),
            rng.gen_range(self.lng.0..self.lng.1),
        )
    }
}

fn supplier(rng: &mut StdRng, region: Region, slug: String, now_ms: i64) -> Workspace {
    let centre = region.point(rng);
    Workspace {
        id: Uuid::from_u128(rng.r#gen()),
        slug,
        name: String::new(),
        wallet: Address(rng.r#gen()),
        roles: vec![Role::Supplier],
        availability: Availability::Online,
        coverage: Some(CoverageArea {
            lat: centre.lat,
            lng: centre.lng,
            radius_m: rng.gen_range(2_000..=25_000),
        }),
        device_kind: Some(DeviceKind::Drone),
        auto_accept: true,
        offer_timeout_seconds: 15,
        idle_since_ms: now_ms - rng.gen_range(0..86_400_000),
        created_ms: now_ms,
        trust_tier: 0,
        cooling_down_until_ms: None,
    }
}

/// The q-quantile of sorted samples, microseconds.
fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[index].as_secs_f64() * 1e6
}

fn bench(metric: &str, value: f64) {
    println!("BENCH dispatch.{metric}={value:.2}");
}

/// (a) pick latency at one index size; returns the mean candidate count.
fn pick_run(label: &str, suppliers: &[Workspace], rng: &mut StdRng) -> f64 {
    let t = Instant::now();
    let dispatcher =
        Dispatcher::from_suppliers(suppliers, lx_server::config::CoverageCaps::UNCAPPED);
    let built = t.elapsed();
    let points: Vec<Point> = (0..PICKS).map(|_| EUROPE.point(rng)).collect();
    // Warm the caches and the branch predictors.
    for p in points.iter().take(1_000) {
        black_box(dispatcher.pick(*p, |_| false));
    }
    let mut samples = Vec::with_capacity(PICKS);
    let mut found = 0usize;
    for p in &points {
        let t = Instant::now();
        let winner = dispatcher.pick(black_box(*p), |_| false);
        samples.push(t.elapsed());
        found += usize::from(black_box(winner).is_some());
    }
    samples.sort_unstable();
    let candidates: usize = points.iter().map(|p| dispatcher.count_covering(*p)).sum();
    let mean_candidates = candidates as f64 / PICKS as f64;
    let (p50, p99) = (quantile_us(&samples, 0.50), quantile_us(&samples, 0.99));
    println!(
        "pick, {label} suppliers: index built in {:.2} s; {PICKS} picks: p50 {p50:.2} µs, p99 {p99:.2} µs, max {:.1} µs; \
         mean candidates {mean_candidates:.1}; {:.1} % of points covered",
        built.as_secs_f64(),
        quantile_us(&samples, 1.0),
        found as f64 * 100.0 / PICKS as f64,
    );
    let suffix = label.to_ascii_lowercase();
    bench(&format!("pick_p50_us_{suffix}"), p50);
    bench(&format!("pick_p99_us_{suffix}"), p99);
    mean_candidates
}

fn index_benchmarks() {
    let mut rng = StdRng::seed_from_u64(0x6c78_0001);
    let now = wall_now_ms();
    let t = Instant::now();
    let all: Vec<Workspace> = (0..1_000_000)
        .map(|_| supplier(&mut rng, EUROPE, String::new(), now))
        .collect();
    println!(
        "generated 1 000 000 suppliers in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    pick_run("100k", &all[..100_000], &mut rng);
    let mean = pick_run("1m", &all, &mut rng);
    bench("candidates_mean_1m", mean);
}

fn temp_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    std::env::temp_dir().join(format!("lx-bench-dispatch-{}-{nanos}", std::process::id()))
}

/// (b) the full assignment through the store, then (c) on PostgreSQL.
async fn assign_benchmark(postgres: bool) -> anyhow::Result<()> {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir)?;
    let db = dir.join("bench.db");
    let mut config = Config::defaults();
    config.store.path = db.clone();
    let result = match SqliteStore::open(&db) {
        Ok(store) => assign_run(Arc::new(store), config, "", 1).await,
        Err(err) => Err(err.into()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    if postgres {
        let mut config = Config::defaults();
        config.store.url = lx_server::store::postgres::cluster::shared()
            .fresh_database()
            .await;
        config.store.max_connections = PG_CLIENTS as u16;
        let store = lx_server::store::open(&config.store).await?;
        // Several replicas, or one replica's concurrent requests, share
        // PostgreSQL: its throughput is that of concurrent clients.
        println!("assign on PostgreSQL (throwaway cluster on loopback, fsync off):");
        assign_run(store, config, "pg_", PG_CLIENTS).await?;
    }
    Ok(())
}

/// Whether the command line asks for PostgreSQL too (`--store postgres`).
fn wants_postgres() -> anyhow::Result<bool> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == "--store") {
        None => Ok(false),
        Some(i) => match args.get(i + 1).map(String::as_str) {
            Some("postgres") => Ok(true),
            Some("sqlite") => Ok(false),
            other => anyhow::bail!("--store takes sqlite or postgres, not {other:?}"),
        },
    }
}

async fn assign_run(
    store: Arc<dyn Store>,
    config: Config,
    prefix: &str,
    clients: usize,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(0x6c78_0002);
    let now = wall_now_ms();

    let t = Instant::now();
    for i in 0..STORE_SUPPLIERS {
        store
            .insert_workspace(supplier(&mut rng, BOGOTA, format!("supplier-{i}"), now))
            .await?;
    }
    let consumer = Workspace {
        id: Uuid::from_u128(rng.r#gen()),
        slug: "consumer".into(),
        name: "consumer".into(),
        wallet: Address([7; 20]),
        roles: vec![Role::Consumer],
        availability: Availability::Offline,
        coverage: None,
        device_kind: None,
        auto_accept: false,
        offer_timeout_seconds: 15,
        idle_since_ms: now,
        created_ms: now,
        trust_tier: 0,
        cooling_down_until_ms: None,
    };
    store.insert_workspace(consumer.clone()).await?;
    println!(
        "assign: {STORE_SUPPLIERS} ONLINE suppliers around Bogotá stored in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let credit = u64::MAX / 4;
    let app = App::new(
        Arc::new(config),
        store,
        Arc::new(SystemClock),
        Arc::new(StaticCredit::new(credit)),
        Arc::new(NoMedia),
        None,
        [0u8; 32],
    )
    .await?;
    assert_eq!(
        app.dispatcher.len(),
        STORE_SUPPLIERS,
        "the index loads every supplier"
    );

    let t = Instant::now();
    let mut sessions = Vec::with_capacity(ASSIGNS);
    for _ in 0..ASSIGNS {
        let new = NewSession {
            id: Uuid::new_v4(),
            point: BOGOTA.point(&mut rng),
            geofence_radius_m: 150,
            max_duration_seconds: 120,
            wait_timeout_seconds: 3600,
            rate_micro_usdc: 1000,
            consumer_workspace_id: consumer.id,
            consumer_wallet: consumer.wallet,
            quote_id: None,
            created_ms: app.now(),
            min_trust_tier: 0,
        };
        let session = app.store.create_session(new, credit, app.now()).await?;
        sessions.push(session.id);
    }
    println!(
        "assign: {ASSIGNS} REQUESTED sessions created in {:.2} s",
        t.elapsed().as_secs_f64()
    );

    // Each client dispatches its share of the sessions one after another.
    let started = Instant::now();
    let shares: Vec<Vec<Uuid>> = sessions
        .chunks(sessions.len().div_ceil(clients))
        .map(<[Uuid]>::to_vec)
        .collect();
    let runs = shares.into_iter().map(|share| {
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let mut outcomes = Vec::with_capacity(share.len());
            for id in share {
                let t = Instant::now();
                let outcome = app.dispatch(id, true).await;
                outcomes.push((id, t.elapsed(), outcome));
            }
            outcomes
        })
    });
    let mut samples = Vec::with_capacity(ASSIGNS);
    let mut operators = HashSet::with_capacity(ASSIGNS);
    let mut no_coverage = 0usize;
    for run in runs.collect::<Vec<_>>() {
        for (id, took, outcome) in run.await? {
            samples.push(took);
            match outcome {
                Ok(s) if s.state == SessionState::Assigned => {
                    let operator = s
                        .operator_workspace_id
                        .ok_or_else(|| anyhow::anyhow!("ASSIGNED without an operator"))?;
                    anyhow::ensure!(
                        operators.insert(operator),
                        "supplier {operator} was assigned twice"
                    );
                }
                Ok(s) => anyhow::bail!("dispatch left session {id} {}", s.state),
                Err(DispatchError::NoCoverage) => no_coverage += 1,
                Err(err) => anyhow::bail!("dispatch of {id} failed: {err}"),
            }
        }
    }
    let total = started.elapsed();
    samples.sort_unstable();
    let assigned = operators.len();
    let per_s = assigned as f64 / total.as_secs_f64();
    let (p50, p99) = (quantile_us(&samples, 0.50), quantile_us(&samples, 0.99));
    println!(
        "assign, {clients} client(s): {assigned} of {ASSIGNS} sessions ASSIGNED to distinct suppliers ({no_coverage} NO_COVERAGE) in {:.2} s: \
         {per_s:.0} assignments/s; one assign p50 {p50:.0} µs, p99 {p99:.0} µs, max {:.0} µs",
        total.as_secs_f64(),
        quantile_us(&samples, 1.0),
    );
    bench(&format!("{prefix}assign_per_s"), per_s);
    bench(&format!("{prefix}assign_p99_us"), p99);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let started = Instant::now();
    println!("dispatch benchmark ({} build)", build_kind());
    index_benchmarks();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(assign_benchmark(wants_postgres()?))?;
    println!(
        "dispatch benchmark done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn build_kind() -> &'static str {
    if cfg!(debug_assertions) {
        "debug: figures are not representative"
    } else {
        "release"
    }
}
