//! Is a device blank? volctl formats only a device whose first and last MiB
//! are zeros: it never destroys data that the user did not ask to wipe.
//! Known signatures are named (as `blkid -p` would name them); anything else
//! that is not zero is "unrecognised data".

use crate::io::read_at;
use crate::luks2::consts::{
    BLANK_PROBE_LEN, LUKS2_SECONDARY_MAGIC, LUKS2_SECONDARY_OFFSETS, LUKS_MAGIC,
};
use std::io::{Seek, SeekFrom};
use std::path::Path;

/// A signature: what it is, where it sits, the bytes.
struct Sig {
    name: &'static str,
    offset: u64,
    magic: &'static [u8],
    /// Checked on a mapped device too; short magics that random data would
    /// match too often are checked only on the raw device (which must be
    /// zero there anyway).
    on_mapped: bool,
}

const fn sig(name: &'static str, offset: u64, magic: &'static [u8]) -> Sig {
    Sig {
        name,
        offset,
        magic,
        on_mapped: true,
    }
}

const fn raw_only(name: &'static str, offset: u64, magic: &'static [u8]) -> Sig {
    Sig {
        on_mapped: false,
        ..sig(name, offset, magic)
    }
}

/// What the probe names a swap signature.
pub const SWAP_SIGNATURE: &str = "swap space";

/// Signatures of things that hold data (as wipefs/blkid know them).
const SIGNATURES: &[Sig] = &[
    sig("LUKS header", 0, LUKS_MAGIC),
    sig("ext2/3/4 filesystem", 1080, &[0x53, 0xef]),
    sig("XFS filesystem", 0, b"XFSB"),
    sig("btrfs filesystem", 65600, b"_BHRfS_M"),
    sig("squashfs filesystem", 0, b"hsqs"),
    sig("vfat filesystem", 82, b"FAT32   "),
    sig("vfat filesystem", 54, b"FAT16   "),
    sig("vfat filesystem", 54, b"FAT12   "),
    sig("exFAT filesystem", 3, b"EXFAT   "),
    sig("ISO 9660 filesystem", 32769, b"CD001"),
    sig("GPT partition table", 512, b"EFI PART"),
    sig("GPT partition table (4096-byte sectors)", 4096, b"EFI PART"),
    sig(SWAP_SIGNATURE, 4086, b"SWAPSPACE2"),
    sig(SWAP_SIGNATURE, 4086, b"SWAP-SPACE"),
    sig("F2FS filesystem", 1024, &[0x10, 0x20, 0xf5, 0xf2]),
    raw_only("minix filesystem", 1040, &[0x7f, 0x13]),
    raw_only("minix filesystem", 1040, &[0x8f, 0x13]),
    raw_only("minix filesystem", 1040, &[0x68, 0x24]),
    raw_only("minix filesystem", 1040, &[0x78, 0x24]),
    raw_only("minix filesystem (v3)", 1048, &[0x5a, 0x4d]),
    sig("BFS filesystem", 0, &[0xce, 0xfa, 0xad, 0x1b]),
    sig("cramfs filesystem", 0, &[0x45, 0x3d, 0xcd, 0x28]),
    sig("cramfs filesystem", 0, &[0x28, 0xcd, 0x3d, 0x45]),
    sig(
        "bcache device",
        4120,
        &[
            0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba,
            0x6d, 0x81,
        ],
    ),
    sig("LVM2 physical volume", 536, b"LVM2 001"),
    raw_only("DOS/MBR partition table or boot sector", 510, &[0x55, 0xaa]),
];

/// The first known signature on `path`, by name and offset.
fn known_signature(f: &mut std::fs::File, mapped: bool) -> std::io::Result<Option<String>> {
    for s in SIGNATURES.iter().filter(|s| s.on_mapped || !mapped) {
        let mut buf = vec![0u8; s.magic.len()];
        if read_at(f, s.offset, &mut buf)? == buf.len() && buf == s.magic {
            return Ok(Some(format!("{} (signature at byte {})", s.name, s.offset)));
        }
    }
    for &off in LUKS2_SECONDARY_OFFSETS {
        let mut buf = [0u8; 6];
        if read_at(f, off, &mut buf)? == 6 && &buf == LUKS2_SECONDARY_MAGIC {
            return Ok(Some(format!(
                "LUKS2 secondary header (signature at byte {off})"
            )));
        }
    }
    Ok(None)
}

/// The first non-zero byte in `[offset, offset + len)`, if any.
fn first_nonzero(f: &mut std::fs::File, offset: u64, len: u64) -> std::io::Result<Option<u64>> {
    let want = usize::try_from(len.min(BLANK_PROBE_LEN)).expect("at most 1 MiB");
    let mut buf = vec![0u8; want];
    let n = read_at(f, offset, &mut buf)?;
    Ok(buf[..n]
        .iter()
        .position(|&b| b != 0)
        .map(|p| offset + p as u64))
}

/// What makes `path` not blank, or `None` when its first and last MiB are
/// zeros. A known signature is named; any other data is reported by offset.
pub fn probe_foreign(path: &Path) -> std::io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    if let Some(found) = known_signature(&mut f, false)? {
        return Ok(Some(found));
    }
    let size = f.seek(SeekFrom::End(0))?;
    let tail = size.saturating_sub(BLANK_PROBE_LEN);
    let nonzero = match first_nonzero(&mut f, 0, BLANK_PROBE_LEN.min(size))? {
        Some(at) => Some(at),
        None => first_nonzero(&mut f, tail, size - tail)?,
    };
    Ok(nonzero.map(|at| format!("unrecognised data (a non-zero byte at offset {at})")))
}

/// The filesystem (or other known signature) on an opened volume's mapped
/// device, if any. A freshly opened volume reads as noise, not zeros, so
/// only signatures count here.
pub fn probe_filesystem(path: &Path) -> std::io::Result<Option<String>> {
    known_signature(&mut std::fs::File::open(path)?, true)
}

/// Whether `[offset, offset + len)` of `path` is all zeros.
pub fn is_zero(path: &Path, offset: u64, len: u64) -> std::io::Result<bool> {
    let mut f = std::fs::File::open(path)?;
    Ok(first_nonzero(&mut f, offset, len)?.is_none())
}
