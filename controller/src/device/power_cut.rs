//! A test double for a power cut: a [`LuksDevice`] wrapper that kills the
//! process (`abort`, no cleanup, like losing power) right after its N-th
//! header write. It exists because a power cut cannot happen on demand in a
//! test; the VM suite enables it with `VOLCTL_POWER_CUT_AFTER_WRITES=N` to
//! prove that every volume still opens with its old or new keys afterwards.

use super::{
    Access, ActivationOptions, Contents, DeviceError, FormatParams, LuksDevice, PbkdfChoice,
    TokenChange,
};
use crate::luks2::binding::VolumeKey;
use crate::luks2::token::TokenId;
use api_types::KeySize;
use api_types::KeyslotId;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Environment variable that arms the power cut (tests only).
pub const POWER_CUT_ENV: &str = "VOLCTL_POWER_CUT_AFTER_WRITES";

/// Header writes across the whole process (all volumes).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Wraps `inner` when the environment arms a power cut; else returns it.
pub(super) fn maybe_wrap(inner: Arc<dyn LuksDevice>) -> Arc<dyn LuksDevice> {
    match std::env::var(POWER_CUT_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        Some(after) => Arc::new(PowerCutDevice::new(inner, after)),
        None => inner,
    }
}

/// Aborts the process after `after` header writes.
pub struct PowerCutDevice {
    inner: Arc<dyn LuksDevice>,
    after: u64,
}

impl PowerCutDevice {
    /// Wraps `inner`: the process aborts right after the `after`-th header
    /// write made through any wrapped device.
    pub fn new(inner: Arc<dyn LuksDevice>, after: u64) -> Self {
        PowerCutDevice { inner, after }
    }

    fn wrote<T>(&self, r: Result<T, DeviceError>) -> Result<T, DeviceError> {
        if r.is_ok() && WRITES.fetch_add(1, Ordering::SeqCst) + 1 >= self.after {
            eprintln!(
                "{POWER_CUT_ENV}: simulated power cut after {} header write(s)",
                self.after
            );
            std::process::abort();
        }
        r
    }
}

impl LuksDevice for PowerCutDevice {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn access(&self) -> Access {
        self.inner.access()
    }
    fn kdf_runs(&self) -> u64 {
        self.inner.kdf_runs()
    }
    fn size(&self) -> Result<u64, DeviceError> {
        self.inner.size()
    }
    fn contents(&self) -> Result<Contents, DeviceError> {
        self.inner.contents()
    }
    fn format(&self, p: &FormatParams, vk: &VolumeKey) -> Result<(), DeviceError> {
        self.wrote(self.inner.format(p, vk))
    }
    fn format_finished(&self) -> Result<(), DeviceError> {
        self.wrote(self.inner.format_finished())
    }
    fn volume_key(
        &self,
        slot: KeyslotId,
        size: KeySize,
        pass: &[u8],
    ) -> Result<VolumeKey, DeviceError> {
        self.inner.volume_key(slot, size, pass)
    }
    fn add_keyslot(
        &self,
        slot: KeyslotId,
        vk: &VolumeKey,
        pass: &[u8],
        pbkdf: PbkdfChoice,
    ) -> Result<String, DeviceError> {
        self.wrote(self.inner.add_keyslot(slot, vk, pass, pbkdf))
    }
    fn destroy_keyslot(&self, slot: KeyslotId) -> Result<(), DeviceError> {
        self.wrote(self.inner.destroy_keyslot(slot))
    }
    fn token(&self, change: TokenChange<'_>) -> Result<TokenId, DeviceError> {
        self.wrote(self.inner.token(change))
    }
    fn start_encryption(&self, start: &super::EncryptionStart<'_>) -> Result<(), DeviceError> {
        self.wrote(self.inner.start_encryption(start))
    }
    fn start_rotation(&self, start: &super::RotationStart<'_>) -> Result<(), DeviceError> {
        self.wrote(self.inner.start_rotation(start))
    }
    fn redo_moved_step(
        &self,
        step: &crate::luks2::reencryption::MovedStep,
        volume_key: &VolumeKey,
    ) -> Result<(), DeviceError> {
        self.wrote(self.inner.redo_moved_step(step, volume_key))
    }
    fn wipe_moved_copy(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.wrote(self.inner.wipe_moved_copy(offset, len))
    }
    fn run_reencryption(
        &self,
        run: &super::ReencryptRun<'_>,
        progress: super::Progress<'_>,
    ) -> Result<(), DeviceError> {
        self.wrote(self.inner.run_reencryption(run, progress))
    }
    fn activate(
        &self,
        name: &str,
        vk: &VolumeKey,
        o: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        self.inner.activate(name, vk, o)
    }
    fn activate_reencrypting(
        &self,
        name: &str,
        key: (Option<KeyslotId>, &[u8]),
        operation: crate::luks2::reencryption::Operation,
        o: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        self.inner.activate_reencrypting(name, key, operation, o)
    }
}
