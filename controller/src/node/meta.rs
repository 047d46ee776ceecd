//! The META store: a small unencrypted partition holding what must be known
//! before STATE opens (STATE's encryption config). Talos ADV layout: two
//! identical 256 KiB copies; each copy is
//!
//! ```text
//! 0        magic1 0x5a4b3c2d (u32, big-endian)
//! 4        records: tag u32 BE, size u32 BE, value; tag 0 ends the list
//! SIZE-36  SHA-256 of the copy, computed with these 32 bytes zeroed
//! SIZE-4   magic2 0xa5b4c3d2
//! ```
//!
//! Reads take the first valid copy. Writes write and sync copy 1, then copy
//! 2, so a torn write leaves one intact copy (old or new) to read.

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Size of one copy.
pub const COPY_SIZE: usize = 256 * 1024;
/// Magic at the start of a copy.
pub const MAGIC1: u32 = 0x5a4b3c2d;
/// Magic at the end of a copy.
pub const MAGIC2: u32 = 0xa5b4c3d2;
/// Tag holding STATE's encryption config as JSON (Talos uses the same tag).
pub const TAG_STATE_ENCRYPTION: u32 = 9;
/// volctl's own tag: wipes a `reset --reboot` could not do on the running
/// node (the volume was in use), done by the next boot before anything
/// opens (`fast:EPHEMERAL,STATE`).
pub const TAG_PENDING_WIPE: u32 = 0xc0;
const CHECKSUM_AT: usize = COPY_SIZE - 36;
const RECORDS_END: usize = CHECKSUM_AT;

/// Why META could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// I/O failed.
    #[error("META on {path}: {source}")]
    Io {
        /// Device.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// Both copies are damaged.
    #[error("META on {path} is damaged: copy 1: {first}; copy 2: {second}")]
    Corrupt {
        /// Device.
        path: String,
        /// What is wrong with copy 1.
        first: CopyDamage,
        /// What is wrong with copy 2.
        second: CopyDamage,
    },
    /// The records do not fit.
    #[error("META records take {need} bytes; a copy holds {COPY_SIZE}")]
    Full {
        /// Bytes needed.
        need: usize,
    },
    /// Tag 0 is reserved.
    #[error("tag 0 is reserved (it ends the record list)")]
    ReservedTag,
}

/// What is wrong with one copy of META.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyDamage {
    /// Shorter than a copy (the partition is too small).
    #[error("truncated ({0} of {COPY_SIZE} bytes)")]
    Truncated(usize),
    /// The first magic number is not there.
    #[error("no start magic")]
    NoStartMagic,
    /// The last magic number is not there.
    #[error("no end magic")]
    NoEndMagic,
    /// The checksum does not match the contents.
    #[error("checksum mismatch")]
    Checksum,
    /// A record's length runs past the records' area.
    #[error("record {0} runs past the end")]
    RecordPastEnd(u32),
    /// The copy is not there at all.
    #[error("missing")]
    Missing,
}

/// META's records by tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// Records.
    pub records: BTreeMap<u32, Vec<u8>>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> MetaError + '_ {
    move |source| MetaError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Reads META from the partition (or file) at `path`. A META that was never
/// written (no magic in either copy) reads as empty.
pub fn read(path: &Path) -> Result<Meta, MetaError> {
    let mut f = std::fs::File::open(path).map_err(io(path))?;
    let mut copies = Vec::new();
    for i in 0..2 {
        let mut buf = vec![0u8; COPY_SIZE];
        f.seek(SeekFrom::Start((i * COPY_SIZE) as u64))
            .map_err(io(path))?;
        let mut got = 0;
        while got < COPY_SIZE {
            match f.read(&mut buf[got..]).map_err(io(path))? {
                0 => break,
                n => got += n,
            }
        }
        buf.truncate(got);
        copies.push(buf);
    }
    let results: Vec<Result<Meta, CopyDamage>> = copies.iter().map(|c| decode(c)).collect();
    if let Some(m) = results.iter().flatten().next() {
        return Ok(m.clone());
    }
    let never_written = copies
        .iter()
        .all(|c| c.len() < 4 || c[..4] != MAGIC1.to_be_bytes());
    if never_written {
        return Ok(Meta::default());
    }
    let mut errs = results.into_iter().filter_map(Result::err);
    Err(MetaError::Corrupt {
        path: path.display().to_string(),
        first: errs.next().unwrap_or(CopyDamage::Missing),
        second: errs.next().unwrap_or(CopyDamage::Missing),
    })
}

fn decode(c: &[u8]) -> Result<Meta, CopyDamage> {
    if c.len() < COPY_SIZE {
        return Err(CopyDamage::Truncated(c.len()));
    }
    if c[..4] != MAGIC1.to_be_bytes() {
        return Err(CopyDamage::NoStartMagic);
    }
    if c[COPY_SIZE - 4..] != MAGIC2.to_be_bytes() {
        return Err(CopyDamage::NoEndMagic);
    }
    let mut zeroed = c.to_vec();
    zeroed[CHECKSUM_AT..CHECKSUM_AT + 32].fill(0);
    if Sha256::digest(&zeroed).as_slice() != &c[CHECKSUM_AT..CHECKSUM_AT + 32] {
        return Err(CopyDamage::Checksum);
    }
    let mut m = Meta::default();
    let mut at = 4;
    while at + 8 <= RECORDS_END {
        let tag = u32::from_be_bytes(c[at..at + 4].try_into().expect("4 bytes"));
        if tag == 0 {
            break;
        }
        let size = u32::from_be_bytes(c[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let start = at + 8;
        if start + size > RECORDS_END {
            return Err(CopyDamage::RecordPastEnd(tag));
        }
        m.records.insert(tag, c[start..start + size].to_vec());
        at = start + size;
    }
    Ok(m)
}

fn encode(m: &Meta) -> Result<Vec<u8>, MetaError> {
    let mut c = vec![0u8; COPY_SIZE];
    c[..4].copy_from_slice(&MAGIC1.to_be_bytes());
    let mut at = 4;
    for (tag, value) in &m.records {
        if *tag == 0 {
            return Err(MetaError::ReservedTag);
        }
        let end = at + 8 + value.len();
        if end + 8 > RECORDS_END {
            return Err(MetaError::Full { need: end + 8 });
        }
        c[at..at + 4].copy_from_slice(&tag.to_be_bytes());
        let len =
            u32::try_from(value.len()).expect("a record fits in one 256 KiB copy (checked above)");
        c[at + 4..at + 8].copy_from_slice(&len.to_be_bytes());
        c[at + 8..end].copy_from_slice(value);
        at = end;
    }
    c[COPY_SIZE - 4..].copy_from_slice(&MAGIC2.to_be_bytes());
    let sum = Sha256::digest(&c);
    c[CHECKSUM_AT..CHECKSUM_AT + 32].copy_from_slice(&sum);
    Ok(c)
}

/// Writes `m` to both copies, syncing after each.
pub fn write(path: &Path, m: &Meta) -> Result<(), MetaError> {
    let c = encode(m)?;
    let mut f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    for i in 0..2 {
        f.seek(SeekFrom::Start((i * COPY_SIZE) as u64))
            .map_err(io(path))?;
        f.write_all(&c).map_err(io(path))?;
        f.sync_all().map_err(io(path))?;
    }
    Ok(())
}

/// Mirrors STATE's encryption config (JSON, tag 9) to META; writes only when
/// it differs from what META holds. Returns whether it wrote.
pub fn mirror_state_encryption(
    path: &Path,
    want: Option<&api_types::Encryption>,
) -> Result<bool, MetaError> {
    match state_encryption_change(&read(path)?, want) {
        None => Ok(false),
        Some(value) => update(path, TAG_STATE_ENCRYPTION, value).map(|()| true),
    }
}

/// The record META must get so that it holds `want` as STATE's encryption
/// config (`Some(None)`: delete it); `None` when it holds it already.
pub fn state_encryption_change(
    m: &Meta,
    want: Option<&api_types::Encryption>,
) -> Option<Option<Vec<u8>>> {
    let value = want.map(|e| serde_json::to_vec(e).expect("encryption serialises"));
    (m.records.get(&TAG_STATE_ENCRYPTION) != value.as_ref()).then_some(value)
}

/// Sets (or, with `None`, deletes) one record; other records are kept.
pub fn update(path: &Path, tag: u32, value: Option<Vec<u8>>) -> Result<(), MetaError> {
    let mut m = read(path)?;
    m.set(tag, value);
    write(path, &m)
}

impl Meta {
    /// Sets (or, with `None`, deletes) one record.
    pub fn set(&mut self, tag: u32, value: Option<Vec<u8>>) {
        match value {
            Some(v) => self.records.insert(tag, v),
            None => self.records.remove(&tag),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("meta");
        std::fs::File::create(&p).unwrap().set_len(1 << 20).unwrap();
        (d, p)
    }

    #[test]
    fn round_trip_and_fresh_meta_is_empty() {
        let (_d, p) = file();
        assert_eq!(read(&p).unwrap(), Meta::default());
        update(&p, TAG_STATE_ENCRYPTION, Some(b"{\"keys\":[]}".to_vec())).unwrap();
        update(&p, 12, Some(vec![1, 2, 3])).unwrap();
        let m = read(&p).unwrap();
        assert_eq!(m.records[&TAG_STATE_ENCRYPTION], b"{\"keys\":[]}");
        assert_eq!(m.records[&12], vec![1, 2, 3]);
        update(&p, 12, None).unwrap();
        assert_eq!(read(&p).unwrap().records.len(), 1);
        // Byte layout: magics where the format says.
        let raw = std::fs::read(&p).unwrap();
        assert_eq!(raw[..4], MAGIC1.to_be_bytes());
        assert_eq!(raw[COPY_SIZE - 4..COPY_SIZE], MAGIC2.to_be_bytes());
        assert_eq!(raw[..COPY_SIZE], raw[COPY_SIZE..2 * COPY_SIZE]);
    }

    #[test]
    fn one_corrupt_copy_still_reads_the_other() {
        let (_d, p) = file();
        update(&p, TAG_STATE_ENCRYPTION, Some(b"state".to_vec())).unwrap();
        let good = std::fs::read(&p).unwrap();
        // Bit flip in copy 1.
        let mut raw = good.clone();
        raw[10] ^= 0x01;
        std::fs::write(&p, &raw).unwrap();
        assert_eq!(read(&p).unwrap().records[&TAG_STATE_ENCRYPTION], b"state");
        // Copy 2 damaged instead (torn write: second half zeroed).
        let mut raw = good.clone();
        raw[COPY_SIZE + COPY_SIZE / 2..2 * COPY_SIZE].fill(0);
        std::fs::write(&p, &raw).unwrap();
        assert_eq!(read(&p).unwrap().records[&TAG_STATE_ENCRYPTION], b"state");
        // Truncated device: only copy 1 present.
        std::fs::write(&p, &good[..COPY_SIZE + 100]).unwrap();
        assert_eq!(read(&p).unwrap().records[&TAG_STATE_ENCRYPTION], b"state");
    }

    #[test]
    fn both_copies_corrupt_is_a_clear_error() {
        let (_d, p) = file();
        update(&p, TAG_STATE_ENCRYPTION, Some(b"state".to_vec())).unwrap();
        let mut raw = std::fs::read(&p).unwrap();
        raw[10] ^= 0x01;
        raw[COPY_SIZE + 10] ^= 0x01;
        std::fs::write(&p, &raw).unwrap();
        let e = read(&p).unwrap_err().to_string();
        assert!(
            e.contains("damaged") && e.contains("checksum mismatch"),
            "{e}"
        );
    }

    #[test]
    fn mirroring_state_encryption_writes_only_changes() {
        let (_d, p) = file();
        update(&p, 12, Some(vec![7])).unwrap();
        let enc: api_types::Encryption =
            serde_json::from_str(r#"{"keys":[{"slot":0,"nodeID":{}}]}"#).unwrap();
        assert!(mirror_state_encryption(&p, Some(&enc)).unwrap());
        assert!(
            !mirror_state_encryption(&p, Some(&enc)).unwrap(),
            "unchanged: no write"
        );
        let m = read(&p).unwrap();
        let back: api_types::Encryption =
            serde_json::from_slice(&m.records[&TAG_STATE_ENCRYPTION]).unwrap();
        assert_eq!(back, enc);
        assert_eq!(m.records[&12], vec![7], "other records are kept");
        assert!(mirror_state_encryption(&p, None).unwrap());
        assert!(!read(&p)
            .unwrap()
            .records
            .contains_key(&TAG_STATE_ENCRYPTION));
    }

    #[test]
    fn oversized_records_are_refused() {
        let (_d, p) = file();
        let e = update(&p, 5, Some(vec![0; COPY_SIZE])).unwrap_err();
        assert!(matches!(e, MetaError::Full { .. }));
        assert!(matches!(
            update(&p, 0, Some(vec![1])),
            Err(MetaError::ReservedTag)
        ));
    }
}
