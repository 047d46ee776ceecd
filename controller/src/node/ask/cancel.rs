//! Stopping a question nobody needs any more: an asker's blocking loop
//! checks the flag between short waits; the flag is raised when the
//! asking future is dropped (another channel answered first).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a waiting asker looks at the flag.
pub const SLICE: Duration = Duration::from_millis(200);

/// Raised when the question is withdrawn.
#[derive(Clone, Default)]
pub struct Cancelled(Arc<AtomicBool>);

impl Cancelled {
    /// Whether the question was withdrawn.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Withdraws the question when dropped.
pub struct Withdraw(Cancelled);

impl Withdraw {
    /// A new flag and the guard that raises it.
    pub fn new() -> (Withdraw, Cancelled) {
        let c = Cancelled::default();
        (Withdraw(c.clone()), c)
    }
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        (self.0).0.store(true, Ordering::Relaxed);
    }
}
