//! # volctl controller
//!
//! Observes LUKS2 volumes, plans the changes that bring their keyslots to
//! the config, and carries them out; brings a node's volumes up at boot.
//! The tree follows the data path (docs/architecture.md draws it):
//!
//! - [`luks2`]: the on-disk format (header reader, header check, token, binding);
//! - [`device`]: the one seam to a block device (libcryptsetup, the
//!   simulated device, the power-cut test double, the blank-device probe);
//! - [`converge`]: observe → unlock once → plan (pure) → execute;
//! - [`boot`]: the boot sequence and its per-volume phases;
//! - [`node`]: disks, META, STATE's files, status, filesystems;
//! - [`host`]: the machine as the boot uses it, and its simulated twin;
//! - [`parttable`]: GPT reads (checked, backup fallback) and staged writes;
//! - [`provision`]: the partition layout a config asks for;
//! - [`apply`], [`reset`]: the day-2 operations;
//! - [`decrypt`]: decryption in place (`volctl disable-encryption`);
//! - [`serve`]: the node API, the same operations over the network;
//! - [`units`]: byte units.

pub mod apply;
pub mod boot;
pub mod converge;
pub mod decrypt;
pub mod device;
pub mod enable;
pub mod host;
pub mod inplace;
mod io;
pub mod luks2;
pub mod node;
pub mod parttable;
pub mod provision;
pub mod render;
pub mod reset;
pub mod serve;
pub mod units;
pub mod volume;
