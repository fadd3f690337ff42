//! Replays a recorded NMEA log at its own pace.
//!
//! Contract: the [`Pacer`] core reads each line's UTC time of day (from GGA,
//! RMC, GLL, GNS, GST, GBS, ZDA) and answers how long to wait before writing
//! it: when a line opens a new second, the seconds since the previous one
//! divided by the speed factor, capped at `max_gap` (logs jump across
//! reboots and midnight). Lines without a time wait nothing. The shell
//! [`replay`] writes every line except `#` comments byte for byte, so
//! binary chunks and odd line endings reach the receiver side unchanged; it
//! sleeps through the function it is given, so tests never sleep.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use crate::error::Error;

/// Pace of a replay.
#[derive(Debug, Clone)]
pub struct Pacer {
    speed: f64,
    max_gap: Duration,
    last_second: Option<u32>,
}

impl Pacer {
    /// `speed` 1.0 is real time, 10.0 ten times faster; gaps longer than
    /// `max_gap` (before the speed factor) are shortened to it.
    pub fn new(speed: f64, max_gap: Duration) -> Result<Self, Error> {
        if !(speed.is_finite() && speed > 0.0) {
            return Err(Error::InvalidConfig("replay speed must be > 0"));
        }
        Ok(Self {
            speed,
            max_gap,
            last_second: None,
        })
    }

    /// How long to wait before writing `line`.
    pub fn delay_before(&mut self, line: &[u8]) -> Duration {
        let Some(second) = second_of_day(line) else {
            return Duration::ZERO;
        };
        let previous = self.last_second.replace(second);
        let Some(previous) = previous else {
            return Duration::ZERO;
        };
        if second == previous {
            return Duration::ZERO;
        }
        let gap = (i64::from(second) - i64::from(previous)).rem_euclid(86_400) as u64;
        Duration::from_secs(gap)
            .min(self.max_gap)
            .div_f64(self.speed)
    }
}

/// The whole second of day a sentence carries, if it is one with a time.
fn second_of_day(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line.get(..line.len().min(40))?).ok()?;
    let start = text.find('$')?;
    let mut fields = text[start..].split(',');
    let header = fields.next()?;
    let kind = header.get(3..6)?;
    let index = match kind {
        "GGA" | "RMC" | "GNS" | "GST" | "GBS" | "ZDA" => 0,
        "GLL" => 4,
        _ => return None,
    };
    let field = fields.nth(index)?;
    let digits = field.get(..6)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |range: std::ops::Range<usize>| digits[range].parse::<u32>().ok();
    let (h, m, s) = (n(0..2)?, n(2..4)?, n(4..6)?);
    (h < 24 && m < 60 && s < 61).then_some(h * 3600 + m * 60 + s)
}

/// What a replay wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayStats {
    pub lines: u64,
    pub bytes: u64,
    pub comments: u64,
    /// Sum of the delays asked for.
    pub paced: Duration,
}

/// Writes `reader`'s lines to `writer`, waiting through `sleep` as the
/// pacer says.
pub fn replay<R: BufRead, W: Write>(
    mut reader: R,
    mut writer: W,
    mut pacer: Pacer,
    mut sleep: impl FnMut(Duration),
) -> io::Result<ReplayStats> {
    let mut stats = ReplayStats::default();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        if line.first() == Some(&b'#') {
            stats.comments += 1;
            continue;
        }
        let delay = pacer.delay_before(&line);
        if !delay.is_zero() {
            writer.flush()?;
            sleep(delay);
            stats.paced += delay;
        }
        writer.write_all(&line)?;
        stats.lines += 1;
        stats.bytes += line.len() as u64;
    }
    writer.flush()?;
    Ok(stats)
}

/// [`replay`] of the file at `path`, sleeping for real.
pub fn replay_file(path: &Path, writer: impl Write, pacer: Pacer) -> Result<ReplayStats, Error> {
    let file = File::open(path).map_err(|e| Error::io("open", path, &e))?;
    replay(BufReader::new(file), writer, pacer, std::thread::sleep)
        .map_err(|e| Error::io("replay", path, &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_pacer(speed: f64) -> Pacer {
        Pacer::new(speed, Duration::from_secs(5)).unwrap()
    }

    #[test]
    fn a_new_second_waits_for_the_gap_divided_by_the_speed() {
        let mut pacer = build_pacer(2.0);
        assert_eq!(
            pacer.delay_before(b"$GPGGA,120000.00,x*00\r\n"),
            Duration::ZERO
        );
        assert_eq!(
            pacer.delay_before(b"$GPRMC,120000.50,x*00\r\n"),
            Duration::ZERO
        );
        assert_eq!(pacer.delay_before(b"$GPGSV,3,1,x*00\r\n"), Duration::ZERO);
        assert_eq!(
            pacer.delay_before(b"$GPGGA,120002.00,x*00\r\n"),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn gaps_across_midnight_and_jumps_are_capped() {
        let mut pacer = build_pacer(1.0);
        pacer.delay_before(b"$GNGGA,235959.00,x*00");
        assert_eq!(
            pacer.delay_before(b"$GNGGA,000000.00,x*00"),
            Duration::from_secs(1)
        );
        assert_eq!(
            pacer.delay_before(b"$GNGGA,120000.00,x*00"),
            Duration::from_secs(5)
        );
        assert_eq!(
            pacer.delay_before(b"$GPGLL,4916.45,N,12311.12,W,120001,A*00"),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn comments_are_skipped_and_everything_else_is_written_verbatim() {
        let log: &[u8] =
            b"# header\n$GPGGA,120000,x*00\r\n\xb5\x62bin\n$GPGGA,120001,x*00\r\n$GPRMC,120001";
        let mut out = Vec::new();
        let mut slept = Vec::new();
        let stats = replay(log, &mut out, build_pacer(1.0), |d| slept.push(d)).unwrap();
        assert_eq!(out, &log[9..]);
        assert_eq!(slept, vec![Duration::from_secs(1)]);
        assert_eq!(stats.comments, 1);
        assert_eq!(stats.lines, 4);
    }

    #[test]
    fn a_speed_of_zero_is_rejected() {
        assert!(Pacer::new(0.0, Duration::from_secs(1)).is_err());
    }
}
