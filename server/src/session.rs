//! Sessions: the lifecycle core, the meter and its evidence, all pure.

pub mod evidence;
pub mod lifecycle;
pub mod meter;
