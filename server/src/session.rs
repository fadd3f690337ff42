//! Sessions: the lifecycle core, the meter and its evidence, all pure.

pub mod evidence;
pub mod lifecycle;
/// The meter is shared with anyone checking a proof bundle.
pub use lx_protocol::meter;
