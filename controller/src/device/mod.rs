//! The one seam between volctl and a block device. Every observation
//! (contents, header, size) and every change (format, keyslots, tokens,
//! activation) of a volume goes through [`LuksDevice`]; [`open`] is the one
//! constructor, so the access check and the power-cut test double apply to
//! every command alike.
//!
//! - [`CryptsetupDevice`]: libcryptsetup on a block device or image file;
//! - `SimDevice` (tests, or the `sim` feature): an in-memory model;
//! - [`PowerCutDevice`]: kills the process after the N-th header write;
//! - `kdf_worker`: a keyslot's KDF in a worker process, so that the KDFs
//!   of volumes opened at once overlap;
//! - [`kdf_watch`]: who is told when a KDF runs (a terminal's elapsed-time line).

mod cryptsetup;
mod decrypt;
pub mod kdf_watch;
pub mod kdf_worker;
mod moved_step;
mod power_cut;
mod probe;
mod reencrypt;
mod shadow;
#[cfg(any(test, feature = "sim"))]
mod sim;
mod types;
mod unfinished;

pub use cryptsetup::{deactivate, CryptsetupDevice};
pub use decrypt::{all_plaintext, data_shift, read_detached, DetachedHeader};
pub use power_cut::{PowerCutDevice, POWER_CUT_ENV};
pub(crate) use probe::probe_foreign;
pub use probe::{probe_filesystem, SWAP_SIGNATURE};
#[cfg(any(test, feature = "sim"))]
pub use sim::SimDevice;
pub use types::*;

use crate::luks2::binding::VolumeKey;
use crate::luks2::token::TokenId;
use api_types::Encryption;
use api_types::KeySize;
use api_types::KeyslotId;
use std::path::Path;
use std::sync::Arc;

/// Every LUKS2 operation volctl makes. Implementations are called from
/// blocking threads. Every method that runs the PBKDF bumps
/// [`LuksDevice::kdf_runs`], which tests and status use to prove that a
/// converged volume costs one KDF run.
pub trait LuksDevice: Send + Sync {
    /// The device path.
    fn path(&self) -> &Path;
    /// Whether this handle may write.
    fn access(&self) -> Access;
    /// KDF runs made through this handle so far.
    fn kdf_runs(&self) -> u64;
    /// The device size in bytes.
    fn size(&self) -> Result<u64, DeviceError>;
    /// What the device holds. A LUKS2 header is returned only when both of
    /// its copies agree and libcryptsetup loaded exactly the JSON volctl
    /// read; nothing is written.
    fn contents(&self) -> Result<Contents, DeviceError>;
    /// Writes a fresh LUKS2 header with the given volume key (no keyslots),
    /// after marking the device as being formatted (see
    /// [`crate::luks2::consts::FORMAT_MARK`]).
    fn format(&self, params: &FormatParams, volume_key: &VolumeKey) -> Result<(), DeviceError>;
    /// Clears the format mark once the first keyslots and tokens are
    /// written (before anything uses the data area).
    fn format_finished(&self) -> Result<(), DeviceError>;
    /// Gets the volume key from one keyslot (one KDF run). Never writes.
    fn volume_key(
        &self,
        slot: KeyslotId,
        key_size: KeySize,
        passphrase: &[u8],
    ) -> Result<VolumeKey, DeviceError>;
    /// Adds keyslot `slot` holding `volume_key` under `passphrase` (one KDF
    /// run, one header write). Returns the new keyslot's KDF salt (base64),
    /// which the slot's token owner tag covers.
    fn add_keyslot(
        &self,
        slot: KeyslotId,
        volume_key: &VolumeKey,
        passphrase: &[u8],
        pbkdf: PbkdfChoice,
    ) -> Result<String, DeviceError>;
    /// Destroys keyslot `slot` (one header write).
    fn destroy_keyslot(&self, slot: KeyslotId) -> Result<(), DeviceError>;
    /// Adds, replaces or removes a token (one header write); returns its id.
    fn token(&self, input: TokenChange<'_>) -> Result<TokenId, DeviceError>;
    /// Starts encrypting the plaintext on the device in place (offline):
    /// writes a LUKS2 header holding `start.volume_key`, the keyslots of
    /// `start.keys`, the tokens `start.tokens` makes, and the record of an
    /// encryption with a data shift of `start.shift`; a KDF run per key and
    /// one more. The
    /// plaintext must end `2 × shift` before the device's end. A cut before
    /// the end leaves the plaintext as it was, or the header whole.
    fn start_encryption(&self, start: &EncryptionStart<'_>) -> Result<(), DeviceError>;
    /// Starts rotating the volume key (offline): in a copy of the header,
    /// every configured keyslot is enrolled again, in its slot, with the
    /// new key (a KDF run each), two temporary keyslots and the tokens are
    /// added and the reencryption recorded; then the copy is written over
    /// the header. Cut before that, the old header is whole.
    fn start_rotation(&self, start: &RotationStart<'_>) -> Result<(), DeviceError>;
    /// Does an in-place encryption's last step by `volume_key`, from its
    /// moved copy (`moved_step.rs`): the header is not changed, and the
    /// copy is not written, so a cut during it is harmless. No KDF run.
    fn redo_moved_step(
        &self,
        step: &crate::luks2::reencryption::MovedStep,
        volume_key: &VolumeKey,
    ) -> Result<(), DeviceError>;
    /// Overwrites `len` bytes at `offset` (an in-place encryption's moved
    /// copy, once no header needs it) with random bytes.
    fn wipe_moved_copy(&self, offset: u64, len: u64) -> Result<(), DeviceError>;
    /// Runs the reencryption the header records to its end (offline): one
    /// KDF run (two after a cut inside a step); resumes where a cut run
    /// stopped.
    fn run_reencryption(
        &self,
        run: &ReencryptRun<'_>,
        progress: Progress<'_>,
    ) -> Result<(), DeviceError>;
    /// Activates the volume with dm-crypt as `/dev/mapper/<name>`, by volume
    /// key (no KDF run), after checking once more the header it loaded.
    fn activate(
        &self,
        name: &str,
        volume_key: &VolumeKey,
        options: &ActivationOptions,
    ) -> Result<(), DeviceError>;
    /// Activates a volume whose header records a reencryption (libcryptsetup
    /// 2.6 maps its segments only when it opens the keyslots itself): by
    /// a passphrase (of `slot`, or of any keyslot: a rotation needs the
    /// old key's twin too), a KDF run at least for each volume key the
    /// reencryption holds; a step a cut run was in is recovered first.
    fn activate_reencrypting(
        &self,
        name: &str,
        key: (Option<KeyslotId>, &[u8]),
        operation: crate::luks2::reencryption::Operation,
        options: &ActivationOptions,
    ) -> Result<(), DeviceError>;
}

/// Opens `path` for `access`: checks that it can be opened so, and wraps it
/// in the power-cut test double when the environment arms one. With
/// `expect`, every libcryptsetup context that writes or activates checks
/// the header it loaded against that encryption config first.
pub fn open(
    path: &Path,
    access: Access,
    expect: Option<Encryption>,
) -> Result<Arc<dyn LuksDevice>, DeviceError> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(access == Access::ReadWrite)
        .open(path)
        .map_err(|source| DeviceError::Open {
            path: path.display().to_string(),
            write: access == Access::ReadWrite,
            source,
        })?;
    let dev: Arc<dyn LuksDevice> = Arc::new(CryptsetupDevice::new(path, access, expect));
    Ok(power_cut::maybe_wrap(dev))
}
