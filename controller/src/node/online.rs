//! A reencryption running online: the volume active (its filesystem
//! mounted and in use) while libcryptsetup rewrites its data through the
//! dm-crypt device. `volctl boot` opens and mounts the volume, then hands
//! the run to a process of its own (`volctl reencrypt-online`, detached in
//! a session of its own, the key on its stdin), so the boot finishes and
//! the run outlives it. Its progress is a file in the run-time directory
//! (`reencrypt/<volume>.json`, 0600) that `volctl status` reads; a run that
//! stops (power cut, killed) is resumed by the next boot from the header's
//! own progress record.

use crate::converge::{self, ConvergeError, Encrypted, OnlineRun, ProgressReport, Snapshot};
use crate::device::{self, Access, Contents, DeviceError, LuksDevice, ReencryptRun};
use crate::inplace::estimate::MibPerSec;
use crate::luks2::reencryption::{self, Operation};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The folder, in the run-time directory, of the progress files.
pub const DIR: &str = "reencrypt";
/// The hidden command a detached run is.
pub const COMMAND: &str = "reencrypt-online";
/// How often the progress file is rewritten while a run goes on.
const RECORD_EVERY: Duration = Duration::from_secs(1);
/// How long [`stop`] waits for a run to end its step and stop.
const STOP_WAIT: Duration = Duration::from_secs(300);

/// Set by SIGTERM or SIGINT: the run stops after its current step.
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
}

impl Job {
    /// The progress file.
    pub fn progress_path(&self) -> PathBuf {
        progress_path(&self.run_dir, &self.volume)
    }

    /// Starts `run` in a detached process (`volctl reencrypt-online`), its
    /// passphrase on the process's stdin; returns its pid. Its progress
    /// file says it runs before this returns. With `console`, it prints its
    /// progress on the console too.
    pub fn spawn(&self, run: &OnlineRun, console: bool) -> Result<u32, OnlineError> {
        use std::os::unix::process::CommandExt;
        let io = |what: &str, e: std::io::Error| OnlineError::Other(format!("{what}: {e}"));
        let exe = std::env::current_exe().map_err(|e| io("cannot find volctl", e))?;
        let mut cmd = Command::new(exe);
        cmd.arg(COMMAND).args(self.args(run));
        if console {
            cmd.arg("--console");
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: setsid is async-signal-safe; nothing else runs between
        // fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| io("cannot start the online run", e))?;
        let pid = child.id();
        // Recorded before the key goes: the process waits for it, so its
        // own records come after this one.
        self.record(&Progress::running(run.operation, Snapshot::START, pid));
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(run.passphrase.expose())
            .map_err(|e| io("cannot hand the key to the online run", e))?;
        drop(stdin);
        Ok(pid)
    }

    /// The arguments of `volctl reencrypt-online` for `run`.
    fn args(&self, run: &OnlineRun) -> Vec<String> {
        let mut a = vec![
            "--volume".into(),
            self.volume.clone(),
            "--device".into(),
            self.device.display().to_string(),
            "--active-name".into(),
            self.active.clone(),
            "--run-dir".into(),
            self.run_dir.display().to_string(),
            "--operation".into(),
            run.operation.as_str().to_string(),
        ];
        for (flag, slot) in [("--old", run.old), ("--new", run.new)] {
            if let Some(s) = slot {
                a.extend([flag.into(), s.get().to_string()]);
            }
        }
        a
    }

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
        let d = device.clone();
        let (h, size) =
            tokio::task::spawn_blocking(move || Ok::<_, DeviceError>((d.contents()?, d.size()?)))
                .await
                .map_err(|_| OnlineError::Other("the device task failed".into()))??;
        let Contents::Luks2(h) = h else {
            return Err(OnlineError::Other("the LUKS2 header is gone".into()));
        };
        let left = reencryption::pending_bytes(&h.json, size);
        let (job, run2, d) = (self.clone(), run.clone(), device.clone());
        let started = Instant::now();
        tokio::task::spawn_blocking(move || job.steps(d.as_ref(), &run2, left, pid))
            .await
            .map_err(|_| OnlineError::Other("the reencryption task failed".into()))??;
        let took = started.elapsed();
        if still_running(&device).await? {
            return Err(OnlineError::Stopped);
        }
        converge::clean_up(&device).await?;
        Ok(Encrypted {
            operation: run.operation,
            mib: left >> 20,
            seconds: took.as_secs_f64(),
            rate: MibPerSec::of(left, took),
        })
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
    fn record(&self, p: &Progress) {
        let path = self.progress_path();
        let text = serde_json::to_vec_pretty(p).expect("progress serialises");
        if let Err(e) = super::atomic::write_private(&path, &text) {
            tracing::warn!(path = %path.display(), "cannot record the progress: {e}");
        }
    }
}

/// The progress file of `volume` in `run_dir`.
pub fn progress_path(run_dir: &Path, volume: &str) -> PathBuf {
    run_dir.join(DIR).join(format!("{volume}.json"))
}

fn read_progress(path: &Path) -> Option<Progress> {
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

/// Whether the header still records a reencryption (a run that returned
/// because it was asked to stop).
async fn still_running(device: &Arc<dyn LuksDevice>) -> Result<bool, OnlineError> {
    let d = device.clone();
    let h = tokio::task::spawn_blocking(move || d.contents())
        .await
        .map_err(|_| OnlineError::Other("the device task failed".into()))??;
    Ok(matches!(h, Contents::Luks2(h) if h.in_reencryption()))
}

/// Whether `pid` is a volctl process still going (the one that recorded
/// the run: a pid reused by another program is not).
fn alive(pid: u32) -> bool {
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

/// An online run that did not stop when asked.
#[derive(Debug, thiserror::Error)]
#[error("the online reencryption of {volume} (process {pid}) did not stop within {} s", waited.as_secs())]
pub struct NotStopped {
    /// Its volume.
    pub volume: String,
    /// Its process.
    pub pid: u32,
    /// How long it was waited for.
    pub waited: Duration,
}

/// Asks the online run `p` of `volume` (if it is going) to stop after its
/// current step, and waits until its process has ended; says what it did.
pub fn stop(volume: &str, p: &Progress) -> Result<Option<String>, NotStopped> {
    if !ask_to_stop(p) {
        return Ok(None);
    }
    wait_stopped(volume, p).map(Some)
}

/// Asks the online run `p` to stop after its current step (SIGTERM to
/// its process); false when it is not going.
pub fn ask_to_stop(p: &Progress) -> bool {
    if p.state != RunState::Running || !alive(p.pid) {
        return false;
    }
    let Some(pid) = i32::try_from(p.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok()
}

/// Waits until the process of the run `p` of `volume` has ended; says how
/// the run ended.
pub fn wait_stopped(volume: &str, p: &Progress) -> Result<String, NotStopped> {
    let asked = Instant::now();
    while alive(p.pid) {
        if asked.elapsed() > STOP_WAIT {
            return Err(NotStopped {
                volume: volume.to_string(),
                pid: p.pid,
                waited: STOP_WAIT,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(match read_progress(&p.file) {
        Some(e) if e.state == RunState::Done => {
            format!("the online reencryption of {volume} finished before it could stop")
        }
        Some(e) => format!(
            "stopped the online reencryption of {volume} at {} % (the next boot resumes it)",
            e.at.percent()
        ),
        None => format!("stopped the online reencryption of {volume} (the next boot resumes it)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(state: RunState, pid: u32) -> Progress {
        Progress {
            operation: Operation::Encrypt,
            state,
            at: Snapshot {
                done_bytes: 300 << 20,
                total_bytes: 1000 << 20,
                rate: Some(MibPerSec(150.0)),
                eta_seconds: Some(5),
            },
            pid,
            error: None,
            file: PathBuf::new(),
        }
    }

    #[test]
    fn a_running_line_has_percent_rate_and_time_left() {
        assert_eq!(
            progress(RunState::Running, 1).line("persistence"),
            "persistence: encrypting in place 30% (300/1000 MiB, 150 MiB/s, about 5 s left)"
        );
        assert!(progress(RunState::Stopped, 1)
            .line("p")
            .ends_with("(stopped; the next boot resumes it)"));
    }

    #[test]
    fn the_run_process_gets_the_key_on_stdin_never_in_its_arguments() {
        let job = Job {
            volume: "persistence".into(),
            device: "/dev/vda4".into(),
            active: "luks2-persistence".into(),
            run_dir: "/run/volctl".into(),
        };
        let run = OnlineRun {
            operation: Operation::RotateVolumeKey,
            old: api_types::KeyslotId::new(31),
            new: api_types::KeyslotId::new(0),
            passphrase: providers::Passphrase::new(b"sekrit".to_vec()),
        };
        let args = job.args(&run).join(" ");
        assert_eq!(
            args,
            "--volume persistence --device /dev/vda4 --active-name luks2-persistence --run-dir /run/volctl --operation rotate-volume-key --old 31 --new 0"
        );
        assert!(!args.contains("sekrit"));
        assert_eq!(run.activation_slot(), None, "a rotation opens by the pair");
    }

    #[test]
    fn a_run_whose_process_is_gone_reads_as_stopped() {
        let d = tempfile::tempdir().unwrap();
        let job = Job {
            volume: "persistence".into(),
            device: "/dev/null".into(),
            active: "x".into(),
            run_dir: d.path().into(),
        };
        // No such process (above Linux's largest pid).
        job.record(&progress(RunState::Running, 1 << 23));
        let p = progress_of(d.path(), "persistence").unwrap();
        assert_eq!(p.state, RunState::Stopped);
        // This test's own process is the same program: going.
        job.record(&progress(RunState::Running, std::process::id()));
        let p = progress_of(d.path(), "persistence").unwrap();
        assert_eq!(p.state, RunState::Running);
        job.record(&progress(RunState::Done, 1));
        assert_eq!(
            progress_of(d.path(), "persistence").unwrap().state,
            RunState::Done
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(job.progress_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(progress_of(d.path(), "other").is_none());
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
