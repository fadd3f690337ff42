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
    /// Print a mosquitto.conf for the fleet link's broker, with the
    /// password file, ACL and pid file of `[mqtt.mosquitto]`.
    MosquittoConfig {
        /// Where Mosquitto listens.
        #[arg(long, default_value = "127.0.0.1:1883")]
        listen: std::net::SocketAddr,
        /// Mosquitto's persistence directory.
        #[arg(long, default_value = "/var/lib/mosquitto")]
        persistence_dir: PathBuf,
        /// The user Mosquitto runs as when started as root; it must read the files.
        #[arg(long)]
        user: Option<String>,
    },
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
            let config = Config::load(cli.config.as_deref())?;
            println!(
                "{}",
                serde_json::to_string_pretty(&lx_server::routes::openapi::document(&config))?
            );
            Ok(())
        }
        Command::MosquittoConfig {
            listen,
            persistence_dir,
            user,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let m = &config.mqtt.mosquitto;
            if m.password_file.as_os_str().is_empty() {
                anyhow::bail!(
                    "set mqtt.mosquitto.password_file and acl_file (and pid_file) first: the broker reads the accounts the server writes there"
                );
            }
            let files = lx_server::broker::mosquitto::MosquittoFiles {
                password_file: m.password_file.clone(),
                acl_file: m.acl_file.clone(),
                pid_file: (!m.pid_file.as_os_str().is_empty()).then(|| m.pid_file.clone()),
            };
            print!(
                "{}",
                lx_server::broker::mosquitto::broker_config(
                    listen,
                    &files,
                    &persistence_dir,
                    user.as_deref()
                )
            );
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
