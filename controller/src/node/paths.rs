//! The names of volctl's files on STATE and beside the status file, and
//! of its dm-crypt devices, in one place (the boot, apply, enable, serve
//! and converge all read them).

use std::path::{Path, PathBuf};

/// Default STATE mount point.
pub const DEFAULT_STATE_MOUNT: &str = "/var/lib/volctl/state";
/// The salt file on STATE.
pub const SALT_FILE: &str = "encryption-salt";
/// The applied config on STATE.
pub const CONFIG_FILE: &str = "config.yaml";
/// A staged config on STATE, promoted at the next boot.
pub const PENDING_FILE: &str = "config.pending.yaml";
/// Marker next to the status file while boot waits in maintenance mode.
pub const MAINTENANCE_MARKER: &str = "maintenance";
/// Where `apply-config --insecure` drops the config in maintenance mode.
pub const MAINTENANCE_CONFIG: &str = "maintenance-config.yaml";
/// dm-crypt name prefix: `luks2-<label>`.
pub const DM_PREFIX: &str = "luks2-";

/// The directory of the status file: runtime state (`/run/volctl`).
pub fn run_dir(status_file: &Path) -> PathBuf {
    status_file
        .parent()
        .unwrap_or(Path::new("/run/volctl"))
        .to_path_buf()
}
