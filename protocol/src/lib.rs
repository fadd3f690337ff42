//! Wire types shared by the lx agent, the lx server and clients.
//!
//! No I/O and no async: everything here is plain data, its validation and
//! the signatures over it, so the crate builds for every target we ship.

pub mod api;
pub mod config;
pub mod error;
pub mod geo;
pub mod mqtt;
pub mod redact;
pub mod telemetry;
pub mod time;
pub mod wallet;

pub use error::ErrorCode;
