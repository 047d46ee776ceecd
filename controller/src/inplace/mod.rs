//! Encrypting a volume that holds data, in place (`encryption.inPlace`).
//!
//! The volume must hold ext4 (volctl can shrink it). The filesystem is
//! shrunk so that it ends [`ROOM`] before the device's end, then LUKS2
//! reencryption encrypts it with a data shift of [`SHIFT`] (the header's
//! size): libcryptsetup moves the first [`SHIFT`] bytes to the free room,
//! puts the header in their place, and encrypts backwards from the end,
//! each step's source left intact until its copy is committed (`datashift`
//! resilience), keeping its progress in the header. The filesystem's data
//! then starts [`SHIFT`] into the device, as on any LUKS2 volume volctl
//! formats.
//!
//! The steps, each safe to cut (docs/migration.md):
//! 1. `prepare` (read-only): the filesystem, its smallest size, the room;
//!    refusals name the alternative (the staged wipe);
//! 2. `shrink`, when the filesystem reaches into the room;
//! 3. `LuksDevice::start_encryption`: the header with every key, volctl's
//!    proof token and the reencryption record;
//! 4. `LuksDevice::run_reencryption` to the end, resumed by later runs;
//! 5. the proof token removed: an ordinary volume.

pub mod estimate;
pub mod ext4;

use crate::luks2::consts::DEFAULT_DATA_OFFSET;
use ext4::{Ext4, Ext4Error};
use std::path::Path;

/// The data shift: the new header's size (LUKS2's default metadata).
pub const SHIFT: u64 = DEFAULT_DATA_OFFSET;
/// Room the filesystem must leave before the device's end: the header's
/// place and the moved first part of the data.
pub const ROOM: u64 = 2 * SHIFT;
use crate::units::MIB;

/// Where progress lines go besides stderr (set once; see
/// [`show_progress_on`]).
static PROGRESS_SINK: std::sync::OnceLock<fn(&str)> = std::sync::OnceLock::new();

/// Shows the progress of in-place runs on `sink` too: `volctl boot` passes
/// the system console, so someone at the machine sees why it waits. Set
/// once per process; later calls are ignored.
pub fn show_progress_on(sink: fn(&str)) {
    let _ = PROGRESS_SINK.set(sink);
}

/// Whether progress goes to a second place (the console) too.
pub fn progress_on_console() -> bool {
    PROGRESS_SINK.get().is_some()
}

/// Writes a progress line to the second place, when there is one.
pub fn show_progress(line: &str) {
    if let Some(sink) = PROGRESS_SINK.get() {
        sink(line);
    }
}

/// Why a volume cannot be encrypted in place. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum InPlaceError {
    /// Not ext4.
    #[error("{path} holds {found}; in-place encryption needs ext4 (a filesystem volctl can shrink); use the staged wipe instead (apply the config, then `volctl reset --system-labels-to-wipe LABEL --reboot`: the data is lost), or copy the data off first")]
    NotExt4 {
        /// Device.
        path: String,
        /// What it holds.
        found: String,
    },
    /// The filesystem cannot shrink enough.
    #[error("{path}: the ext4 filesystem cannot shrink below {} MiB, and only {} MiB remain for it once LUKS2 takes its 32 MiB; free some space or grow the partition, or use the staged wipe (`volctl reset --system-labels-to-wipe LABEL --reboot`: the data is lost)", tenths(*need, Round::Up), tenths(*room, Round::Down))]
    NoRoom {
        /// Device.
        path: String,
        /// The filesystem's smallest size, bytes.
        need: u64,
        /// What it may keep, bytes.
        room: u64,
    },
    /// The partition is too small for a LUKS2 header, its moved part and
    /// any data.
    #[error("{path} is {device_mib} MiB; in-place encryption needs a partition of at least {min_mib} MiB (LUKS2 takes 32 MiB of it); grow the partition, or use the staged wipe (`volctl reset --system-labels-to-wipe LABEL --reboot`: the data is lost)")]
    TooSmall {
        /// Device.
        path: String,
        /// Its size.
        device_mib: u64,
        /// The least it must be.
        min_mib: u64,
    },
    /// The filesystem claims more than the partition holds (a damaged or
    /// copied filesystem): nothing is run on it.
    #[error("{path}: the ext4 filesystem says it is {fs_mib} MiB, but the partition is {device_mib} MiB; check it by hand (`e2fsck -fn`) before encrypting it in place; nothing was changed")]
    Oversized {
        /// Device.
        path: String,
        /// What the superblock says.
        fs_mib: u64,
        /// The partition's size.
        device_mib: u64,
    },
    /// Reading or shrinking the filesystem failed.
    #[error(transparent)]
    Ext4(#[from] Ext4Error),
}

/// What an in-place encryption of one device will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preparation {
    /// The filesystem as found.
    pub fs: Ext4,
    /// Its size afterwards, in blocks.
    pub target_blocks: u64,
    /// The device's size.
    pub device_bytes: u64,
}

impl Preparation {
    /// Whether the filesystem must shrink first.
    pub fn needs_shrink(&self) -> bool {
        self.fs.blocks > self.target_blocks
    }

    /// By how much it shrinks, MiB (rounded up).
    pub fn shrink_mib(&self) -> u64 {
        let gone = self.fs.blocks.saturating_sub(self.target_blocks) * self.fs.block_size;
        gone.div_ceil(MIB)
    }

    /// What libcryptsetup encrypts: the device less [`ROOM`].
    pub fn data_bytes(&self) -> u64 {
        self.device_bytes.saturating_sub(ROOM)
    }
}

/// Which way [`tenths`] rounds.
#[derive(Debug, Clone, Copy)]
pub enum Round {
    /// Up: a size that is needed.
    Up,
    /// Down: a size that is available.
    Down,
}

/// `bytes` in MiB with one decimal, rounded so that a need is never shown
/// smaller, nor room larger, than it is ("8.3", not "8" against "8").
pub fn tenths(bytes: u64, round: Round) -> String {
    let tenth = MIB / 10;
    let t = match round {
        Round::Up => bytes.div_ceil(tenth),
        Round::Down => bytes / tenth,
    };
    format!("{}.{}", t / 10, t % 10)
}

/// Reads what an in-place encryption of `path` (`device_bytes` long,
/// holding `found`) needs; refuses what cannot be done. Never writes.
pub fn prepare(path: &Path, found: &str, device_bytes: u64) -> Result<Preparation, InPlaceError> {
    let name = || path.display().to_string();
    let Some(fs) = Ext4::read(path)? else {
        return Err(InPlaceError::NotExt4 {
            path: name(),
            found: found.to_string(),
        });
    };
    if device_bytes < ROOM + SHIFT {
        return Err(InPlaceError::TooSmall {
            path: name(),
            device_mib: device_bytes / MIB,
            min_mib: (ROOM + SHIFT) / MIB,
        });
    }
    let fs_bytes = fs.blocks.saturating_mul(fs.block_size);
    if fs_bytes > device_bytes {
        return Err(InPlaceError::Oversized {
            path: name(),
            fs_mib: fs_bytes / MIB,
            device_mib: device_bytes / MIB,
        });
    }
    let target_blocks = fs.blocks_within(device_bytes.saturating_sub(ROOM));
    let prep = Preparation {
        fs,
        target_blocks: target_blocks.min(fs.blocks),
        device_bytes,
    };
    if prep.needs_shrink() {
        let need = ext4::min_bytes(path, &fs)?;
        if need > target_blocks * fs.block_size {
            return Err(InPlaceError::NoRoom {
                path: name(),
                need,
                room: target_blocks * fs.block_size,
            });
        }
    }
    Ok(prep)
}

/// Shrinks the filesystem as `prep` says, when it must.
pub fn shrink(path: &Path, prep: &Preparation) -> Result<(), InPlaceError> {
    if prep.needs_shrink() {
        tracing::info!(device = %path.display(), blocks = prep.target_blocks, "shrinking ext4 for the LUKS2 header");
        ext4::shrink(path, prep.target_blocks)?;
    }
    Ok(())
}
