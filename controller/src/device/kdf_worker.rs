//! A keyslot's KDF run in a worker process, so that the KDF runs of
//! different volumes overlap. `libcryptsetup-rs` serialises every
//! libcryptsetup call of a process behind one lock (its `mutex` feature;
//! without it, calls from a second thread panic), so a boot opening three
//! volumes on three threads still ran their KDFs back to back. A worker is
//! the same binary (`volctl keyslot-unlock`, hidden), started per unlock:
//! it loads the header copy the caller already checked, runs the one KDF
//! through libcryptsetup (the same code, the same cost as in-process) and
//! hands the volume key back.
//!
//! The passphrase goes to the worker on its stdin and the volume key comes
//! back on its stdout: anonymous pipes between two processes of the same
//! user, never a file, an argument or the environment; both sides keep them
//! in zeroized buffers. The caller checks the key it gets against the
//! header's digest (libcryptsetup's `crypt_volume_key_verify`, no KDF)
//! before using it, so a worker cannot hand over a wrong key.
//!
//! Workers are used only where a process opens several volumes at once
//! (`volctl boot --parallel N`, N > 1: [`use_workers`]); elsewhere the KDF
//! runs in-process.

use super::types::DeviceError;
use crate::luks2::binding::VolumeKey;
use api_types::{KeySize, KeyslotId};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use zeroize::Zeroizing;

/// The hidden verb a worker runs.
pub const VERB: &str = "keyslot-unlock";

/// The worker's exit status when the passphrase opens no keyslot
/// (`Exit::WrongKey` of the binary).
const WRONG_KEY: i32 = 3;

/// How a worker's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// The volume key went to stdout.
    Key,
    /// The passphrase opens no keyslot.
    WrongKey,
    /// Anything else (said on stderr).
    Failed,
}

static WORKER: OnceLock<PathBuf> = OnceLock::new();

/// From now on, this process runs keyslot KDFs in workers started from
/// `exe` (a `volctl` binary).
pub fn use_workers(exe: PathBuf) {
    let _ = WORKER.set(exe);
}

/// The worker binary, when workers are in use.
pub(super) fn worker() -> Option<&'static Path> {
    WORKER.get().map(PathBuf::as_path)
}

/// Why a worker gave no answer (the caller runs the KDF in-process).
#[derive(Debug, thiserror::Error)]
pub(super) enum WorkerError {
    /// It did not start.
    #[error("cannot start the KDF worker {}: {source}", exe.display())]
    Start {
        /// The executable.
        exe: std::path::PathBuf,
        /// The spawn error.
        source: std::io::Error,
    },
    /// Waiting for it failed.
    #[error("the KDF worker: {0}")]
    Wait(std::io::Error),
    /// The passphrase could not be written to it.
    #[error("cannot hand the passphrase to the KDF worker: {0}")]
    Passphrase(std::io::Error),
    /// Its answer could not be read.
    #[error("cannot read the KDF worker's answer: {0}")]
    Answer(std::io::Error),
    /// It ended without a key and without saying "wrong key".
    #[error("the KDF worker failed ({status}): {stderr}")]
    Failed {
        /// How it ended.
        status: std::process::ExitStatus,
        /// What it printed.
        stderr: String,
    },
}

/// What a worker said.
pub(super) enum Unlocked {
    /// The volume key the keyslot holds (not yet verified).
    Key(VolumeKey),
    /// The passphrase does not open the keyslot.
    WrongKey,
}

/// Runs `exe keyslot-unlock` on the header copy `header` for keyslot
/// `slot`: the passphrase in, the volume key out.
pub(super) fn unlock_in_worker(
    exe: &Path,
    header: &Path,
    slot: KeyslotId,
    key_size: KeySize,
    passphrase: &[u8],
) -> Result<Unlocked, WorkerError> {
    let mut child = Command::new(exe)
        .arg(VERB)
        .arg("--header")
        .arg(header)
        .args(["--slot", &slot.get().to_string()])
        .args(["--key-size", &key_size.len().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| WorkerError::Start {
            exe: exe.to_path_buf(),
            source,
        })?;
    let mut stdin = child.stdin.take().expect("piped");
    let written = stdin.write_all(passphrase);
    drop(stdin);
    let mut key = Zeroizing::new(Vec::with_capacity(key_size.len()));
    let read = child.stdout.take().expect("piped").read_to_end(&mut key);
    let mut err = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    let status = child.wait().map_err(WorkerError::Wait)?;
    written.map_err(WorkerError::Passphrase)?;
    read.map_err(WorkerError::Answer)?;
    match status.code() {
        Some(0) if key.len() == key_size.len() => Ok(Unlocked::Key(VolumeKey::new(key.to_vec()))),
        Some(WRONG_KEY) => Ok(Unlocked::WrongKey),
        _ => Err(WorkerError::Failed {
            status,
            stderr: err.trim().to_string(),
        }),
    }
}

/// A worker's whole life: the passphrase from stdin, the volume key of
/// `slot` in the header copy `header` to stdout.
pub fn serve(header: &Path, slot: KeyslotId, key_size: KeySize) -> Served {
    let mut passphrase = Zeroizing::new(Vec::new());
    if let Err(e) = std::io::stdin().read_to_end(&mut passphrase) {
        eprintln!("cannot read the passphrase: {e}");
        return Served::Failed;
    }
    match super::cryptsetup::volume_key_of_copy(header, slot, key_size, &passphrase) {
        Ok(key) => match std::io::stdout().write_all(key.expose()) {
            Ok(()) => Served::Key,
            Err(e) => {
                eprintln!("cannot hand the key over: {e}");
                Served::Failed
            }
        },
        Err(DeviceError::WrongKey { .. }) => Served::WrongKey,
        Err(e) => {
            eprintln!("{e}");
            Served::Failed
        }
    }
}
