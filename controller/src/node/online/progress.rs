//! An online run's progress record: the file in the run-time directory
//! (`reencrypt/<volume>.json`, 0600) the run writes and `volctl status`
//! and the boot read.

use super::DIR;
use crate::converge::{self, Snapshot};
use crate::luks2::reencryption::Operation;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where an online run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Running now.
    Running,
    /// Ended; the volume is an ordinary one again.
    Done,
    /// Failed (see `error`); the next boot tries again.
    Failed,
    /// Its process is gone without saying so (killed); the next boot
    /// resumes it.
    Stopped,
}

/// An online run's progress, as its file and `volctl status` have it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// What it does.
    pub operation: Operation,
    /// Where it is.
    pub state: RunState,
    /// How far it got.
    #[serde(flatten)]
    pub at: Snapshot,
    /// The process running it.
    pub pid: u32,
    /// Why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The file it was read from.
    #[serde(skip)]
    pub file: PathBuf,
}

impl Progress {
    /// A run of `operation` by process `pid`, going, at `at`.
    pub fn running(operation: Operation, at: Snapshot, pid: u32) -> Self {
        Progress {
            operation,
            state: RunState::Running,
            at,
            pid,
            error: None,
            file: PathBuf::new(),
        }
    }

    /// One line for `volctl status`.
    pub fn line(&self, volume: &str) -> String {
        let speed = match (self.at.rate, self.at.eta_seconds, self.state) {
            (Some(r), Some(eta), RunState::Running) => {
                format!(", {:.0} MiB/s, about {eta} s left", r.0)
            }
            _ => String::new(),
        };
        let state = match self.state {
            RunState::Running => String::new(),
            RunState::Done => " (done)".into(),
            RunState::Failed => format!(
                " (failed: {}; the next boot resumes it)",
                self.error.as_deref().unwrap_or("?")
            ),
            RunState::Stopped => " (stopped; the next boot resumes it)".into(),
        };
        if self.at.total_bytes == 0 {
            return format!(
                "{volume}: {} starting{state}",
                converge::doing(self.operation)
            );
        }
        format!(
            "{volume}: {} {}% ({}/{} MiB{speed}){state}",
            converge::doing(self.operation),
            self.at.percent(),
            self.at.done_bytes >> 20,
            self.at.total_bytes >> 20,
        )
    }
}

/// The progress file of `volume` in `run_dir`.
pub fn progress_path(run_dir: &Path, volume: &str) -> PathBuf {
    run_dir.join(DIR).join(format!("{volume}.json"))
}

pub(super) fn read_progress(path: &Path) -> Option<Progress> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The progress of `volume`'s online run, if one ran this boot; a run
/// whose process is gone without saying how it ended is `Stopped`.
pub fn progress_of(run_dir: &Path, volume: &str) -> Option<Progress> {
    let file = progress_path(run_dir, volume);
    let mut p = read_progress(&file)?;
    p.file = file;
    if p.state == RunState::Running && !alive(p.pid) {
        p.state = RunState::Stopped;
    }
    Some(p)
}

/// Whether `pid` is a volctl process still going (the one that recorded
/// the run: a pid reused by another program is not).
pub(super) fn alive(pid: u32) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    match (exe, std::env::current_exe()) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        // A sandboxed reader (`volctl serve`) may not read another
        // process's exe: the process being there is all it can tell.
        (Err(e), _) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}
