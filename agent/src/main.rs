use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lx_agent::config::{Config, DEFAULT_TOML};

/// The exit status that asks systemd to start the agent again at once
/// (`RestartForceExitStatus=` in the unit): a new build was swapped in.
const EXIT_RESTART: i32 = 75;

/// A build made for the update test only (`LX_AGENT_TEST_HANG_AT_START`
/// set at compile time): it answers `--version` and then hangs in `run`
/// without ever reporting READY, as a broken release would.
const HANGS_AT_START: bool = option_env!("LX_AGENT_TEST_HANG_AT_START").is_some();

/// lx-agent: signs this device's position and serves its sessions.
#[derive(Debug, Parser)]
#[command(version = lx_agent::VERSION)]
struct Cli {
    /// Configuration file (TOML). Unset keys take the built-in defaults.
    #[arg(short, long, env = "LX_AGENT_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Register this device with the server using a one-time enrollment token.
    Enroll {
        #[arg(long)]
        token: String,
    },
    /// Print the device's address (its key is created on first use).
    Identity,
    /// Print the built-in default configuration, every key documented.
    PrintConfig,
    /// Install a signed build from a file (`cargo xtask release-agent`
    /// writes it and its manifest); systemd's next start runs it.
    Update {
        /// The artefact.
        file: PathBuf,
        /// Its manifest (default: FILE.json).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Before each start (the unit's ExecStartPre, run by the previous
    /// build): give a new build its one start, or swap the previous back.
    #[command(hide = true)]
    UpdateGuard,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Run);
    if matches!(command, Command::PrintConfig) {
        print!("{DEFAULT_TOML}");
        return Ok(());
    }
    let config = Config::load(cli.config.as_deref())?;
    init_tracing(&config)?;
    match command {
        Command::PrintConfig => Ok(()),
        Command::Identity => {
            let state = lx_agent::state::StateDir::open(&config.device.state_dir)?;
            let key = state.device_key()?;
            println!("{}", lx_protocol::wallet::Address::from_signing_key(&key));
            Ok(())
        }
        Command::Enroll { token } => {
            let e = lx_agent::run::enroll(&config, &token).await?;
            println!(
                "enrolled as operator {} of workspace {}",
                e.operator_id, e.workspace_id
            );
            Ok(())
        }
        Command::Update { file, manifest } => update_from_file(&config, &file, manifest).await,
        Command::UpdateGuard => {
            let releases = lx_agent::update::Releases::new(&config.device.state_dir);
            match releases.guard(lx_agent::wall_now_ms())? {
                lx_agent::update::Verdict::RollBack(why) => {
                    tracing::error!(%why, "rolled back to the build before the update");
                }
                lx_agent::update::Verdict::TryNew => {
                    tracing::info!("starting the new build for the first time");
                }
                lx_agent::update::Verdict::Start => {}
            }
            Ok(())
        }
        Command::Run => {
            if HANGS_AT_START {
                tracing::warn!("a test build that hangs at start");
                std::future::pending::<()>().await;
            }
            match lx_agent::run::run(config, shutdown_signal()).await? {
                None => Ok(()),
                Some(lx_agent::status::Exit::Restart { .. }) => std::process::exit(EXIT_RESTART),
                Some(lx_agent::status::Exit::Unconfirmed(why)) => Err(anyhow::anyhow!(why)),
            }
        }
    }
}

async fn update_from_file(
    config: &Config,
    file: &std::path::Path,
    manifest: Option<PathBuf>,
) -> anyhow::Result<()> {
    let manifest_path = manifest.unwrap_or_else(|| {
        let mut name = file.as_os_str().to_owned();
        name.push(".json");
        PathBuf::from(name)
    });
    let text = std::fs::read(&manifest_path)
        .with_context(|| format!("reading the manifest {}", manifest_path.display()))?;
    let manifest: lx_protocol::update::UpdateManifest = serde_json::from_slice(&text)
        .with_context(|| format!("{} is not an update manifest", manifest_path.display()))?;
    if let Some(session) = lx_agent::health::serving_now(&config.health.listen).await {
        anyhow::bail!(
            "the running agent serves session {session}; update it when no session is served"
        );
    }
    let releases = lx_agent::update::Releases::new(&config.device.state_dir);
    let version = lx_agent::update::update_from_file(
        &config.update,
        &releases,
        file,
        &manifest,
        lx_agent::wall_now_ms(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    println!(
        "installed lx-agent {version}; it runs from the next start (systemctl restart lx-agent), and the build before it comes back if it is not confirmed within {} s",
        config.update.confirm_within_s
    );
    Ok(())
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate => {},
    }
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))
        .context("log.filter")?;
    lx_agent::logs::init(filter, config.log.format == "json");
    Ok(())
}
