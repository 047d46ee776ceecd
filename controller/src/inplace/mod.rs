//! Encrypting a volume that holds data, in place (`encryption.inPlace`).
//!
//! The volume must hold ext4 or btrfs (filesystems volctl can shrink:
//! `resize2fs` offline, `btrfs filesystem resize` mounted), or XFS that
//! already leaves the room (XFS cannot shrink: a partition with
//! `provisioning.grow` is grown into the free space after it at boot,
//! before this runs, and the filesystem grows back after). The filesystem is
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

pub mod btrfs;
pub mod estimate;
pub mod ext4;
mod tool;
pub mod xfs;

use crate::luks2::consts::DEFAULT_DATA_OFFSET;
use btrfs::Btrfs;
use ext4::Ext4;
use std::path::Path;
pub use tool::ToolError;
use xfs::Xfs;

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
    /// Not a filesystem volctl encrypts in place.
    #[error("{path} holds {found}; in-place encryption needs ext4, btrfs or XFS; use the staged wipe instead (apply the config, then `volctl reset --system-labels-to-wipe LABEL --reboot`: the data is lost), or copy the data off first")]
    Unsupported {
        /// Device.
        path: String,
        /// What it holds.
        found: String,
    },
    /// The filesystem cannot shrink enough.
    #[error("{path}: the {fs} filesystem cannot shrink below {} MiB, and only {} MiB remain for it once LUKS2 takes its 32 MiB; free some space or grow the partition, or use the staged wipe (`volctl reset --system-labels-to-wipe LABEL --reboot`: the data is lost)", tenths(*need, Round::Up), tenths(*room, Round::Down))]
    NoRoom {
        /// Device.
        path: String,
        /// `ext4` or `btrfs` (XFS has its own refusal).
        fs: &'static str,
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
    #[error("{path}: the {fs} filesystem says it is {fs_mib} MiB, but the partition is {device_mib} MiB; check it by hand (`e2fsck -fn`, `btrfs check --readonly`) before encrypting it in place; nothing was changed")]
    Oversized {
        /// Device.
        path: String,
        /// `ext4`, `btrfs` or `XFS`.
        fs: &'static str,
        /// What the superblock says.
        fs_mib: u64,
        /// The partition's size.
        device_mib: u64,
    },
    /// An XFS filesystem that reaches into the room the header needs.
    #[error("{path}: XFS cannot shrink, and in-place encryption needs the last {} MiB of the partition free after the filesystem (it ends {} MiB before the end); give the volume `provisioning.grow: true` and free space after its partition (the boot grows the partition before encrypting, and the filesystem after), or use the staged wipe (`volctl reset --system-labels-to-wipe LABEL --reboot`: the data is lost)", ROOM / MIB, tenths(*free, Round::Down))]
    XfsNoRoom {
        /// Device.
        path: String,
        /// Bytes free after the filesystem.
        free: u64,
    },
    /// A btrfs filesystem over several devices.
    #[error("{path}: the btrfs filesystem spans {devices} devices; volctl encrypts a single-device btrfs in place only")]
    MultiDevice {
        /// Device.
        path: String,
        /// How many.
        devices: u64,
    },
    /// Reading or shrinking the filesystem failed.
    #[error(transparent)]
    Tool(#[from] ToolError),
}

/// A filesystem volctl encrypts in place, and its size: ext4 and btrfs
/// shrink to make room for the LUKS2 header, XFS must already leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InPlaceFs {
    /// ext4: `resize2fs`, offline.
    Ext4(Ext4),
    /// btrfs (one device): `btrfs filesystem resize`, mounted.
    Btrfs(Btrfs),
    /// XFS: it cannot shrink, it must already leave the room.
    Xfs(Xfs),
}

impl InPlaceFs {
    /// The filesystem on `path`, when it is one of these.
    pub fn read(path: &Path) -> Result<Option<InPlaceFs>, ToolError> {
        if let Some(fs) = Ext4::read(path)? {
            return Ok(Some(InPlaceFs::Ext4(fs)));
        }
        if let Some(fs) = Xfs::read(path)? {
            return Ok(Some(InPlaceFs::Xfs(fs)));
        }
        Ok(Btrfs::read(path)?.map(InPlaceFs::Btrfs))
    }

    /// `ext4`, `btrfs` or `XFS`.
    pub fn name(&self) -> &'static str {
        match self {
            InPlaceFs::Ext4(_) => "ext4",
            InPlaceFs::Btrfs(_) => "btrfs",
            InPlaceFs::Xfs(_) => "XFS",
        }
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        match self {
            InPlaceFs::Ext4(fs) => fs.bytes(),
            InPlaceFs::Btrfs(fs) => fs.bytes,
            InPlaceFs::Xfs(fs) => fs.bytes(),
        }
    }

    /// The unit its size is a multiple of.
    fn block_size(&self) -> u64 {
        match self {
            InPlaceFs::Ext4(fs) => fs.block_size,
            InPlaceFs::Btrfs(fs) => fs.sector_size,
            InPlaceFs::Xfs(fs) => fs.block_size,
        }
    }

    /// The largest size of whole blocks within `bytes`.
    fn within(&self, bytes: u64) -> u64 {
        bytes / self.block_size() * self.block_size()
    }

    /// The smallest size it can shrink to.
    fn min_bytes(&self, path: &Path) -> Result<u64, ToolError> {
        match self {
            InPlaceFs::Ext4(fs) => ext4::min_bytes(path, fs),
            InPlaceFs::Btrfs(_) => btrfs::min_bytes(path),
            // It cannot shrink: its size is its minimum.
            InPlaceFs::Xfs(fs) => Ok(fs.bytes()),
        }
    }

    /// Shrinks it to `bytes` (a multiple of its block size).
    fn shrink(&self, path: &Path, bytes: u64) -> Result<(), ToolError> {
        match self {
            InPlaceFs::Ext4(fs) => ext4::shrink(path, bytes / fs.block_size),
            InPlaceFs::Btrfs(_) => btrfs::shrink(path, bytes),
            InPlaceFs::Xfs(_) => Ok(()),
        }
    }
}

/// What an in-place encryption of one device will do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preparation {
    /// The filesystem as found.
    pub fs: InPlaceFs,
    /// Its size afterwards, bytes.
    pub target_bytes: u64,
    /// The device's size.
    pub device_bytes: u64,
}

impl Preparation {
    /// Whether the filesystem must shrink first.
    pub fn needs_shrink(&self) -> bool {
        self.fs.bytes() > self.target_bytes
    }

    /// By how much it shrinks, MiB (rounded up).
    pub fn shrink_mib(&self) -> u64 {
        let gone = self.fs.bytes().saturating_sub(self.target_bytes);
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
/// holding `found`) needs; refuses what cannot be done. Never writes (a
/// btrfs filesystem is mounted read-only for the moment to measure it).
pub fn prepare(path: &Path, found: &str, device_bytes: u64) -> Result<Preparation, InPlaceError> {
    let name = || path.display().to_string();
    let Some(fs) = InPlaceFs::read(path)? else {
        return Err(InPlaceError::Unsupported {
            path: name(),
            found: found.to_string(),
        });
    };
    if let InPlaceFs::Btrfs(b) = fs {
        if b.devices != 1 {
            return Err(InPlaceError::MultiDevice {
                path: name(),
                devices: b.devices,
            });
        }
    }
    if device_bytes < ROOM + SHIFT {
        return Err(InPlaceError::TooSmall {
            path: name(),
            device_mib: device_bytes / MIB,
            min_mib: (ROOM + SHIFT) / MIB,
        });
    }
    if fs.bytes() > device_bytes {
        return Err(InPlaceError::Oversized {
            path: name(),
            fs: fs.name(),
            fs_mib: fs.bytes() / MIB,
            device_mib: device_bytes / MIB,
        });
    }
    let target_bytes = fs.within(device_bytes.saturating_sub(ROOM)).min(fs.bytes());
    let prep = Preparation {
        fs,
        target_bytes,
        device_bytes,
    };
    if let (true, InPlaceFs::Xfs(_)) = (prep.needs_shrink(), fs) {
        return Err(InPlaceError::XfsNoRoom {
            path: name(),
            free: device_bytes.saturating_sub(fs.bytes()),
        });
    }
    if prep.needs_shrink() {
        let need = fs.min_bytes(path)?;
        if need > target_bytes {
            return Err(InPlaceError::NoRoom {
                path: name(),
                fs: fs.name(),
                need,
                room: target_bytes,
            });
        }
    }
    Ok(prep)
}

/// Shrinks the filesystem as `prep` says, when it must.
pub fn shrink(path: &Path, prep: &Preparation) -> Result<(), InPlaceError> {
    if prep.needs_shrink() {
        tracing::info!(device = %path.display(), fs = prep.fs.name(), bytes = prep.target_bytes, "shrinking the filesystem for the LUKS2 header");
        prep.fs.shrink(path, prep.target_bytes)?;
    }
    Ok(())
}
