//! The LUKS2 device seam. [`LuksDevice`] is every header write and KDF run
//! volctl makes; [`CryptsetupDevice`] does them with libcryptsetup. Each
//! call opens its own libcryptsetup context (cheap: no KDF), because a
//! `CryptDevice` may not cross threads.
//!
//! Every method that runs the PBKDF bumps [`LuksDevice::kdf_runs`], which
//! tests and status use to prove a converged volume costs one KDF run.

use crate::luks2::binding::VolumeKey;
use libcryptsetup_rs::consts::flags::{CryptActivate, CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat};
use libcryptsetup_rs::{
    CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either, LibcryptErr,
    TokenInput,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;

/// Why a device operation failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The passphrase does not open that keyslot.
    #[error("the key does not open keyslot {slot}")]
    WrongKey {
        /// Keyslot.
        slot: u32,
    },
    /// Any other failure.
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
    /// argon2 threads (1 for pbkdf2).
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

/// Every LUKS2 operation volctl makes. Implementations are called from
/// blocking threads.
pub trait LuksDevice: Send + Sync {
    /// The device path.
    fn path(&self) -> &Path;
    /// KDF runs made through this handle so far.
    fn kdf_runs(&self) -> u64;
    /// Writes a fresh LUKS2 header with the given volume key (no keyslots).
    fn format(&self, params: &FormatParams, volume_key: &VolumeKey) -> Result<(), DeviceError>;
    /// Gets the volume key from one keyslot (one KDF run).
    fn volume_key(
        &self,
        slot: u32,
        key_size: usize,
        passphrase: &[u8],
    ) -> Result<VolumeKey, DeviceError>;
    /// Adds keyslot `slot` holding `volume_key` under `passphrase` (one KDF run, one header write).
    fn add_keyslot(
        &self,
        slot: u32,
        volume_key: &VolumeKey,
        passphrase: &[u8],
        pbkdf: PbkdfChoice,
    ) -> Result<(), DeviceError>;
    /// Destroys keyslot `slot` (one header write).
    fn destroy_keyslot(&self, slot: u32) -> Result<(), DeviceError>;
    /// Writes token JSON: at `id`, or at a free id when `None`. Returns the id.
    fn set_token(&self, id: Option<u32>, json: &serde_json::Value) -> Result<u32, DeviceError>;
    /// Removes token `id`.
    fn remove_token(&self, id: u32) -> Result<(), DeviceError>;
    /// Activates the volume with dm-crypt as `/dev/mapper/<name>`, by volume
    /// key (no KDF run).
    fn activate(
        &self,
        name: &str,
        volume_key: &VolumeKey,
        options: &ActivationOptions,
    ) -> Result<(), DeviceError>;
}

/// dm-crypt options from the config's `encryption` block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActivationOptions {
    /// Pass discards (TRIM) through.
    pub allow_discards: bool,
    /// Perf flags: `no_read_workqueue`, `no_write_workqueue`, `same_cpu_crypt`.
    pub perf: Vec<String>,
}

/// Closes the dm-crypt device `name` (no-op error if it is not active).
pub fn deactivate(name: &str) -> Result<(), DeviceError> {
    let fail = |e: LibcryptErr| DeviceError::Failed {
        op: "deactivate",
        path: format!("/dev/mapper/{name}"),
        reason: describe(&e),
    };
    let mut dev = CryptInit::init_by_name_and_header(name, None).map_err(fail)?;
    dev.activate_handle()
        .deactivate(
            name,
            libcryptsetup_rs::consts::flags::CryptDeactivate::empty(),
        )
        .map_err(fail)
}

/// [`LuksDevice`] on libcryptsetup: a block device or an image file.
pub struct CryptsetupDevice {
    path: PathBuf,
    kdf_runs: AtomicU64,
}

impl CryptsetupDevice {
    /// A handle for `path`. Nothing is opened until an operation runs.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        forward_libcryptsetup_log();
        CryptsetupDevice {
            path: path.into(),
            kdf_runs: AtomicU64::new(0),
        }
    }

    fn fail(&self, op: &'static str, e: LibcryptErr) -> DeviceError {
        DeviceError::Failed {
            op,
            path: self.path.display().to_string(),
            reason: describe(&e),
        }
    }

    fn open(&self, op: &'static str) -> Result<libcryptsetup_rs::CryptDevice, DeviceError> {
        let mut dev = CryptInit::init(&self.path).map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.fail(op, e))?;
        Ok(dev)
    }
}

fn describe(e: &LibcryptErr) -> String {
    match e {
        LibcryptErr::IOError(io) => match io.raw_os_error() {
            Some(libc::EPERM) => "no key matched (EPERM)".into(),
            Some(libc::EINVAL) => "invalid argument: slot busy or bad metadata (EINVAL)".into(),
            Some(libc::ENOENT) => "no such keyslot or token (ENOENT)".into(),
            Some(libc::EBUSY) => "device busy (EBUSY)".into(),
            _ => io.to_string(),
        },
        other => other.to_string(),
    }
}

impl LuksDevice for CryptsetupDevice {
    fn path(&self) -> &Path {
        &self.path
    }

    fn kdf_runs(&self) -> u64 {
        self.kdf_runs.load(Ordering::SeqCst)
    }

    fn format(&self, params: &FormatParams, volume_key: &VolumeKey) -> Result<(), DeviceError> {
        let op = "LUKS2 format";
        let mut dev = CryptInit::init(&self.path).map_err(|e| self.fail(op, e))?;
        let (cipher, mode) = params
            .cipher
            .split_once('-')
            .ok_or_else(|| DeviceError::Failed {
                op,
                path: self.path.display().to_string(),
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
            subsystem: Some(crate::luks2::consts::LUKS2_SUBSYSTEM.to_string()),
        };
        let mut r: CryptParamsLuks2Ref<'_> = (&p).try_into().map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .format(
                EncryptionFormat::Luks2,
                (cipher, mode),
                None,
                Either::Left(volume_key.expose()),
                Some(&mut r),
            )
            .map_err(|e| self.fail(op, e))
    }

    fn volume_key(
        &self,
        slot: u32,
        key_size: usize,
        passphrase: &[u8],
    ) -> Result<VolumeKey, DeviceError> {
        let mut dev = self.open("unlock")?;
        let mut buf = zeroize::Zeroizing::new(vec![0u8; key_size]);
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        match dev
            .volume_key_handle()
            .get(Some(slot), &mut buf, Some(passphrase))
        {
            Ok((_, n)) => Ok(VolumeKey::new(buf[..n].to_vec())),
            Err(LibcryptErr::IOError(e)) if e.raw_os_error() == Some(libc::EPERM) => {
                Err(DeviceError::WrongKey { slot })
            }
            Err(e) => Err(self.fail("unlock", e)),
        }
    }

    fn add_keyslot(
        &self,
        slot: u32,
        volume_key: &VolumeKey,
        passphrase: &[u8],
        pbkdf: PbkdfChoice,
    ) -> Result<(), DeviceError> {
        let op = "add keyslot";
        let mut dev = self.open(op)?;
        // PBKDF settings belong to the context: set them after every load,
        // or libcryptsetup silently benchmarks its defaults again.
        if let PbkdfChoice::Fixed(c) = pbkdf {
            dev.settings_handle()
                .set_pbkdf_type(&pbkdf_type(c))
                .map_err(|e| self.fail(op, e))?;
        }
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        dev.keyslot_handle()
            .add_by_key(
                Some(slot),
                Some(Either::Left(volume_key.expose())),
                passphrase,
                CryptVolumeKey::empty(),
            )
            .map(|_| ())
            .map_err(|e| self.fail(op, e))
    }

    fn destroy_keyslot(&self, slot: u32) -> Result<(), DeviceError> {
        let op = "destroy keyslot";
        self.open(op)?
            .keyslot_handle()
            .destroy(slot)
            .map_err(|e| self.fail(op, e))
    }

    fn set_token(&self, id: Option<u32>, json: &serde_json::Value) -> Result<u32, DeviceError> {
        let op = "write token";
        let input = match id {
            Some(i) => TokenInput::ReplaceToken(i, json),
            None => TokenInput::AddToken(json),
        };
        self.open(op)?
            .token_handle()
            .json_set(input)
            .map_err(|e| self.fail(op, e))
    }

    fn activate(
        &self,
        name: &str,
        volume_key: &VolumeKey,
        options: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        let op = "activate";
        self.open(op)?
            .activate_handle()
            .activate_by_volume_key(
                Some(name),
                Some(volume_key.expose()),
                Self::activation_flags(options),
            )
            .map_err(|e| self.fail(op, e))
    }

    fn remove_token(&self, id: u32) -> Result<(), DeviceError> {
        let op = "remove token";
        self.open(op)?
            .token_handle()
            .json_set(TokenInput::RemoveToken(id))
            .map(|_| ())
            .map_err(|e| self.fail(op, e))
    }
}

fn pbkdf_type(c: PbkdfCost) -> CryptPbkdfType {
    CryptPbkdfType {
        type_: match c.kind {
            PbkdfKind::Argon2id => CryptKdf::Argon2Id,
            PbkdfKind::Argon2i => CryptKdf::Argon2I,
            PbkdfKind::Pbkdf2 => CryptKdf::Pbkdf2,
        },
        hash: Some("sha256".into()),
        time_ms: 0,
        iterations: c.iterations,
        max_memory_kb: c.memory_kib,
        parallel_threads: c.parallelism,
        flags: CryptPbkdf::NO_BENCHMARK,
    }
}

impl CryptsetupDevice {
    fn activation_flags(options: &ActivationOptions) -> CryptActivate {
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
