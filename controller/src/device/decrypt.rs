//! Decryption in place on libcryptsetup 2.6, the way `cryptsetup reencrypt
//! --decrypt --header FILE` does it for a volume with a data offset: the
//! header is exported to a file (libcryptsetup decrypts a shifted volume
//! only with its header detached), the device's own header wiped, then a
//! `decrypt` reencryption is recorded in the file (forward, with the data
//! shifted back to the device's start, `datashift-checksum` resilience)
//! and run. Each step's progress is kept in the file, so a cut run resumes
//! from it; at the end the file holds a header with a `linear` segment and
//! no keyslots, and the device the plaintext from its first byte.
//!
//! The order of the steps, and what a cut between them leaves, is
//! `crate::inplace::decrypt`'s.

use super::cryptsetup::CryptsetupDevice;
use super::{DeviceError, Progress};
use crate::luks2::header::{self, Probe};
use crate::luks2::model::Luks2Header;
use api_types::KeyslotId;
use libcryptsetup_rs::consts::flags::CryptReencrypt;
use libcryptsetup_rs::consts::vals::{
    CryptReencryptDirectionInfo, CryptReencryptInfo, CryptReencryptModeInfo, EncryptionFormat,
};
use libcryptsetup_rs::{CryptDevice, CryptInit, CryptParamsReencrypt, Either};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

const SECTOR: u64 = 512;

/// What a detached header file holds, read by volctl's own reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetachedHeader {
    /// The volume's header as exported: no decryption recorded yet.
    Exported {
        /// Its UUID.
        uuid: String,
    },
    /// A decryption recorded (and perhaps part run).
    Decrypting {
        /// Its UUID.
        uuid: String,
    },
    /// Every byte decrypted: the data is plaintext from the device's
    /// start (libcryptsetup's teardown may not have ended).
    Finished {
        /// Its UUID.
        uuid: String,
    },
}

impl DetachedHeader {
    /// The header's UUID.
    pub fn uuid(&self) -> &str {
        match self {
            DetachedHeader::Exported { uuid }
            | DetachedHeader::Decrypting { uuid }
            | DetachedHeader::Finished { uuid } => uuid,
        }
    }
}

/// Reads the detached header at `path`: `None` when it holds no LUKS2
/// header.
pub fn read_detached(path: &Path) -> Result<Option<DetachedHeader>, DeviceError> {
    let failed = |reason: String| DeviceError::Failed {
        op: "read the detached header",
        path: path.display().to_string(),
        reason,
    };
    let h = match header::read(path).map_err(|e| failed(e.to_string()))? {
        Probe::Luks2(h) => *h,
        _ => return Ok(None),
    };
    Ok(Some(shape_of(h)))
}

fn shape_of(h: Luks2Header) -> DetachedHeader {
    let uuid = h.uuid.clone();
    if all_plaintext(&h) {
        DetachedHeader::Finished { uuid }
    } else if h.in_reencryption() {
        DetachedHeader::Decrypting { uuid }
    } else {
        DetachedHeader::Exported { uuid }
    }
}

/// Whether every byte is plaintext at the device's start: the segments in
/// use (not libcryptsetup's `backup-*` copies) are one `linear` segment at
/// offset 0, and not a step's hotzone still `in-reencryption` (a volume
/// whose data is one step long shows just that mid-step: the online
/// every-write sweep found it taken for finished, and the data lost). So
/// it is once the last step is committed, before libcryptsetup's teardown
/// (keyslots destroyed, backups and the requirement dropped) ends;
/// libcryptsetup 2.6 must not be asked to resume from there (measured: it
/// decrypts the plaintext once more), so volctl takes such a header as
/// finished.
pub fn all_plaintext(h: &Luks2Header) -> bool {
    plaintext_segments(&h.json)
}

fn plaintext_segments(j: &crate::luks2::model::Luks2Json) -> bool {
    use crate::luks2::reencryption::{in_hotzone, segments_in_use};
    let in_use: Vec<_> = segments_in_use(j).map(|(_, s)| s).collect();
    matches!(in_use[..], [s] if s.kind == "linear" && s.offset == "0" && !in_hotzone(s))
}

/// The reencryption's parameters: libcryptsetup's for a decryption with a
/// data shift (`cryptsetup reencrypt --decrypt --header`).
fn params(data_shift: u64, flags: CryptReencrypt) -> CryptParamsReencrypt {
    CryptParamsReencrypt {
        mode: CryptReencryptModeInfo::Decrypt,
        direction: CryptReencryptDirectionInfo::Forward,
        resilience: "datashift-checksum".into(),
        hash: "sha256".into(),
        data_shift: data_shift / SECTOR,
        max_hotzone_size: 0,
        device_size: 0,
        luks2: None,
        // libcryptsetup takes `datashift-checksum` only with the first
        // segment moved, starting it and resuming it alike.
        flags: flags | CryptReencrypt::MOVE_FIRST_SEGMENT,
    }
}

impl CryptsetupDevice {
    /// Writes the device's header (both copies and the keyslots) to the
    /// new file `to` (0600, synced). No KDF run.
    pub fn export_header(&self, to: &Path) -> Result<(), DeviceError> {
        let op = "export the header";
        let mut dev = CryptInit::init(&self.path).map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.fail(op, e))?;
        dev.backup_handle()
            .header_backup(Some(EncryptionFormat::Luks2), to)
            .map_err(|e| self.fail(op, e))?;
        let file = std::fs::File::open(to).map_err(self.io("open the exported header of"))?;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .and_then(|()| file.sync_all())
            .map_err(self.io("sync the exported header of"))
    }

    /// Zeroes both copies of the device's LUKS2 metadata (one write,
    /// synced): the device no longer looks like a LUKS2 volume, so nothing
    /// opens it by a header its data is about to move under.
    pub fn wipe_metadata(&self) -> Result<(), DeviceError> {
        let what = "wipe the header of";
        self.writable(what)?;
        let span = header::metadata_span(&self.path).map_err(self.io(what))?;
        let zeros = vec![0u8; usize::try_from(span).unwrap_or(usize::MAX)];
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(self.io(what))?;
        f.write_all_at(&zeros, 0)
            .and_then(|()| f.sync_data())
            .map_err(self.io(what))
    }

    /// Records the decryption in the detached header `hdr` and runs it to
    /// its end, by the passphrase of `slot`: one KDF run for both
    /// (libcryptsetup keeps the keys it unlocked to record it); offline,
    /// or through the device `active` the volume is active as (opened by
    /// its own header: libcryptsetup maps it anew). A cut after the record
    /// leaves a decryption [`Self::run_decryption`] resumes.
    pub fn start_decryption(
        &self,
        hdr: &Path,
        key: (KeyslotId, &[u8]),
        active: Option<&str>,
        progress: Progress<'_>,
    ) -> Result<(), DeviceError> {
        let op = "start the decryption";
        let mut dev = self.record(hdr, key, active, CryptReencrypt::empty(), op)?;
        self.run_loaded(&mut dev, progress)
    }

    /// Records the decryption in the detached header `hdr` and runs none
    /// of it (one KDF run): the volume is then activated by
    /// [`Self::activate_decrypting`] and the run goes on online.
    pub fn record_decryption(
        &self,
        hdr: &Path,
        key: (KeyslotId, &[u8]),
    ) -> Result<(), DeviceError> {
        let op = "record the decryption";
        self.record(hdr, key, None, CryptReencrypt::INITIALIZE_ONLY, op)
            .map(drop)
    }

    /// Records a decryption in the detached header `hdr`, its data shifted
    /// by the header's data offset (`flags` empty: loaded to run, through
    /// the device `active` when online); the context it is loaded in.
    fn record(
        &self,
        hdr: &Path,
        key: (KeyslotId, &[u8]),
        active: Option<&str>,
        flags: CryptReencrypt,
        op: &'static str,
    ) -> Result<CryptDevice, DeviceError> {
        let mut dev = self.load_detached(hdr, op)?;
        let shift = data_offset(&mut dev).map_err(|e| self.fail(op, e))?;
        self.init_detached(&mut dev, key, (shift, active), flags)?;
        Ok(dev)
    }

    /// Activates the volume as `name` by its detached header `hdr`, a
    /// decryption recorded in it (libcryptsetup maps what is decrypted and
    /// what is not, and first restores the step a cut run was in): one
    /// KDF run.
    pub fn activate_decrypting(
        &self,
        hdr: &Path,
        name: &str,
        (slot, passphrase): (KeyslotId, &[u8]),
        options: &super::ActivationOptions,
    ) -> Result<(), DeviceError> {
        let op = "activate mid-decryption";
        let mut dev = self.load_detached(hdr, op)?;
        let _kdf = self.kdf_run(op, 1);
        dev.activate_handle()
            .activate_by_passphrase(
                Some(name),
                Some(slot.get()),
                passphrase,
                super::cryptsetup::activation_flags(options),
            )
            .map(|_| ())
            .map_err(|e| self.fail(op, e))
    }

    /// Runs the reencryption loaded in `dev` to its end, with progress.
    fn run_loaded(&self, dev: &mut CryptDevice, progress: Progress<'_>) -> Result<(), DeviceError> {
        let mut state = super::reencrypt::ProgressState { progress };
        dev.reencrypt_handle()
            .reencrypt2(Some(super::reencrypt::on_progress), Some(&mut state))
            .map_err(|e| self.fail("decrypt", e))
    }

    /// Runs the decryption recorded in `hdr` to its end by the passphrase
    /// of `slot`: offline (`active` `None`), one KDF run (two after a cut
    /// inside a step, whose hotzone libcryptsetup restores first); online
    /// through the device `active` maps (activating it restored a cut
    /// step), one.
    pub fn run_decryption(
        &self,
        hdr: &Path,
        key: (KeyslotId, &[u8]),
        active: Option<&str>,
        progress: Progress<'_>,
    ) -> Result<(), DeviceError> {
        let op = "decrypt";
        let mut dev = self.load_detached(hdr, op)?;
        let shift = data_shift(hdr);
        let state = dev
            .reencrypt_handle()
            .status(params(shift, CryptReencrypt::empty()))
            .map_err(|e| self.fail(op, e))?;
        if state == CryptReencryptInfo::Crash && active.is_none() {
            tracing::warn!(device = %self.path_s(), "recovering the step a cut decryption was in");
            self.init_detached(&mut dev, key, (shift, None), CryptReencrypt::RECOVERY)?;
            dev = self.load_detached(hdr, op)?;
            let left = dev
                .reencrypt_handle()
                .status(params(shift, CryptReencrypt::empty()))
                .map_err(|e| self.fail(op, e))?;
            if left == CryptReencryptInfo::None {
                return Ok(());
            }
        }
        self.init_detached(&mut dev, key, (shift, active), CryptReencrypt::RESUME_ONLY)?;
        self.run_loaded(&mut dev, progress)
    }

    /// Records (flags empty: and loads to run; `INITIALIZE_ONLY`: only),
    /// resumes or recovers the decryption in the loaded header, through
    /// the active device `name` when online: one KDF run.
    fn init_detached(
        &self,
        dev: &mut CryptDevice,
        (slot, passphrase): (KeyslotId, &[u8]),
        (shift, name): (u64, Option<&str>),
        flags: CryptReencrypt,
    ) -> Result<(), DeviceError> {
        let _kdf = self.kdf_run("decrypt", 1);
        dev.reencrypt_handle()
            .reencrypt_init_by_passphrase(
                name,
                passphrase,
                Some(slot.get()),
                None,
                None,
                params(shift, flags),
            )
            .map(|_| ())
            .map_err(|e| self.fail("decrypt", e))
    }

    /// A context on the detached header `hdr` with this device as its data.
    fn load_detached(&self, hdr: &Path, op: &'static str) -> Result<CryptDevice, DeviceError> {
        self.writable(op)?;
        let mut dev = CryptInit::init_with_data_device(Either::Right((hdr, &self.path)))
            .map_err(|e| self.fail(op, e))?;
        dev.context_handle()
            .load::<()>(Some(EncryptionFormat::Luks2), None)
            .map_err(|e| self.fail(op, e))?;
        Ok(dev)
    }
}

/// The loaded header's data offset, in bytes.
fn data_offset(dev: &mut CryptDevice) -> Result<u64, libcryptsetup_rs::LibcryptErr> {
    Ok(dev.status_handle().get_data_offset() * SECTOR)
}

/// How far a decryption of the volume whose header is at `path` moves its
/// data: the shift a recorded decryption keeps in its reencryption keyslot
/// (`area.shift_size`, which resuming restates), else the data offset; 0
/// when there is no header.
pub fn data_shift(path: &Path) -> u64 {
    let Ok(Probe::Luks2(h)) = header::read(path) else {
        return 0;
    };
    recorded_shift(&h).or_else(|| h.data_offset()).unwrap_or(0)
}

fn recorded_shift(h: &Luks2Header) -> Option<u64> {
    h.raw_json["keyslots"]
        .as_object()
        .into_iter()
        .flat_map(|slots| slots.values())
        .filter(|k| k["type"] == "reencrypt")
        .find_map(|k| k["area"]["shift_size"].as_str()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::plaintext_segments;

    /// Segments as libcryptsetup 2.6 leaves them (a 16 MiB volume: its data
    /// is one step).
    fn json(segments: &str) -> crate::luks2::model::Luks2Json {
        serde_json::from_str(&format!(
            r#"{{"keyslots": {{}}, "digests": {{}}, "segments": {segments}}}"#
        ))
        .unwrap()
    }

    #[test]
    fn a_one_step_volume_mid_step_is_not_finished_and_after_it_is() {
        let mid_step = json(
            r#"{"0": {"type": "linear", "offset": "0", "size": "16777216", "flags": ["in-reencryption"]},
                "1": {"type": "crypt", "offset": "16777216", "size": "dynamic", "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": 512, "flags": ["backup-previous"]},
                "2": {"type": "linear", "offset": "0", "size": "dynamic", "flags": ["backup-final"]},
                "3": {"type": "crypt", "offset": "0", "size": "16777216", "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": 512, "flags": ["backup-moved-segment"]}}"#,
        );
        assert!(!plaintext_segments(&mid_step));
        let committed = json(
            r#"{"0": {"type": "linear", "offset": "0", "size": "16777216"},
                "1": {"type": "linear", "offset": "0", "size": "dynamic", "flags": ["backup-final"]}}"#,
        );
        assert!(plaintext_segments(&committed));
        let started = json(
            r#"{"0": {"type": "crypt", "offset": "0", "size": "16777216", "iv_tweak": "0", "encryption": "aes-xts-plain64", "sector_size": 512}}"#,
        );
        assert!(!plaintext_segments(&started));
    }
}
