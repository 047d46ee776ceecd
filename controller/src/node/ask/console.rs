//! Asking on the console: the question on the terminal, the answer read
//! without echo (type-ahead is kept: the terminal is switched with
//! `TCSANOW`, not flushed), the terminal restored afterwards.

use super::cancel::{Cancelled, Withdraw, SLICE};
use providers::ask::{AskError, Asker, Question, MAX_ANSWER};
use providers::Passphrase;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Instant;
use zeroize::Zeroizing;

/// Asks on a terminal device.
pub struct ConsoleAsker {
    path: PathBuf,
}

impl ConsoleAsker {
    /// The terminal on standard input (reopened read-write, so the question
    /// reaches it even when standard output goes to a file).
    pub fn stdin() -> Self {
        ConsoleAsker {
            path: PathBuf::from("/proc/self/fd/0"),
        }
    }
}

#[async_trait::async_trait]
impl Asker for ConsoleAsker {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        let (path, q) = (self.path.clone(), q.clone());
        let (_withdraw, cancelled) = Withdraw::new();
        tokio::task::spawn_blocking(move || ask_blocking(&path, &q, &cancelled))
            .await
            .map_err(|_| AskError::Unavailable("the asking task failed".into()))?
    }

    fn channel(&self) -> String {
        "the console".into()
    }
}

/// Echo off until dropped.
struct NoEcho {
    fd: i32,
    saved: libc::termios,
}

impl NoEcho {
    fn new(fd: i32) -> std::io::Result<Self> {
        // SAFETY: a zeroed termios is valid storage; tcgetattr fills it.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd is an open descriptor; saved is ours.
        if unsafe { libc::tcgetattr(fd, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHONL);
        quiet.c_lflag |= libc::ICANON;
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &quiet) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(NoEcho { fd, saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `new` on the same descriptor.
        unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
    }
}

fn ask_blocking(
    path: &std::path::Path,
    q: &Question,
    cancelled: &Cancelled,
) -> Result<Passphrase, AskError> {
    let unavailable = |e: std::io::Error| AskError::Unavailable(format!("the console: {e}"));
    let mut tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)
        .map_err(unavailable)?;
    let fd = tty.as_raw_fd();
    let echo = NoEcho::new(fd).map_err(unavailable)?;
    write!(tty, "{}: ", q.message).map_err(unavailable)?;
    let line = read_line(&mut tty, fd, q, cancelled);
    let _ = writeln!(tty);
    drop(echo);
    line
}

/// Reads up to a line end, waiting at most the question's timeout (and
/// giving up when the question is withdrawn).
fn read_line(
    tty: &mut std::fs::File,
    fd: i32,
    q: &Question,
    cancelled: &Cancelled,
) -> Result<Passphrase, AskError> {
    let deadline = q.timeout.map(|t| Instant::now() + t);
    let mut line = Zeroizing::new(Vec::with_capacity(64));
    let slice = i32::try_from(SLICE.as_millis()).unwrap_or(200);
    loop {
        if cancelled.is_set() {
            return Err(AskError::Cancelled);
        }
        let ms = match deadline {
            None => slice,
            Some(d) => match d.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => i32::try_from(left.as_millis())
                    .unwrap_or(i32::MAX)
                    .min(slice),
                _ => return Err(AskError::Timeout(q.timeout.unwrap_or_default())),
            },
        };
        let mut pfd = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd we own.
        if unsafe { libc::poll(&mut pfd, 1, ms) } <= 0 {
            continue;
        }
        let mut b = [0u8; 1];
        match tty.read(&mut b) {
            Ok(0) => return Err(AskError::Cancelled),
            Ok(_) if b[0] == b'\n' || b[0] == b'\r' => return Ok(Passphrase::new(line.to_vec())),
            Ok(_) if line.len() < MAX_ANSWER + 1 => line.push(b[0]),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(AskError::Unavailable(format!("the console: {e}"))),
        }
    }
}
