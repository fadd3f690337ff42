//! `lx-agent-video`: the agent's video worker, one process per served
//! session (or one waiting prepared, with `video.ready`). The agent starts
//! it, hands it an [`Order`] on stdin and reads its [`Report`]s on stdout
//! (`lx_agent::video::worker`); its logs go to stderr, which is the agent's.
//!
//! It is a program of its own so that the agent's binary links none of
//! GStreamer: the dynamic loader would map GStreamer's and GLib's libraries
//! into every agent, idle or not. A release carries it appended to the
//! agent's binary (`lx_protocol::update::bundle`), so one file is still
//! what is signed, pushed and rolled back.

mod shell;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lx_agent::video::worker::{Go, Order, Report, write_line};
use lx_agent::video::{Stream, VideoStats};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Mutex, mpsc, watch};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("lx-agent-video {}", lx_agent::VERSION);
        return Ok(());
    }
    match serve().await {
        // The agent exited (or was killed) while this worker was reporting:
        // nobody is left to tell, and stopping is what it would have asked.
        Err(err) if agent_gone(&err) => {
            tracing::info!("the agent hung up; stopping");
            Ok(())
        }
        done => done,
    }
}

/// Whether `err` is the report pipe broken by the agent's end.
fn agent_gone(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Reads its order, publishes until told to stop, reports when its state
/// changes (it looks every second).
async fn serve() -> anyhow::Result<()> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let first = stdin
        .next_line()
        .await
        .context("reading the order")?
        .context("no order on stdin: this is started by lx-agent, not by hand")?;
    let order: Order = serde_json::from_str(&first).context("the order does not parse")?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&order.log_filter))
        .context("log.filter")?;
    lx_agent::logs::init_stderr(filter, order.log_json);
    let config = shell::publisher_config(&order.video)?;
    let mut stdout = tokio::io::stdout();
    let (go, prepared) = match order.go {
        Some(go) => (go, None),
        None => match wait_ready(&config, &mut stdin, &mut stdout).await? {
            Some(ready) => ready,
            None => return Ok(()),
        },
    };
    let http = reqwest::Client::builder()
        .build()
        .context("building the WHIP client")?;
    let (_target_tx, target) = watch::channel(Some(Stream {
        session_id: go.session_id,
        whip_url: go.whip_url,
    }));
    let stats = Arc::new(Mutex::new(VideoStats::default()));
    let (gone_tx, mut gone_rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut publishing = tokio::spawn(shell::run(
        config,
        prepared,
        http,
        target,
        Arc::clone(&stats),
        gone_tx,
        stop_rx,
    ));
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<VideoStats> = None;
    let mut stdin_open = true;
    loop {
        tokio::select! {
            _ = &mut publishing => break,
            line = stdin.next_line(), if stdin_open => {
                // `stop`, or the agent gone: hang up either way.
                if !matches!(line, Ok(Some(ref l)) if l.trim() != "stop") {
                    stdin_open = false;
                    let _ = stop_tx.send(true);
                }
            }
            Some(id) = gone_rx.recv() => report(&mut stdout, &Report::Gone(id)).await?,
            _ = tick.tick() => {}
        }
        let now = stats.lock().await.clone();
        if last.as_ref() != Some(&now) {
            report(&mut stdout, &Report::Stats(now.clone())).await?;
            last = Some(now);
        }
    }
    let now = stats.lock().await.clone();
    report(&mut stdout, &Report::Stats(now)).await?;
    Ok(())
}

type StdinLines = tokio::io::Lines<BufReader<tokio::io::Stdin>>;

/// `video.ready`: prepares the pipeline (and the DTLS certificate, the
/// slowest part of a first offer), says so, and waits for the
/// session (`Some`) or a stop (`None`). A camera that fails meanwhile
/// ends the worker with the reason, for the agent to try again later.
async fn wait_ready(
    config: &lx_media::publish::PublisherConfig,
    stdin: &mut StdinLines,
    stdout: &mut tokio::io::Stdout,
) -> anyhow::Result<Option<(Go, Option<lx_media::publish::Publisher>)>> {
    let prepared = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || {
            let publisher = lx_media::publish::Publisher::prepare(&config)?;
            lx_media::warm_up_dtls()?;
            Ok::<_, lx_media::MediaError>(publisher)
        })
        .await
        .context("preparing the pipeline")?
    };
    let publisher = match prepared {
        Ok(p) => p,
        Err(err) => {
            report(stdout, &failed(err.to_string())).await?;
            anyhow::bail!("the camera pipeline does not get ready: {err}");
        }
    };
    let ready = VideoStats {
        state: "ready".into(),
        codec: config.codec.to_string(),
        encoder: Some(publisher.encoder().to_string()),
        ..VideoStats::default()
    };
    report(stdout, &Report::Stats(ready)).await?;
    tracing::info!(encoder = publisher.encoder(), "video ready");
    let mut failures = publisher.failures();
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(line)) if line.trim() != "stop" => match serde_json::from_str::<Go>(&line) {
                    Ok(go) => return Ok(Some((go, Some(publisher)))),
                    Err(err) => tracing::warn!(%err, "a line for the ready worker that is no session"),
                },
                _ => return Ok(None),
            },
            seen = failures.wait_for(Option::is_some) => {
                let reason = seen.map(|r| r.clone().unwrap_or_default()).unwrap_or_default();
                report(stdout, &failed(reason.clone())).await?;
                anyhow::bail!("the camera failed while ready: {reason}");
            }
        }
    }
}

async fn report(stdout: &mut tokio::io::Stdout, report: &Report) -> anyhow::Result<()> {
    write_line(stdout, report).await
}

/// What a worker says when its camera does not get ready or fails while
/// it waits.
fn failed(reason: String) -> Report {
    Report::Stats(VideoStats {
        state: "failed".into(),
        last_error: Some(reason),
        ..VideoStats::default()
    })
}
