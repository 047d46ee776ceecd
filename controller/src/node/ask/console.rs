//! Asking on the console: the question on the terminal, the answer read
//! without echo (type-ahead is kept: the terminal is switched with
//! `TCSANOW`, not flushed), the terminal restored afterwards.

use super::cancel::{Cancelled, Withdraw, SLICE};
use providers::ask::{AskError, Asker, Question, MAX_ANSWER};
use providers::Passphrase;
use std::io::{Read, Write};
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
    tty: std::fs::File,
    saved: rustix::termios::Termios,
}

impl NoEcho {
    fn new(tty: &std::fs::File) -> std::io::Result<Self> {
        use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
        let tty = tty.try_clone()?;
        let saved = tcgetattr(&tty)?;
        let mut quiet = saved.clone();
        quiet.local_modes &= !(LocalModes::ECHO | LocalModes::ECHONL);
        quiet.local_modes |= LocalModes::ICANON;
        tcsetattr(&tty, OptionalActions::Now, &quiet)?;
        Ok(NoEcho { tty, saved })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            &self.tty,
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
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
    let echo = NoEcho::new(&tty).map_err(unavailable)?;
    write!(tty, "{}: ", q.message).map_err(unavailable)?;
    let line = read_line(&mut tty, q, cancelled);
    let _ = writeln!(tty);
    drop(echo);
    line
}

/// Reads up to a line end, waiting at most the question's timeout (and
/// giving up when the question is withdrawn).
fn read_line(
    tty: &mut std::fs::File,
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
        let mut pfd = [rustix::event::PollFd::new(
            &*tty,
            rustix::event::PollFlags::IN,
        )];
        let wait = rustix::time::Timespec {
            tv_sec: i64::from(ms / 1000),
            tv_nsec: i64::from(ms % 1000) * 1_000_000,
        };
        if !matches!(rustix::event::poll(&mut pfd, Some(&wait)), Ok(n) if n > 0) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use std::io::Read;

    /// A pseudo-terminal: its controlling side and the path of the
    /// terminal a console question is asked on.
    fn pty() -> (std::fs::File, std::path::PathBuf) {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let path = std::path::PathBuf::from(name.to_str().unwrap());
        (std::fs::File::from(master), path)
    }

    #[test]
    fn a_typed_answer_is_read_without_echo_and_the_terminal_restored() {
        let (mut master, path) = pty();
        // Held open throughout: the controlling side reads EIO while no
        // process has the terminal open.
        let held = std::fs::File::open(&path).unwrap();
        let before = rustix::termios::tcgetattr(&held).unwrap();
        let q = Question {
            id: "volctl:test".into(),
            message: "Passphrase for test".into(),
            timeout: Some(std::time::Duration::from_secs(20)),
        };
        let (_withdraw, cancelled) = Withdraw::new();
        let asking = {
            let path = path.clone();
            std::thread::spawn(move || ask_blocking(&path, &q, &cancelled))
        };
        // The prompt appears, then the answer is typed.
        let mut seen = Vec::new();
        let mut b = [0u8; 256];
        while !String::from_utf8_lossy(&seen).contains("Passphrase for test: ") {
            let n = master.read(&mut b).unwrap();
            seen.extend_from_slice(&b[..n]);
        }
        master.write_all(b"s3cret-typed\n").unwrap();
        let answer = asking.join().unwrap().unwrap();
        assert_eq!(answer.expose(), b"s3cret-typed");
        // What the terminal showed after the prompt: the line end volctl
        // writes, never the typed characters.
        let n = master.read(&mut b).unwrap();
        assert!(
            !String::from_utf8_lossy(&b[..n]).contains("s3cret"),
            "echoed: {:?}",
            String::from_utf8_lossy(&b[..n])
        );
        let after = rustix::termios::tcgetattr(&held).unwrap();
        assert_eq!(after.local_modes, before.local_modes, "echo restored");
    }
}
