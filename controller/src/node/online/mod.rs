//! A reencryption running online: the volume active (its filesystem
//! mounted and in use) while libcryptsetup rewrites its data through the
//! dm-crypt device. `volctl boot` opens and mounts the volume, then hands
//! the run to a process of its own (`volctl reencrypt-online`, detached in
//! a session of its own, the key on its stdin), so the boot finishes and
//! the run outlives it. Its progress is a file in the run-time directory
//! (`reencrypt/<volume>.json`, 0600) that `volctl status` reads; a run that
//! stops (power cut, killed) is resumed by the next boot from the header's
//! own progress record.
//!
//! - `parent.rs`: the boot's side: starting a run, stopping one;
//! - `child.rs`: the run's own process: its steps, its progress record,
//!   stopping after a step on a signal;
//! - `progress.rs`: the progress record both sides read.

mod child;
mod parent;
mod progress;

pub use child::stop_on_signals;
pub use parent::{ask_to_stop, stop, wait_stopped, NotStopped};
pub use progress::{progress_of, progress_path, Progress, RunState};

use crate::converge::ConvergeError;
use crate::device::DeviceError;
use std::path::PathBuf;
use std::time::Duration;

/// The folder, in the run-time directory, of the progress files.
pub const DIR: &str = "reencrypt";
/// The hidden command a detached run is.
pub const COMMAND: &str = "reencrypt-online";
/// How often the progress file is rewritten while a run goes on.
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// How long [`stop`] waits for a run to end its step and stop.
const STOP_WAIT: Duration = Duration::from_secs(300);

/// Why an online run failed.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The device refused.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// Cleaning up after it failed.
    #[error(transparent)]
    Converge(#[from] ConvergeError),
    /// Stopped part way when asked to; the next boot resumes it.
    #[error("stopped when asked to; the next boot resumes it")]
    Stopped,
    /// Its process could not be started, or the header is gone.
    #[error("{0}")]
    Other(String),
}

/// One online run: which volume, on which device, active as which
/// dm-crypt device, with its progress file in which run-time directory.
#[derive(Debug, Clone)]
pub struct Job {
    /// The volume's name.
    pub volume: String,
    /// Its partition.
    pub device: PathBuf,
    /// Its `/dev/mapper` name.
    pub active: String,
    /// The run-time directory (`/run/volctl`).
    pub run_dir: PathBuf,
    /// A decryption's detached header file (on STATE); `None` for the
    /// others, whose header is on the device.
    pub header: Option<HeaderFile>,
}

/// A decryption's header file, which STATE carries from its staging
/// mount to its place while the run goes on: the run's process holds it
/// open (as [`HEADER_FD`]) and goes by that, never by a path a mount move
/// changes.
#[derive(Debug, Clone)]
pub struct HeaderFile {
    /// Where the run opens it: the boot's path to it, or, in the run's
    /// own process, `/proc/self/fd/3`.
    pub open_at: PathBuf,
    /// Where it is once STATE is in place: removed there at the end.
    pub placed: PathBuf,
}

/// The file descriptor a run's process holds its header file as.
pub const HEADER_FD: i32 = 3;

impl HeaderFile {
    /// The header file of the run's own process, placed at `placed`.
    pub fn inherited(placed: PathBuf) -> Self {
        HeaderFile {
            open_at: PathBuf::from(format!("/proc/self/fd/{HEADER_FD}")),
            placed,
        }
    }
}

impl Job {
    /// The progress file.
    pub fn progress_path(&self) -> PathBuf {
        progress_path(&self.run_dir, &self.volume)
    }
}

#[cfg(test)]
mod tests;
