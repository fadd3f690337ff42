//! `lx`: the consumer's command line for an lx server, and `lx mcp`, the
//! same server's tools for an MCP client over stdio.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use lx_client::{Client, Error, ListSessions, WaitOptions};
use lx_protocol::api::{CreateSessionRequest, SessionDto, SessionState};
use lx_protocol::proof::ProofBundle;
use uuid::Uuid;

#[derive(Debug, Parser)]
#[command(
    name = "lx",
    version,
    about = "Live video of any point on Earth, from an lx server."
)]
struct Cli {
    /// The server: its origin (`https://lx.example`) or its API base (`…/api/v1`).
    #[arg(
        long,
        env = "LX_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    server: String,
    /// An API key of the consumer workspace (`lxxn_…`).
    #[arg(long, env = "LX_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print the API's JSON instead of lines for people.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sessions: request, watch, end.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Save the latest decoded frame of a LIVE session as a JPEG.
    Frame {
        id: Uuid,
        /// Where to write it (`-` for standard output).
        #[arg(short, long, default_value = "frame.jpg")]
        output: PathBuf,
    },
    /// The WHEP URL that plays a session (keep it secret: it is the credential).
    StreamUrl { id: Uuid },
    /// Price a session at a point (the quote locks the rate for 30 s).
    Quote(PointArgs),
    /// Where suppliers cover, rounded to about 1 km.
    Coverage,
    /// The workspace wallet: its pool in the settlement contract and its USDC.
    Wallet,
    /// Where a session's on-chain settlement stands.
    Settlement {
        id: Uuid,
        /// Wait until it is CONFIRMED, UNPAID (a debt), FAILED or not required (at most this many seconds).
        #[arg(long, value_name = "SECONDS")]
        wait: Option<u64>,
    },
    /// Save a session's proof bundle: its terms, signed track, windows,
    /// meter and settlement, for `lx verify` here or anywhere else.
    Proof {
        id: Uuid,
        /// Where to write it (`-` for standard output).
        #[arg(short, long, default_value = "-")]
        output: PathBuf,
    },
    /// Check a session's proof offline: every signature of its track, the
    /// sequence, and the meter recomputed from the evidence. Exits 1 when
    /// anything fails.
    Verify {
        /// A session id (the bundle is fetched from the server) or a bundle
        /// file saved by `lx proof`.
        session: String,
    },
    /// Serve the lx tools to an MCP client over stdio (requests and answers
    /// on stdin/stdout, logs on stderr).
    Mcp,
}

#[derive(Debug, Args)]
struct PointArgs {
    #[arg(long, allow_negative_numbers = true)]
    lat: f64,
    #[arg(long, allow_negative_numbers = true)]
    lng: f64,
    /// Seconds.
    #[arg(long)]
    duration: u32,
}

#[derive(Debug, Subcommand)]
enum SessionCommand {
    /// Create a session at a point and dispatch it to a supplier.
    Request {
        #[command(flatten)]
        point: PointArgs,
        /// How long the server looks for a supplier before the request expires, seconds.
        #[arg(long)]
        wait_timeout: Option<u32>,
        /// A quote id from `lx quote`, to lock its rate.
        #[arg(long)]
        quote: Option<Uuid>,
        /// The lowest trust tier to accept: 0 any supplier, 1 only an
        /// enrolled device signing its telemetry (default: the server's).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=1))]
        min_trust_tier: Option<u8>,
        /// Wait until the stream is LIVE, showing progress.
        #[arg(long)]
        wait: bool,
        /// How long `--wait` waits, seconds.
        #[arg(long, default_value_t = 120)]
        wait_seconds: u64,
    },
    /// One session.
    Get { id: Uuid },
    /// The workspace's sessions, newest first.
    List {
        /// One state or several, comma-separated.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Wait until a session is LIVE.
    Wait {
        id: Uuid,
        #[arg(long, default_value_t = 120)]
        timeout: u64,
    },
    /// End a LIVE session; the charge settles on-chain.
    End { id: Uuid },
    /// Cancel a session that is not LIVE yet.
    Cancel { id: Uuid },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let client = match Client::new(&cli.server, cli.api_key.clone()) {
        Ok(c) => c,
        Err(e) => return report(&e),
    };
    let result = match cli.command {
        Command::Mcp => return serve_mcp(client).await,
        Command::Session(cmd) => session(&client, cmd, cli.json).await,
        Command::Frame { id, output } => frame(&client, id, &output).await,
        Command::StreamUrl { id } => client.viewer_token(id).await.map(|t| {
            if cli.json {
                print_json(&t);
            } else {
                println!("{}", t.whep_url);
            }
        }),
        Command::Quote(p) => client.quote(p.lat, p.lng, p.duration).await.map(|q| {
            if cli.json {
                print_json(&q);
            } else {
                println!(
                    "quote {}: {} µUSDC/s, {} µUSDC for {} s (supply ×{}, demand ×{}, corridor ×{}), until {}",
                    q.quote_id,
                    q.rate_per_second_micro_usdc,
                    q.estimated_total_micro_usdc,
                    q.duration_seconds,
                    q.supply_factor,
                    q.demand_factor,
                    q.corridor_multiplier,
                    q.expires_at
                );
            }
        }),
        Command::Coverage => client.coverage().await.map(|c| {
            if cli.json {
                print_json(&c);
            } else {
                for circle in &c.circles {
                    println!(
                        "{:.2},{:.2} r {} m{}",
                        circle.lat,
                        circle.lng,
                        circle.radius_meters,
                        circle
                            .device_kind
                            .map(|k| format!(" {k:?}"))
                            .unwrap_or_default()
                    );
                }
                println!("{} coverage circles", c.circles.len());
            }
        }),
        Command::Wallet => client.wallet().await.map(|w| {
            if cli.json {
                print_json(&w);
            } else {
                println!(
                    "wallet {} on chain {}: pool {} µUSDC ({}), USDC {} µUSDC ({}){}",
                    w.wallet_address,
                    w.chain_id,
                    w.pool_micro_usdc,
                    usdc(w.pool_micro_usdc),
                    w.usdc_balance_micro_usdc,
                    usdc(w.usdc_balance_micro_usdc),
                    w.max_rate_per_second_micro_usdc
                        .map(|m| format!(", rate cap {m} µUSDC/s"))
                        .unwrap_or_default()
                );
                if w.withdrawal_requested_micro_usdc > 0 {
                    println!(
                        "withdrawal requested: {} µUSDC, can be taken at {}",
                        w.withdrawal_requested_micro_usdc,
                        w.withdrawable_at.as_deref().unwrap_or("?")
                    );
                }
                println!(
                    "held by open sessions {} µUSDC, unsettled {} µUSDC, available credit {} µUSDC ({})",
                    w.held_micro_usdc,
                    w.unsettled_micro_usdc,
                    w.available_credit_micro_usdc,
                    usdc(w.available_credit_micro_usdc)
                );
                for d in &w.debts {
                    println!(
                        "DEBT: {} µUSDC for session {} ({}); deposit to pay it",
                        d.amount_micro_usdc,
                        d.session_id,
                        d.last_error.as_deref().unwrap_or("unpaid")
                    );
                }
            }
        }),
        Command::Settlement { id, wait } => settlement(&client, id, wait, cli.json).await,
        Command::Proof { id, output } => save_proof(&client, id, &output).await,
        Command::Verify { session } => return verify(&client, &session, cli.json).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e),
    }
}

fn report(e: &Error) -> ExitCode {
    eprintln!("lx: {e}");
    if e.retryable() {
        eprintln!("lx: this may succeed if tried again");
    }
    ExitCode::FAILURE
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("lx: cannot print the answer as JSON: {e}"),
    }
}

/// µUSDC as dollars, for people; the integer stays beside it.
fn usdc(micro: u64) -> String {
    format!("${}.{:06}", micro / 1_000_000, micro % 1_000_000)
}

fn describe(s: &SessionDto) -> String {
    let mut line = format!(
        "session {} {} at {},{} — {} µUSDC/s, up to {} s",
        s.id,
        s.state.as_str(),
        s.lat,
        s.lng,
        s.rate_per_second_micro_usdc,
        s.max_duration_seconds
    );
    if let Some(started) = &s.started_at {
        line.push_str(&format!(", live since {started}"));
    }
    if let Some(ended) = &s.ended_at {
        line.push_str(&format!(", ended {ended}"));
    }
    if let Some(m) = &s.meter {
        line.push_str(&format!(
            "; {} clean s, {} failed s, charged {} µUSDC{}",
            m.clean_seconds,
            m.failed_seconds,
            m.charged_micro_usdc,
            if s.meter_final {
                ""
            } else {
                " (not final yet)"
            }
        ));
    }
    line
}

/// Prints each state change while waiting: `REQUESTED → ASSIGNED (0.4 s) → LIVE (1.9 s)`.
fn progress_printer() -> impl FnMut(&SessionDto, Duration) {
    let mut last: Option<SessionState> = None;
    move |s, waited| {
        if last != Some(s.state) {
            let mut err = std::io::stderr();
            let _ = if last.is_none() {
                write!(err, "  {}", s.state.as_str())
            } else {
                write!(
                    err,
                    " → {} ({:.1} s)",
                    s.state.as_str(),
                    waited.as_secs_f64()
                )
            };
            let _ = err.flush();
            last = Some(s.state);
        }
    }
}

async fn wait_live(client: &Client, id: Uuid, seconds: u64) -> Result<SessionDto, Error> {
    eprintln!("waiting up to {seconds} s for session {id} to go LIVE:");
    let options = WaitOptions {
        timeout: Duration::from_secs(seconds),
        poll_interval: Duration::from_millis(500),
    };
    let result = client.wait_for_live(id, options, progress_printer()).await;
    eprintln!();
    result.map(|w| w.session)
}

async fn session(client: &Client, cmd: SessionCommand, json: bool) -> Result<(), Error> {
    let show = |s: &SessionDto| {
        if json {
            print_json(s);
        } else {
            println!("{}", describe(s));
        }
    };
    match cmd {
        SessionCommand::Request {
            point,
            wait_timeout,
            quote,
            min_trust_tier,
            wait,
            wait_seconds,
        } => {
            let request = CreateSessionRequest {
                lat: point.lat,
                lng: point.lng,
                max_duration_seconds: point.duration,
                wait_timeout_seconds: wait_timeout,
                geofence_radius_meters: None,
                quote_id: quote,
                workspace_id: None,
                min_trust_tier,
            };
            let created = client.create_session(&request).await?;
            eprintln!("created session {}", created.id);
            let mut session = if created.state == SessionState::Requested {
                client.dispatch(created.id).await.inspect_err(|_| {
                    eprintln!("session {} was created but not dispatched", created.id);
                })?
            } else {
                created
            };
            if wait {
                session = wait_live(client, session.id, wait_seconds).await?;
            }
            show(&session);
            Ok(())
        }
        SessionCommand::Get { id } => client.session(id).await.map(|s| show(&s)),
        SessionCommand::List { state, limit } => {
            let list = client
                .sessions(&ListSessions {
                    state,
                    limit,
                    side: None,
                })
                .await?;
            if json {
                print_json(&list);
            } else {
                for s in &list {
                    println!("{}", describe(s));
                }
                println!("{} sessions", list.len());
            }
            Ok(())
        }
        SessionCommand::Wait { id, timeout } => {
            wait_live(client, id, timeout).await.map(|s| show(&s))
        }
        SessionCommand::End { id } => client.end_session(id).await.map(|s| show(&s)),
        SessionCommand::Cancel { id } => client.cancel_session(id).await.map(|s| show(&s)),
    }
}

async fn frame(client: &Client, id: Uuid, output: &std::path::Path) -> Result<(), Error> {
    let frame = client.frame(id).await?;
    let written = if output.as_os_str() == "-" {
        std::io::stdout().write_all(&frame.jpeg)
    } else {
        std::fs::write(output, &frame.jpeg)
    };
    written.map_err(|e| Error::InvalidArgument {
        field: "output",
        why: format!("cannot write {}: {e}", output.display()),
    })?;
    if output.as_os_str() != "-" {
        eprintln!("wrote {} ({} bytes)", output.display(), frame.jpeg.len());
    }
    Ok(())
}

async fn save_proof(client: &Client, id: Uuid, output: &std::path::Path) -> Result<(), Error> {
    let bundle = client.proof(id).await?;
    let text = serde_json::to_string_pretty(&bundle).map_err(|e| Error::InvalidArgument {
        field: "proof",
        why: format!("cannot encode the bundle: {e}"),
    })?;
    if output.as_os_str() == "-" {
        println!("{text}");
        return Ok(());
    }
    std::fs::write(output, text + "\n").map_err(|e| Error::InvalidArgument {
        field: "output",
        why: format!("cannot write {}: {e}", output.display()),
    })?;
    eprintln!(
        "wrote {} ({} samples, meter {})",
        output.display(),
        bundle.track.len(),
        if bundle.meter_final {
            "final"
        } else {
            "not final yet"
        }
    );
    Ok(())
}

/// A session id fetches the bundle; anything else is a bundle file.
async fn load_proof(client: &Client, session: &str) -> Result<ProofBundle, Error> {
    if let Ok(id) = session.parse::<Uuid>() {
        return client.proof(id).await;
    }
    let text = std::fs::read_to_string(session).map_err(|e| Error::InvalidArgument {
        field: "session",
        why: format!("{session} is neither a session id nor a readable bundle file: {e}"),
    })?;
    serde_json::from_str(&text).map_err(|e| Error::InvalidArgument {
        field: "session",
        why: format!("{session} is not a proof bundle: {e}"),
    })
}

async fn verify(client: &Client, session: &str, json: bool) -> ExitCode {
    let bundle = match load_proof(client, session).await {
        Ok(b) => b,
        Err(e) => return report(&e),
    };
    let verdict = lx_protocol::proof::verify(&bundle);
    if json {
        print_json(&verdict);
    } else {
        let m = &verdict.recomputed;
        println!(
            "session {}: {} samples, {} signed by the device {}",
            verdict.session_id,
            verdict.samples_checked,
            verdict.samples_signed_by_device,
            bundle.signer.as_deref().unwrap_or("(no device)")
        );
        println!(
            "meter recomputed: {} clean s, {} failed s, charged {} µUSDC ({}), fee {} µUSDC, operator {} µUSDC",
            m.clean_seconds,
            m.failed_seconds,
            m.charged_micro_usdc,
            usdc(m.charged_micro_usdc),
            m.fee_micro_usdc,
            m.operator_earned_micro_usdc
        );
        for finding in &verdict.findings {
            println!("{finding}");
        }
        let failures = verdict.findings.iter().filter(|f| f.failure).count();
        if verdict.ok {
            println!("VERIFIED: the track is the device's and the meter follows from it");
        } else {
            println!("NOT VERIFIED: {failures} failure(s)");
        }
    }
    if verdict.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn settlement(client: &Client, id: Uuid, wait: Option<u64>, json: bool) -> Result<(), Error> {
    use lx_protocol::api::SettlementStatus as S;
    let deadline = wait.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut last = None;
    loop {
        let s = client.settlement(id).await?;
        let settled = matches!(
            s.state,
            S::Confirmed | S::Unpaid | S::Failed | S::NotRequired
        );
        let out_of_time = deadline.is_none_or(|d| tokio::time::Instant::now() >= d);
        if settled || out_of_time {
            if json {
                print_json(&s);
            } else {
                println!(
                    "settlement of {}: {:?}{}{}{}",
                    s.session_id,
                    s.state,
                    s.to_amount_micro_usdc
                        .map(|a| format!(", operator {a} µUSDC"))
                        .unwrap_or_default(),
                    s.fee_amount_micro_usdc
                        .map(|a| format!(", fee {a} µUSDC"))
                        .unwrap_or_default(),
                    s.tx_hash
                        .as_ref()
                        .map(|t| format!(", tx {t}"))
                        .unwrap_or_default()
                );
            }
            return Ok(());
        }
        if last != Some(s.state) {
            eprintln!("  settlement {:?} ({} attempts)", s.state, s.attempts);
            last = Some(s.state);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn serve_mcp(client: Client) -> ExitCode {
    use rmcp::ServiceExt;
    // stdout carries the protocol; everything else goes to stderr.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    let tools = lx_client::mcp::LxTools::new(client);
    let running = match tools.serve(rmcp::transport::stdio()).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lx mcp: the MCP handshake failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    match running.waiting().await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lx mcp: {e}");
            ExitCode::FAILURE
        }
    }
}
