//! The XFS filesystem an in-place encryption starts from: only its size,
//! from the superblock. XFS cannot shrink, so it is encrypted in place only
//! when it already leaves the room the header needs.

use super::tool::{read_block, ToolError};
use std::path::Path;

/// The superblock's magic, at byte 0.
const MAGIC: &[u8; 4] = b"XFSB";

/// An XFS filesystem's size, from its superblock (big-endian fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xfs {
    /// Block size in bytes.
    pub block_size: u64,
    /// Data blocks.
    pub blocks: u64,
}

impl Xfs {
    /// The filesystem on `path`, or `None` when there is no XFS magic.
    pub fn read(path: &Path) -> Result<Option<Xfs>, ToolError> {
        let Some(sb) = read_block::<16>(path, 0)? else {
            return Ok(None);
        };
        if &sb[0..4] != MAGIC {
            return Ok(None);
        }
        let block_size = u32::from_be_bytes(sb[4..8].try_into().expect("4 bytes"));
        let blocks = u64::from_be_bytes(sb[8..16].try_into().expect("8 bytes"));
        Ok(Some(Xfs {
            block_size: u64::from(block_size).max(512),
            blocks,
        }))
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.blocks * self.block_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_superblock_gives_the_size_and_no_magic_gives_none() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sb");
        let mut img = vec![0u8; 512];
        std::fs::write(&p, &img).unwrap();
        assert_eq!(Xfs::read(&p).unwrap(), None);
        img[0..4].copy_from_slice(MAGIC);
        img[4..8].copy_from_slice(&4096u32.to_be_bytes());
        img[8..16].copy_from_slice(&81920u64.to_be_bytes());
        std::fs::write(&p, &img).unwrap();
        let fs = Xfs::read(&p).unwrap().unwrap();
        assert_eq!(fs.bytes(), 320 << 20);
    }
}
