//! Simulated GPS receivers, for tests and demos.
//!
//! - [`path`]: synthetic flight paths (hover, orbit, transit) and the
//!   NMEA sentences a receiver on them would send ([`Synth`]).
//! - [`nmea`]: the sentence formatter, with correct checksums.
//! - [`replay`](mod@replay): plays a recorded NMEA log at the pace of its own UTC times.
//! - `pty` (feature `linux`): a pseudo-terminal whose slave path the
//!   serial reader opens like a real port.

pub mod nmea;
pub mod path;
#[cfg(feature = "linux")]
pub mod pty;
pub mod replay;

pub use path::{LatLng, Path, PathPoint, Synth, SynthOptions};
#[cfg(feature = "linux")]
pub use pty::Pty;
pub use replay::{Pacer, ReplayStats, replay, replay_file};
