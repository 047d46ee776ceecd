//! The online run's own process: the steps through the active device, its
//! progress recorded, a stop asked for by a signal honoured after the step.

use super::progress::{read_progress, Progress, RunState};
use super::{Job, OnlineError, RECORD_EVERY};
use crate::converge::{self, Encrypted, OnlineRun, ProgressReport, Snapshot};
use crate::device::{self, Access, Contents, DeviceError, LuksDevice, ReencryptRun};
use crate::inplace::estimate::MibPerSec;
use crate::luks2::header::Probe;
use crate::luks2::model::Luks2Header;
use crate::luks2::reencryption::{self};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Set by SIGTERM or SIGINT once [`stop_on_signals`] ran.
static STOP: std::sync::LazyLock<Arc<AtomicBool>> =
    std::sync::LazyLock::new(|| Arc::new(AtomicBool::new(false)));

/// From now on SIGTERM and SIGINT stop a run of this process after its
/// current step (the header records how far it got) instead of killing
/// it mid-step.
pub fn stop_on_signals() {
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(signal, Arc::clone(&STOP)) {
            tracing::warn!("signal {signal} will stop this run mid-step: {e}");
        }
    }
}

impl Job {
    /// Runs `run` here, to its end, through the active device: progress
    /// on stderr (and the console) each tenth, in the progress file each
    /// second; then cleans up after it (volctl's proof dropped). The
    /// progress file says how it ended.
    pub async fn run(&self, run: OnlineRun) -> Result<Encrypted, OnlineError> {
        let pid = std::process::id();
        let result = self.run_inner(&run, pid).await;
        let (state, error) = match &result {
            Ok(_) => (RunState::Done, None),
            Err(OnlineError::Stopped) => (RunState::Stopped, None),
            Err(e) => (RunState::Failed, Some(e.to_string())),
        };
        let mut last = read_progress(&self.progress_path())
            .unwrap_or_else(|| Progress::running(run.operation, Snapshot::START, pid));
        if let Ok(e) = &result {
            last.at.done_bytes = last.at.total_bytes;
            last.at.rate = Some(e.rate);
            last.at.eta_seconds = Some(0);
        }
        last.state = state;
        last.error = error;
        last.pid = pid;
        self.record(&last);
        result
    }

    async fn run_inner(&self, run: &OnlineRun, pid: u32) -> Result<Encrypted, OnlineError> {
        let device = device::open(&self.device, Access::ReadWrite, None)?;
        let left = self.pending(&device).await?;
        let (job, run2, d) = (self.clone(), run.clone(), device.clone());
        let started = Instant::now();
        tokio::task::spawn_blocking(move || job.steps(d.as_ref(), &run2, left, pid))
            .await
            .map_err(|_| OnlineError::Other("the reencryption task failed".into()))??;
        let took = started.elapsed();
        if self.still_running(&device).await? {
            return Err(OnlineError::Stopped);
        }
        self.clean_up(&device).await?;
        Ok(Encrypted {
            operation: run.operation,
            mib: left >> 20,
            seconds: took.as_secs_f64(),
            rate: MibPerSec::of(left, took),
        })
    }

    /// The header the run goes by: the device's, or a decryption's file.
    async fn header(&self, device: &Arc<dyn LuksDevice>) -> Result<Luks2Header, OnlineError> {
        let (d, file) = (device.clone(), self.header.clone());
        let found = tokio::task::spawn_blocking(move || match file {
            Some(file) => crate::luks2::header::read(&file.open_at)
                .map(|p| match p {
                    Probe::Luks2(h) => Some(*h),
                    Probe::None => None,
                })
                .map_err(|e| OnlineError::Other(format!("the header file: {e}"))),
            None => match d.contents() {
                Ok(Contents::Luks2(h)) => Ok(Some(*h)),
                Ok(_) => Ok(None),
                Err(e) => Err(OnlineError::Device(e)),
            },
        })
        .await
        .map_err(|_| OnlineError::Other("the header task failed".into()))??;
        found.ok_or_else(|| OnlineError::Other("the LUKS2 header is gone".into()))
    }

    /// Bytes the recorded run has still to do.
    async fn pending(&self, device: &Arc<dyn LuksDevice>) -> Result<u64, OnlineError> {
        let h = self.header(device).await?;
        let d = device.clone();
        let size = tokio::task::spawn_blocking(move || d.size())
            .await
            .map_err(|_| OnlineError::Other("the device task failed".into()))??;
        Ok(match self.header {
            Some(_) => reencryption::pending_decryption_bytes(&h.json, size),
            None => reencryption::pending_bytes(&h.json, size),
        })
    }

    /// Whether the run is not over (it returned because it was asked to
    /// stop): the header still records it, or, a decryption, some data is
    /// still ciphertext.
    async fn still_running(&self, device: &Arc<dyn LuksDevice>) -> Result<bool, OnlineError> {
        let h = self.header(device).await?;
        Ok(match self.header {
            Some(_) => !crate::device::all_plaintext(&h),
            None => h.in_reencryption(),
        })
    }

    /// After the run: volctl's proof dropped from the device's header, or
    /// a decryption's header file (holding no key now) removed.
    async fn clean_up(&self, device: &Arc<dyn LuksDevice>) -> Result<(), OnlineError> {
        match &self.header {
            Some(file) if same_file(&file.open_at, &file.placed) => {
                crate::decrypt::remove_synced(&file.placed)
                    .map_err(|e| OnlineError::Other(e.to_string()))
            }
            // Not in its place (STATE was not moved there): the next boot
            // removes it (it holds no key now).
            Some(_) => Ok(()),
            None => Ok(converge::clean_up(device).await?),
        }
    }

    /// Runs the steps through the active device, `left` bytes to go:
    /// progress reported and recorded, a stop asked for honoured after the
    /// step it came in.
    fn steps(
        &self,
        device: &dyn LuksDevice,
        run: &OnlineRun,
        left: u64,
        pid: u32,
    ) -> Result<(), DeviceError> {
        let mut report = ProgressReport::new(self.volume.clone(), run.operation, left);
        let mut recorded: Option<Instant> = None;
        let r = ReencryptRun {
            operation: run.operation,
            old: run.old,
            new: run.new,
            passphrase: run.passphrase.expose(),
            active: Some(&self.active),
            header: self.header.as_ref().map(|h| h.open_at.as_path()),
        };
        device.run_reencryption(&r, &mut |done, total| {
            let at = report.step(done, total);
            if recorded.is_none_or(|t| t.elapsed() >= RECORD_EVERY) {
                recorded = Some(Instant::now());
                self.record(&Progress::running(run.operation, at, pid));
            }
            let stop = STOP.load(Ordering::SeqCst);
            tracing::debug!(done, total, stop, "reencryption step done");
            !stop
        })
    }

    /// Writes the progress file (errors logged: progress is a courtesy,
    /// the header has the real record).
    pub(super) fn record(&self, p: &Progress) {
        let path = self.progress_path();
        let text = serde_json::to_vec_pretty(p).expect("progress serialises");
        if let Err(e) = crate::node::atomic::write_private(&path, &text) {
            tracing::warn!(path = %path.display(), "cannot record the progress: {e}");
        }
    }
}

/// Whether `a` and `b` are the same file.
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

#[cfg(test)]
mod signal_tests {
    #[test]
    fn sigterm_asks_a_run_to_stop_instead_of_killing_it() {
        super::stop_on_signals();
        // Delivered to this thread before `raise` returns.
        signal_hook::low_level::raise(signal_hook::consts::SIGTERM).unwrap();
        assert!(super::STOP.load(std::sync::atomic::Ordering::SeqCst));
    }
}
