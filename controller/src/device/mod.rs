//! The one seam between volctl and a block device.

mod cryptsetup;
pub mod power_cut;
pub mod probe;

pub use cryptsetup::*;
