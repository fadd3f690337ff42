//! Wire types shared by the lx agent, the lx server and clients.
//!
//! No I/O and no async: everything here is plain data, its validation and
//! the signatures over it, so the crate builds for every target we ship.
//! The exceptions are behind features: `mqtt-client` (the broker options
//! both sides use) and `private-file` (the one writer of owner-only files).

pub mod api;
pub mod bearer;
pub mod config;
pub mod error;
pub mod evidence;
pub mod geo;
pub mod meter;
pub mod mqtt;
#[cfg(feature = "private-file")]
pub mod private_file;
pub mod proof;
pub mod redact;
pub mod sdpfrag;
pub mod telemetry;
pub mod time;
pub mod update;
pub mod wallet;

pub use error::ErrorCode;
