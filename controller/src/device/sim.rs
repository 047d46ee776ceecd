//! An in-memory [`LuksDevice`] for fast unit tests of converge and boot
//! steps (the way stratisd keeps a `sim_engine` beside its real one). It
//! keeps a header model (segment, keyslots with their passphrases and
//! salts, tokens, seqid), counts KDF runs and header writes, logs every
//! write, and can simulate a power cut after the N-th write: that write
//! lands, and every later call fails as if the process had died.
//!
//! It is never instead of the real-header tests: those run libcryptsetup on
//! image files and check the result with the `cryptsetup` CLI.

use super::unfinished::{unfinished_format, FormatRemains};
use super::{
    Access, ActivationOptions, Contents, DeviceError, FormatParams, LuksDevice, PbkdfChoice,
    TokenChange,
};
use crate::luks2::binding::VolumeKey;
use crate::luks2::consts::{DEFAULT_DATA_OFFSET, LUKS2_SUBSYSTEM};
use crate::luks2::header::Luks2Header;
use crate::luks2::token::TokenId;
use api_types::KeySize;
use api_types::KeyslotId;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A keyslot of the model.
#[derive(Debug, Clone)]
struct SimKeyslot {
    passphrase: Vec<u8>,
    salt: String,
}

/// The header model.
#[derive(Debug, Clone)]
pub struct SimHeader {
    /// Sequence id, bumped by every write.
    pub seqid: u64,
    /// Segment cipher (tests may set a hostile one).
    pub cipher: String,
    /// Sector size.
    pub sector_size: u32,
    /// Subsystem.
    pub subsystem: String,
    volume_key: Vec<u8>,
    keyslots: BTreeMap<KeyslotId, SimKeyslot>,
    /// Tokens by id.
    pub tokens: BTreeMap<TokenId, Value>,
}

/// The simulated device's side of the unfinished-format rule. It holds
/// no data, so its data area is never written.
struct SimRemains {
    marked: bool,
}

impl FormatRemains for SimRemains {
    type Error = std::convert::Infallible;

    fn marked(&self) -> Result<bool, Self::Error> {
        Ok(self.marked)
    }

    fn data_unwritten(&self, _offset: u64) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// What the simulated device holds.
#[derive(Debug, Clone, Default)]
pub struct SimState {
    /// The header, if any.
    pub header: Option<SimHeader>,
    /// Foreign contents (a filesystem signature), if any.
    pub foreign: Option<String>,
    /// Active dm-crypt name.
    pub active: Option<String>,
    /// volctl's format mark: set with the header by `format`, cleared by
    /// `format_finished` (the real device writes it before the header).
    pub format_mark: bool,
    /// Every write, in order (`format`, `add 1`, `destroy 0`, `token+ 1`…).
    pub log: Vec<String>,
}

/// An in-memory LUKS2 device.
pub struct SimDevice {
    path: PathBuf,
    size: u64,
    access: Access,
    state: Mutex<SimState>,
    kdf_runs: AtomicU64,
    writes: AtomicU64,
    cut_after: Mutex<Option<u64>>,
}

impl SimDevice {
    /// A blank device of `size` bytes.
    pub fn blank(size: u64) -> Self {
        SimDevice {
            path: PathBuf::from("/sim/disk"),
            size,
            access: Access::ReadWrite,
            state: Mutex::new(SimState::default()),
            kdf_runs: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            cut_after: Mutex::new(None),
        }
    }

    /// The same device named `path` (the simulated host's partition node).
    pub fn at(mut self, path: PathBuf) -> Self {
        self.path = path;
        self
    }

    /// The same contents behind a new handle (a reboot): counters and the
    /// write log start afresh.
    pub fn reboot(&self, access: Access) -> Self {
        let mut state = self.state();
        state.log.clear();
        state.active = None;
        SimDevice {
            access,
            state: Mutex::new(state),
            ..SimDevice::blank(self.size).at(self.path.clone())
        }
    }

    /// Arms a power cut right after the `n`-th header write from now.
    pub fn cut_after(&self, n: u64) {
        *self.cut_after.lock().expect("lock") = Some(self.writes.load(Ordering::SeqCst) + n);
    }

    /// A copy of the current state.
    pub fn state(&self) -> SimState {
        self.state.lock().expect("lock").clone()
    }

    /// Changes the state directly (tests forge headers this way).
    pub fn edit(&self, f: impl FnOnce(&mut SimState)) {
        f(&mut self.state.lock().expect("lock"));
    }

    /// Header writes so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Adds a keyslot the way an operator's `cryptsetup luksAddKey` would:
    /// no token.
    pub fn operator_add(&self, slot: KeyslotId, passphrase: &[u8]) {
        self.edit(|s| {
            let h = s.header.as_mut().expect("formatted");
            h.keyslots.insert(
                slot,
                SimKeyslot {
                    passphrase: passphrase.to_vec(),
                    salt: format!("operator-salt-{slot}"),
                },
            );
        });
    }

    fn dead(&self) -> bool {
        self.cut_after
            .lock()
            .expect("lock")
            .is_some_and(|n| self.writes.load(Ordering::SeqCst) >= n)
    }

    fn err(&self, op: &'static str, reason: &str) -> DeviceError {
        DeviceError::Failed {
            op,
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Runs a header write: refused when read-only or after the power cut;
    /// bumps the seqid and the write counter.
    fn write<T>(
        &self,
        op: &'static str,
        entry: String,
        f: impl FnOnce(&mut SimState) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        if self.access == Access::ReadOnly {
            return Err(DeviceError::ReadOnly {
                op,
                path: self.path.display().to_string(),
            });
        }
        if self.dead() {
            return Err(self.err(op, "simulated power cut"));
        }
        let mut s = self.state.lock().expect("lock");
        let r = f(&mut s)?;
        if let Some(h) = s.header.as_mut() {
            h.seqid += 1;
        }
        s.log.push(entry);
        self.writes.fetch_add(1, Ordering::SeqCst);
        Ok(r)
    }

    fn with_header<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&SimHeader) -> Result<T, DeviceError>,
    ) -> Result<T, DeviceError> {
        if self.dead() {
            return Err(self.err(op, "simulated power cut"));
        }
        let s = self.state.lock().expect("lock");
        let h = s
            .header
            .as_ref()
            .ok_or_else(|| self.err(op, "no LUKS2 header"))?;
        f(h)
    }
}

impl SimHeader {
    /// The header as LUKS2 JSON, shaped as libcryptsetup writes it.
    fn to_json(&self) -> Value {
        let keyslots: serde_json::Map<String, Value> = self
            .keyslots
            .iter()
            .map(|(n, k)| {
                let ks = json!({"type": "luks2", "key_size": self.volume_key.len(), "af": {}, "area": {},
                    "kdf": {"type": "argon2id", "time": 4, "memory": 32, "cpus": 1, "salt": k.salt}});
                (n.to_string(), ks)
            })
            .collect();
        let tokens: serde_json::Map<String, Value> = self
            .tokens
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        let names: Vec<String> = self.keyslots.keys().map(KeyslotId::to_string).collect();
        json!({
            "keyslots": keyslots,
            "tokens": tokens,
            "segments": {"0": {"type": "crypt", "offset": DEFAULT_DATA_OFFSET.to_string(), "size": "dynamic",
                "iv_tweak": "0", "encryption": self.cipher, "sector_size": self.sector_size}},
            "digests": {"0": {"type": "pbkdf2", "keyslots": names, "segments": ["0"], "digest": "sim"}},
            "config": {"json_size": "12288", "keyslots_size": "16744448"}
        })
    }

    fn to_header(&self) -> Luks2Header {
        let mut h = Luks2Header::from_json(self.seqid, self.to_json())
            .expect("the model is valid LUKS2 JSON");
        h.subsystem.clone_from(&self.subsystem);
        h
    }
}

impl LuksDevice for SimDevice {
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
        Ok(self.size)
    }

    fn contents(&self) -> Result<Contents, DeviceError> {
        if self.dead() {
            return Err(self.err("read header", "simulated power cut"));
        }
        let s = self.state.lock().expect("lock");
        let header = s.header.as_ref().map(SimHeader::to_header);
        let remains = SimRemains {
            marked: s.format_mark,
        };
        let Ok(unfinished) = unfinished_format(&remains, header.as_ref(), false);
        if let Some(why) = unfinished {
            return Ok(Contents::UnfinishedFormat(why));
        }
        Ok(match (header, &s.foreign) {
            (Some(h), _) => Contents::Luks2(Box::new(h)),
            (None, Some(f)) => Contents::Foreign(f.clone()),
            (None, None) => Contents::Blank,
        })
    }

    fn format(&self, params: &FormatParams, volume_key: &VolumeKey) -> Result<(), DeviceError> {
        self.write("LUKS2 format", "format".into(), |s| {
            s.header = Some(SimHeader {
                seqid: 0,
                cipher: params.cipher.clone(),
                sector_size: if params.sector_size == 0 {
                    4096
                } else {
                    params.sector_size
                },
                subsystem: LUKS2_SUBSYSTEM.into(),
                volume_key: volume_key.expose().to_vec(),
                keyslots: BTreeMap::new(),
                tokens: BTreeMap::new(),
            });
            s.format_mark = true;
            Ok(())
        })
    }

    fn format_finished(&self) -> Result<(), DeviceError> {
        self.write("format finished", "format finished".into(), |s| {
            s.format_mark = false;
            Ok(())
        })
    }

    fn volume_key(
        &self,
        slot: KeyslotId,
        _size: KeySize,
        passphrase: &[u8],
    ) -> Result<VolumeKey, DeviceError> {
        self.with_header("unlock", |h| {
            self.kdf_runs.fetch_add(1, Ordering::SeqCst);
            match h.keyslots.get(&slot) {
                Some(k) if k.passphrase == passphrase => Ok(VolumeKey::new(h.volume_key.clone())),
                Some(_) => Err(DeviceError::WrongKey { slot }),
                None => Err(self.err("unlock", "no such keyslot (ENOENT)")),
            }
        })
    }

    fn add_keyslot(
        &self,
        slot: KeyslotId,
        volume_key: &VolumeKey,
        passphrase: &[u8],
        _pbkdf: PbkdfChoice,
    ) -> Result<String, DeviceError> {
        self.kdf_runs.fetch_add(1, Ordering::SeqCst);
        let salt = format!("salt-{slot}-{}", self.writes());
        self.write("add keyslot", format!("add {slot}"), |s| {
            let h = s
                .header
                .as_mut()
                .ok_or_else(|| self.err("add keyslot", "no header"))?;
            if h.volume_key != volume_key.expose() {
                return Err(self.err("add keyslot", "volume key does not match the digest"));
            }
            if h.keyslots.contains_key(&slot) {
                return Err(self.err("add keyslot", "slot in use (EINVAL)"));
            }
            h.keyslots.insert(
                slot,
                SimKeyslot {
                    passphrase: passphrase.to_vec(),
                    salt: salt.clone(),
                },
            );
            Ok(salt.clone())
        })
    }

    fn destroy_keyslot(&self, slot: KeyslotId) -> Result<(), DeviceError> {
        self.write("destroy keyslot", format!("destroy {slot}"), |s| {
            let h = s
                .header
                .as_mut()
                .ok_or_else(|| self.err("destroy keyslot", "no header"))?;
            h.keyslots.remove(&slot);
            // As libcryptsetup does: the token stays, bound to no keyslot.
            for t in h.tokens.values_mut() {
                if let Some(a) = t.get_mut("keyslots").and_then(Value::as_array_mut) {
                    a.retain(|v| v.as_str() != Some(&slot.to_string()));
                }
            }
            Ok(())
        })
    }

    fn token(&self, change: TokenChange<'_>) -> Result<TokenId, DeviceError> {
        let entry = match change {
            TokenChange::Add(t) | TokenChange::Replace(_, t) => format!("token+ {}", t["keyslots"]),
            TokenChange::Remove(id) => format!("token- {id}"),
        };
        self.write("token", entry, |s| {
            let h = s
                .header
                .as_mut()
                .ok_or_else(|| self.err("token", "no header"))?;
            match change {
                TokenChange::Add(t) => {
                    let id = (0..32)
                        .map(TokenId)
                        .find(|i| !h.tokens.contains_key(i))
                        .ok_or_else(|| self.err("token", "no free token id"))?;
                    h.tokens.insert(id, t.clone());
                    Ok(id)
                }
                TokenChange::Replace(id, t) => {
                    h.tokens.insert(id, t.clone());
                    Ok(id)
                }
                TokenChange::Remove(id) => h
                    .tokens
                    .remove(&id)
                    .map(|_| id)
                    .ok_or_else(|| self.err("token", "no such token")),
            }
        })
    }

    /// Not simulated: in-place encryption moves data, which the model does
    /// not hold; its tests run on real headers (image files).
    fn start_encryption(&self, _start: &super::EncryptionStart<'_>) -> Result<(), DeviceError> {
        Err(self.err("start in-place encryption", "not simulated"))
    }

    fn start_rotation(&self, _start: &super::RotationStart<'_>) -> Result<(), DeviceError> {
        Err(self.err("start a volume-key rotation", "not simulated"))
    }

    fn redo_moved_step(
        &self,
        _step: &crate::luks2::reencryption::MovedStep,
        _volume_key: &VolumeKey,
    ) -> Result<(), DeviceError> {
        Err(self.err("do an encryption step", "not simulated"))
    }

    fn wipe_moved_copy(&self, _offset: u64, _len: u64) -> Result<(), DeviceError> {
        Err(self.err("wipe a moved copy", "not simulated"))
    }

    fn run_reencryption(
        &self,
        _run: &super::ReencryptRun<'_>,
        _progress: super::Progress<'_>,
    ) -> Result<(), DeviceError> {
        Err(self.err("reencrypt", "not simulated"))
    }

    fn activate_reencrypting(
        &self,
        _name: &str,
        _key: (Option<KeyslotId>, &[u8]),
        _operation: crate::luks2::reencryption::Operation,
        _options: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        Err(self.err("activate", "reencryption is not simulated"))
    }

    fn activate(
        &self,
        name: &str,
        volume_key: &VolumeKey,
        _options: &ActivationOptions,
    ) -> Result<(), DeviceError> {
        if self.dead() {
            return Err(self.err("activate", "simulated power cut"));
        }
        let mut s = self.state.lock().expect("lock");
        let ok = s
            .header
            .as_ref()
            .is_some_and(|h| h.volume_key == volume_key.expose());
        if !ok {
            return Err(self.err("activate", "volume key does not match"));
        }
        s.active = Some(name.to_string());
        Ok(())
    }
}
