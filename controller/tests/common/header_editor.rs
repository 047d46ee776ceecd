//! A small LUKS2 header editor for tests: rewrite one header copy (its JSON
//! text verbatim, so duplicate keys can be written; its seqid; where it
//! sits) and fix its checksum, the way an attacker with write access to a
//! disk would. Layout: magic[6] version[2] hdr_size[8] seqid[8] label[48]
//! csum_alg[32] salt[64] uuid[40] subsystem[48] hdr_offset[8] … csum[64]
//! at 448; the JSON area follows the 4096-byte binary header.

use sha2::Digest;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const PRIMARY_MAGIC: &[u8; 6] = b"LUKS\xba\xbe";
pub const SECONDARY_MAGIC: &[u8; 6] = b"SKUL\xba\xbe";

fn read_at(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut f = std::fs::File::open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    let mut b = vec![0u8; len];
    f.read_exact(&mut b).unwrap();
    b
}

fn write_at(path: &Path, off: u64, data: &[u8]) {
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(off)).unwrap();
    f.write_all(data).unwrap();
}

/// The size of one header copy (from the primary).
pub fn hdr_size(path: &Path) -> u64 {
    u64::from_be_bytes(read_at(path, 8, 8).try_into().unwrap())
}

/// The JSON text of the copy at `off`.
pub fn json_text(path: &Path, off: u64) -> String {
    let size = usize::try_from(hdr_size(path)).unwrap();
    let area = read_at(path, off + 4096, size - 4096);
    let end = area.iter().position(|&b| b == 0).unwrap();
    String::from_utf8(area[..end].to_vec()).unwrap()
}

/// The seqid of the copy at `off`.
pub fn seqid(path: &Path, off: u64) -> u64 {
    u64::from_be_bytes(read_at(path, off + 16, 8).try_into().unwrap())
}

/// Writes a header copy at `off`, `size` bytes long, with `magic`, `seqid`
/// and `json`; every other binary field is taken from the primary as it is
/// now. The checksum is made valid.
pub fn write_copy(path: &Path, off: u64, size: u64, magic: &[u8; 6], seqid: u64, json: &str) {
    let mut bin = read_at(path, 0, 4096);
    bin[..6].copy_from_slice(magic);
    bin[8..16].copy_from_slice(&size.to_be_bytes());
    bin[16..24].copy_from_slice(&seqid.to_be_bytes());
    bin[256..264].copy_from_slice(&off.to_be_bytes());
    let mut area = vec![0u8; usize::try_from(size).unwrap() - 4096];
    area[..json.len()].copy_from_slice(json.as_bytes());
    bin[448..512].fill(0);
    let mut h = sha2::Sha256::new();
    h.update(&bin);
    h.update(&area);
    bin[448..480].copy_from_slice(&h.finalize());
    write_at(path, off, &bin);
    write_at(path, off + 4096, &area);
}

/// Rewrites the copy at `off` in place with new JSON text and seqid.
pub fn rewrite(path: &Path, off: u64, seqid: u64, json: &str) {
    let size = hdr_size(path);
    let magic = if off == 0 {
        PRIMARY_MAGIC
    } else {
        SECONDARY_MAGIC
    };
    write_copy(path, off, size, magic, seqid, json);
}

/// The JSON of the copy at `off`, edited as a value.
pub fn edited(path: &Path, off: u64, edit: impl Fn(&mut serde_json::Value)) -> String {
    let mut v: serde_json::Value = serde_json::from_str(&json_text(path, off)).unwrap();
    edit(&mut v);
    serde_json::to_string(&v).unwrap()
}

/// Flips one byte of the JSON area of the copy at `off` (its checksum then
/// fails: a damaged copy).
pub fn damage(path: &Path, off: u64) {
    let b = read_at(path, off + 4096 + 10, 1);
    write_at(path, off + 4096 + 10, &[b[0] ^ 0xff]);
}

/// Zeroes the magic of the copy at `off`.
pub fn wipe_magic(path: &Path, off: u64) {
    write_at(path, off, &[0u8; 6]);
}
