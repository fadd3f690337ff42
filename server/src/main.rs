use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use lx_server::config::Config;

/// lx-server: the marketplace for on-demand live video.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    /// Configuration file (TOML). Unset keys take the built-in defaults.
    #[arg(short, long, env = "LX_SERVER_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Print the built-in default configuration, every key documented.
    PrintConfig,
    /// Check the configuration and exit.
    CheckConfig,
    /// Print the OpenAPI document.
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::PrintConfig => {
            print!("{}", Config::default_text());
            Ok(())
        }
        Command::Openapi => {
            use utoipa::OpenApi;
            println!("{}", lx_server::routes::ApiDoc::openapi().to_pretty_json()?);
            Ok(())
        }
        Command::CheckConfig => {
            Config::load(cli.config.as_deref())?;
            println!("configuration ok");
            Ok(())
        }
        Command::Serve => {
            let config = Config::load(cli.config.as_deref())?;
            init_tracing(&config).context("starting logs")?;
            lx_server::serve::run(config, lx_server::serve::shutdown_signal()).await
        }
    }
}

fn init_tracing(config: &Config) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log.filter))
        .context("log.filter")?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if config.log.format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}
