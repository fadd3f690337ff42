use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lx_agent::config::{Config, DEFAULT_TOML};

/// lx-agent: signs this device's position and serves its sessions.
#[derive(Debug, Parser)]
#[command(version)]
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
        Command::Run => lx_agent::run::run(config, shutdown_signal()).await,
    }
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
