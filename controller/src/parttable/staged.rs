//! A disk seen through the writes staged for it: the `gpt` crate computes
//! a table by writing it here, reads see those writes, and nothing reaches
//! the disk until [`Staged::commit`] applies them in the order that keeps a
//! valid table at every moment (module `table`). Hiding the primary header
//! ([`Staged::without_primary_header`]) lets the `gpt` crate read the
//! backup copy when the primary one is damaged.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// A disk whose writes are kept in memory until [`Staged::commit`].
#[derive(Debug)]
pub struct Staged {
    file: File,
    pos: u64,
    writes: BTreeMap<u64, Vec<u8>>,
}

impl Staged {
    /// Nothing staged yet.
    pub fn new(file: File) -> Self {
        Staged {
            file,
            pos: 0,
            writes: BTreeMap::new(),
        }
    }

    /// The disk's length.
    pub fn disk_bytes(&mut self) -> u64 {
        self.file.seek(SeekFrom::End(0)).unwrap_or(0)
    }

    /// Another view of the same disk, with the same staged writes.
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Staged {
            file: self.file.try_clone()?,
            pos: self.pos,
            writes: self.writes.clone(),
        })
    }

    /// The disk with its primary GPT header (the block at `lb`, the
    /// logical block size) reading as zeros, so that a reader takes the
    /// backup copy; a table written then rewrites the primary in full.
    pub fn without_primary_header(mut self, lb: u64) -> Self {
        self.writes
            .insert(lb, vec![0; usize::try_from(lb).unwrap_or(512)]);
        self
    }

    /// Whether block 0 holds an MBR (its 0x55AA signature): protective,
    /// hybrid or another's.
    pub fn has_mbr(&mut self) -> bool {
        let mut sig = [0u8; 2];
        self.seek(SeekFrom::Start(510)).is_ok()
            && self.read_exact(&mut sig).is_ok()
            && sig == [0x55, 0xAA]
    }

    /// Writes the staged blocks: those in the last MiB (backup array and
    /// header) first, then the rest (protective MBR, primary header and
    /// array), each group synced. Stops after `cut` writes.
    pub fn commit(mut self, cut: Option<usize>) -> io::Result<()> {
        let tail = self.disk_bytes().saturating_sub(crate::units::MIB);
        let (backup, primary): (Vec<_>, Vec<_>) = std::mem::take(&mut self.writes)
            .into_iter()
            .partition(|(o, _)| *o >= tail);
        // Within each copy, the header (at the copy's end for the backup,
        // LBA 1 for the primary) goes last, after its array.
        let backup = backup.into_iter();
        let mut primary: Vec<_> = primary;
        primary.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
        let mut left = cut.unwrap_or(usize::MAX);
        for group in [backup.collect::<Vec<_>>(), primary] {
            for (offset, data) in group {
                if left == 0 {
                    return Ok(());
                }
                self.file.write_all_at(&data, offset)?;
                left -= 1;
            }
            self.file.sync_all()?;
        }
        Ok(())
    }
}

impl Read for Staged {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        for (&o, data) in &self.writes {
            overlay(&mut buf[..n], self.pos, o, data);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

/// Copies the part of `data` (at `at`) that falls in `buf` (at `pos`).
fn overlay(buf: &mut [u8], pos: u64, at: u64, data: &[u8]) {
    let start = pos.max(at);
    let end = (pos + buf.len() as u64).min(at + data.len() as u64);
    if start < end {
        let (b, d) = (
            usize::try_from(start - pos).unwrap_or(0),
            usize::try_from(start - at).unwrap_or(0),
        );
        let n = usize::try_from(end - start).unwrap_or(0);
        buf[b..b + n].copy_from_slice(&data[d..d + n]);
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writes.insert(self.pos, buf.to_vec());
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Staged {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(o) => o,
            SeekFrom::End(d) => self
                .disk_bytes()
                .checked_add_signed(d)
                .ok_or(io::ErrorKind::InvalidInput)?,
            SeekFrom::Current(d) => self
                .pos
                .checked_add_signed(d)
                .ok_or(io::ErrorKind::InvalidInput)?,
        };
        Ok(self.pos)
    }
}
