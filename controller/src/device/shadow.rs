//! A private copy of a device's LUKS2 header, for everything that only
//! reads. libcryptsetup repairs a damaged header copy whenever it loads a
//! header it could write, so read-only work (`volctl plan`, the header
//! cross-check, unlocking) loads this copy instead, and the device stays
//! byte-identical. The copy is sparse and holds only the ranges asked for
//! (the two metadata copies; the keyslot area of a slot being unlocked).
//! It is taken once per look, and volctl's own reader reads it too: a
//! header another process rewrites meanwhile is seen at one moment.

use crate::io::read_at;
use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const BLOCK: usize = 64 << 10;

/// A sparse copy of parts of a device, as long as the device.
pub struct Shadow {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Shadow {
    /// Copies the byte ranges `(offset, len)` of `device` (whose size is
    /// `size`) into a new private file of the same size.
    pub fn copy(device: &Path, ranges: &[(u64, u64)], size: u64) -> std::io::Result<Shadow> {
        let dir = tempfile::Builder::new()
            .prefix("volctl-header-")
            .tempdir()?;
        let path = dir.path().join("header");
        File::create(&path)?.set_len(size)?;
        let shadow = Shadow { _dir: dir, path };
        shadow.add(device, ranges, size)?;
        Ok(shadow)
    }

    /// Copies more byte ranges of `device` into the copy.
    pub fn add(&self, device: &Path, ranges: &[(u64, u64)], size: u64) -> std::io::Result<()> {
        let mut out = std::fs::OpenOptions::new().write(true).open(&self.path)?;
        let mut src = File::open(device)?;
        for &(start, len) in ranges {
            let end = start.saturating_add(len).min(size);
            copy_range(&mut src, &mut out, start, end)?;
        }
        Ok(())
    }

    /// The copy's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Copies `[start, end)`, skipping blocks of zeros.
fn copy_range(src: &mut File, out: &mut File, start: u64, end: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; BLOCK];
    let mut off = start;
    while off < end {
        let want = usize::try_from(end - off).unwrap_or(BLOCK).min(BLOCK);
        let n = read_at(src, off, &mut buf[..want])?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|&b| b != 0) {
            out.seek(SeekFrom::Start(off))?;
            out.write_all(&buf[..n])?;
        }
        off += n as u64;
    }
    Ok(())
}
