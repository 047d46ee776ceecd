//! The boot sequence: find volumes by GPT label, bring STATE up first (its
//! encryption config comes from `-f` or from META), take the salt and the
//! applied config from STATE, then bring up EPHEMERAL, persistence and user
//! volumes — unlocking and converging concurrently (bounded), mounting in
//! order — and write a status file.
//!
//! - [`volume`]: one volume's phases and the error policy;
//! - [`state`]: STATE's config choice, salt, re-converge, META mirror;
//! - [`source`]: where the config in force comes from; STATE's config files;
//! - [`maintenance`]: waiting in maintenance mode (the hand-off is `node::maintenance`);
//! - [`windows`]: the node API windows the boot asks for (served by `serve/`);
//!
//! A volume that cannot come up is reported with its phase and reason; the
//! others still come up. Nothing that holds data is ever formatted.

mod context;
pub(crate) mod directory;
pub(crate) mod disk_volume;
mod existing;
mod layout;
pub mod maintenance;
mod others;
pub mod source;
mod state;
mod state_up;
#[cfg(test)]
mod tests;
mod unlock;
mod volume;
pub mod windows;

pub use source::ConfigSource;

use crate::host::{HostHandle, RealHost};
use crate::node::disks::DiskError;
use crate::node::meta::MetaError;
use crate::node::status::BootStatus;
use context::Boot;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// What `volctl boot` was asked to do.
#[derive(Debug, Clone)]
pub struct BootOptions {
    /// The node: disks to search (empty: every disk of the system), the
    /// status file to write, the node UUID, KMS and TPM access. Its
    /// reboot command is `false`: the boot never reboots on request.
    pub node: crate::node::context::NodeContext,
    /// Config files given at boot (empty: use STATE's).
    pub config_files: Vec<PathBuf>,
    /// STATE's mount point.
    pub state_mount: PathBuf,
    /// How many volumes may unlock at once (argon2 memory bound).
    pub parallel: usize,
    /// How long maintenance mode waits for a config (`None`: for ever).
    pub maintenance_timeout: Option<std::time::Duration>,
    /// Where the boot serves the node API while it waits for a person:
    /// maintenance mode (a config) and typed keys (remote unlock). `None`:
    /// only local answers.
    pub api: Option<windows::ApiListen>,
    /// A 0600 file, made before the boot, that receives recovery keys the
    /// boot enrols; without it no recovery key is enrolled at boot.
    pub recovery_key_out: Option<PathBuf>,
    /// How to ask a person for typed keys (`None`: nobody to ask).
    pub asker: Option<providers::ask::AskerHandle>,
    /// How far the volumes are brought: mounted, or (in an initramfs) only
    /// opened, for the boot of the real root to mount.
    pub until: Until,
    /// How long after it starts the boot stops waiting for key servers
    /// while it unlocks (each key's own timeout still applies within it).
    pub key_server_deadline: std::time::Duration,
}

/// [`BootOptions::key_server_deadline`] when `volctl boot` is not told.
pub const KEY_SERVER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// How far a boot brings its volumes (docs/installing.md, "initramfs").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Until {
    /// Opened and mounted (the boot of the running system).
    #[default]
    Mounted,
    /// Unlocked, converged and opened, not mounted; STATE is unmounted
    /// again once it gave its salt and config (`volctl boot --open-only`,
    /// the initramfs). A reencryption runs to its end before the volume
    /// opens (no process is left behind for `switch_root`). The next boot
    /// finds the volumes open and mounts them without a KDF run.
    Opened,
}

/// Errors that stop the whole boot.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// Disks could not be read.
    #[error(transparent)]
    Disks(#[from] DiskError),
    /// The config is invalid.
    #[error("the config is invalid:\n{0}")]
    Config(#[from] crate::node::config_files::InvalidConfig),
    /// META could not be read.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// META's record of STATE's encryption config does not parse.
    #[error("META's STATE encryption config is unreadable: {0}")]
    MetaConfig(serde_json::Error),
    /// No config anywhere and STATE is blank.
    #[error("no config: none given with -f, no STATE encryption config on META, STATE holds none, and none arrived in maintenance mode")]
    NoConfig,
    /// A file of the boot could not be read or written.
    #[error("{what} ({}): {source}", path.display())]
    File {
        /// What the boot was doing.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A volume's task ended without an answer (a panic).
    #[error("volume task failed: {0}")]
    Task(tokio::task::JoinError),
}

impl BootError {
    /// A [`BootError::File`] maker for `map_err`.
    fn file(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| BootError::File { what, path, source }
    }
}

/// Runs the boot on this machine: the phases of [`PHASES`], in order, on
/// one context.
pub async fn boot(opts: &BootOptions) -> Result<BootStatus, BootError> {
    crate::inplace::show_progress_on(crate::node::console::write);
    boot_on(opts, Arc::new(RealHost)).await
}

/// Runs the boot on `host` (the machine, or the simulated host of the
/// boot's unit tests).
pub async fn boot_on(opts: &BootOptions, host: HostHandle) -> Result<BootStatus, BootError> {
    let mut b = Boot::new(opts, host);
    for phase in PHASES {
        tracing::debug!(phase = phase.name, "boot phase");
        (phase.run)(&mut b).await?;
    }
    Ok(b.status)
}

/// The boot's phases, in order, by name (docs/architecture.md's table).
pub fn phase_names() -> impl Iterator<Item = &'static str> {
    PHASES.iter().map(|p| p.name)
}

/// One phase of the boot: what it does, and the function that does it.
struct BootPhase {
    /// What it does, as the docs' phase table says it.
    name: &'static str,
    /// The function.
    run: PhaseFn,
}

/// A phase's work, borrowing the boot's context.
type PhaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), BootError>> + 'a>>;
/// A phase's function.
type PhaseFn = for<'a, 'b> fn(&'a mut Boot<'b>) -> PhaseFuture<'a>;

/// The boot, in order (docs/architecture.md, "The boot's phases"). Each
/// phase reads and updates one [`Boot`]; a phase with nothing to do (no
/// config in force, no typed volume) returns at once.
const PHASES: &[BootPhase] = &[
    BootPhase {
        name: "wipes left by `reset --reboot`",
        run: layout::pending_wipes,
    },
    BootPhase {
        name: "partitions the `-f` config asks for",
        run: layout::given_config,
    },
    BootPhase {
        name: "STATE's encryption config",
        run: state_up::choose,
    },
    BootPhase {
        name: "STATE up at its staging point; salt; the config in force",
        run: state_up::bring_up,
    },
    BootPhase {
        name: "partitions the config in force asks for",
        run: layout::config_in_force,
    },
    BootPhase {
        name: "volumes that open unattended",
        run: others::unattended,
    },
    BootPhase {
        name: "volumes only a person opens",
        run: others::typed,
    },
    BootPhase {
        name: "existing volumes",
        run: others::existing,
    },
    BootPhase {
        name: "STATE moved into place; status written",
        run: state_up::place,
    },
];

pub(super) fn write_status(opts: &BootOptions, status: &BootStatus) -> Result<(), BootError> {
    status.save(&opts.node.status_file).map_err(BootError::file(
        "writing the status",
        &opts.node.status_file,
    ))
}
