//! [`LuksDevice`] on libcryptsetup. Each call opens its own libcryptsetup
//! context (cheap: no KDF), because a `CryptDevice` may not cross threads.
//! Read-only calls copy the metadata area once and both parsers (volctl's
//! and libcryptsetup's) read that copy; calls that write or activate check
//! the header they loaded against the config first.

use super::kdf_worker::{self, Unlocked};
use super::probe;
use super::shadow::Shadow;
use super::{
    Access, ActivationOptions, Contents, DeviceError, FormatParams, LuksDevice, PbkdfChoice,
    PbkdfCost, PbkdfKind, TokenChange,
};
use crate::luks2::binding::VolumeKey;
use crate::luks2::check;
use crate::luks2::consts::{
    BLANK_PROBE_LEN, FORMAT_MARK, FORMAT_MARK_FROM_END, LUKS2_SUBSYSTEM, MAX_HEADER_AREA,
};
use crate::luks2::header::{self, CopyRead, HeaderError, Luks2Header, RawHeader};
use crate::luks2::token::TokenId;
use api_types::Encryption;
use api_types::KeySize;
use api_types::KeyslotId;
use libcryptsetup_rs::consts::flags::{CryptActivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{
    CryptDevice, CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either,
    LibcryptErr, TokenInput,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Closes the dm-crypt device `name` (an error if it is not active). A
/// mapping already gone is closed: a volume decrypted in place online ends
/// mapped `linear` over its plaintext, and that mapping is gone as soon as
/// it is unmounted (measured in the VM scenario `decrypt-in-place`: a
/// deferred removal, it seems, set by libcryptsetup's teardown), so
/// libcryptsetup then finds nothing (ENODEV).
pub fn deactivate(name: &str) -> Result<(), DeviceError> {
    let closed = CryptInit::init_by_name_and_header(name, None).and_then(|mut dev| {
        dev.activate_handle().deactivate(
            name,
            libcryptsetup_rs::consts::flags::CryptDeactivate::empty(),
        )
    });
    match closed {
        Ok(()) => Ok(()),
        Err(LibcryptErr::IOError(e))
            if e.raw_os_error() == Some(libc::ENODEV) && !mapping_exists(name) =>
        {
            Ok(())
        }
        Err(e) => Err(DeviceError::Failed {
            op: "deactivate",
            path: format!("/dev/mapper/{name}"),
            reason: describe(&e),
        }),
    }
}

/// Whether a device-mapper device named `name` exists (sysfs:
/// `/sys/block/dm-*/dm/name`).
fn mapping_exists(name: &str) -> bool {
    std::fs::read_dir("/sys/block").is_ok_and(|d| {
        d.flatten().any(|e| {
            std::fs::read_to_string(e.path().join("dm/name")).is_ok_and(|n| n.trim() == name)
        })
    })
}

/// A private copy of a device's metadata area (see
/// [`CryptsetupDevice::snapshot`]).
struct Snapshot {
    shadow: Shadow,
    /// Both header copies as read from the copy; `None` without LUKS magic.
    raw: Option<RawHeader>,
    /// The device's size (the copy's too).
    size: u64,
}

/// [`LuksDevice`] on libcryptsetup: a block device or an image file.
pub struct CryptsetupDevice {
    pub(super) path: PathBuf,
    access: Access,
    expect: Option<Encryption>,
    pub(super) kdf_runs: AtomicU64,
}

impl CryptsetupDevice {
    /// A handle for `path`. Nothing is opened until an operation runs; use
    /// [`super::open`], which also checks access and applies the power-cut
    /// test double.
    pub fn new(path: impl Into<PathBuf>, access: Access, expect: Option<Encryption>) -> Self {
        forward_libcryptsetup_log();
        CryptsetupDevice {
            path: path.into(),
            access,
            expect,
            kdf_runs: AtomicU64::new(0),
        }
    }

    /// Counts `runs` KDF runs about to start and tells the watcher, if
    /// any, until the guard is dropped.
    pub(super) fn kdf_run(&self, op: &'static str, runs: u64) -> super::kdf_watch::RunGuard {
        self.kdf_runs.fetch_add(runs, Ordering::SeqCst);
        super::kdf_watch::running(op, self.path_s())
    }

    pub(super) fn path_s(&self) -> String {
        self.path.display().to_string()
    }

    pub(super) fn fail(&self, op: &'static str, e: LibcryptErr) -> DeviceError {
        DeviceError::Failed {
            op,
            path: self.path_s(),
            reason: describe(&e),
        }
    }

    /// A failed unlock: a wrong key, or why not.
    fn unlock_error(&self, e: LibcryptErr, slot: KeyslotId) -> DeviceError {
        if is_wrong_key(&e) {
            DeviceError::WrongKey { slot }
        } else {
            self.fail("unlock", e)
        }
    }

    pub(super) fn io(&self, what: &'static str) -> impl Fn(std::io::Error) -> DeviceError + '_ {
        move |source| DeviceError::Io {
            what,
            path: self.path_s(),
            source,
        }
    }

    pub(super) fn writable(&self, op: &'static str) -> Result<(), DeviceError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(DeviceError::ReadOnly {
                op,
                path: self.path_s(),
            }),
        }
    }

    /// Checks the header this context loaded against the expected config.
    fn verify_loaded(&self, dev: &mut CryptDevice, op: &'static str) -> Result<(), DeviceError> {
        let Some(enc) = &self.expect else {
            return Ok(());
        };
        let h = loaded_header(dev).map_err(|reason| DeviceError::Failed {
            op,
            path: self.path_s(),
            reason: reason.to_string(),
        })?;
        check::check(&h.json, enc).map_err(|reason| DeviceError::Untrusted {
            path: self.path_s(),
            reason,
        })
    }

    /// Loads the device itself, for a change, and checks what was loaded.
    pub(super) fn load_for_change(&self, op: &'static str) -> Result<CryptDevice, DeviceError> {
        self.writable(op)?;
        let mut dev = CryptInit::init(&self.path).map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.fail(op, e))?;
        self.verify_loaded(&mut dev, op)?;
        Ok(dev)
    }

    /// A private copy of the device's metadata area, taken at one moment,
    /// and both header copies as read from it. Everything that only reads
    /// works on such a copy: volctl's reader and libcryptsetup's load see
    /// the same bytes even while another process (an online reencryption)
    /// updates the header between them, and nothing libcryptsetup does
    /// while loading (it repairs damaged copies) reaches the device.
    fn snapshot(&self) -> Result<Snapshot, DeviceError> {
        let size = self.size()?;
        let span = header::metadata_span(&self.path).map_err(self.io("read"))?;
        let shadow =
            Shadow::copy(&self.path, &[(0, span)], size).map_err(self.io("copy the header of"))?;
        let raw = header::read_raw_as(shadow.path(), &self.path)?;
        Ok(Snapshot { shadow, raw, size })
    }

    /// libcryptsetup's load of a snapshot's copy.
    fn load_copy(&self, shadow: &Shadow, op: &'static str) -> Result<CryptDevice, DeviceError> {
        let mut dev = CryptInit::init(shadow.path()).map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.fail(op, e))?;
        Ok(dev)
    }

    /// The header both readers agree on: volctl's reader (both copies,
    /// libcryptsetup's choice between them) and libcryptsetup's own load,
    /// of the same snapshot.
    fn agreed_header(&self, h: Luks2Header, shadow: &Shadow) -> Result<Luks2Header, DeviceError> {
        if let Some(enc) = &self.expect {
            check::check(&h.json, enc).map_err(|reason| DeviceError::Untrusted {
                path: self.path_s(),
                reason,
            })?;
        }
        let op = "read header";
        let mut dev = self.load_copy(shadow, op)?;
        let loaded = loaded_header(&mut dev).map_err(|reason| DeviceError::Failed {
            op,
            path: self.path_s(),
            reason: reason.to_string(),
        })?;
        if loaded.raw_json != h.raw_json {
            return Err(HeaderError::Inconsistent {
                path: self.path_s(),
                reason: "libcryptsetup loads another header than the one volctl reads (a copy one parser accepts and the other refuses)".into(),
            }
            .into());
        }
        Ok(h)
    }

    /// Whether the data area right after the metadata was never written.
    fn data_area_unwritten(&self, offset: u64) -> Result<bool, DeviceError> {
        probe::is_zero(&self.path, offset, BLANK_PROBE_LEN).map_err(self.io("read"))
    }

    /// Writes `bytes` where the format mark sits, durably.
    fn write_mark(&self, bytes: &[u8]) -> Result<(), DeviceError> {
        use std::os::unix::fs::FileExt;
        let at = self.size()?.saturating_sub(FORMAT_MARK_FROM_END);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(self.io("open"))?;
        f.write_all_at(bytes, at)
            .and_then(|()| f.sync_data())
            .map_err(self.io("write the format mark on"))
    }

    /// Whether the device carries the format mark (whole or torn).
    fn has_format_mark(&self) -> Result<bool, DeviceError> {
        use std::os::unix::fs::FileExt;
        let at = self.size()?.saturating_sub(FORMAT_MARK_FROM_END);
        let f = std::fs::File::open(&self.path).map_err(self.io("open"))?;
        let mut buf = vec![0u8; FORMAT_MARK.len()];
        match f.read_exact_at(&mut buf, at) {
            // A torn write of the mark leaves a prefix of it, then zeros.
            Ok(()) => {
                let n = buf
                    .iter()
                    .zip(FORMAT_MARK)
                    .take_while(|(a, b)| a == b)
                    .count();
                Ok(n > 0 && buf[n..].iter().all(|&b| b == 0))
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(self.io("read")(e)),
        }
    }

    /// Why `raw` is the remains of a first format cut short, if it is
    /// (the rule: `device/unfinished.rs`).
    fn unfinished_format(
        &self,
        raw: &RawHeader,
        selected: Option<&Luks2Header>,
    ) -> Result<Option<String>, DeviceError> {
        let torn_primary_alone =
            matches!(raw.primary, CopyRead::Invalid(_)) && !raw.secondary.present();
        super::unfinished::unfinished_format(self, selected, torn_primary_alone)
    }
}

impl super::unfinished::FormatRemains for CryptsetupDevice {
    type Error = DeviceError;

    fn marked(&self) -> Result<bool, DeviceError> {
        self.has_format_mark()
    }

    fn data_unwritten(&self, offset: u64) -> Result<bool, DeviceError> {
        self.data_area_unwritten(offset)
    }
}

impl CryptsetupDevice {
    /// Writes a LUKS2 header with `volume_key` through `dev` (this device,
    /// or a detached header beside it).
    pub(super) fn format_on(
        &self,
        dev: &mut CryptDevice,
        params: &FormatParams,
        volume_key: &VolumeKey,
        uuid: Option<uuid::Uuid>,
    ) -> Result<(), DeviceError> {
        let op = "LUKS2 format";
        let (cipher, mode) = params
            .cipher
            .split_once('-')
            .ok_or_else(|| DeviceError::Failed {
                op,
                path: self.path_s(),
                reason: format!("cipher `{}` has no mode", params.cipher),
            })?;
        let p = CryptParamsLuks2 {
            pbkdf: match params.pbkdf {
                PbkdfChoice::Fixed(c) => Some(pbkdf_type(c)),
                PbkdfChoice::Benchmark => None,
            },
            integrity: None,
            integrity_params: None,
            data_alignment: 0,
            data_device: None,
            sector_size: params.sector_size,
            label: Some(params.label.clone()),
            subsystem: Some(LUKS2_SUBSYSTEM.to_string()),
        };
        let mut r: CryptParamsLuks2Ref<'_> = (&p).try_into().map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .format(
                EncryptionFormat::Luks2,
                (cipher, mode),
                uuid,
                Either::Left(volume_key.expose()),
                Some(&mut r),
            )
            .map_err(|e| self.fail(op, e))
    }
}

/// The header libcryptsetup loaded in `dev`, from its own JSON.
pub(super) fn loaded_header(dev: &mut CryptDevice) -> Result<Luks2Header, LoadedHeaderError> {
    let json = dev
        .status_handle()
        .dump_json()
        .map_err(LoadedHeaderError::Dump)?;
    Luks2Header::from_json(0, json).map_err(LoadedHeaderError::Model)
}

/// Why the header libcryptsetup loaded could not be read back.
#[derive(Debug, thiserror::Error)]
pub(super) enum LoadedHeaderError {
    /// libcryptsetup did not dump its JSON.
    #[error("{}", describe(.0))]
    Dump(LibcryptErr),
    /// Its JSON is not the LUKS2 volctl reads.
    #[error("{0}")]
    Model(crate::luks2::header::JsonError),
}

pub(super) fn describe(e: &LibcryptErr) -> String {
    match e {
        LibcryptErr::IOError(io) => match io.raw_os_error() {
            Some(libc::EPERM) => "no key matched (EPERM)".into(),
            Some(libc::EINVAL) => "invalid argument (EINVAL): the slot is in use, the metadata is bad, or the device is too small".into(),
            Some(libc::ENOENT) => "no such keyslot or token (ENOENT)".into(),
            Some(libc::EBUSY) => "device busy (EBUSY)".into(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

/// One KDF run: the volume key of keyslot `slot` of a loaded header.
fn volume_key_of(
    dev: &mut CryptDevice,
    slot: KeyslotId,
    key_size: KeySize,
    passphrase: &[u8],
) -> Result<VolumeKey, LibcryptErr> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; key_size.len()]);
    let (_, n) = dev
        .volume_key_handle()
        .get(Some(slot.get()), &mut buf, Some(passphrase))?;
    Ok(VolumeKey::new(buf[..n].to_vec()))
}

/// The volume key of keyslot `slot` of the header copy at `header` (a KDF
/// worker's one job, [`kdf_worker::serve`]).
pub(super) fn volume_key_of_copy(
    header: &Path,
    slot: KeyslotId,
    key_size: KeySize,
    passphrase: &[u8],
) -> Result<VolumeKey, DeviceError> {
    let failed = |e: LibcryptErr| DeviceError::Failed {
        op: "unlock",
        path: header.display().to_string(),
        reason: describe(&e),
    };
    let mut dev = CryptInit::init(header).map_err(failed)?;
    dev.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .map_err(failed)?;
    volume_key_of(&mut dev, slot, key_size, passphrase).map_err(|e| {
        if is_wrong_key(&e) {
            DeviceError::WrongKey { slot }
        } else {
            failed(e)
        }
    })
}

/// libcryptsetup's answer when a passphrase opens no keyslot.
fn is_wrong_key(e: &LibcryptErr) -> bool {
    matches!(e, LibcryptErr::IOError(io) if io.raw_os_error() == Some(libc::EPERM))
}

impl LuksDevice for CryptsetupDevice {
    fn path(&self) -> &Path {
        &self.path
    }

    fn access(&self) -> Access {
        self.access
    }

    fn kdf_runs(&self) -> u64 {
        self.kdf_runs.load(Ordering::SeqCst)
    }

    fn size(&self) -> Result<u64, DeviceError> {
        use std::io::{Seek, SeekFrom};
        let mut f = std::fs::File::open(&self.path).map_err(self.io("open"))?;
        f.seek(SeekFrom::End(0)).map_err(self.io("size"))
    }

    fn contents(&self) -> Result<Contents, DeviceError> {
        let Snapshot { shadow, raw, .. } = self.snapshot()?;
        let Some(raw) = raw else {
            if let Some(why) = super::unfinished::unfinished_format(self, None, false)? {
                return Ok(Contents::UnfinishedFormat(why));
            }
            return Ok(
                match probe::probe_foreign(&self.path).map_err(self.io("probe"))? {
                    None => Contents::Blank,
                    Some(found) => Contents::Foreign(found),
                },
            );
        };
        // Chosen once: the unfinished-format rules and the cross-check
        // both work on this selection.
        let selected = raw.clone().select(&self.path);
        if let Some(why) = self.unfinished_format(&raw, selected.as_ref().ok())? {
            return Ok(Contents::UnfinishedFormat(why));
        }
        Ok(Contents::Luks2(Box::new(
            self.agreed_header(selected?, &shadow)?,
        )))
    }

    fn format_finished(&self) -> Result<(), DeviceError> {
        self.writable("clear the format mark")?;
        self.write_mark(&[0u8; FORMAT_MARK.len()])
    }

    fn format(&self, params: &FormatParams, volume_key: &VolumeKey) -> Result<(), DeviceError> {
        let op = "LUKS2 format";
        self.writable(op)?;
        self.write_mark(FORMAT_MARK)?;
        let mut dev = CryptInit::init(&self.path).map_err(|e| self.fail(op, e))?;
        self.format_on(&mut dev, params, volume_key, None)
    }

    fn volume_key(
        &self,
        slot: KeyslotId,
        key_size: KeySize,
        passphrase: &[u8],
    ) -> Result<VolumeKey, DeviceError> {
        let op = "unlock";
        let Snapshot { shadow, raw, size } = self.snapshot()?;
        let header = raw.and_then(|raw| raw.select(&self.path).ok());
        let area = header
            .as_ref()
            .and_then(|h| h.keyslot(slot).and_then(|k| k.area_range()));
        // libcryptsetup checks a key handed to it against the digest of the
        // default segment, which a header mid-decryption lacks (its data
        // segment is linear): such a header is unlocked in this process.
        let reencrypting = header.as_ref().is_some_and(|h| h.in_reencryption());
        if let Some((start, len)) = area {
            let range = (start, len.min(MAX_HEADER_AREA));
            shadow
                .add(&self.path, &[range], size)
                .map_err(self.io("copy the keyslot area of"))?;
        }
        let mut dev = self.load_copy(&shadow, op)?;
        self.verify_loaded(&mut dev, op)?;
        let _kdf = self.kdf_run(op, 1);
        let Some(exe) = kdf_worker::worker().filter(|_| !reencrypting) else {
            return volume_key_of(&mut dev, slot, key_size, passphrase)
                .map_err(|e| self.unlock_error(e, slot));
        };
        let failed = |reason| DeviceError::Failed {
            op,
            path: self.path_s(),
            reason,
        };
        match kdf_worker::unlock_in_worker(exe, shadow.path(), slot, key_size, passphrase) {
            Err(reason) => {
                // A worker that cannot run (a binary replaced under a
                // running boot): the KDF in this process instead.
                tracing::warn!(device = %self.path_s(), "{reason}; unlocking in-process");
                volume_key_of(&mut dev, slot, key_size, passphrase)
                    .map_err(|e| self.unlock_error(e, slot))
            }
            Ok(Unlocked::Key(key)) => {
                dev.volume_key_handle().verify(key.expose()).map_err(|e| {
                    failed(format!(
                        "the KDF worker's key does not verify: {}",
                        describe(&e)
                    ))
                })?;
                Ok(key)
            }
            Ok(Unlocked::WrongKey) => Err(DeviceError::WrongKey { slot }),
        }
    }

    fn add_keyslot(
        &self,
        slot: KeyslotId,
        volume_key: &VolumeKey,
        passphrase: &[u8],
        pbkdf: PbkdfChoice,
    ) -> Result<String, DeviceError> {
        let op = "add keyslot";
        let mut dev = self.load_for_change(op)?;
        // PBKDF settings belong to the context: set them after every load,
        // or libcryptsetup silently benchmarks its defaults again.
        if let PbkdfChoice::Fixed(c) = pbkdf {
            dev.settings_handle()
                .set_pbkdf_type(&pbkdf_type(c))
                .map_err(|e| self.fail(op, e))?;
        }
        let _kdf = self.kdf_run(op, 1);
        dev.keyslot_handle()
            .add_by_key(
                Some(slot.get()),
                Some(Either::Left(volume_key.expose())),
                passphrase,
                CryptVolumeKey::empty(),
            )
            .map_err(|e| self.fail(op, e))?;
        let h = loaded_header(&mut dev).map_err(|reason| DeviceError::Failed {
            op,
            path: self.path_s(),
            reason: reason.to_string(),
        })?;
        Ok(h.keyslot(slot)
            .map(|k| k.kdf.salt().to_string())
            .unwrap_or_default())
    }

    fn destroy_keyslot(&self, slot: KeyslotId) -> Result<(), DeviceError> {
        let op = "destroy keyslot";
        self.load_for_change(op)?
            .keyslot_handle()
            .destroy(slot.get())
            .map_err(|e| self.fail(op, e))
    }

    fn token(&self, change: TokenChange<'_>) -> Result<TokenId, DeviceError> {
        let (op, input) = match change {
            TokenChange::Add(json) => ("write token", TokenInput::AddToken(json)),
            TokenChange::Replace(id, json) => ("write token", TokenInput::ReplaceToken(id.0, json)),
            TokenChange::Remove(id) => ("remove token", TokenInput::RemoveToken(id.0)),
        };
        self.load_for_change(op)?
            .token_handle()
            .json_set(input)
            .map(TokenId)
            .map_err(|e| self.fail(op, e))
    }

    fn start_encryption(&self, start: &super::EncryptionStart<'_>) -> Result<(), DeviceError> {
        self.start_encryption_impl(start)
    }

    fn start_rotation(&self, start: &super::RotationStart<'_>) -> Result<(), DeviceError> {
        self.start_rotation_impl(start)
    }

    fn redo_moved_step(
        &self,
        step: &crate::luks2::reencryption::MovedStep,
        volume_key: &VolumeKey,
    ) -> Result<(), DeviceError> {
        self.redo_moved_step_impl(step, volume_key)
    }

    fn wipe_moved_copy(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        self.wipe_moved_copy_impl(offset, len)
    }

    fn run_reencryption(
        &self,
        run: &super::ReencryptRun<'_>,
        progress: super::Progress<'_>,
    ) -> Result<(), DeviceError> {
        self.run_reencryption_impl(run, progress)
    }

    fn activate(
        &self,
        name: &str,
        volume_key: &VolumeKey,
        options: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        let op = "activate";
        self.load_for_change(op)?
            .activate_handle()
            .activate_by_volume_key(
                Some(name),
                Some(volume_key.expose()),
                activation_flags(options),
            )
            .map_err(|e| self.fail(op, e))
    }

    fn activate_reencrypting(
        &self,
        name: &str,
        (slot, passphrase): (Option<KeyslotId>, &[u8]),
        operation: crate::luks2::reencryption::Operation,
        options: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        let op = "activate mid-reencryption";
        let _kdf = self.kdf_run(op, operation.volume_digests() as u64);
        self.load_for_change(op)?
            .activate_handle()
            .activate_by_passphrase(
                Some(name),
                slot.map(KeyslotId::get),
                passphrase,
                activation_flags(options),
            )
            .map(|_| ())
            .map_err(|e| self.fail(op, e))
    }
}

pub(super) fn pbkdf_type(c: PbkdfCost) -> CryptPbkdfType {
    CryptPbkdfType {
        type_: match c.kind {
            PbkdfKind::Argon2id => CryptKdf::Argon2Id,
            PbkdfKind::Argon2i => CryptKdf::Argon2I,
            PbkdfKind::Pbkdf2 => CryptKdf::Pbkdf2,
        },
        hash: Some("sha256".into()),
        time_ms: 0,
        iterations: c.iterations,
        // PBKDF2 takes no memory or threads: libcryptsetup refuses them (EINVAL).
        max_memory_kb: if c.kind == PbkdfKind::Pbkdf2 {
            0
        } else {
            c.memory_kib
        },
        parallel_threads: if c.kind == PbkdfKind::Pbkdf2 {
            0
        } else {
            c.parallelism
        },
        flags: CryptPbkdf::NO_BENCHMARK,
    }
}

pub(super) fn activation_flags(options: &ActivationOptions) -> CryptActivate {
    let mut f = CryptActivate::empty();
    if options.allow_discards {
        f |= CryptActivate::ALLOW_DISCARDS;
    }
    for o in &options.perf {
        f |= match o.as_str() {
            "no_read_workqueue" => CryptActivate::NO_READ_WORKQUEUE,
            "no_write_workqueue" => CryptActivate::NO_WRITE_WORKQUEUE,
            "same_cpu_crypt" => CryptActivate::SAME_CPU_CRYPT,
            _ => CryptActivate::empty(),
        };
    }
    f
}

/// Sends libcryptsetup's log lines to `tracing` (once per process).
fn forward_libcryptsetup_log() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        libcryptsetup_rs::set_log_callback::<()>(Some(log_callback), None);
    });
}

unsafe extern "C" fn log_callback(
    level: libc::c_int,
    msg: *const libc::c_char,
    _usr: *mut libc::c_void,
) {
    if msg.is_null() {
        return;
    }
    // SAFETY: libcryptsetup passes a NUL-terminated string valid for this call.
    let text = unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy();
    let text = text.trim_end();
    if level == libcryptsetup_rs_sys_error_level() {
        tracing::warn!(target: "libcryptsetup", "{text}");
    } else {
        tracing::debug!(target: "libcryptsetup", "{text}");
    }
}

fn libcryptsetup_rs_sys_error_level() -> libc::c_int {
    libcryptsetup_rs::consts::vals::CryptLogLevel::Error as libc::c_int
}
