//! The GPS receiver on a serial port: a thin blocking shell around
//! [`Tracker`].
//!
//! Contract:
//! - [`GpsReader::spawn`] starts one plain std thread that owns the port
//!   and the tracker. Events go to the `sink` closure, called on that
//!   thread; it returns `false` when its receiver is gone, which stops the
//!   thread. Any channel fits: `move |e| tx.send(e).is_ok()` for std
//!   `mpsc`, `move |e| tx.blocking_send(e).is_ok()` for a tokio channel (so
//!   lx-hal needs no async runtime).
//! - The port is opened at the configured baud, or with [`Baud::Auto`] at
//!   the first of [`AUTO_BAUDS`] at which at least two checksummed sentences
//!   arrive within the detection window.
//! - When the port fails (receiver unplugged, read error, hang-up) the
//!   thread reports [`Event::Disconnected`] once, then retries with
//!   exponential backoff, re-detecting the baud, and reports
//!   [`Event::Reconnected`] when data flows again. The fix survives the
//!   outage; its age tells the caller how stale it is.
//! - [`GpsReader::stop`] (or drop) ends the thread within one read timeout.
//!
//! ```no_run
//! use std::sync::mpsc;
//!
//! use lx_hal::gps::serial::{Event, GpsReader, SerialConfig};
//!
//! let (tx, rx) = mpsc::channel();
//! let config = SerialConfig::new("/dev/ttyACM0");
//! let _reader = GpsReader::spawn(config, move |event| tx.send(event).is_ok())?;
//! for event in rx {
//!     if let Event::Fix(fix) = event {
//!         println!("{:.7} {:.7} ±{:?} m", fix.lat, fix.lng, fix.accuracy_m);
//!     }
//! }
//! # Ok::<(), lx_hal::Error>(())
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::TTYPort;

use crate::error::Error;
use crate::gps::{Fix, Output, Tracker, TrackerConfig};

/// Baud rates tried by [`Baud::Auto`], most common for GNSS receivers first.
pub const AUTO_BAUDS: [u32; 6] = [9600, 38400, 115200, 4800, 57600, 230400];

/// How the baud rate is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baud {
    Fixed(u32),
    /// Try [`AUTO_BAUDS`] in order.
    Auto,
}

/// Serial reader settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SerialConfig {
    /// The device, e.g. `/dev/ttyACM0` or a stable `/dev/serial/by-id/…`
    /// link (which survives re-enumeration on replug).
    pub path: PathBuf,
    pub baud: Baud,
    /// How long each candidate baud gets to show checksummed sentences.
    pub detect_window: Duration,
    /// Upper bound of one blocking read; also bounds how long `stop` takes.
    pub read_timeout: Duration,
    /// First retry delay after a failure; doubles up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub tracker: TrackerConfig,
}

impl SerialConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            baud: Baud::Auto,
            detect_window: Duration::from_millis(1500),
            read_timeout: Duration::from_millis(200),
            backoff_min: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            tracker: TrackerConfig::default(),
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        self.tracker.validate()?;
        if self.read_timeout.is_zero() || self.detect_window.is_zero() {
            return Err(Error::InvalidConfig(
                "read_timeout and detect_window must be > 0",
            ));
        }
        if self.backoff_min.is_zero() || self.backoff_max < self.backoff_min {
            return Err(Error::InvalidConfig(
                "backoff_min must be > 0 and <= backoff_max",
            ));
        }
        if self.baud == Baud::Fixed(0) {
            return Err(Error::InvalidConfig("baud must be > 0"));
        }
        Ok(())
    }
}

/// What the reader thread reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The port is open and NMEA flows, for the first time.
    Connected { baud: u32 },
    /// The current fix was set or changed.
    Fix(Fix),
    /// The receiver reported that it lost its fix.
    FixLost,
    /// The port failed or could not be opened; retrying with backoff.
    Disconnected { error: Error },
    /// The port is back after a `Disconnected`.
    Reconnected { baud: u32 },
}

/// Handle on the reader thread.
#[derive(Debug)]
pub struct GpsReader {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl GpsReader {
    /// Starts the reader thread; see the module documentation.
    pub fn spawn(
        config: SerialConfig,
        sink: impl FnMut(Event) -> bool + Send + 'static,
    ) -> Result<Self, Error> {
        config.validate()?;
        let tracker = Tracker::new(config.tracker.clone())?;
        let (stop_tx, stop_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lx-gps".into())
            .spawn(move || {
                Worker {
                    config,
                    tracker,
                    stop: stop_rx,
                    sink,
                }
                .run();
            })
            .map_err(|e| Error::Thread(e.to_string()))?;
        Ok(Self {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    /// True while the thread runs (it ends on `stop` or when the sink
    /// returns `false`).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    fn shutdown(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            // A panic in the thread already printed its message; nothing to add.
            let _ = thread.join();
        }
    }
}

impl Drop for GpsReader {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Opens `path` at each candidate baud in turn and returns the first at
/// which two checksummed sentences arrive within `window`, with the port
/// still open so no data is lost.
pub fn detect_baud(
    path: &Path,
    candidates: &[u32],
    window: Duration,
    read_timeout: Duration,
) -> Result<(TTYPort, u32), Error> {
    let found = detect_until(path, candidates, window, read_timeout, &|| false)?;
    found.ok_or_else(|| Error::BaudNotDetected {
        path: path.to_path_buf(),
        tried: candidates.to_vec(),
    })
}

/// [`detect_baud`] that gives up, with `Ok(None)`, once `stop()` is true.
fn detect_until(
    path: &Path,
    candidates: &[u32],
    window: Duration,
    read_timeout: Duration,
    stop: &dyn Fn() -> bool,
) -> Result<Option<(TTYPort, u32)>, Error> {
    let mut last_open_error = None;
    for &baud in candidates {
        let mut port = match open(path, baud, read_timeout) {
            Ok(port) => port,
            Err(e) => {
                last_open_error = Some(e);
                continue;
            }
        };
        let mut probe = Tracker::default();
        let deadline = Instant::now() + window;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline && probe.stats().checksummed() < 2 {
            if stop() {
                release(port);
                return Ok(None);
            }
            match std::io::Read::read(&mut port, &mut buf) {
                Ok(0) => break,
                Ok(n) => probe.feed(&buf[..n], Instant::now()),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => {
                    release(port);
                    return Err(Error::io("read", path, &e));
                }
            }
        }
        if probe.stats().checksummed() >= 2 {
            return Ok(Some((port, baud)));
        }
        release(port);
    }
    match last_open_error {
        Some(e) => Err(e),
        None => Err(Error::BaudNotDetected {
            path: path.to_path_buf(),
            tried: candidates.to_vec(),
        }),
    }
}

fn open(path: &Path, baud: u32, read_timeout: Duration) -> Result<TTYPort, Error> {
    serialport::new(path.to_string_lossy(), baud)
        .timeout(read_timeout)
        .open_native()
        .map_err(|e| Error::Io {
            op: "open",
            path: path.to_path_buf(),
            kind: std::io::Error::from(e.clone()).kind(),
            message: e.description,
        })
}

/// Closes a port, first clearing the exclusive flag that `open` set, since
/// it outlives our descriptor when another one keeps the tty open.
fn release(mut port: TTYPort) {
    // Best effort: on a vanished device this fails, and closing is all that is left.
    let _ = port.set_exclusive(false);
}

struct Worker<S> {
    config: SerialConfig,
    tracker: Tracker,
    stop: Receiver<()>,
    sink: S,
}

/// Why the read loop ended.
enum End {
    Stop,
    Failed(Error),
}

impl<S: FnMut(Event) -> bool> Worker<S> {
    fn run(mut self) {
        let mut connected_once = false;
        let mut backoff = self.config.backoff_min;
        let mut reported_down = false;
        loop {
            match self.connect() {
                Ok(None) => return,
                Ok(Some((port, baud))) => {
                    let event = if connected_once {
                        Event::Reconnected { baud }
                    } else {
                        Event::Connected { baud }
                    };
                    connected_once = true;
                    if !(self.sink)(event) {
                        return release(port);
                    }
                    let before = self.tracker.stats().checksummed();
                    let End::Failed(error) = self.read(port) else {
                        return;
                    };
                    // A port that opens but fails before any sentence must
                    // not spin: only a productive connection resets the backoff.
                    if self.tracker.stats().checksummed() > before {
                        backoff = self.config.backoff_min;
                    }
                    reported_down = true;
                    if !(self.sink)(Event::Disconnected { error }) {
                        return;
                    }
                }
                Err(error) => {
                    if !reported_down {
                        reported_down = true;
                        if !(self.sink)(Event::Disconnected { error }) {
                            return;
                        }
                    }
                }
            }
            match self.stop.recv_timeout(backoff) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    /// The open port and its baud; `None` when asked to stop meanwhile.
    fn connect(&self) -> Result<Option<(TTYPort, u32)>, Error> {
        let c = &self.config;
        match c.baud {
            Baud::Fixed(baud) => open(&c.path, baud, c.read_timeout).map(|port| Some((port, baud))),
            Baud::Auto => detect_until(
                &c.path,
                &AUTO_BAUDS,
                c.detect_window,
                c.read_timeout,
                &|| self.stopped(),
            ),
        }
    }

    fn read(&mut self, mut port: TTYPort) -> End {
        self.tracker.reset_framing();
        let mut buf = [0u8; 1024];
        loop {
            if self.stopped() {
                release(port);
                return End::Stop;
            }
            match std::io::Read::read(&mut port, &mut buf) {
                Ok(0) => {
                    release(port);
                    return End::Failed(Error::Io {
                        op: "read",
                        path: self.config.path.clone(),
                        kind: std::io::ErrorKind::UnexpectedEof,
                        message: "the port closed".into(),
                    });
                }
                Ok(n) => {
                    self.tracker.feed(&buf[..n], Instant::now());
                    while let Some(output) = self.tracker.poll_output() {
                        let event = match output {
                            Output::Fix(fix) => Event::Fix(fix),
                            Output::FixLost { .. } => Event::FixLost,
                        };
                        if !(self.sink)(event) {
                            release(port);
                            return End::Stop;
                        }
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    release(port);
                    return End::Failed(Error::io("read", &self.config.path, &e));
                }
            }
        }
    }

    fn stopped(&self) -> bool {
        !matches!(self.stop.try_recv(), Err(TryRecvError::Empty))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_read_timeout_is_rejected() {
        let mut config = SerialConfig::new("/dev/null");
        config.read_timeout = Duration::ZERO;
        assert!(matches!(
            GpsReader::spawn(config, |_| true),
            Err(Error::InvalidConfig(_))
        ));
    }

    #[test]
    fn a_missing_port_is_reported_once_as_disconnected() {
        let mut config = SerialConfig::new("/nonexistent/lx-gps");
        config.backoff_min = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(20);
        let (tx, rx) = mpsc::channel();
        let reader = GpsReader::spawn(config, move |e| tx.send(e).is_ok()).unwrap();
        let first = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(matches!(first, Event::Disconnected { .. }), "{first:?}");
        assert!(rx.recv_timeout(Duration::from_millis(200)).is_err());
        reader.stop();
    }

    #[test]
    fn stop_returns_promptly_while_the_baud_is_being_detected() {
        let pty = crate::sim::Pty::open().unwrap();
        let (tx, _rx) = mpsc::channel();
        let reader =
            GpsReader::spawn(SerialConfig::new(pty.path()), move |e| tx.send(e).is_ok()).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let started = Instant::now();
        reader.stop();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_silent_port_names_the_bauds_it_tried() {
        let pty = crate::sim::Pty::open().unwrap();
        let got = detect_baud(
            pty.path(),
            &[9600, 4800],
            Duration::from_millis(150),
            Duration::from_millis(50),
        );
        assert_eq!(
            got.err(),
            Some(Error::BaudNotDetected {
                path: pty.path().to_path_buf(),
                tried: vec![9600, 4800],
            })
        );
    }

    #[test]
    fn a_fixed_baud_is_used_without_detection() {
        let mut pty = crate::sim::Pty::open().unwrap();
        let mut config = SerialConfig::new(pty.path());
        config.baud = Baud::Fixed(4800);
        let (tx, rx) = mpsc::channel();
        let reader = GpsReader::spawn(config, move |e| tx.send(e).is_ok()).unwrap();
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)).unwrap(),
            Event::Connected { baud: 4800 }
        );
        let gga = crate::sim::nmea::frame(
            "GPGGA,123519.00,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,",
        );
        std::io::Write::write_all(&mut pty, gga.as_bytes()).unwrap();
        let Event::Fix(fix) = rx.recv_timeout(Duration::from_secs(5)).unwrap() else {
            panic!("expected a fix");
        };
        assert!((fix.lat - 48.1173).abs() < 1e-9);
        reader.stop();
    }
}
