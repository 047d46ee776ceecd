//! The ext4 filesystem an in-place encryption starts from: its size from
//! the superblock, its smallest size from `resize2fs -P`, and the shrink
//! (`e2fsck -f -p`, then `resize2fs`) that leaves room for the LUKS2 header.

use super::tool::{read_block, run, ToolError};
use std::path::Path;
use std::process::Command;

const SUPERBLOCK: u64 = 1024;
const MAGIC: u16 = 0xef53;
const INCOMPAT_64BIT: u32 = 0x80;

/// An ext4 filesystem's size, from its superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ext4 {
    /// Block size in bytes.
    pub block_size: u64,
    /// Blocks in the filesystem.
    pub blocks: u64,
}

impl Ext4 {
    /// The filesystem on `path`, or `None` when there is no ext2/3/4 magic.
    pub fn read(path: &Path) -> Result<Option<Ext4>, ToolError> {
        let Some(sb) = read_block::<1024>(path, SUPERBLOCK)? else {
            return Ok(None);
        };
        if u16::from_le_bytes([sb[0x38], sb[0x39]]) != MAGIC {
            return Ok(None);
        }
        let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
        let log = u32_at(0x18).min(16);
        let hi = if u32_at(0x60) & INCOMPAT_64BIT != 0 {
            u64::from(u32_at(0x150))
        } else {
            0
        };
        Ok(Some(Ext4 {
            block_size: 1024 << log,
            blocks: (hi << 32) | u64::from(u32_at(0x04)),
        }))
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks * self.block_size
    }

    /// The largest size in whole blocks that is at most `bytes`.
    pub fn blocks_within(&self, bytes: u64) -> u64 {
        bytes / self.block_size
    }
}

/// The smallest size `resize2fs` can shrink the filesystem to, in bytes
/// (`resize2fs -P`, read-only).
pub fn min_bytes(path: &Path, fs: &Ext4) -> Result<u64, ToolError> {
    let out = run(
        "resize2fs",
        Command::new("resize2fs").arg("-P").arg(path),
        path,
    )?;
    let blocks = out
        .lines()
        .find_map(|l| l.split_once("minimum size of the filesystem:"))
        .and_then(|(_, n)| n.trim().parse::<u64>().ok())
        .ok_or_else(|| ToolError::Tool {
            tool: "resize2fs -P",
            path: path.display().to_string(),
            reason: format!("no minimum size in its output: {}", out.trim()),
        })?;
    Ok(blocks * fs.block_size)
}

/// Shrinks the filesystem on `path` to `blocks` blocks: a forced check
/// first (resize2fs wants one), then the resize. On an image file, which
/// resize2fs truncates to the new size, the file's length is put back.
pub fn shrink(path: &Path, blocks: u64) -> Result<(), ToolError> {
    let len = std::fs::metadata(path)
        .map_err(ToolError::read(path))?
        .len();
    run(
        "e2fsck",
        Command::new("e2fsck").args(["-f", "-p"]).arg(path),
        path,
    )?;
    run(
        "resize2fs",
        Command::new("resize2fs").arg(path).arg(blocks.to_string()),
        path,
    )?;
    let meta = std::fs::metadata(path).map_err(ToolError::read(path))?;
    if meta.is_file() && meta.len() < len {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(len))
            .map_err(ToolError::read(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superblock_gives_the_size_and_no_magic_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sb");
        let mut img = vec![0u8; 4096];
        std::fs::write(&p, &img).unwrap();
        assert_eq!(Ext4::read(&p).unwrap(), None);
        let sb = 1024;
        img[sb + 0x04..sb + 0x08].copy_from_slice(&1000u32.to_le_bytes());
        img[sb + 0x18..sb + 0x1c].copy_from_slice(&2u32.to_le_bytes());
        img[sb + 0x38..sb + 0x3a].copy_from_slice(&MAGIC.to_le_bytes());
        img[sb + 0x60..sb + 0x64].copy_from_slice(&INCOMPAT_64BIT.to_le_bytes());
        img[sb + 0x150..sb + 0x154].copy_from_slice(&1u32.to_le_bytes());
        std::fs::write(&p, &img).unwrap();
        let fs = Ext4::read(&p).unwrap().unwrap();
        assert_eq!(fs.block_size, 4096);
        assert_eq!(fs.blocks, (1 << 32) + 1000);
        assert_eq!(fs.blocks_within(fs.bytes() - 1), fs.blocks - 1);
    }
}
