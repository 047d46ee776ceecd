//! Who is told when a keyslot's KDF runs. An argon2id run can take seconds
//! on purpose; a command on a terminal shows that it is working (the CLI
//! installs a [`KdfWatcher`] that draws an elapsed-time line), the library
//! only says when a run starts and ends. Nothing is watched by default.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// One KDF run under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KdfRun {
    /// Distinguishes runs at the same time (several volumes at boot).
    pub id: u64,
    /// What the run is for: "unlock", "add keyslot", …
    pub op: &'static str,
    /// The device or image file.
    pub device: String,
    /// When it started.
    pub started: Instant,
}

/// Told of every KDF run of this process.
pub trait KdfWatcher: Send + Sync {
    /// A run started.
    fn started(&self, run: &KdfRun);
    /// It ended (well or not).
    fn finished(&self, run: &KdfRun);
}

static WATCHER: OnceLock<Box<dyn KdfWatcher>> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Installs the process's watcher; false when one is already installed.
pub fn watch(watcher: Box<dyn KdfWatcher>) -> bool {
    WATCHER.set(watcher).is_ok()
}

/// Tells the watcher a run starts; it is told of the end when the guard
/// is dropped.
pub(crate) fn running(op: &'static str, device: String) -> RunGuard {
    let run = KdfRun {
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        op,
        device,
        started: Instant::now(),
    };
    if let Some(w) = WATCHER.get() {
        w.started(&run);
    }
    RunGuard(run)
}

/// A run under way; dropped when it ends.
pub(crate) struct RunGuard(KdfRun);

impl Drop for RunGuard {
    fn drop(&mut self) {
        if let Some(w) = WATCHER.get() {
            w.finished(&self.0);
        }
    }
}
