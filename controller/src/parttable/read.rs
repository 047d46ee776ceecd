//! Every GPT volctl reads goes through here first. The `gpt` crate asserts
//! (panics) on a table whose partition entries are not 128 bytes, though
//! UEFI allows any multiple of 128 and `sfdisk` reads such tables; a panic
//! on a disk's contents would stop a boot because of a stick plugged in.
//! So the primary header is checked by hand first: a table volctl cannot
//! read is reported as what it is, and the disk is treated as "not blank,
//! not ours" (nothing is written to it).

use super::staged::Staged;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// The one entry size the `gpt` crate reads.
const ENTRY_SIZE: u32 = 128;
/// Most entries a table may have for volctl to read it (UEFI's minimum
/// array is 128 entries; 4096 leaves room and bounds the work).
const MAX_ENTRIES: u32 = 4096;
const SIGNATURE: &[u8; 8] = b"EFI PART";

/// Why a GPT was not read.
#[derive(Debug, thiserror::Error)]
pub enum GptReadError {
    /// Partition entries of another size than the `gpt` crate reads.
    #[error("its GPT has {0}-byte partition entries; volctl reads only {ENTRY_SIZE}-byte ones (the disk is left alone)")]
    EntrySize(u32),
    /// More entries than volctl reads.
    #[error("its GPT has {0} partition entries; volctl reads at most {MAX_ENTRIES} (the disk is left alone)")]
    TooManyEntries(u32),
    /// The disk could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Neither copy of the table is one the `gpt` crate takes.
    #[error(transparent)]
    Gpt(#[from] gpt::GptError),
}

/// Checks the primary GPT header of `path` (at LBA 1 for 512- or
/// 4096-byte blocks): its entry size and count are ones volctl reads.
/// A disk without a GPT signature passes (the caller finds no table).
pub fn check(path: &Path) -> Result<(), GptReadError> {
    let Ok(f) = std::fs::File::open(path) else {
        return Ok(()); // the caller's open reports it
    };
    for lba in [512u64, 4096] {
        let mut h = [0u8; 92];
        if f.read_exact_at(&mut h, lba).is_err() || &h[..8] != SIGNATURE {
            continue;
        }
        let field = |at: usize| u32::from_le_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let (entries, entry_size) = (field(80), field(84));
        if entry_size != ENTRY_SIZE {
            return Err(GptReadError::EntrySize(entry_size));
        }
        if entries > MAX_ENTRIES {
            return Err(GptReadError::TooManyEntries(entries));
        }
        return Ok(());
    }
    Ok(())
}

/// Which copy of a GPT was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableCopy {
    /// The primary, at the disk's start.
    Primary,
    /// The backup, at its end: the primary's header or array is damaged
    /// (a power cut while it was written, as the kernel also copes with).
    Backup,
}

/// Opens the GPT of `path` read-only, after [`check`]; from its backup
/// copy when the primary one is damaged.
pub fn open(path: &Path) -> Result<(gpt::GptDisk<Staged>, TableCopy), GptReadError> {
    OPENED.with(|n| n.set(n.get() + 1));
    check(path)?;
    read(Staged::new(std::fs::File::open(path)?), false)
}

thread_local! {
    /// How many times this thread opened a disk's GPT to read it: what the
    /// snapshot tests count (a boot reads each table once, again only
    /// after it changed one).
    static OPENED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The number of GPT opens so far on this thread ([`open`]).
pub fn opened() -> usize {
    OPENED.with(std::cell::Cell::get)
}

/// Reads the GPT on `disk` (primary copy, else the backup: the `gpt` crate
/// takes the primary whenever its header is sound, even when its array's
/// CRC fails, so the backup is reached by hiding the primary header).
pub fn read(
    disk: Staged,
    writable: bool,
) -> Result<(gpt::GptDisk<Staged>, TableCopy), GptReadError> {
    let cfg = gpt::GptConfig::new().writable(writable);
    let retry = disk.try_clone()?;
    match cfg.clone().open_from_device(disk) {
        Ok(g) => Ok((g, TableCopy::Primary)),
        Err(first) => cfg
            .open_from_device(retry.without_primary_header(512))
            .map(|g| (g, TableCopy::Backup))
            .map_err(|_| first.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image whose LBA 1 holds a GPT header with these entry fields.
    fn image(entries: u32, entry_size: u32) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(1 << 20).unwrap();
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(SIGNATURE);
        h[80..84].copy_from_slice(&entries.to_le_bytes());
        h[84..88].copy_from_slice(&entry_size.to_le_bytes());
        f.as_file().write_all_at(&h, 512).unwrap();
        f
    }

    #[test]
    fn entry_sizes_and_counts_the_gpt_crate_cannot_read_are_refused_with_a_reason() {
        let e = check(image(64, 256).path()).unwrap_err();
        assert!(matches!(e, GptReadError::EntrySize(256)), "{e}");
        assert!(e.to_string().contains("256-byte partition entries"), "{e}");
        let e = check(image(1_000_000, 128).path()).unwrap_err();
        assert!(matches!(e, GptReadError::TooManyEntries(1_000_000)), "{e}");
        assert!(e.to_string().contains("1000000 partition entries"), "{e}");
        check(image(128, 128).path()).unwrap();
        // No signature: nothing to refuse.
        let blank = tempfile::NamedTempFile::new().unwrap();
        blank.as_file().set_len(1 << 20).unwrap();
        check(blank.path()).unwrap();
    }
}
