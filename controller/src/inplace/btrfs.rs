//! The btrfs filesystem an in-place encryption starts from: its size from
//! the superblock, its smallest size (`btrfs inspect-internal
//! min-dev-size`) and the shrink (`btrfs filesystem resize`). btrfs
//! answers both only while mounted: the filesystem is mounted for the
//! moment at a private folder (read-only to measure it), and unmounted
//! before the LUKS2 header is written. A shrink is one btrfs transaction:
//! a power cut leaves the old size or the new one.

use super::tool::{read_block, run, ToolError};
use std::path::Path;
use std::process::Command;

/// The smallest size the kernel resizes a btrfs device to (its
/// `BTRFS_IOC_RESIZE` refuses less with EINVAL).
pub const KERNEL_MIN: u64 = 256 << 20;

/// Where the primary superblock is.
const SUPERBLOCK: u64 = 0x1_0000;
/// Its magic, at 0x40 into it.
const MAGIC: &[u8; 8] = b"_BHRfS_M";

/// A single-device btrfs filesystem's size, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Btrfs {
    /// Sector size in bytes.
    pub sector_size: u64,
    /// Bytes the filesystem spans on its device.
    pub bytes: u64,
    /// Devices the filesystem spans (volctl shrinks only one).
    pub devices: u64,
}

impl Btrfs {
    /// The filesystem on `path`, or `None` when there is no btrfs magic.
    pub fn read(path: &Path) -> Result<Option<Btrfs>, ToolError> {
        let Some(sb) = read_block::<0x100>(path, SUPERBLOCK)? else {
            return Ok(None);
        };
        if &sb[0x40..0x48] != MAGIC {
            return Ok(None);
        }
        let u64_at = |o: usize| u64::from_le_bytes(sb[o..o + 8].try_into().expect("8 bytes"));
        let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
        Ok(Some(Btrfs {
            bytes: u64_at(0x70),
            devices: u64_at(0x88),
            sector_size: u64::from(u32_at(0x90)).max(512),
        }))
    }
}

/// The filesystem on `path` mounted at a private folder while it lives.
struct Mounted {
    dir: tempfile::TempDir,
    device: String,
}

impl Mounted {
    fn new(path: &Path, options: &str) -> Result<Mounted, ToolError> {
        let dir = tempfile::Builder::new()
            .prefix("volctl-btrfs-")
            .tempdir()
            .map_err(ToolError::read(path))?;
        // `mount` sets up a loop device for an image file itself.
        run(
            "mount",
            Command::new("mount")
                .args(["-t", "btrfs", "-o", options])
                .arg(path)
                .arg(dir.path()),
            path,
        )?;
        Ok(Mounted {
            dir,
            device: path.display().to_string(),
        })
    }

    fn at(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let out = Command::new("umount").arg(self.dir.path()).output();
        if !out.is_ok_and(|o| o.status.success()) {
            tracing::warn!(device = %self.device, dir = %self.dir.path().display(), "could not unmount the btrfs filesystem measured for in-place encryption");
        }
    }
}

/// The smallest size btrfs can shrink its device to, in bytes (mounted
/// read-only for the moment), and never below [`KERNEL_MIN`].
pub fn min_bytes(path: &Path) -> Result<u64, ToolError> {
    let m = Mounted::new(path, "ro")?;
    let out = run(
        "btrfs inspect-internal min-dev-size",
        Command::new("btrfs")
            .args(["inspect-internal", "min-dev-size"])
            .arg(m.at()),
        path,
    )?;
    out.split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .map(|n| n.max(KERNEL_MIN))
        .ok_or_else(|| ToolError::Tool {
            tool: "btrfs inspect-internal min-dev-size",
            path: path.display().to_string(),
            reason: format!("no size in its output: {}", out.trim()),
        })
}

/// Shrinks the filesystem on `path` to `bytes` (mounted for the moment).
pub fn shrink(path: &Path, bytes: u64) -> Result<(), ToolError> {
    let m = Mounted::new(path, "rw")?;
    run(
        "btrfs filesystem resize",
        Command::new("btrfs")
            .args(["filesystem", "resize", &bytes.to_string()])
            .arg(m.at()),
        path,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superblock_gives_the_size_and_no_magic_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sb");
        let mut img = vec![0u8; 0x1_1000];
        std::fs::write(&p, &img).unwrap();
        assert_eq!(Btrfs::read(&p).unwrap(), None);
        let sb = 0x1_0000; // SUPERBLOCK
        img[sb + 0x40..sb + 0x48].copy_from_slice(MAGIC);
        img[sb + 0x70..sb + 0x78].copy_from_slice(&(200u64 << 20).to_le_bytes());
        img[sb + 0x88..sb + 0x90].copy_from_slice(&1u64.to_le_bytes());
        img[sb + 0x90..sb + 0x94].copy_from_slice(&4096u32.to_le_bytes());
        std::fs::write(&p, &img).unwrap();
        let fs = Btrfs::read(&p).unwrap().unwrap();
        assert_eq!(
            fs,
            Btrfs {
                sector_size: 4096,
                bytes: 200 << 20,
                devices: 1
            }
        );
    }
}
