//! What a node keeps outside the volumes' headers: disks and partitions,
//! loop devices, the META store, STATE's files (salt, config), the run-time
//! status file, filesystems and mounts.

pub mod ask;
pub mod atomic;
pub mod close;
pub mod config_files;
pub mod console;
pub mod context;
pub mod disks;
pub mod facts;
pub mod fs;
pub mod loopdev;
pub mod maintenance;
pub mod meta;
pub mod online;
pub mod paths;
pub mod reboot;
pub mod recovery_held;
pub mod recovery_out;
pub mod salt;
pub mod snapshot;
pub mod status;
pub mod swap;
