//! The video worker: a process of its own per served session.
//!
//! The agent ([`supervise`]) starts `lx-agent-video` (found as
//! [`super::program`] says) when a session
//! is to be published, hands it an [`Order`] (the `[video]` section, the
//! session and its WHIP URL) as one JSON line on its stdin, and reads a
//! [`Report`] line back whenever the worker's state changes (it looks every
//! second). `stop` on its stdin (or its stdin closing, when the agent dies)
//! makes it DELETE the WHIP resource and
//! exit. A worker that dies is started again after a backoff (0.5 s doubling
//! to 30 s) while the session stays the target.
//!
//! With `video.ready`, a worker is also kept while the device would take an
//! offer (the lifecycle's standby): its order names no session, so it
//! prepares the camera pipeline (GStreamer loaded, elements made, paused)
//! and waits for a [`Go`] line; a session then only sets it flowing. It is
//! stopped when the device leaves standby (offline, unfit, unreachable);
//! one whose camera fails while it waits ends with the reason, and the next
//! is tried after the backoff.
//!
//! Why a process, and a program of its own: GStreamer, once initialised,
//! keeps its registry, plugins and threads for the life of the process, and
//! a binary that links it has its libraries mapped from the first
//! instruction. An agent waits far longer than it publishes, and its idle
//! footprint is what a small board pays all day.

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

/// How long a worker may take to DELETE its resource and exit.
const STOP_GRACE: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What a worker is to do: its first line on stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Order {
    pub video: VideoConfig,
    /// The session to publish; `None`: prepare the pipeline and wait for a
    /// [`Go`] line (`video.ready`).
    pub go: Option<Go>,
    /// The agent's `log.filter` and `log.format == "json"`.
    pub log_filter: String,
    pub log_json: bool,
}

/// The session a worker publishes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Go {
    pub session_id: Uuid,
    pub whip_url: String,
}

impl From<&Stream> for Go {
    fn from(s: &Stream) -> Self {
        Self {
            session_id: s.session_id,
            whip_url: s.whip_url.clone(),
        }
    }
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
/// `shutdown`; with `video.ready`, also one that waits prepared while
/// `standby` holds (the device takes offers: reachable, online, fit).
pub async fn supervise(
    video: VideoConfig,
    log: (String, bool),
    mut standby: watch::Receiver<bool>,
    mut target: watch::Receiver<Option<Stream>>,
    stats: Arc<Mutex<VideoStats>>,
    gone: mpsc::Sender<Uuid>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut failures = 0u32;
    let order = |go: Option<Go>| Order {
        video: video.clone(),
        go,
        log_filter: log.0.clone(),
        log_json: log.1,
    };
    loop {
        let current = target.borrow_and_update().clone();
        let ready = video.ready && *standby.borrow_and_update();
        {
            let mut s = stats.lock().await;
            s.state = "idle".into();
            s.session_id = current.as_ref().map(|c| c.session_id);
            s.bitrate_kbps = 0;
            s.worker_pid = None;
        }
        let ended = match current {
            Some(stream) => match start(&order(Some(Go::from(&stream)))).await {
                Ok(worker) => {
                    tracing::info!(session = %stream.session_id, pid = worker.pid, "video worker started");
                    follow(worker, &stream, &mut target, &stats, &gone, &mut shutdown).await
                }
                Err(err) => Ended::Died(format!("{err:#}")),
            },
            None if ready => match start(&order(None)).await {
                Ok(worker) => {
                    hold_ready(
                        worker,
                        &mut standby,
                        &mut target,
                        &stats,
                        &gone,
                        &mut shutdown,
                    )
                    .await
                }
                Err(err) => Ended::Died(format!("{err:#}")),
            },
            None => {
                failures = 0;
                tokio::select! {
                    changed = target.changed() => if changed.is_err() { return },
                    _ = standby.changed() => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        match ended {
            Ended::Shutdown => return,
            Ended::Retargeted | Ended::Standby => failures = 0,
            Ended::Died(why) => {
                failures += 1;
                let after = MIN_BACKOFF
                    .saturating_mul(1u32 << failures.min(16).saturating_sub(1))
                    .min(MAX_BACKOFF);
                tracing::warn!(%why, ?after, "the video worker ended; starting another");
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

/// Holds a prepared worker until a session comes (it is told to go and
/// followed), the device leaves standby (it is stopped) or it dies.
async fn hold_ready(
    mut worker: Worker,
    standby: &mut watch::Receiver<bool>,
    target: &mut watch::Receiver<Option<Stream>>,
    stats: &Mutex<VideoStats>,
    gone: &mpsc::Sender<Uuid>,
    shutdown: &mut watch::Receiver<bool>,
) -> Ended {
    worker.mark(stats, "preparing").await;
    loop {
        tokio::select! {
            line = worker.lines.next_line() => match line {
                Ok(Some(line)) => {
                    if let Some(id) = relay(&line, worker.pid, stats).await {
                        let _ = gone.try_send(id);
                    }
                }
                _ => return Ended::Died(exit_of(&mut worker).await),
            },
            changed = target.changed() => {
                let next = if changed.is_ok() { target.borrow().clone() } else { None };
                if let Some(stream) = next {
                    if let Err(err) = write_line(&mut worker.stdin, &Go::from(&stream)).await {
                        stop(worker, stats).await;
                        return Ended::Died(format!("the ready worker took no session: {err}"));
                    }
                    tracing::info!(session = %stream.session_id, pid = worker.pid, "the ready video worker goes");
                    return follow(worker, &stream, target, stats, gone, shutdown).await;
                }
            }
            _ = standby.changed() => {
                if !*standby.borrow() {
                    stop(worker, stats).await;
                    return Ended::Standby;
                }
            }
            _ = shutdown.changed() => {
                stop(worker, stats).await;
                return Ended::Shutdown;
            }
        }
    }
}

/// Takes a worker's report: its stats into `stats`; a session whose
/// endpoint is gone is returned.
async fn relay(line: &str, pid: u32, stats: &Mutex<VideoStats>) -> Option<Uuid> {
    match serde_json::from_str::<Report>(line) {
        Ok(Report::Stats(mut reported)) => {
            reported.worker_pid = Some(pid);
            *stats.lock().await = reported;
            None
        }
        Ok(Report::Gone(id)) => Some(id),
        Err(err) => {
            tracing::warn!(%err, "a video worker line that is no report");
            None
        }
    }
}

async fn exit_of(worker: &mut Worker) -> String {
    match worker.child.wait().await {
        Ok(s) => format!("the video worker exited ({s})"),
        Err(e) => format!("the video worker is lost: {e}"),
    }
}

struct Worker {
    child: Child,
    pid: u32,
    stdin: ChildStdin,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Worker {
    /// Shows this worker in `stats` in `state`, before it reports.
    async fn mark(&self, stats: &Mutex<VideoStats>, state: &str) {
        let mut s = stats.lock().await;
        s.state = state.into();
        s.worker_pid = Some(self.pid);
    }
}

enum Ended {
    /// The session published is no longer the target.
    Retargeted,
    /// A ready worker was stopped: the device left standby.
    Standby,
    Shutdown,
    Died(String),
}

async fn start(order: &Order) -> anyhow::Result<Worker> {
    let program = super::program::Program::locate(&order.video.worker_program)?;
    let mut child = Command::new(program.path())
        .arg0(super::program::WORKER_PROGRAM)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting the video worker {}", program.describe()))?;
    drop(program);
    let pid = child.id().unwrap_or_default();
    let mut stdin = child.stdin.take().context("the worker's stdin")?;
    let stdout = child.stdout.take().context("the worker's stdout")?;
    write_line(&mut stdin, order)
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
    worker.mark(stats, "starting").await;
    let ending = loop {
        tokio::select! {
            line = worker.lines.next_line() => match line {
                Ok(Some(line)) => {
                    if let Some(id) = relay(&line, worker.pid, stats).await {
                        let _ = gone.try_send(id);
                    }
                }
                _ => return Ended::Died(exit_of(&mut worker).await),
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
        // Its last stats count; an endpoint gone no longer matters.
        while let Ok(Some(line)) = worker.lines.next_line().await {
            relay(&line, worker.pid, stats).await;
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

/// One JSON line: the one framing of the agent–worker pipe, both ways.
pub async fn write_line<W, T>(out: &mut W, value: &T) -> anyhow::Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
    T: Serialize,
{
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await?;
    Ok(())
}
