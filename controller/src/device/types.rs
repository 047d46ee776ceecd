//! The vocabulary of the device seam: access, contents, parameters, errors.

use crate::luks2::check::CheckError;
use crate::luks2::header::{HeaderError, Luks2Header};
use crate::luks2::token::TokenId;
use api_types::KeyslotId;

/// Whether a handle may write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Observe only: nothing on the device changes, not even libcryptsetup's
    /// repair of a damaged header copy (it runs on a private copy).
    ReadOnly,
    /// Observe and change.
    ReadWrite,
}

/// What a device holds.
#[derive(Debug)]
pub enum Contents {
    /// Zeros at both ends and no known signature: volctl may format it.
    Blank,
    /// A LUKS2 header that volctl's reader and libcryptsetup agree on.
    Luks2(Box<Luks2Header>),
    /// The remains of a first format cut short (a power cut): a volctl
    /// header with no volctl token, or a torn primary with no secondary, and
    /// a data area never written. Nothing is recoverable; volctl formats it.
    UnfinishedFormat(String),
    /// Something else: a filesystem, a partition table, unknown data.
    Foreign(String),
}

/// A token change: one header write.
#[derive(Debug, Clone, Copy)]
pub enum TokenChange<'a> {
    /// Add at a free id.
    Add(&'a serde_json::Value),
    /// Replace the token at an id.
    Replace(TokenId, &'a serde_json::Value),
    /// Remove the token at an id.
    Remove(TokenId),
}

/// Why a device operation failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The passphrase does not open that keyslot.
    #[error("the key does not open keyslot {slot}")]
    WrongKey {
        /// Keyslot.
        slot: KeyslotId,
    },
    /// The device could not be opened as asked.
    #[error("cannot open {path}{}: {source}", if *.write { " for writing" } else { "" })]
    Open {
        /// Device path.
        path: String,
        /// Whether write access was asked for.
        write: bool,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Reading the device failed.
    #[error("cannot {what} {path}: {source}")]
    Io {
        /// What we tried.
        what: &'static str,
        /// Device path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The header could not be read, or its copies (or parsers) disagree.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The header libcryptsetup loaded is not one volctl would have written.
    #[error("refusing the LUKS2 header on {path}: {reason}")]
    Untrusted {
        /// Device path.
        path: String,
        /// What does not match.
        #[source]
        reason: CheckError,
    },
    /// A write was asked of a read-only handle.
    #[error("{op} on {path}: the device was opened read-only")]
    ReadOnly {
        /// What we tried.
        op: &'static str,
        /// Device path.
        path: String,
    },
    /// libcryptsetup failed.
    #[error("{op} on {path} failed: {reason}")]
    Failed {
        /// What we tried.
        op: &'static str,
        /// Device path.
        path: String,
        /// libcryptsetup's reason.
        reason: String,
    },
}

/// Fixed PBKDF costs for a new keyslot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PbkdfCost {
    /// Algorithm.
    pub kind: PbkdfKind,
    /// argon2 time cost or pbkdf2 iterations.
    pub iterations: u32,
    /// argon2 memory in KiB (0 for pbkdf2).
    pub memory_kib: u32,
    /// argon2 threads (0 for pbkdf2).
    pub parallelism: u32,
}

/// PBKDF algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbkdfKind {
    /// Argon2id.
    Argon2id,
    /// Argon2i.
    Argon2i,
    /// PBKDF2-SHA256.
    Pbkdf2,
}

/// How to cost a new keyslot: fixed, or libcryptsetup's benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PbkdfChoice {
    /// Use these costs without benchmarking.
    Fixed(PbkdfCost),
    /// Let libcryptsetup benchmark its defaults (once, at format).
    Benchmark,
}

/// What a LUKS2 format needs.
#[derive(Debug, Clone)]
pub struct FormatParams {
    /// Cipher spec, e.g. `aes-xts-plain64`.
    pub cipher: String,
    /// Encryption sector size, 0 for libcryptsetup's choice.
    pub sector_size: u32,
    /// LUKS2 label (the partition label).
    pub label: String,
    /// PBKDF costs; fixed costs also skip the volume-key digest benchmark.
    pub pbkdf: PbkdfChoice,
}

/// dm-crypt options from the config's `encryption` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationOptions {
    /// Pass discards (TRIM) through.
    pub allow_discards: bool,
    /// Perf flags: `no_read_workqueue`, `no_write_workqueue`, `same_cpu_crypt`.
    pub perf: Vec<String>,
}

impl ActivationOptions {
    /// The options the encryption config `enc` asks for.
    pub fn of(enc: &api_types::Encryption) -> Self {
        ActivationOptions {
            allow_discards: enc.allow_discards.unwrap_or(false),
            perf: enc.options.clone(),
        }
    }
}

/// How far a reencryption got: `(done, total)` bytes after each step; the
/// callee returns `false` to stop it (it resumes from the header later).
pub type Progress<'a> = &'a mut (dyn FnMut(u64, u64) -> bool + Send);

/// Makes the tokens a new in-place header carries (the first keyslot's
/// token and the reencryption proof) from the header as it is before they
/// are written.
pub type TokensFor<'a> =
    &'a (dyn Fn(&Luks2Header) -> Result<Vec<serde_json::Value>, TokensError> + Sync);

/// Why the tokens of a new header could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokensError {
    /// The header has no crypt segment for the proof to describe.
    #[error("the new header has no crypt segment")]
    NoCryptSegment,
}

/// What starting an in-place encryption needs (see [`super::LuksDevice::start_encryption`]).
pub struct EncryptionStart<'a> {
    /// Cipher, sector size, label and PBKDF costs of the new header.
    pub format: &'a FormatParams,
    /// The new volume key.
    pub volume_key: &'a crate::luks2::binding::VolumeKey,
    /// The keyslots and their passphrases, enrolled before the
    /// reencryption is recorded (libcryptsetup refuses new keyslots while
    /// one is); the first one starts it.
    pub keys: &'a [(KeyslotId, &'a [u8])],
    /// The data shift: the LUKS2 header's size; the plaintext must end
    /// twice this before the device's end.
    pub shift: u64,
    /// Record the reencryption (a new in-place encryption); without it the
    /// header only describes data already encrypted under `volume_key`
    /// (finishing an encryption libcryptsetup can no longer finish).
    pub record: bool,
    /// The header's UUID, kept when a header is written anew for a volume
    /// (`None`: a new one).
    pub uuid: Option<&'a str>,
    /// The tokens to write with the header.
    pub tokens: TokensFor<'a>,
}

/// Running (or resuming) the reencryption a header records.
pub struct ReencryptRun<'a> {
    /// What it does.
    pub operation: crate::luks2::reencryption::Operation,
    /// The keyslot of the old volume key to start it by (`None`: any).
    pub old: Option<KeyslotId>,
    /// The keyslot of the new volume key (`None`: any).
    pub new: Option<KeyslotId>,
    /// The passphrase that opens both.
    pub passphrase: &'a [u8],
    /// Online: the dm-crypt device (its `/dev/mapper` name) the volume is
    /// active as, opened mid-reencryption; `None`: offline.
    pub active: Option<&'a str>,
    /// A decryption's detached header file (`None` for the others).
    pub header: Option<&'a std::path::Path>,
}

/// What starting a volume-key rotation needs (see
/// [`super::LuksDevice::start_rotation`]).
pub struct RotationStart<'a> {
    /// The volume key now.
    pub old_key: &'a crate::luks2::binding::VolumeKey,
    /// The new one.
    pub new_key: &'a crate::luks2::binding::VolumeKey,
    /// Every configured keyslot and its passphrase: re-enrolled, in the same
    /// slot, with the new key; the first starts the run.
    pub keys: &'a [(KeyslotId, &'a [u8])],
    /// Their PBKDF costs.
    pub pbkdf: PbkdfChoice,
    /// A free keyslot for each of `keys`: the old key under the same
    /// passphrase, until the run ends.
    pub temporary: &'a [KeyslotId],
    /// The new tokens (each configured slot's, and the proof).
    pub tokens: TokensFor<'a>,
}
