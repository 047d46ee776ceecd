//! The systemd ask-password protocol (systemd.io/PASSWORD_AGENTS): write an
//! `ask.XXXX` ini file naming a datagram socket in the directory; an agent
//! (`systemd-tty-ask-password-agent`, plymouth, a test's own) sends back
//! `+passphrase` or `-` (cancel). Only answers from root (or from our own
//! user, when volctl runs unprivileged in tests) are taken, checked with
//! `SCM_CREDENTIALS` as systemd does.

use super::cancel::{Cancelled, Withdraw, SLICE};
use providers::ask::{AskError, Asker, Question, MAX_ANSWER};
use providers::Passphrase;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::Instant;
use zeroize::Zeroizing;

/// Asks through agents watching `dir`.
pub struct AgentAsker {
    dir: PathBuf,
}

impl AgentAsker {
    /// Agents watching `dir` answer.
    pub fn new(dir: PathBuf) -> Self {
        AgentAsker { dir }
    }
}

#[async_trait::async_trait]
impl Asker for AgentAsker {
    async fn ask(&self, q: &Question) -> Result<Passphrase, AskError> {
        let (dir, q) = (self.dir.clone(), q.clone());
        let (_withdraw, cancelled) = Withdraw::new();
        tokio::task::spawn_blocking(move || ask_blocking(&dir, &q, &cancelled))
            .await
            .map_err(|_| AskError::Unavailable("the asking task failed".into()))?
    }

    fn channel(&self) -> String {
        format!("ask-password agents watching {}", self.dir.display())
    }
}

/// The question's files; removed when dropped, answered or not.
struct Posted {
    ask: PathBuf,
    socket: PathBuf,
}

impl Drop for Posted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.ask);
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn unavailable(what: &str, e: std::io::Error) -> AskError {
    AskError::Unavailable(format!("{what}: {e}"))
}

fn ask_blocking(dir: &Path, q: &Question, cancelled: &Cancelled) -> Result<Passphrase, AskError> {
    std::fs::create_dir_all(dir).map_err(|e| unavailable("cannot make the ask directory", e))?;
    let id = hex::encode(rand::random::<[u8; 8]>());
    let posted = Posted {
        ask: dir.join(format!("ask.{id}")),
        socket: dir.join(format!("sck.{id}")),
    };
    let sock = UnixDatagram::bind(&posted.socket).map_err(|e| unavailable("cannot bind", e))?;
    pass_credentials(&sock).map_err(|e| unavailable("SO_PASSCRED", e))?;
    post(dir, &id, &posted, q).map_err(|e| unavailable("cannot write the question", e))?;
    let deadline = q.timeout.map(|t| Instant::now() + t);
    loop {
        if cancelled.is_set() {
            return Err(AskError::Cancelled);
        }
        let wait = match deadline {
            Some(d) => d
                .checked_duration_since(Instant::now())
                .filter(|w| !w.is_zero())
                .ok_or(AskError::Timeout(q.timeout.unwrap_or_default()))?
                .min(SLICE),
            None => SLICE,
        };
        sock.set_read_timeout(Some(wait))
            .map_err(|e| unavailable("socket", e))?;
        let mut buf = Zeroizing::new(vec![0u8; MAX_ANSWER + 2]);
        match receive(&sock, &mut buf) {
            Ok(Some(n)) => {
                if let Some(answer) = parse_answer(&buf[..n])? {
                    return Ok(answer);
                }
            }
            Ok(None) => {
                tracing::warn!("ignored an ask-password answer from an unprivileged sender")
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(unavailable("cannot read the answer", e)),
        }
    }
}

/// `+secret` is an answer (up to a NUL: agents may send several), `-` a
/// cancel; anything else is ignored.
fn parse_answer(d: &[u8]) -> Result<Option<Passphrase>, AskError> {
    match d.first() {
        Some(b'+') => {
            let rest = &d[1..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            Ok(Some(Passphrase::new(rest[..end].to_vec())))
        }
        Some(b'-') => Err(AskError::Cancelled),
        _ => Ok(None),
    }
}

/// Writes the ask file under a temporary name and renames it, so agents
/// (which watch for `ask.*` closes and moves) never read half a question.
fn post(dir: &Path, id: &str, posted: &Posted, q: &Question) -> std::io::Result<()> {
    let not_after = q.timeout.map_or(0, |t| {
        monotonic_now().saturating_add(u64::try_from(t.as_micros()).unwrap_or(u64::MAX))
    });
    let text = format!(
        "[Ask]\nPID={}\nSocket={}\nAcceptCached=0\nEcho=0\nNotAfter={not_after}\nMessage={}\nIcon=drive-harddisk\nId={}\n",
        std::process::id(),
        posted.socket.display(),
        q.message.replace(['\n', '\r'], " "),
        q.id,
    );
    let tmp = dir.join(format!(".tmp.{id}"));
    let mut f = std::fs::File::create(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &posted.ask)
}

/// CLOCK_MONOTONIC in microseconds, as `NotAfter=` counts.
fn monotonic_now() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(ts.tv_sec).unwrap_or(0) * 1_000_000
        + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1000
}

fn pass_credentials(sock: &UnixDatagram) -> std::io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_passcred(sock, true)?)
}

/// Receives one datagram; `Ok(None)` when its sender is neither root nor
/// us, or when it was longer than `buf` (the kernel cut it: what is left
/// is not what was typed, so it is not tried).
fn receive(sock: &UnixDatagram, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut space = [std::mem::MaybeUninit::<u8>::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = recvmsg(
        sock,
        &mut [std::io::IoSliceMut::new(buf)],
        &mut control,
        RecvFlags::empty(),
    )?;
    if got.flags.contains(ReturnFlags::TRUNC) {
        tracing::warn!(
            "an answer longer than {} bytes was ignored",
            buf.len().saturating_sub(1)
        );
        return Ok(None);
    }
    let me = rustix::process::geteuid();
    let trusted = control.drain().any(
        |m| matches!(m, RecvAncillaryMessage::ScmCredentials(c) if c.uid.is_root() || c.uid == me),
    );
    Ok(trusted.then_some(got.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_cancels_and_noise() {
        let p = parse_answer(b"+secret\0other").unwrap().unwrap();
        assert_eq!(p.expose(), b"secret");
        assert!(matches!(parse_answer(b"-"), Err(AskError::Cancelled)));
        assert!(parse_answer(b"?x").unwrap().is_none());
    }

    #[test]
    fn an_answer_longer_than_the_buffer_is_ignored_not_cut_and_tried() {
        let (asker, agent) = UnixDatagram::pair().unwrap();
        pass_credentials(&asker).unwrap();
        let mut buf = [0u8; 512];
        let long = [b'+'; 600];
        agent.send(&long).unwrap();
        assert_eq!(receive(&asker, &mut buf).unwrap(), None);
        agent.send(b"+fits").unwrap();
        assert_eq!(receive(&asker, &mut buf).unwrap(), Some(5));
    }
}
