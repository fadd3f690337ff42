//! The store-and-forward queue: signed samples wait here, on disk, until the
//! server has them, and go out oldest first.
//!
//! One append-only file of JSON lines and a small `acked` file with how many
//! of its first lines the server already took. A sample is appended before
//! any attempt to send it, so a crash or a power cut loses at most the lines
//! not yet flushed; a torn last line is skipped on reopen. Past `max`
//! samples the oldest are dropped and counted.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;

use anyhow::Context;
use lx_protocol::telemetry::SampleJson;

use crate::state::StateDir;

#[derive(Debug)]
pub struct Queue {
    log_path: PathBuf,
    acked_path: PathBuf,
    log: File,
    pending: VecDeque<SampleJson>,
    /// Lines at the head of the log file that are acknowledged or dropped.
    acked_lines: u64,
    max: usize,
    dropped: u64,
}

/// Rewrite the log once this many acknowledged lines sit at its head.
const COMPACT_AFTER: u64 = 4096;

impl Queue {
    pub fn open(state: &StateDir, max: usize) -> anyhow::Result<Self> {
        let log_path = state.path("queue.jsonl");
        let acked_path = state.path("queue.acked");
        let acked_lines = match fs::read_to_string(&acked_path) {
            Ok(t) => t.trim().parse().unwrap_or(0),
            Err(_) => 0,
        };
        let mut pending = VecDeque::new();
        if let Ok(file) = File::open(&log_path) {
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let Ok(line) = line else { break };
                if (i as u64) < acked_lines {
                    continue;
                }
                match serde_json::from_str::<SampleJson>(&line) {
                    Ok(sample) => pending.push_back(sample),
                    Err(_) => tracing::warn!(line = i + 1, "skipping a torn queue line"),
                }
            }
        }
        let mut dropped = 0;
        while pending.len() > max {
            pending.pop_front();
            dropped += 1;
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut queue = Self {
            log_path,
            acked_path,
            log,
            pending,
            acked_lines,
            max,
            dropped,
        };
        // Start from a clean file: only what is still pending.
        queue.compact()?;
        Ok(queue)
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    pub fn push(&mut self, sample: SampleJson) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(&sample)?;
        line.push('\n');
        self.log
            .write_all(line.as_bytes())
            .context("appending to the telemetry queue")?;
        self.log.flush()?;
        self.pending.push_back(sample);
        while self.pending.len() > self.max {
            self.pending.pop_front();
            self.dropped += 1;
            self.acked_lines += 1;
        }
        Ok(())
    }

    /// The oldest samples that go to the same session (or none), at most `max`.
    pub fn head(&self, max: usize) -> Vec<SampleJson> {
        let Some(first) = self.pending.front() else {
            return Vec::new();
        };
        self.pending
            .iter()
            .take(max)
            .take_while(|s| s.session_id == first.session_id)
            .cloned()
            .collect()
    }

    /// Up to `max` samples after sequence `after`, oldest first, whatever
    /// their session (the fleet link sends each on its own).
    pub fn after(&self, after: u64, max: usize) -> Vec<SampleJson> {
        self.pending
            .iter()
            .filter(|s| s.sequence > after)
            .take(max)
            .cloned()
            .collect()
    }

    /// How many pending samples have a sequence up to `sequence`.
    pub fn count_through(&self, sequence: u64) -> usize {
        self.pending
            .iter()
            .take_while(|s| s.sequence <= sequence)
            .count()
    }

    /// Outside a session only the newest position matters: of a run of
    /// such samples at the head, all but the last leave the queue.
    pub fn drop_stale_idle(&mut self) -> anyhow::Result<usize> {
        let run = self
            .pending
            .iter()
            .take_while(|s| s.session_id.is_none())
            .count();
        if run < 2 {
            return Ok(0);
        }
        self.ack(run - 1)?;
        Ok(run - 1)
    }

    /// The server took (or refused for good) the first `n` samples.
    pub fn ack(&mut self, n: usize) -> anyhow::Result<()> {
        let n = n.min(self.pending.len());
        self.pending.drain(..n);
        self.acked_lines += n as u64;
        if self.pending.is_empty() || self.acked_lines >= COMPACT_AFTER {
            self.compact()
        } else {
            fs::write(&self.acked_path, self.acked_lines.to_string())
                .context("recording acknowledged samples")
        }
    }

    /// Rewrites the log with only the pending samples.
    fn compact(&mut self) -> anyhow::Result<()> {
        let tmp = self.log_path.with_extension("tmp");
        let mut out = File::create(&tmp)?;
        for s in &self.pending {
            let mut line = serde_json::to_string(s)?;
            line.push('\n');
            out.write_all(line.as_bytes())?;
        }
        out.sync_all()?;
        fs::rename(&tmp, &self.log_path)?;
        fs::write(&self.acked_path, "0")?;
        self.acked_lines = 0;
        self.log = OpenOptions::new().append(true).open(&self.log_path)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lx_protocol::telemetry::{Sample, Source};
    use lx_protocol::wallet::Signature65;
    use uuid::Uuid;

    fn build_sample(seq: u64, session: Option<Uuid>) -> SampleJson {
        let s = Sample::from_position(
            session,
            seq,
            1_000 + seq,
            lx_protocol::geo::Point::new(1.0, 2.0),
            3.0,
            Source::Gps,
        )
        .unwrap();
        SampleJson::encode(&s, Signature65([1; 65]))
    }

    #[test]
    fn pending_samples_survive_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut q = Queue::open(&state, 100).unwrap();
        for seq in 1..=5 {
            q.push(build_sample(seq, None)).unwrap();
        }
        q.ack(2).unwrap();
        drop(q);
        let q = Queue::open(&state, 100).unwrap();
        let seqs: Vec<u64> = q.head(10).iter().map(|s| s.sequence).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
    }

    #[test]
    fn the_fleet_link_reads_past_what_it_sent_and_keeps_one_idle_position() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut q = Queue::open(&state, 100).unwrap();
        let session = Some(Uuid::from_u128(9));
        for seq in 1..=3 {
            q.push(build_sample(seq, None)).unwrap();
        }
        for seq in 4..=6 {
            q.push(build_sample(seq, session)).unwrap();
        }
        let seqs = |v: Vec<SampleJson>| v.iter().map(|s| s.sequence).collect::<Vec<_>>();
        assert_eq!(seqs(q.after(2, 3)), vec![3, 4, 5], "any session, after 2");
        assert_eq!(q.count_through(4), 4);
        assert_eq!(q.drop_stale_idle().unwrap(), 2);
        assert_eq!(seqs(q.after(0, 10)), vec![3, 4, 5, 6]);
        assert_eq!(q.drop_stale_idle().unwrap(), 0, "one idle sample stays");
        drop(q);
        let q = Queue::open(&state, 100).unwrap();
        assert_eq!(q.len(), 4, "the drop is on disk");
    }

    #[test]
    fn a_torn_last_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut q = Queue::open(&state, 100).unwrap();
        q.push(build_sample(1, None)).unwrap();
        drop(q);
        let mut f = OpenOptions::new()
            .append(true)
            .open(state.path("queue.jsonl"))
            .unwrap();
        f.write_all(b"{\"sessionId\":").unwrap();
        let q = Queue::open(&state, 100).unwrap();
        assert_eq!(q.len(), 1);
    }

    #[test]
    fn a_batch_stays_within_one_session() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut q = Queue::open(&state, 100).unwrap();
        let s = Some(Uuid::from_u128(7));
        q.push(build_sample(1, s)).unwrap();
        q.push(build_sample(2, s)).unwrap();
        q.push(build_sample(3, None)).unwrap();
        assert_eq!(q.head(10).len(), 2);
        q.ack(2).unwrap();
        assert_eq!(q.head(10)[0].sequence, 3);
    }

    #[test]
    fn past_the_bound_the_oldest_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let mut q = Queue::open(&state, 3).unwrap();
        for seq in 1..=5 {
            q.push(build_sample(seq, None)).unwrap();
        }
        assert_eq!(q.dropped(), 2);
        assert_eq!(
            q.head(10).iter().map(|s| s.sequence).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        drop(q);
        assert_eq!(Queue::open(&state, 3).unwrap().len(), 3);
    }
}
