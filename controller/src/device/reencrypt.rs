//! In-place encryption on libcryptsetup. Starting one is offline (no
//! device-mapper: it works on image files and block devices alike);
//! running it is offline or online.
//!
//! Starting it follows `cryptsetup reencrypt --encrypt --reduce-device-size`:
//! a LUKS2 header is made in a private temporary file with the data device
//! beside it; libcryptsetup records an `encrypt` reencryption (backward,
//! `datashift` resilience, the first `shift` bytes of data moved to the
//! free room at the device's end); then the header is written to the
//! device's head. volctl writes it itself, in two steps, instead of
//! `crypt_header_restore`: everything but the first 512 bytes (the
//! secondary copy and the keyslots included; its zero padding overwrites
//! the ext4 superblock at byte 1024), synced, then the first 512 bytes,
//! which hold every field of the primary binary header. Cut between the
//! two, no other signature is left beside the LUKS2 secondary copy, so
//! libcryptsetup reads that copy and repairs the primary by itself (with
//! the ext4 superblock still there it would refuse, "ambiguous
//! signatures"); cut before, the device still holds its filesystem,
//! untouched except for the copy at its end.
//!
//! Running it is `crypt_reencrypt_init_by_passphrase` (resume) and
//! `crypt_reencrypt_run`; libcryptsetup keeps its progress in the header
//! after each step, so a killed run resumes where it stopped. Offline, on
//! the device itself; online, through the dm-crypt device the volume is
//! active as (libcryptsetup swaps its table for each step's hotzone), so
//! the filesystem on it stays mounted and in use.

use super::cryptsetup::{loaded_header, pbkdf_type, CryptsetupDevice};
use super::{
    DeviceError, EncryptionStart, FormatParams, PbkdfChoice, Progress, ReencryptRun, RotationStart,
};
use crate::luks2::reencryption::Operation;
use api_types::KeyslotId;
use libcryptsetup_rs::consts::flags::{CryptReencrypt, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{
    CryptReencryptDirectionInfo, CryptReencryptInfo, CryptReencryptModeInfo, EncryptionFormat,
};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsReencrypt, Either, TokenInput,
};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// Bytes of the primary binary header that hold its fields (magic,
/// checksum…), written last; the rest of its 4 KiB is zero padding.
const PRIMARY_FIELDS: usize = 512;
const SECTOR: u64 = 512;
const SECTOR_BYTES: u32 = 512;
/// The most a rotation rewrites in one step: an encryption's step (its
/// data shift), so that progress moves and a stop waits as long.
/// (the data shift of in-place encryption is the default data offset.)
const ROTATION_STEP: u64 = crate::luks2::consts::DEFAULT_DATA_OFFSET;

/// The reencryption's parameters, to start one (with the new segment's
/// sector size) or to resume one (`sector_size` `None`: the stored
/// parameters restated, so libcryptsetup finds nothing to update).
fn params(op: Operation, sector_size: Option<u32>, flags: CryptReencrypt) -> CryptParamsReencrypt {
    // Resilience: with a data shift, `datashift` is the only one
    // libcryptsetup allows (the source of every step stays intact until its
    // copy is committed); rewriting in place (a rotation) needs `checksum`
    // (cheaper than `journal`, which writes every step twice).
    let (mode, direction, resilience, shift) = match op {
        Operation::Encrypt => (
            CryptReencryptModeInfo::Encrypt,
            CryptReencryptDirectionInfo::Backward,
            "datashift",
            crate::luks2::consts::DEFAULT_DATA_OFFSET,
        ),
        Operation::RotateVolumeKey => (
            CryptReencryptModeInfo::Reencrypt,
            CryptReencryptDirectionInfo::Forward,
            "checksum",
            0,
        ),
        // A decryption's own parameters (its recorded shift, the first
        // segment moved) are `super::decrypt`'s; runs go there first.
        Operation::Decrypt => (
            CryptReencryptModeInfo::Decrypt,
            CryptReencryptDirectionInfo::Forward,
            "datashift-checksum",
            0,
        ),
    };
    // Steps: a data shift's are its size; a rotation's are bounded too, so
    // progress moves and a stop asked for (SIGTERM, `volctl close`) waits
    // for one step at most.
    let hotzone = match op {
        Operation::Encrypt | Operation::Decrypt => 0,
        Operation::RotateVolumeKey => ROTATION_STEP / SECTOR,
    };
    CryptParamsReencrypt {
        mode,
        direction,
        resilience: resilience.into(),
        hash: "sha256".into(),
        data_shift: shift / SECTOR,
        max_hotzone_size: hotzone,
        device_size: 0,
        luks2: sector_size.map(|size| CryptParamsLuks2 {
            pbkdf: None,
            integrity: None,
            integrity_params: None,
            data_alignment: 0,
            data_device: None,
            sector_size: sector_size_or_512(size),
            label: None,
            subsystem: None,
        }),
        flags,
    }
}

fn sector_size_or_512(sector_size: u32) -> u32 {
    if sector_size == 0 {
        SECTOR_BYTES
    } else {
        sector_size
    }
}

impl CryptsetupDevice {
    /// See [`super::LuksDevice::start_encryption`].
    pub(super) fn start_encryption_impl(&self, s: &EncryptionStart<'_>) -> Result<(), DeviceError> {
        let op = "start in-place encryption";
        self.writable(op)?;
        // An unnamed file (O_TMPFILE), reached through /proc: a cut run
        // leaves no copy of the header behind.
        let tmp = tempfile::tempfile().map_err(self.io("make a temporary header for"))?;
        tmp.set_len(4096)
            .map_err(self.io("make a temporary header for"))?;
        let tmp_path = PathBuf::from(format!("/proc/self/fd/{}", tmp.as_raw_fd()));
        let mut dev = CryptInit::init_with_data_device(Either::Right((&tmp_path, &self.path)))
            .map_err(|e| self.fail(op, e))?;
        self.format_detached(&mut dev, s)?;
        let Some((first, passphrase)) = s.keys.first() else {
            return Err(self.failed(op, "no key to start it with".into()));
        };
        // Tokens first: libcryptsetup refuses token writes once a
        // reencryption is recorded.
        self.write_tokens(&mut dev, s.tokens, op)?;
        if !s.record {
            drop(dev);
            return self.place_header(&tmp, s.shift);
        }
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        let (cipher, mode) = s
            .format
            .cipher
            .split_once('-')
            .unwrap_or((&s.format.cipher, ""));
        dev.reencrypt_handle()
            .reencrypt_init_by_passphrase(
                None,
                passphrase,
                None,
                Some(first.get()),
                Some((cipher, mode)),
                params(
                    Operation::Encrypt,
                    Some(s.format.sector_size),
                    CryptReencrypt::INITIALIZE_ONLY | CryptReencrypt::MOVE_FIRST_SEGMENT,
                ),
            )
            .map_err(|e| self.fail(op, e))?;
        drop(dev);
        self.place_header(&tmp, s.shift)
    }

    /// See [`super::LuksDevice::start_rotation`].
    pub(super) fn start_rotation_impl(&self, s: &RotationStart<'_>) -> Result<(), DeviceError> {
        let op = "start a volume-key rotation";
        let mut dev = self.load_for_change(op)?;
        let h = loaded_header(&mut dev).map_err(|e| self.failed(op, e.to_string()))?;
        let len = h
            .data_offset()
            .ok_or_else(|| self.failed(op, "the header has no single data segment".into()))?;
        drop(dev);
        let tmp = self.header_copy(len)?;
        let tmp_path = PathBuf::from(format!("/proc/self/fd/{}", tmp.as_raw_fd()));
        let mut dev = CryptInit::init_with_data_device(Either::Right((&tmp_path, &self.path)))
            .map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.fail(op, e))?;
        self.reenrol(&mut dev, s, &h)?;
        let h = self.write_tokens(&mut dev, s.tokens, op)?;
        let sector_size = h.json.segments.values().find_map(|seg| seg.sector_size);
        let (cipher, mode) = dev_cipher(&mut dev);
        let (Some((first, passphrase)), Some(temp)) = (s.keys.first(), s.temporary.first()) else {
            return Err(self.failed(op, "no key to start it with".into()));
        };
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        dev.reencrypt_handle()
            .reencrypt_init_by_passphrase(
                None,
                passphrase,
                Some(temp.get()),
                Some(first.get()),
                Some((&cipher, &mode)),
                params(
                    Operation::RotateVolumeKey,
                    Some(sector_size.unwrap_or(0)),
                    CryptReencrypt::INITIALIZE_ONLY,
                ),
            )
            .map_err(|e| self.fail(op, e))?;
        drop(dev);
        self.place_header(&tmp, len)
    }

    /// Writes the tokens `tokens` makes for the header loaded in `dev`
    /// (with its UUID); returns that header.
    fn write_tokens(
        &self,
        dev: &mut CryptDevice,
        tokens: super::TokensFor<'_>,
        op: &'static str,
    ) -> Result<crate::luks2::header::Luks2Header, DeviceError> {
        let mut h = loaded_header(dev).map_err(|e| self.failed(op, e.to_string()))?;
        h.uuid = dev
            .status_handle()
            .get_uuid()
            .map_err(|e| self.fail(op, e))?
            .to_string();
        for json in tokens(&h).map_err(|e| self.failed(op, e.to_string()))? {
            dev.token_handle()
                .json_set(TokenInput::AddToken(&json))
                .map_err(|e| self.fail(op, e))?;
        }
        Ok(h)
    }

    /// An unnamed file holding the first `len` bytes (the header) of the
    /// device.
    fn header_copy(&self, len: u64) -> Result<std::fs::File, DeviceError> {
        let what = "copy the header of";
        let tmp = tempfile::tempfile().map_err(self.io(what))?;
        let src = std::fs::File::open(&self.path).map_err(self.io(what))?;
        let mut take = std::io::Read::take(src, len);
        std::io::copy(&mut take, &mut &tmp).map_err(self.io(what))?;
        Ok(tmp)
    }

    /// In the header copy: beside each configured slot, the old key under
    /// the same passphrase in its temporary slot; the configured slot's old
    /// tokens (volctl's, and clevis's beside a `tang` slot) dropped and the
    /// slot enrolled again with the new key. Every new keyslot shares one
    /// digest (the one the run binds to the final segment). Each keyslot
    /// costs a KDF run at the configured costs.
    fn reenrol(
        &self,
        dev: &mut CryptDevice,
        s: &RotationStart<'_>,
        h: &crate::luks2::header::Luks2Header,
    ) -> Result<(), DeviceError> {
        let op = "enrol the keys again";
        if let PbkdfChoice::Fixed(c) = s.pbkdf {
            dev.settings_handle()
                .set_pbkdf_type(&pbkdf_type(c))
                .map_err(|e| self.fail(op, e))?;
        }
        let clevis = s.keys.iter().flat_map(|(slot, _)| h.clevis_tokens(*slot));
        let volctl = h.tokens().filter_map(|(id, raw)| {
            let t = raw.get("type").and_then(|v| v.as_str());
            (t == Some(crate::luks2::consts::TOKEN_TYPE)).then_some(id)
        });
        for id in volctl.chain(clevis).collect::<Vec<_>>() {
            dev.token_handle()
                .json_set(TokenInput::RemoveToken(id.0))
                .map_err(|e| self.fail(op, e))?;
        }
        for ((slot, pass), temp) in s.keys.iter().zip(s.temporary) {
            self.add_key(dev, *temp, s.old_key, pass, CryptVolumeKey::empty())?;
            dev.keyslot_handle()
                .destroy(slot.get())
                .map_err(|e| self.fail(op, e))?;
            let new_key = CryptVolumeKey::NO_SEGMENT | CryptVolumeKey::DIGEST_REUSE;
            self.add_key(dev, *slot, s.new_key, pass, new_key)?;
        }
        Ok(())
    }

    /// Adds keyslot `slot` holding `key` under `passphrase` (one KDF run).
    fn add_key(
        &self,
        dev: &mut CryptDevice,
        slot: KeyslotId,
        key: &crate::luks2::binding::VolumeKey,
        passphrase: &[u8],
        flags: CryptVolumeKey,
    ) -> Result<(), DeviceError> {
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        dev.keyslot_handle()
            .add_by_key(
                Some(slot.get()),
                Some(Either::Left(key.expose())),
                passphrase,
                flags,
            )
            .map(|_| ())
            .map_err(|e| self.fail("add keyslot", e))
    }

    /// Formats the detached header and enrols every keyslot.
    fn format_detached(
        &self,
        dev: &mut CryptDevice,
        s: &EncryptionStart<'_>,
    ) -> Result<(), DeviceError> {
        let op = "format the in-place header";
        dev.set_data_offset(s.shift / SECTOR)
            .map_err(|e| self.fail(op, e))?;
        // 512-byte sectors unless the config says otherwise: the filesystem
        // on it may have 1 KiB blocks, which larger sectors would not map.
        let params = FormatParams {
            sector_size: sector_size_or_512(s.format.sector_size),
            ..s.format.clone()
        };
        let uuid = s
            .uuid
            .map(uuid::Uuid::parse_str)
            .transpose()
            .map_err(|e| self.failed(op, format!("header UUID: {e}")))?;
        self.format_on(dev, &params, s.volume_key, uuid)?;
        if let PbkdfChoice::Fixed(c) = s.format.pbkdf {
            dev.settings_handle()
                .set_pbkdf_type(&pbkdf_type(c))
                .map_err(|e| self.fail(op, e))?;
        }
        for (slot, passphrase) in s.keys {
            self.add_key(
                dev,
                *slot,
                s.volume_key,
                passphrase,
                CryptVolumeKey::empty(),
            )?;
        }
        Ok(())
    }

    /// Writes the header in `tmp` (`len` bytes) to the device's head: all
    /// but the primary binary header first, then that (module docs).
    fn place_header(&self, tmp: &std::fs::File, len: u64) -> Result<(), DeviceError> {
        let what = "write the in-place header to";
        let len = usize::try_from(len)
            .map_err(|_| self.failed("write the in-place header", "header too large".into()))?;
        let mut header = vec![0u8; len];
        tmp.read_exact_at(&mut header, 0).map_err(self.io(what))?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(self.io(what))?;
        f.write_all_at(&header[PRIMARY_FIELDS..], PRIMARY_FIELDS as u64)
            .and_then(|()| f.sync_data())
            .and_then(|()| f.write_all_at(&header[..PRIMARY_FIELDS], 0))
            .and_then(|()| f.sync_data())
            .map_err(self.io(what))
    }

    /// See [`super::LuksDevice::run_reencryption`].
    pub(super) fn run_reencryption_impl(
        &self,
        run: &ReencryptRun<'_>,
        progress: Progress<'_>,
    ) -> Result<(), DeviceError> {
        let op = "reencrypt";
        if run.operation == Operation::Decrypt {
            let (Some(header), Some(slot)) = (run.header, run.old) else {
                return Err(self.failed(
                    op,
                    "a decryption runs by its header file and keyslot".into(),
                ));
            };
            return self.run_decryption(header, (slot, run.passphrase), run.active, progress);
        }
        let mut dev = self.load_for_change(op)?;
        if self.left_to_volctl(&mut dev, op)? {
            return Ok(());
        }
        let state = dev
            .reencrypt_handle()
            .status(params(run.operation, None, CryptReencrypt::empty()))
            .map_err(|e| self.fail(op, e))?;
        // Online, activating the device recovered a cut step already.
        if state == CryptReencryptInfo::Crash && run.active.is_none() {
            // A run was cut inside a step: libcryptsetup restores that
            // step's hotzone from its resilience data first.
            tracing::warn!(device = %self.path_s(), "recovering the step a cut run was in");
            self.init_by_passphrase(&mut dev, run, CryptReencrypt::RECOVERY)?;
            dev = self.load_for_change(op)?;
            // A cut in the last step: recovering it finished the run.
            let left = dev
                .reencrypt_handle()
                .status(params(run.operation, None, CryptReencrypt::empty()))
                .map_err(|e| self.fail(op, e))?;
            if left == CryptReencryptInfo::None || self.left_to_volctl(&mut dev, op)? {
                return Ok(());
            }
        }
        self.init_by_passphrase(&mut dev, run, CryptReencrypt::RESUME_ONLY)?;
        let mut state = ProgressState { progress };
        dev.reencrypt_handle()
            .reencrypt2(Some(on_progress), Some(&mut state))
            .map_err(|e| self.fail(op, e))
    }

    /// Whether the loaded header is in a shape libcryptsetup 2.6 must not be
    /// asked to resume (`reencryption::left_to_volctl`): the caller
    /// finishes it.
    fn left_to_volctl(&self, dev: &mut CryptDevice, op: &'static str) -> Result<bool, DeviceError> {
        let h = loaded_header(dev).map_err(|e| self.failed(op, e.to_string()))?;
        Ok(crate::luks2::reencryption::left_to_volctl(&h.json))
    }

    /// Loads (resumes, recovers) the recorded reencryption by the
    /// passphrase of its keyslots: one KDF run.
    fn init_by_passphrase(
        &self,
        dev: &mut CryptDevice,
        run: &ReencryptRun<'_>,
        flags: CryptReencrypt,
    ) -> Result<(), DeviceError> {
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        dev.reencrypt_handle()
            .reencrypt_init_by_passphrase(
                run.active,
                run.passphrase,
                run.old.map(KeyslotId::get),
                run.new.map(KeyslotId::get),
                None,
                params(run.operation, None, flags),
            )
            .map(|_| ())
            .map_err(|e| self.fail("reencrypt", e))
    }

    fn failed(&self, op: &'static str, reason: String) -> DeviceError {
        DeviceError::Failed {
            op,
            path: self.path_s(),
            reason,
        }
    }
}

/// The cipher and mode of the loaded header.
fn dev_cipher(dev: &mut CryptDevice) -> (String, String) {
    let cipher = dev.status_handle().get_cipher().unwrap_or_default();
    let mode = dev.status_handle().get_cipher_mode().unwrap_or_default();
    (cipher, mode)
}

pub(super) struct ProgressState<'a> {
    pub(super) progress: Progress<'a>,
}

/// libcryptsetup's progress callback: non-zero stops the run.
pub(super) unsafe extern "C" fn on_progress(
    size: u64,
    offset: u64,
    usr: *mut libc::c_void,
) -> libc::c_int {
    if usr.is_null() {
        return 0;
    }
    // SAFETY: `usr` is the `ProgressState` that `run_reencryption_impl`
    // passed, alive for the whole `crypt_reencrypt_run` call.
    let state = unsafe { &mut *usr.cast::<ProgressState<'_>>() };
    libc::c_int::from(!(state.progress)(offset, size))
}
