//! GPS fix tracker: a sans-IO core over NMEA 0183.
//!
//! Contract:
//! - Input is raw bytes from the receiver in any chunking (partial lines,
//!   garbage, binary protocols interleaved, CR, LF or CR LF) with the
//!   caller's `now`. The tracker never reads a clock and never does I/O.
//! - GGA, RMC, GSA, GST and VTG from the talkers in [`TALKERS`] are used;
//!   every other line is counted in [`Stats`] and skipped. Nothing in the
//!   input can make it panic or fail.
//! - A GGA or RMC with a position and a valid fix makes the current [`Fix`]
//!   (its `received_at` is that sentence's `now`); a GGA or RMC of the same
//!   receiver epoch (same UTC time of day) merges into it. A GGA with
//!   quality 0 or an RMC marked void clears it.
//! - GSA (HDOP), GST (accuracy) and VTG (speed, course) are kept for
//!   [`TrackerConfig::aux_max_age`] and apply to the fix they arrive with,
//!   before or after its GGA/RMC.
//! - Every change of the current fix queues an [`Output`]; the caller drains
//!   them with [`Tracker::poll_output`]. The queue is bounded: when the
//!   caller does not drain it, the oldest outputs are dropped and counted.
//! - Whether a fix is usable is the caller's call: [`Tracker::fresh_fix`]
//!   returns it only within the age the caller passes.

mod framer;
mod sentence;
#[cfg(feature = "linux")]
pub mod serial;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, NaiveTime, TimeDelta};

use crate::error::{Error, SentenceError};
use framer::{Frame, Framer};
pub(crate) use sentence::MPS_PER_KNOT;
pub use sentence::{SENTENCE_TYPES, Sentence, TALKERS, parse_sentence};

/// Fix quality as the receiver reports it (GGA quality field, or RMC
/// status and FAA mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    NoFix,
    /// Autonomous GNSS fix.
    Gps,
    /// Differential (SBAS, DGPS).
    Dgps,
    /// Precise positioning service.
    Pps,
    /// RTK with fixed integers.
    Rtk,
    /// RTK with float ambiguities.
    FloatRtk,
    /// Dead reckoning: extrapolated, not measured.
    Estimated,
    /// Position entered by hand.
    Manual,
    /// A simulator, not a receiver.
    Simulation,
}

impl Quality {
    /// True for a position measured from satellites (not estimated, manual
    /// or simulated).
    pub fn is_measured(self) -> bool {
        matches!(
            self,
            Self::Gps | Self::Dgps | Self::Pps | Self::Rtk | Self::FloatRtk
        )
    }
}

/// Where [`Fix::accuracy_m`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccuracySource {
    /// GST: √(σlat² + σlng²), the receiver's own 1-sigma estimate.
    Gst,
    /// HDOP × the configured UERE.
    Hdop,
}

// Design: one flat struct rather than per-sentence parts, because the agent
// signs exactly these fields and must not care which sentence gave which.
/// The receiver's current position and what it says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fix {
    /// Degrees, WGS84, north positive.
    pub lat: f64,
    /// Degrees, WGS84, east positive.
    pub lng: f64,
    /// Above mean sea level (GGA).
    pub altitude_m: Option<f64>,
    pub quality: Quality,
    /// Satellites used (GGA).
    pub satellites: Option<u8>,
    /// Horizontal dilution of precision (GGA, else GSA).
    pub hdop: Option<f32>,
    /// Horizontal 1-sigma error estimate, see [`AccuracySource`].
    pub accuracy_m: Option<f64>,
    pub accuracy_source: Option<AccuracySource>,
    /// UTC time of the fix as Unix milliseconds: RMC date + GGA/RMC time.
    /// `None` until an RMC has given a date.
    pub utc_ms: Option<u64>,
    /// Speed over ground (RMC or VTG).
    pub speed_mps: Option<f64>,
    /// Course over ground, degrees true (RMC or VTG).
    pub course_deg: Option<f64>,
    /// The `now` passed with the bytes that completed the sentence that last
    /// set the position.
    pub received_at: Instant,
}

impl Fix {
    /// Time since `received_at`; zero if `now` is earlier.
    pub fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.received_at)
    }

    /// True while `age(now) <= max_age`.
    pub fn is_fresh(&self, now: Instant, max_age: Duration) -> bool {
        self.age(now) <= max_age
    }
}

/// What the tracker tells its caller.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// The current fix was set or changed.
    Fix(Fix),
    /// The receiver said it has no fix (GGA quality 0, RMC void); there was
    /// one before.
    FixLost { at: Instant },
}

/// Counters over everything fed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sentences of a used type that parsed and were applied.
    pub sentences_ok: u64,
    /// Lines whose `*HH` did not match.
    pub checksum_errors: u64,
    /// Lines cut short, overlong, with binary bytes or junk after `*HH`.
    pub malformed: u64,
    /// Checksum right, type used, fields not parsable or out of range.
    pub unparsed: u64,
    /// Checksum right, talker or type not used (GSV, proprietary, AIS …).
    pub ignored: u64,
    /// Bytes outside any `$` line.
    pub noise_bytes: u64,
    /// Outputs dropped because the caller did not drain the queue.
    pub outputs_dropped: u64,
}

impl Stats {
    /// Lines that carried a correct checksum, used or not.
    pub fn checksummed(&self) -> u64 {
        self.sentences_ok + self.unparsed + self.ignored
    }
}

/// Tracker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerConfig {
    /// User-equivalent range error for the HDOP fallback: accuracy = HDOP ×
    /// UERE when no GST arrives.
    pub uere_m: f64,
    /// How long a GSA, GST or VTG value stays applicable to later fixes.
    pub aux_max_age: Duration,
    /// Bound of the output queue.
    pub max_outputs: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            uere_m: 5.0,
            aux_max_age: Duration::from_millis(1500),
            max_outputs: 64,
        }
    }
}

impl TrackerConfig {
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.uere_m.is_finite() && self.uere_m > 0.0) {
            return Err(Error::InvalidConfig("uere_m must be a positive number"));
        }
        if self.max_outputs == 0 {
            return Err(Error::InvalidConfig("max_outputs must be at least 1"));
        }
        Ok(())
    }
}

/// The sans-IO fix tracker. See the module documentation for its contract.
#[derive(Debug)]
pub struct Tracker {
    framer: Framer,
    state: State,
}

/// A value with the `now` it arrived at.
#[derive(Debug, Clone, Copy)]
struct Stamped<T> {
    value: T,
    at: Instant,
}

#[derive(Debug)]
struct State {
    config: TrackerConfig,
    fix: Option<Fix>,
    /// UTC time of day of the current fix's epoch.
    epoch: Option<NaiveTime>,
    /// Whether the current epoch had a GGA (its quality wins over RMC's).
    epoch_has_gga: bool,
    status: Quality,
    /// Last RMC date and the time of day it was last advanced to.
    date: Option<(NaiveDate, NaiveTime)>,
    gsa_hdop: Option<Stamped<f32>>,
    gst_accuracy: Option<Stamped<f64>>,
    vtg: Option<Stamped<(Option<f64>, Option<f64>)>>,
    outputs: VecDeque<Output>,
    stats: Stats,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::build(TrackerConfig::default())
    }
}

impl Tracker {
    /// A tracker with `config`, checked.
    pub fn new(config: TrackerConfig) -> Result<Self, Error> {
        config.validate()?;
        Ok(Self::build(config))
    }

    fn build(config: TrackerConfig) -> Self {
        Self {
            framer: Framer::new(),
            state: State {
                config,
                fix: None,
                epoch: None,
                epoch_has_gga: false,
                status: Quality::NoFix,
                date: None,
                gsa_hdop: None,
                gst_accuracy: None,
                vtg: None,
                outputs: VecDeque::new(),
                stats: Stats::default(),
            },
        }
    }

    /// Feeds bytes received at `now`.
    pub fn feed(&mut self, bytes: &[u8], now: Instant) {
        let state = &mut self.state;
        self.framer.push(bytes, |frame| match frame {
            Frame::Line(line) => state.line(line, now),
            Frame::Malformed(_) => state.stats.malformed += 1,
        });
    }

    /// The next output, oldest first.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.state.outputs.pop_front()
    }

    /// The current fix, however old.
    pub fn fix(&self) -> Option<&Fix> {
        self.state.fix.as_ref()
    }

    /// The current fix if it is at most `max_age` old at `now`.
    pub fn fresh_fix(&self, now: Instant, max_age: Duration) -> Option<&Fix> {
        self.fix().filter(|fix| fix.is_fresh(now, max_age))
    }

    /// The quality the receiver last reported, `NoFix` included.
    pub fn status(&self) -> Quality {
        self.state.status
    }

    pub fn stats(&self) -> Stats {
        Stats {
            noise_bytes: self.framer.noise_bytes(),
            ..self.state.stats
        }
    }

    /// Drops the partial line in progress, keeping the fix; for a reconnect.
    pub fn reset_framing(&mut self) {
        self.framer.reset();
    }
}

impl State {
    fn line(&mut self, line: &[u8], now: Instant) {
        match parse_sentence(line) {
            Ok(sentence) => {
                self.stats.sentences_ok += 1;
                self.apply(&sentence, now);
            }
            Err(SentenceError::Malformed(_)) => self.stats.malformed += 1,
            Err(SentenceError::Checksum { .. }) => self.stats.checksum_errors += 1,
            Err(SentenceError::Ignored { .. }) => self.stats.ignored += 1,
            Err(SentenceError::Unparsed { .. }) => self.stats.unparsed += 1,
        }
    }

    fn apply(&mut self, sentence: &Sentence, now: Instant) {
        match *sentence {
            Sentence::Gga {
                time,
                quality,
                position,
                altitude_m,
                satellites,
                hdop,
            } => {
                let utc_ms = self.utc_ms(time, None);
                let Some((lat, lng)) = position.filter(|_| quality != Quality::NoFix) else {
                    return self.lose(now);
                };
                let same = self.same_epoch(time);
                let previous = self.fix.take().filter(|_| same);
                let hdop = hdop.or_else(|| self.aux(self.gsa_hdop, now));
                let (speed, course) = match &previous {
                    Some(p) => (p.speed_mps, p.course_deg),
                    None => self.aux(self.vtg, now).unwrap_or((None, None)),
                };
                let fix = Fix {
                    lat,
                    lng,
                    altitude_m,
                    quality,
                    satellites,
                    hdop,
                    accuracy_m: None,
                    accuracy_source: None,
                    utc_ms: utc_ms.or(previous.as_ref().and_then(|p| p.utc_ms)),
                    speed_mps: speed,
                    course_deg: course,
                    received_at: now,
                };
                self.epoch_has_gga = true;
                self.set(fix, time, now);
            }
            Sentence::Rmc {
                time,
                date,
                quality,
                position,
                speed_mps,
                course_deg,
            } => {
                let utc_ms = self.utc_ms(time, date);
                let Some((lat, lng)) = position.filter(|_| quality != Quality::NoFix) else {
                    return self.lose(now);
                };
                let same = self.same_epoch(time);
                let previous = self.fix.take().filter(|_| same);
                let vtg = self.aux(self.vtg, now).unwrap_or((None, None));
                let mut fix = Fix {
                    lat,
                    lng,
                    altitude_m: None,
                    quality,
                    satellites: None,
                    hdop: self.aux(self.gsa_hdop, now),
                    accuracy_m: None,
                    accuracy_source: None,
                    utc_ms,
                    speed_mps: speed_mps.or(vtg.0),
                    course_deg: course_deg.or(vtg.1),
                    received_at: now,
                };
                match previous {
                    Some(p) if self.epoch_has_gga => {
                        fix.altitude_m = p.altitude_m;
                        fix.quality = p.quality;
                        fix.satellites = p.satellites;
                        fix.hdop = p.hdop.or(fix.hdop);
                    }
                    _ => self.epoch_has_gga = false,
                }
                self.set(fix, time, now);
            }
            Sentence::Gsa { hdop, .. } => {
                let Some(hdop) = hdop else { return };
                self.gsa_hdop = Some(Stamped {
                    value: hdop,
                    at: now,
                });
                self.enrich(now, |fix| {
                    if fix.hdop.is_some() {
                        return false;
                    }
                    fix.hdop = Some(hdop);
                    true
                });
            }
            Sentence::Gst { accuracy_m, .. } => {
                let Some(accuracy) = accuracy_m else { return };
                self.gst_accuracy = Some(Stamped {
                    value: accuracy,
                    at: now,
                });
                self.enrich(now, |fix| {
                    let changed = fix.accuracy_m != Some(accuracy);
                    fix.accuracy_m = Some(accuracy);
                    fix.accuracy_source = Some(AccuracySource::Gst);
                    changed
                });
            }
            Sentence::Vtg {
                speed_mps,
                course_deg,
            } => {
                self.vtg = Some(Stamped {
                    value: (speed_mps, course_deg),
                    at: now,
                });
                self.enrich(now, |fix| {
                    let before = (fix.speed_mps, fix.course_deg);
                    fix.speed_mps = speed_mps.or(fix.speed_mps);
                    fix.course_deg = course_deg.or(fix.course_deg);
                    before != (fix.speed_mps, fix.course_deg)
                });
            }
        }
    }

    /// Sets the current fix, filling accuracy, and queues it.
    fn set(&mut self, mut fix: Fix, time: Option<NaiveTime>, now: Instant) {
        match self.aux(self.gst_accuracy, now) {
            Some(accuracy) => {
                fix.accuracy_m = Some(accuracy);
                fix.accuracy_source = Some(AccuracySource::Gst);
            }
            None => self.hdop_accuracy(&mut fix),
        }
        self.status = fix.quality;
        self.epoch = time;
        self.fix = Some(fix.clone());
        self.push(Output::Fix(fix));
    }

    fn hdop_accuracy(&self, fix: &mut Fix) {
        if let Some(hdop) = fix.hdop {
            fix.accuracy_m = Some(f64::from(hdop) * self.config.uere_m);
            fix.accuracy_source = Some(AccuracySource::Hdop);
        }
    }

    /// Applies an auxiliary value to the current fix if it belongs to the
    /// same moment; `change` returns whether it changed anything.
    fn enrich(&mut self, now: Instant, change: impl FnOnce(&mut Fix) -> bool) {
        let max_age = self.config.aux_max_age;
        let Some(mut fix) = self.fix.take() else {
            return;
        };
        let changed = fix.is_fresh(now, max_age) && change(&mut fix);
        if changed && fix.accuracy_source != Some(AccuracySource::Gst) {
            self.hdop_accuracy(&mut fix);
        }
        if changed {
            self.push(Output::Fix(fix.clone()));
        }
        self.fix = Some(fix);
    }

    fn lose(&mut self, now: Instant) {
        self.status = Quality::NoFix;
        self.epoch = None;
        self.epoch_has_gga = false;
        if self.fix.take().is_some() {
            self.push(Output::FixLost { at: now });
        }
    }

    fn same_epoch(&self, time: Option<NaiveTime>) -> bool {
        time.is_some() && time == self.epoch && self.fix.is_some()
    }

    fn aux<T: Copy>(&self, value: Option<Stamped<T>>, now: Instant) -> Option<T> {
        value
            .filter(|v| now.saturating_duration_since(v.at) <= self.config.aux_max_age)
            .map(|v| v.value)
    }

    /// Unix ms for `time` on the tracked date. An RMC `date` re-anchors the
    /// date; without one, a time of day more than 12 h before the anchor's is
    /// taken as past midnight (and more than 12 h after as before it).
    fn utc_ms(&mut self, time: Option<NaiveTime>, date: Option<NaiveDate>) -> Option<u64> {
        let time = time?;
        let day = match (date, self.date) {
            (Some(date), _) => {
                self.date = Some((date, time));
                date
            }
            (None, Some((anchor, anchor_time))) => {
                let half_day = TimeDelta::hours(12);
                let delta = time.signed_duration_since(anchor_time);
                if delta < -half_day {
                    let next = anchor.succ_opt()?;
                    self.date = Some((next, time));
                    next
                } else if delta > half_day {
                    anchor.pred_opt()?
                } else {
                    self.date = Some((anchor, time));
                    anchor
                }
            }
            (None, None) => return None,
        };
        u64::try_from(day.and_time(time).and_utc().timestamp_millis()).ok()
    }

    fn push(&mut self, output: Output) {
        if self.outputs.len() >= self.config.max_outputs {
            self.outputs.pop_front();
            self.stats.outputs_dropped += 1;
        }
        self.outputs.push_back(output);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::sim::nmea::frame;

    const GGA: &str = "GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
    const RMC: &str = "GPRMC,123519.00,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W,A";
    const GST: &str = "GPGST,123519.00,0.5,1.2,0.8,30.0,0.6,0.8,1.5";

    fn build_tracker() -> (Tracker, Instant) {
        (Tracker::default(), Instant::now())
    }

    fn feed_all(tracker: &mut Tracker, bodies: &[&str], now: Instant) {
        for body in bodies {
            tracker.feed(frame(body).as_bytes(), now);
        }
    }

    fn outputs(tracker: &mut Tracker) -> Vec<Output> {
        std::iter::from_fn(|| tracker.poll_output()).collect()
    }

    #[test]
    fn gga_and_rmc_of_one_epoch_merge_into_one_fix() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[GGA, RMC], t0);
        let fix = tracker.fix().unwrap();
        assert!((fix.lat - (48.0 + 7.038 / 60.0)).abs() < 1e-12);
        assert!((fix.lng - (11.0 + 31.0 / 60.0)).abs() < 1e-12);
        assert_eq!(fix.altitude_m.map(|a| (a * 10.0).round()), Some(5454.0));
        assert_eq!(fix.quality, Quality::Gps);
        assert_eq!(fix.satellites, Some(8));
        assert_eq!(fix.hdop, Some(0.9));
        assert_eq!(fix.utc_ms, Some(764_426_119_000));
        assert!((fix.speed_mps.unwrap() - 22.4 * MPS_PER_KNOT).abs() < 1e-4);
        assert_eq!(fix.course_deg.map(|c| (c * 10.0).round()), Some(844.0));
        assert_eq!(fix.received_at, t0);
        assert_eq!(tracker.stats().sentences_ok, 2);
    }

    #[test]
    fn the_utc_time_needs_a_date_from_rmc() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[GGA], t0);
        assert_eq!(tracker.fix().unwrap().utc_ms, None);
        feed_all(&mut tracker, &[RMC, GGA], t0);
        assert_eq!(tracker.fix().unwrap().utc_ms, Some(764_426_119_000));
    }

    #[test]
    fn a_fix_is_fresh_only_within_the_age_passed_in() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[GGA], t0);
        let max_age = Duration::from_secs(2);
        assert!(
            tracker
                .fresh_fix(t0 + Duration::from_secs(2), max_age)
                .is_some()
        );
        assert!(
            tracker
                .fresh_fix(t0 + Duration::from_millis(2001), max_age)
                .is_none()
        );
        assert!(tracker.fix().is_some());
    }

    #[test]
    fn without_gst_the_accuracy_is_hdop_times_the_configured_uere() {
        let config = TrackerConfig {
            uere_m: 4.0,
            ..TrackerConfig::default()
        };
        let mut tracker = Tracker::new(config).unwrap();
        feed_all(&mut tracker, &[GGA], Instant::now());
        let fix = tracker.fix().unwrap();
        assert!((fix.accuracy_m.unwrap() - 3.6).abs() < 1e-6);
        assert_eq!(fix.accuracy_source, Some(AccuracySource::Hdop));
    }

    #[test]
    fn a_gst_after_the_gga_sets_the_accuracy_of_the_same_fix() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[GGA], t0);
        outputs(&mut tracker);
        feed_all(&mut tracker, &[GST], t0 + Duration::from_millis(20));
        let fix = tracker.fix().unwrap();
        assert!((fix.accuracy_m.unwrap() - 1.0).abs() < 1e-6);
        assert_eq!(fix.accuracy_source, Some(AccuracySource::Gst));
        assert_eq!(fix.received_at, t0);
        assert!(matches!(outputs(&mut tracker).as_slice(), [Output::Fix(_)]));
    }

    #[test]
    fn a_gst_older_than_the_aux_age_is_not_applied() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[GST], t0);
        feed_all(&mut tracker, &[GGA], t0 + Duration::from_secs(5));
        assert_eq!(
            tracker.fix().unwrap().accuracy_source,
            Some(AccuracySource::Hdop)
        );
    }

    #[test]
    fn gsa_hdop_fills_in_when_only_rmc_gives_the_position() {
        let (mut tracker, t0) = build_tracker();
        feed_all(
            &mut tracker,
            &[RMC, "GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1"],
            t0,
        );
        let fix = tracker.fix().unwrap();
        assert_eq!(fix.hdop, Some(1.3));
        assert!((fix.accuracy_m.unwrap() - 6.5).abs() < 1e-6);
    }

    #[test]
    fn vtg_fills_in_speed_and_course_for_a_gga_only_receiver() {
        let (mut tracker, t0) = build_tracker();
        feed_all(
            &mut tracker,
            &[GGA, "GPVTG,054.7,T,034.4,M,005.5,N,010.2,K"],
            t0,
        );
        let fix = tracker.fix().unwrap();
        assert!((fix.speed_mps.unwrap() - 5.5 * MPS_PER_KNOT).abs() < 1e-4);
        assert_eq!(fix.course_deg.map(|c| (c * 10.0).round()), Some(547.0));
    }

    #[test]
    fn rtk_quality_from_gga_survives_the_rmc_of_the_same_epoch() {
        let (mut tracker, t0) = build_tracker();
        let gga = GGA.replace(",E,1,08,", ",E,4,08,");
        feed_all(&mut tracker, &[&gga, RMC], t0);
        assert_eq!(tracker.fix().unwrap().quality, Quality::Rtk);
    }

    #[test]
    fn a_void_rmc_clears_the_fix_and_reports_it_lost_once() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[GGA], t0);
        outputs(&mut tracker);
        let void = "GPRMC,123520.00,V,,,,,,,230394,,,N";
        feed_all(&mut tracker, &[void, void], t0 + Duration::from_secs(1));
        assert!(tracker.fix().is_none());
        assert_eq!(tracker.status(), Quality::NoFix);
        assert_eq!(
            outputs(&mut tracker),
            vec![Output::FixLost {
                at: t0 + Duration::from_secs(1)
            }]
        );
    }

    #[test]
    fn gga_quality_zero_is_no_fix_even_with_a_position() {
        let (mut tracker, t0) = build_tracker();
        feed_all(&mut tracker, &[&GGA.replace(",E,1,08,", ",E,0,08,")], t0);
        assert!(tracker.fix().is_none());
    }

    #[test]
    fn bytes_fed_one_at_a_time_give_the_same_fix_as_one_chunk() {
        let t0 = Instant::now();
        let stream = format!("{}{}{}", frame(GGA), frame(RMC), frame(GST));
        let mut whole = Tracker::default();
        whole.feed(stream.as_bytes(), t0);
        let mut bytewise = Tracker::default();
        for b in stream.as_bytes() {
            bytewise.feed(std::slice::from_ref(b), t0);
        }
        assert_eq!(whole.fix(), bytewise.fix());
        assert_eq!(whole.stats(), bytewise.stats());
    }

    #[test]
    fn bad_checksums_truncated_lines_and_noise_are_counted_and_skipped() {
        let (mut tracker, t0) = build_tracker();
        let good = frame(GGA);
        let bad = good.replace("*", "*F");
        let mut stream = Vec::new();
        stream.extend_from_slice(b"\xb5\x62\x01\x07junk");
        stream.extend_from_slice(&bad.as_bytes()[..bad.len() - 3]);
        stream.extend_from_slice(b"\r\n$GPRMC,123519.00,A,48\r\n");
        stream.extend_from_slice(b"$GPGSV,1,1,00*79\r\n");
        stream.extend_from_slice(good.as_bytes());
        tracker.feed(&stream, t0);
        let stats = tracker.stats();
        assert_eq!(stats.checksum_errors, 1, "{stats:?}");
        assert_eq!(stats.malformed, 1, "{stats:?}");
        assert_eq!(stats.ignored, 1, "{stats:?}");
        assert_eq!(stats.sentences_ok, 1, "{stats:?}");
        assert_eq!(stats.noise_bytes, 8, "{stats:?}");
        assert!(tracker.fix().is_some());
    }

    #[test]
    fn a_gga_after_midnight_moves_the_rmc_date_forward() {
        let (mut tracker, t0) = build_tracker();
        let rmc = "GPRMC,235959.50,A,4807.038,N,01131.000,E,0.0,0.0,311299,,,A";
        let gga = "GPGGA,000000.50,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,";
        feed_all(&mut tracker, &[rmc, gga], t0);
        assert_eq!(tracker.fix().unwrap().utc_ms, Some(946_684_800_500));
    }

    #[test]
    fn the_output_queue_drops_the_oldest_when_not_drained() {
        let config = TrackerConfig {
            max_outputs: 2,
            ..TrackerConfig::default()
        };
        let mut tracker = Tracker::new(config).unwrap();
        let t0 = Instant::now();
        for i in 0..5u64 {
            feed_all(&mut tracker, &[GGA], t0 + Duration::from_secs(i));
        }
        let got = outputs(&mut tracker);
        assert_eq!(got.len(), 2);
        assert_eq!(tracker.stats().outputs_dropped, 3);
        let Output::Fix(last) = &got[1] else { panic!() };
        assert_eq!(last.received_at, t0 + Duration::from_secs(4));
    }

    #[test]
    fn a_non_positive_uere_is_a_config_error() {
        let config = TrackerConfig {
            uere_m: 0.0,
            ..TrackerConfig::default()
        };
        assert_eq!(
            Tracker::new(config).err(),
            Some(Error::InvalidConfig("uere_m must be a positive number"))
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_in_arbitrary_chunks_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)
        ) {
            let (mut tracker, t0) = build_tracker();
            for chunk in &chunks {
                tracker.feed(chunk, t0);
                while tracker.poll_output().is_some() {}
            }
            let _ = tracker.stats();
        }

        #[test]
        fn mutated_real_sentences_never_panic(
            flips in proptest::collection::vec((0usize..300, any::<u8>()), 0..8)
        ) {
            let mut bytes = format!("{}{}{}", frame(GGA), frame(RMC), frame(GST)).into_bytes();
            for (at, value) in flips {
                let len = bytes.len();
                bytes[at % len] = value;
            }
            let (mut tracker, t0) = build_tracker();
            tracker.feed(&bytes, t0);
            if let Some(fix) = tracker.fix() {
                prop_assert!(fix.lat.abs() <= 90.0 && fix.lng.abs() <= 180.0);
            }
        }
    }
}
