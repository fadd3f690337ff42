//! Building the application from a configuration and running it until a
//! shutdown signal.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rand::RngCore;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::App;
use crate::chain::ChainReader;
use crate::clock::SystemClock;
use crate::config::Config;
use crate::credit::StaticCredit;
use crate::media::{self, MediaBackend, MediaEvent, NoMedia};
use crate::routes;

/// Shorter configured secrets are refused: a key that can be guessed or
/// brute-forced signs sessions and media URLs for anyone.
pub const MIN_SECRET_BYTES: usize = 32;

/// A 32-byte key: from the configured secret when it is set (at least
/// [`MIN_SECRET_BYTES`] long, hashed to the key), else generated once into
/// `file` beside the database so that it survives restarts.
fn secret_key(
    config: &Config,
    secret: &str,
    setting: &str,
    file: &str,
) -> anyhow::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    if !secret.is_empty() {
        if secret.len() < MIN_SECRET_BYTES {
            anyhow::bail!(
                "{setting} is {} bytes long; it must be at least {MIN_SECRET_BYTES} (or empty, for a random key kept in {file})",
                secret.len()
            );
        }
        return Ok(Sha256::digest(secret.as_bytes()).into());
    }
    let dir = config
        .store
        .path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let path = dir.join(file);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice()) {
            return Ok(key);
        }
        anyhow::bail!(
            "{} is not a 32-byte key; delete it to generate a new one",
            path.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    lx_protocol::private_file::write(&path, &key)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(key)
}

/// The key that signs `lx_session` cookies (`auth.cookie_secret`, or `cookie.key`).
pub fn cookie_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    secret_key(
        config,
        &config.auth.cookie_secret,
        "auth.cookie_secret",
        "cookie.key",
    )
}

/// The key of the WHIP and WHEP URLs' tokens (`media.token_secret`, or
/// `media.key`): its own, so that a leaked cookie secret mints no media URLs
/// and the other way round.
pub fn media_token_key(config: &Config) -> anyhow::Result<[u8; 32]> {
    secret_key(
        config,
        &config.media.token_secret,
        "media.token_secret",
        "media.key",
    )
}

/// The settlement chain of `[chain]`, if `chain.rpc_url` names one.
pub async fn chain_reader(config: &Config) -> anyhow::Result<Option<Arc<dyn ChainReader>>> {
    if config.chain.rpc_url.is_empty() {
        return Ok(None);
    }
    #[cfg(feature = "chain")]
    {
        let settlement = config
            .chain
            .settlement_address
            .parse()
            .map_err(|e| anyhow::anyhow!("chain.settlement_address: {e}"))?;
        let chain = crate::chain::evm::EvmChain::connect(
            &config.chain.rpc_url,
            config.chain.chain_id,
            settlement,
        )
        .await?;
        tracing::info!(rpc = %config.chain.rpc_url, settlement = %chain.settlement_address(), usdc = %chain.usdc_address(), "settlement chain");
        let notice = chain.withdrawal_notice_seconds().await?;
        check_withdrawal_notice(config, notice)?;
        Ok(Some(Arc::new(chain)))
    }
    #[cfg(not(feature = "chain"))]
    anyhow::bail!("chain.rpc_url is set, but lx-server was built without the chain feature")
}

/// A consumer must not be able to take its deposit back before the last
/// session it ran is settled: the contract's withdrawal notice has to cover
/// the longest session, the settle delay and the relayer's margin.
pub fn check_withdrawal_notice(config: &Config, notice_seconds: u64) -> anyhow::Result<()> {
    let longest = u64::from(config.sessions.max_duration_seconds);
    let delay = u64::from(config.telemetry.settle_delay_seconds);
    let margin = u64::from(config.chain.relayer_margin_seconds);
    let needed = longest + delay + margin;
    if notice_seconds < needed {
        anyhow::bail!(
            "the settlement contract's withdrawal notice is {notice_seconds} s, shorter than \
             sessions.max_duration_seconds ({longest}) + telemetry.settle_delay_seconds ({delay}) + \
             chain.relayer_margin_seconds ({margin}) = {needed} s: a consumer could withdraw before its last \
             session is settled. Deploy with a longer notice (LX_WITHDRAWAL_NOTICE_SECONDS) or lower those settings"
        );
    }
    Ok(())
}

/// The relayer's settler, when `chain.relayer_keystore` names its key; the
/// password comes from the environment variable the config names.
pub async fn settler(config: &Config) -> anyhow::Result<Option<Arc<dyn crate::chain::Settler>>> {
    settler_with(config, |var| std::env::var(var).ok()).await
}

/// [`settler`] with the environment passed in.
pub async fn settler_with(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<Arc<dyn crate::chain::Settler>>> {
    let c = &config.chain;
    if c.relayer_keystore.is_empty() {
        if !c.rpc_url.is_empty() {
            tracing::warn!(
                "chain.relayer_keystore is empty: ended sessions are metered but not settled"
            );
        }
        return Ok(None);
    }
    #[cfg(feature = "chain")]
    {
        if c.rpc_url.is_empty() {
            anyhow::bail!("chain.relayer_keystore is set but chain.rpc_url is empty");
        }
        let password = env(&c.relayer_password_env).with_context(|| {
            format!(
                "the relayer keystore's password: set {} (chain.relayer_password_env)",
                c.relayer_password_env
            )
        })?;
        let signer = alloy::signers::local::PrivateKeySigner::decrypt_keystore(
            &c.relayer_keystore,
            password,
        )
        .with_context(|| format!("opening the relayer keystore {}", c.relayer_keystore))?;
        let settlement = c
            .settlement_address
            .parse()
            .map_err(|e| anyhow::anyhow!("chain.settlement_address: {e}"))?;
        let settler =
            crate::chain::evm::EvmSettler::connect(&c.rpc_url, c.chain_id, settlement, signer)
                .await?;
        Ok(Some(Arc::new(settler)))
    }
    #[cfg(not(feature = "chain"))]
    {
        let _ = env;
        anyhow::bail!(
            "chain.relayer_keystore is set, but lx-server was built without the chain feature"
        )
    }
}

/// The credit source `credit.source` names.
pub fn credit_source(
    config: &Config,
    chain: Option<&Arc<dyn ChainReader>>,
) -> anyhow::Result<Arc<dyn crate::credit::CreditSource>> {
    match (config.credit.source.as_str(), chain) {
        ("onchain", Some(chain)) => Ok(Arc::new(crate::chain::OnchainCredit::new(Arc::clone(
            chain,
        )))),
        ("onchain", None) => anyhow::bail!("credit.source = \"onchain\" needs chain.rpc_url"),
        _ => Ok(Arc::new(StaticCredit::from_config(&config.credit)?)),
    }
}

/// The media backend `media.backend` names.
pub fn media_backend(
    config: &Config,
    secret: &[u8; 32],
    clock: Arc<dyn crate::clock::Clock>,
    events: tokio::sync::mpsc::Sender<MediaEvent>,
) -> anyhow::Result<Arc<dyn MediaBackend>> {
    match config.media.backend.as_str() {
        #[cfg(feature = "builtin-media")]
        "builtin" => {
            use crate::media::builtin::{BuiltinConfig, BuiltinMedia};
            let builtin = BuiltinConfig::from_config(config)?;
            Ok(Arc::new(BuiltinMedia::new(builtin, secret, clock, events)?))
        }
        #[cfg(feature = "builtin-media")]
        "external" => {
            use crate::media::external::{ExternalConfig, ExternalMedia};
            let external = ExternalConfig::from_config(config)?;
            Ok(Arc::new(ExternalMedia::new(external, clock, events)?))
        }
        #[cfg(not(feature = "builtin-media"))]
        "builtin" | "external" => {
            let _ = (secret, clock, events);
            anyhow::bail!(
                "media.backend = \"{}\" needs lx-server built with the builtin-media feature",
                config.media.backend
            )
        }
        _ => Ok(Arc::new(NoMedia)),
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Runs the server with the production parts until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let store = crate::store::open(&config.store)
        .await
        .with_context(|| format!("opening the store at {}", config.store.location()))?;
    let chain = chain_reader(&config).await?;
    let credit = credit_source(&config, chain.as_ref())?;
    let (media_tx, media_rx) = media::channel();
    let cookie_key = cookie_key(&config)?;
    let clock = Arc::new(SystemClock);
    let media = media_backend(&config, &media_token_key(&config)?, clock.clone(), media_tx)?;
    let app = App::new(
        Arc::clone(&config),
        store,
        clock,
        credit,
        media,
        chain,
        cookie_key,
    )
    .await?;
    let adopted = app.adopt_media().await?;
    if adopted > 0 {
        tracing::info!(
            sessions = adopted,
            "media plane watches the sessions it carried before the restart"
        );
    }
    if app.media.name() == "none" {
        tracing::warn!("media.backend = \"none\": sessions can be dispatched but not started");
    }
    let listener = TcpListener::bind(&config.http.listen)
        .await
        .with_context(|| format!("binding {}", config.http.listen))?;
    tracing::info!(addr = %listener.local_addr()?, store = %config.store.location(), "lx-server listening");
    let mcp = Arc::new(crate::mcp::McpEndpoint::default());
    mcp.serving_at(listener.local_addr()?);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = app.spawn_background(media_rx, stop_rx.clone());
    tasks.push(tokio::spawn(crate::webhooks::run(
        Arc::clone(&app),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::credit_watch::run(
        Arc::clone(&app),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::retention::run(
        Arc::clone(&app),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::replicas::follow(
        Arc::clone(&app),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(crate::replicas::say_alive(
        Arc::clone(&app),
        stop_rx.clone(),
    )));
    if app.config.mqtt.enabled() {
        let (_, fleet) = crate::mqtt::start(&app, stop_rx.clone()).await?;
        tasks.extend(fleet);
    }
    if let Some(settler) = settler(&config).await? {
        let relayer = crate::settlement::RelayerConfig::from_config(&config);
        tasks.push(tokio::spawn(crate::settlement::run(
            Arc::clone(&app),
            settler,
            relayer,
            stop_rx,
        )));
    }
    let closing = Arc::clone(&mcp);
    crate::edge::serve(
        listener,
        routes::router_with_mcp(Arc::clone(&app), &mcp),
        crate::edge::EdgeLimits::from_config(&config),
        async move {
            shutdown.await;
            closing.close();
        },
    )
    .await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    tracing::info!("lx-server stopped");
    Ok(())
}
