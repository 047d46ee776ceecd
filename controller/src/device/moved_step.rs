//! The last step of an in-place encryption, done by volctl where
//! libcryptsetup 2.6 must not be asked to (`reencryption::moved_step_flagged`):
//! the plaintext first part of the data, moved at the start to the free
//! room at the device's end, is read from that copy, encrypted with the
//! volume key as dm-crypt's `aes-xts-plain64` writes it, written to the
//! data segment's head and synced. The copy is not written here, so a cut
//! leaves the same header and the next run does the step again. And the
//! copy's wipe once no header needs it: random bytes, as libcryptsetup's
//! own teardown writes, so the old plaintext does not stay on the disk.

use super::cryptsetup::CryptsetupDevice;
use super::DeviceError;
use crate::luks2::binding::VolumeKey;
use crate::luks2::reencryption::MovedStep;
use std::os::unix::fs::FileExt;

/// Bytes per read and write.
const CHUNK: u64 = crate::units::MIB;
const SECTOR: u64 = 512;

impl CryptsetupDevice {
    /// See [`super::LuksDevice::redo_moved_step`].
    pub(super) fn redo_moved_step_impl(
        &self,
        step: &MovedStep,
        volume_key: &VolumeKey,
    ) -> Result<(), DeviceError> {
        let op = "do the last step of an in-place encryption";
        let f = self.open_rw(op)?;
        let what = "do the last encryption step on";
        let sector = usize::try_from(step.sector_size).unwrap_or(usize::MAX);
        let mut done = 0;
        while done < step.len {
            let mut buf = vec![0u8; chunk_len(step.len - done)];
            f.read_exact_at(&mut buf, step.from + done)
                .map_err(self.io(what))?;
            let iv = step.iv_tweak + done / SECTOR;
            cipher_speed::aes_xts_plain64_encrypt(volume_key.expose(), &mut buf, sector, iv)
                .map_err(|e| self.failed_with(op, e.to_string()))?;
            f.write_all_at(&buf, step.to + done)
                .map_err(self.io(what))?;
            done += buf.len() as u64;
        }
        f.sync_data().map_err(self.io(what))
    }

    /// See [`super::LuksDevice::wipe_moved_copy`].
    pub(super) fn wipe_moved_copy_impl(&self, offset: u64, len: u64) -> Result<(), DeviceError> {
        let f = self.open_rw("wipe the moved copy of an in-place encryption")?;
        let what = "wipe the moved copy on";
        let mut done = 0;
        while done < len {
            let buf = crate::io::random_bytes(chunk_len(len - done));
            f.write_all_at(&buf, offset + done).map_err(self.io(what))?;
            done += buf.len() as u64;
        }
        f.sync_data().map_err(self.io(what))
    }

    fn open_rw(&self, op: &'static str) -> Result<std::fs::File, DeviceError> {
        self.writable(op)?;
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(self.io("open for writing"))
    }

    fn failed_with(&self, op: &'static str, reason: String) -> DeviceError {
        DeviceError::Failed {
            op,
            path: self.path_s(),
            reason,
        }
    }
}

fn chunk_len(left: u64) -> usize {
    usize::try_from(CHUNK.min(left)).unwrap_or(usize::MAX)
}
