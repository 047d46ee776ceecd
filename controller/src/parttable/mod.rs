//! GPT access below provisioning and discovery: every table read is
//! checked first and falls back to the backup copy (`read.rs`); every
//! table write goes through a disk seen through writes not yet made,
//! applied in the order that survives a power cut (`staged.rs`).
//! `node::disks` reads through here, `provision` reads and writes.

pub mod read;
pub mod staged;
