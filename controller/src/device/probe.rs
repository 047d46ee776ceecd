//! Is a device blank? volctl formats only a device with no LUKS header and
//! no filesystem or partition-table signature: it never destroys data that
//! the user did not ask to wipe.

use crate::luks2::consts::{LUKS2_SECONDARY_MAGIC, LUKS2_SECONDARY_OFFSETS, LUKS_MAGIC};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// A signature: what it is, where it sits, the bytes.
struct Sig {
    name: &'static str,
    offset: u64,
    magic: &'static [u8],
}

/// Signatures of things that hold data (as wipefs/blkid know them).
const SIGNATURES: &[Sig] = &[
    Sig {
        name: "LUKS header",
        offset: 0,
        magic: LUKS_MAGIC,
    },
    Sig {
        name: "ext2/3/4 filesystem",
        offset: 1080,
        magic: &[0x53, 0xef],
    },
    Sig {
        name: "XFS filesystem",
        offset: 0,
        magic: b"XFSB",
    },
    Sig {
        name: "btrfs filesystem",
        offset: 65600,
        magic: b"_BHRfS_M",
    },
    Sig {
        name: "squashfs filesystem",
        offset: 0,
        magic: b"hsqs",
    },
    Sig {
        name: "vfat filesystem",
        offset: 82,
        magic: b"FAT32   ",
    },
    Sig {
        name: "vfat filesystem",
        offset: 54,
        magic: b"FAT16   ",
    },
    Sig {
        name: "vfat filesystem",
        offset: 54,
        magic: b"FAT12   ",
    },
    Sig {
        name: "ISO 9660 filesystem",
        offset: 32769,
        magic: b"CD001",
    },
    Sig {
        name: "GPT partition table",
        offset: 512,
        magic: b"EFI PART",
    },
    Sig {
        name: "swap space",
        offset: 4086,
        magic: b"SWAPSPACE2",
    },
    Sig {
        name: "swap space",
        offset: 4086,
        magic: b"SWAP-SPACE",
    },
    Sig {
        name: "F2FS filesystem",
        offset: 1024,
        magic: &[0x10, 0x20, 0xf5, 0xf2],
    },
    Sig {
        name: "bcache device",
        offset: 4120,
        magic: &[
            0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba,
            0x6d, 0x81,
        ],
    },
    Sig {
        name: "LVM2 physical volume",
        offset: 536,
        magic: b"LVM2 001",
    },
];

/// The first signature found on `path`, or `None` when it is blank.
pub fn find_signature(path: &Path) -> std::io::Result<Option<String>> {
    let mut f = std::fs::File::open(path)?;
    let mut check = |name: &str, offset: u64, magic: &[u8]| -> std::io::Result<Option<String>> {
        let mut buf = vec![0u8; magic.len()];
        f.seek(SeekFrom::Start(offset))?;
        let mut got = 0;
        while got < buf.len() {
            match f.read(&mut buf[got..])? {
                0 => break,
                n => got += n,
            }
        }
        Ok((got == buf.len() && buf == magic)
            .then(|| format!("{name} (signature at byte {offset})")))
    };
    for s in SIGNATURES {
        if let Some(found) = check(s.name, s.offset, s.magic)? {
            return Ok(Some(found));
        }
    }
    for &off in LUKS2_SECONDARY_OFFSETS {
        if let Some(found) = check("LUKS2 secondary header", off, LUKS2_SECONDARY_MAGIC)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}
