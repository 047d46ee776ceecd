//! The boot's side of an online run: starting it in a detached process of
//! its own, and stopping it (after its current step) when asked.

use super::progress::{alive, read_progress, Progress, RunState};
use super::{Job, OnlineError, COMMAND, HEADER_FD, STOP_WAIT};
use crate::converge::{OnlineRun, Snapshot};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

impl Job {
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
        let header = match &self.header {
            Some(h) => Some(
                std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(&h.open_at)
                    .map_err(|e| io("cannot open the header file", e))?,
            ),
            None => None,
        };
        let header_fd = header.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        // SAFETY: setsid, dup2 and fcntl are async-signal-safe; nothing
        // else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                if let Some(fd) = header_fd {
                    inherit_as_header(fd)?;
                }
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
    pub(super) fn args(&self, run: &OnlineRun) -> Vec<String> {
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
        if let Some(h) = &self.header {
            a.extend(["--header".into(), h.placed.display().to_string()]);
        }
        for (flag, slot) in [("--old", run.old), ("--new", run.new)] {
            if let Some(s) = slot {
                a.extend([flag.into(), s.get().to_string()]);
            }
        }
        a
    }
}

/// Makes `fd` the child's [`HEADER_FD`], open across the exec (called
/// between fork and exec: async-signal-safe calls only).
fn inherit_as_header(fd: i32) -> std::io::Result<()> {
    // SAFETY: plain system calls on descriptors this process owns.
    let r = unsafe {
        if fd == HEADER_FD {
            libc::fcntl(fd, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd, HEADER_FD)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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
