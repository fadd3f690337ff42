//! The agent's recent log lines, kept in memory for the fleet's `logs`
//! command: a fleet manager reads why a device misbehaves without SSH.
//!
//! Every line the agent logs is also appended here, capped at
//! [`KEPT_LINES`] (the oldest go first), with the time it was written.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Mutex, OnceLock};

use lx_protocol::api::DeviceLogsUpload;
use lx_protocol::mqtt::{LogRequest, MAX_LOG_LINES, MAX_LOG_MINUTES};
use lx_protocol::time::UnixMillis;

/// Lines kept: about an hour of an agent logging at `info`.
pub const KEPT_LINES: usize = 5000;

#[derive(Debug, Default)]
pub struct LogBuffer {
    lines: Mutex<VecDeque<(UnixMillis, String)>>,
}

/// The process's buffer.
pub fn buffer() -> &'static LogBuffer {
    static BUFFER: OnceLock<LogBuffer> = OnceLock::new();
    BUFFER.get_or_init(LogBuffer::default)
}

impl LogBuffer {
    pub fn push(&self, at_ms: UnixMillis, line: &str) {
        let Ok(mut lines) = self.lines.lock() else {
            return;
        };
        // A camera URL's password never leaves the device in a log.
        let line = lx_protocol::redact::url_credentials(line.trim_end());
        if line.is_empty() {
            return;
        }
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back((at_ms, line.into_owned()));
    }

    /// The last `lines` lines, of those written since `since_ms` (oldest
    /// first), and whether older ones of that span were left out.
    pub fn recent(&self, lines: usize, since_ms: UnixMillis) -> (Vec<String>, bool) {
        let Ok(kept) = self.lines.lock() else {
            return (Vec::new(), false);
        };
        let span: Vec<&String> = kept
            .iter()
            .filter(|(at, _)| *at >= since_ms)
            .map(|(_, l)| l)
            .collect();
        let skip = span.len().saturating_sub(lines);
        (
            span[skip..].iter().map(|l| (*l).clone()).collect(),
            skip > 0,
        )
    }
}

/// The agent's logging: to standard output as configured (text or JSON), and every
/// line also into [`buffer`] as text.
pub fn init(filter: tracing_subscriber::EnvFilter, json: bool) {
    init_to(filter, json, std::io::stdout);
}

/// [`init`] onto stderr: the video worker's stdout carries its reports.
pub fn init_stderr(filter: tracing_subscriber::EnvFilter, json: bool) {
    init_to(filter, json, std::io::stderr);
}

fn init_to<W>(filter: tracing_subscriber::EnvFilter, json: bool, out: W)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let kept = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(BufferWriter);
    let registry = tracing_subscriber::registry().with(filter).with(kept);
    let _ = if json {
        registry
            .with(tracing_subscriber::fmt::layer().json().with_writer(out))
            .try_init()
    } else {
        registry
            .with(tracing_subscriber::fmt::layer().with_writer(out))
            .try_init()
    };
}

/// A `tracing_subscriber` writer into [`buffer`]; each event is one write.
#[derive(Debug, Default, Clone, Copy)]
pub struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let now = crate::wall_now_ms();
        for line in String::from_utf8_lossy(bytes).lines() {
            buffer().push(now, line);
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferWriter {
    type Writer = BufferWriter;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// Lines a `logs` command brings when it names no count.
pub const DEFAULT_LINES: u32 = 200;
/// An upload stays under the server's body limit (1 MiB by default).
const MAX_UPLOAD_BYTES: usize = 512 * 1024;

/// What a `logs` command posts: the lines asked for, newest kept when the
/// upload would be too large.
pub fn upload(request: &LogRequest, now_ms: UnixMillis) -> DeviceLogsUpload {
    let count = request.lines.unwrap_or(DEFAULT_LINES).min(MAX_LOG_LINES) as usize;
    let since = request.minutes.map_or(UnixMillis::MIN, |m| {
        now_ms - i64::from(m.min(MAX_LOG_MINUTES)) * 60_000
    });
    let (mut lines, mut truncated) = buffer().recent(count, since);
    let mut bytes: usize = lines.iter().map(|l| l.len() + 4).sum();
    let mut drop = 0;
    while bytes > MAX_UPLOAD_BYTES && drop < lines.len() {
        bytes -= lines[drop].len() + 4;
        drop += 1;
    }
    if drop > 0 {
        lines.drain(..drop);
        truncated = true;
    }
    DeviceLogsUpload { lines, truncated }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_keeps_the_newest_lines_and_answers_by_count_and_age() {
        let b = LogBuffer::default();
        for i in 0..(KEPT_LINES + 10) {
            b.push(i as i64, &format!("line {i}"));
        }
        let (last, truncated) = b.recent(3, 0);
        assert_eq!(
            last,
            vec![
                format!("line {}", KEPT_LINES + 7),
                format!("line {}", KEPT_LINES + 8),
                format!("line {}", KEPT_LINES + 9)
            ]
        );
        assert!(truncated);
        let (young, truncated) = b.recent(100, (KEPT_LINES + 8) as i64);
        assert_eq!(young.len(), 2);
        assert!(!truncated);
        let (all, _) = b.recent(usize::MAX, 0);
        assert_eq!(all.len(), KEPT_LINES, "capped");
        assert_eq!(all[0], "line 10", "the oldest went first");
        b.push(1, "rtspsrc location=rtsp://cam:hunter2@10.0.0.9/x failed\n");
        assert!(!b.recent(1, 0).0[0].contains("hunter2"));
    }
}
