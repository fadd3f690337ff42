//! lx-hal: the hardware an lx agent runs on, behind small interfaces.
//!
//! - [`gps`]: the NMEA 0183 fix tracker (sans-IO) and, with the `linux`
//!   feature, the serial-port reader around it.
//! - [`led`]: the status LED's blink patterns on any embedded-hal output pin.
//! - [`ina219`]: the INA219 power monitor on any embedded-hal I2C bus, and
//!   the battery's charge from a voltage curve.
//! - [`sim`]: simulated receivers — synthetic paths, log replay, and with
//!   `linux` a pseudo-terminal to feed the real serial code.
//!
//! The parser and tracker do no I/O and read no clock, so they build for
//! every target we ship; the Linux shells sit behind the `linux` feature.

pub mod error;
pub mod gps;
pub mod ina219;
pub mod led;
pub mod sim;

pub use error::{Error, SentenceError};

/// The Linux embedded-hal implementations (GPIO character devices, /dev/i2c-N)
/// the drivers run on there.
#[cfg(feature = "linux")]
pub use linux_embedded_hal;
