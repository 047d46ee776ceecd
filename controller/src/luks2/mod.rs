//! The LUKS2 on-disk format as volctl reads and writes it: the raw header
//! reader, the header check, the `volctl` token and its binding, the
//! `clevis` token beside a `tang` slot, and the format's constants.

pub mod binding;
pub mod check;
pub mod clevis;
pub mod consts;
pub mod header;
pub mod model;
pub mod reencryption;
mod strict_json;
pub mod token;
