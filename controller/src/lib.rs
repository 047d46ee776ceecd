//! # volctl controller
//!
//! Observes LUKS2 volumes, plans the changes that bring their keyslots to
//! the config, and carries them out. The pieces, in the order data flows:
//!
//! - [`header`]: read LUKS2 metadata without libcryptsetup or a KDF;
//! - [`header_check`]: refuse headers volctl would not have written;
//! - [`observe`]: unlock once and check every managed slot's binding;
//! - [`plan`]: the pure decision, (desired, observed) → actions;
//! - [`execute`]: carry the actions out in a safe order;
//! - [`device`]: the libcryptsetup seam.

pub mod apply;
pub mod atomic;
pub mod binding;
pub mod boot;
pub mod config_files;
pub mod consts;
pub mod converge;
pub mod device;
pub mod disks;
pub mod failpoint;
pub mod fs;
pub mod header;
pub mod header_check;
pub mod loopdev;
pub mod meta;
pub mod plan;
pub mod render;
pub mod reset;
pub mod salt;
pub mod signatures;
pub mod status;
pub mod token;
pub mod volume;
