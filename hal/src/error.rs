//! Errors of lx-hal, one enum per domain (STYLE.md):
//!
//! - [`SentenceError`]: why one NMEA line was not used. It borrows the line,
//!   so tests can `assert_eq!` on it; the tracker turns it into a counter and
//!   never fails on input.
//! - [`Error`]: everything with a side: configuration, the serial port, the
//!   pseudo-terminal, log files. It owns its data (an `io::Error` is kept as
//!   its kind and message) so it stays `Clone + PartialEq`.

use std::io;
use std::path::{Path, PathBuf};

/// Why one framed NMEA line was not turned into an update.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SentenceError<'a> {
    /// No `$…*HH` shape: cut short, overlong, binary bytes inside, or junk
    /// after the checksum.
    #[error("malformed sentence (truncated or corrupt framing)")]
    Malformed(&'a [u8]),
    /// The `*HH` checksum does not match the XOR of the body.
    #[error("checksum mismatch in {sentence}: computed {computed:02X}, sentence says {found:02X}")]
    Checksum {
        sentence: &'a str,
        computed: u8,
        found: u8,
    },
    /// Checksum right, but a talker or sentence type the tracker does not use.
    #[error("sentence {sentence} is not one the tracker uses")]
    Ignored { sentence: &'a str },
    /// Checksum right and a sentence we use, but its fields do not parse or
    /// are out of range.
    #[error("unparsable sentence {sentence}: {reason}")]
    Unparsed { sentence: &'a str, reason: String },
}

/// An error of the parts of lx-hal that touch the outside world.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A configuration value is out of its range; names the key.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// An I/O operation on a file, port or terminal failed.
    #[error("{op} {path}: {message}")]
    Io {
        op: &'static str,
        path: PathBuf,
        kind: io::ErrorKind,
        message: String,
    },
    /// No candidate baud rate produced checksummed NMEA within the window.
    #[error("no NMEA sentences on {path} at any of {tried:?} baud")]
    BaudNotDetected { path: PathBuf, tried: Vec<u32> },
    /// The pseudo-terminal could not be created or configured.
    #[error("pseudo-terminal: {0}")]
    Pty(String),
    /// The reader thread could not be started.
    #[error("could not start the GPS reader thread: {0}")]
    Thread(String),
}

impl Error {
    /// Wraps an `io::Error` with what was being done to which path.
    pub fn io(op: &'static str, path: impl AsRef<Path>, err: &io::Error) -> Self {
        Self::Io {
            op,
            path: path.as_ref().to_path_buf(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }
}
