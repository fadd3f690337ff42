//! The video worker: a process of its own per served session.
//!
//! The agent ([`supervise`]) starts `lx-agent video-worker` when a session
//! is to be published, hands it an [`Order`] (the `[video]` section, the
//! session and its WHIP URL) as one JSON line on its stdin, and reads a
//! [`Report`] line back at least every second. `stop` on its stdin (or its
//! stdin closing, when the agent dies) makes it DELETE the WHIP resource and
//! exit. A worker that dies is started again after a backoff (0.5 s doubling
//! to 30 s) while the session stays the target.
//!
//! Why a process: GStreamer, once initialised, keeps its registry, plugins
//! and threads for the life of the process. An agent waits far longer than
//! it publishes, and its idle footprint is what a small board pays all day.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc, watch};
use uuid::Uuid;

use super::{Stream, VideoStats};
use crate::config::VideoConfig;

/// The hidden subcommand that runs a worker.
pub const SUBCOMMAND: &str = "video-worker";
/// How long a worker may take to DELETE its resource and exit.
const STOP_GRACE: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a worker is to do: its first line on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub video: VideoConfig,
    pub session_id: Uuid,
    pub whip_url: String,
    /// The agent's `log.filter` and `log.format == "json"`.
    pub log_filter: String,
    pub log_json: bool,
}

/// A worker's line on stdout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Report {
    Stats(VideoStats),
    /// The WHIP endpoint reaches no server: ask the session's `start` again.
    Gone(Uuid),
}

/// The agent's side: runs a worker while `target` names a session, until
/// `shutdown`.
pub async fn supervise(
    video: VideoConfig,
    log: (String, bool),
    mut target: watch::Receiver<Option<Stream>>,
    stats: Arc<Mutex<VideoStats>>,
    gone: mpsc::Sender<Uuid>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    loop {
        let current = target.borrow_and_update().clone();
        {
            let mut s = stats.lock().await;
            s.state = "idle".into();
            s.session_id = current.as_ref().map(|c| c.session_id);
            s.bitrate_kbps = 0;
            s.worker_pid = None;
        }
        let Some(stream) = current else {
            failures = 0;
            tokio::select! {
                changed = target.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => return,
            }
            continue;
        };
        let order = Order {
            video: video.clone(),
            session_id: stream.session_id,
            whip_url: stream.whip_url.clone(),
            log_filter: log.0.clone(),
            log_json: log.1,
        };
        let ended = match start(&order).await {
            Ok(worker) => {
                tracing::info!(session = %stream.session_id, pid = worker.pid, "video worker started");
                follow(worker, &stream, &mut target, &stats, &gone, &mut shutdown).await
            }
            Err(err) => Ended::Died(format!("{err:#}")),
        };
        match ended {
            Ended::Shutdown => return,
            Ended::Retargeted => failures = 0,
            Ended::Died(why) => {
                failures += 1;
                let after = MIN_BACKOFF
                    .saturating_mul(1u32 << failures.min(16).saturating_sub(1))
                    .min(MAX_BACKOFF);
                tracing::warn!(session = %stream.session_id, %why, ?after, "the video worker ended; starting another");
                {
                    let mut s = stats.lock().await;
                    s.state = "retrying".into();
                    s.worker_pid = None;
                    s.bitrate_kbps = 0;
                    s.last_error = Some(why);
                }
                tokio::select! {
                    () = tokio::time::sleep(after) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }
    }
}

struct Worker {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

enum Ended {
    Retargeted,
    Shutdown,
    Died(String),
}

async fn start(order: &Order) -> anyhow::Result<Worker> {
    let exe = match order.video.worker_program.trim() {
        "" => std::env::current_exe().context("finding this program to start a video worker")?,
        program => std::path::PathBuf::from(program),
    };
    let mut child = Command::new(&exe)
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {} {SUBCOMMAND}", exe.display()))?;
    let pid = child.id().unwrap_or_default();
    let mut stdin = child.stdin.take().context("the worker's stdin")?;
    let stdout = child.stdout.take().context("the worker's stdout")?;
    let mut line = serde_json::to_vec(order)?;
    line.push(b'\n');
    stdin
        .write_all(&line)
        .await
        .context("handing the worker its order")?;
    Ok(Worker {
        child,
        pid,
        stdin,
        lines: BufReader::new(stdout).lines(),
    })
}

/// Relays a worker's reports until the target changes, shutdown or the
/// worker ends.
async fn follow(
    mut worker: Worker,
    stream: &Stream,
    target: &mut watch::Receiver<Option<Stream>>,
    stats: &Mutex<VideoStats>,
    gone: &mpsc::Sender<Uuid>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    {
        let mut s = stats.lock().await;
        s.state = "starting".into();
        s.worker_pid = Some(worker.pid);
    }
    let ending = loop {
        tokio::select! {
            line = worker.lines.next_line() => match line {
                Ok(Some(line)) => match serde_json::from_str::<Report>(&line) {
                    Ok(Report::Stats(mut reported)) => {
                        reported.worker_pid = Some(worker.pid);
                        *stats.lock().await = reported;
                    }
                    Ok(Report::Gone(id)) => {
                        let _ = gone.try_send(id);
                    }
                    Err(err) => tracing::warn!(%err, "a video worker line that is no report"),
                },
                _ => {
                    let status = worker.child.wait().await;
                    return Ended::Died(match status {
                        Ok(s) => format!("the video worker exited ({s})"),
                        Err(e) => format!("the video worker is lost: {e}"),
                    });
                }
            },
            changed = target.changed() => {
                let next = if changed.is_ok() { target.borrow().clone() } else { None };
                if next.as_ref() != Some(stream) {
                    break Ended::Retargeted;
                }
            }
            _ = shutdown.changed() => break Ended::Shutdown,
        }
    };
    stop(worker, stats).await;
    ending
}

/// Asks a worker to hang up and waits for it; kills it past the grace.
async fn stop(mut worker: Worker, stats: &Mutex<VideoStats>) {
    let _ = worker.stdin.write_all(b"stop\n").await;
    let _ = worker.stdin.flush().await;
    let drained = async {
        while let Ok(Some(line)) = worker.lines.next_line().await {
            if let Ok(Report::Stats(mut reported)) = serde_json::from_str::<Report>(&line) {
                reported.worker_pid = Some(worker.pid);
                *stats.lock().await = reported;
            }
        }
        worker.child.wait().await
    };
    match tokio::time::timeout(STOP_GRACE, drained).await {
        Ok(Ok(status)) if status.success() => {
            tracing::info!(pid = worker.pid, "video worker stopped");
        }
        Ok(status) => tracing::warn!(pid = worker.pid, ?status, "video worker stopped badly"),
        Err(_) => {
            tracing::warn!(
                pid = worker.pid,
                "video worker did not stop in time; killing it"
            );
            let _ = worker.child.kill().await;
        }
    }
}

/// The worker's side (`lx-agent video-worker`): reads its order, publishes
/// until told to stop, reports every second.
pub async fn serve() -> anyhow::Result<()> {
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
    crate::logs::init(filter, order.log_json);
    let config = super::publisher_config(&order.video)?;
    let http = reqwest::Client::builder()
        .build()
        .context("building the WHIP client")?;
    let (_target_tx, target) = watch::channel(Some(Stream {
        session_id: order.session_id,
        whip_url: order.whip_url.clone(),
    }));
    let stats = Arc::new(Mutex::new(VideoStats::default()));
    let (gone_tx, mut gone_rx) = mpsc::channel(4);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut publishing = tokio::spawn(super::shell::run(
        config,
        http,
        target,
        Arc::clone(&stats),
        gone_tx,
        stop_rx,
    ));
    let mut stdout = tokio::io::stdout();
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

async fn report(stdout: &mut tokio::io::Stdout, report: &Report) -> anyhow::Result<()> {
    let mut line = serde_json::to_vec(report)?;
    line.push(b'\n');
    stdout.write_all(&line).await?;
    stdout.flush().await?;
    Ok(())
}
