//! Sessions: the lifecycle core and the meter, both pure.

pub mod lifecycle;
pub mod meter;
