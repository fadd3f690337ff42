//! lx-hal: the hardware an lx agent runs on, behind small interfaces.
//!
//! - [`gps`]: the NMEA 0183 fix tracker (sans-IO) and, with the `linux`
//!   feature, the serial-port reader around it.
//! - [`sim`]: simulated receivers — synthetic paths, log replay, and with
//!   `linux` a pseudo-terminal to feed the real serial code.
//!
//! The parser and tracker do no I/O and read no clock, so they build for
//! every target we ship; the Linux shells sit behind the `linux` feature.

pub mod error;
pub mod gps;
pub mod sim;

pub use error::{Error, SentenceError};
