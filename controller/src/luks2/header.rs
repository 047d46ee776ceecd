//! Reads LUKS2 metadata straight from the device, without libcryptsetup
//! and without any KDF: the binary header, its checksum, and the JSON area
//! (keyslots, tokens, segments, digests). Both header copies are checked
//! and the valid one with the highest sequence id wins, as libcryptsetup does.

use crate::luks2::consts::{
    LUKS2_BINARY_HEADER_SIZE, LUKS2_SECONDARY_MAGIC, LUKS2_SECONDARY_OFFSETS, LUKS_MAGIC,
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Why a header could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// I/O failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Device path.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A LUKS magic is there but no copy of the header is intact.
    #[error("LUKS2 header on {path} is damaged: {reason}")]
    Damaged {
        /// Device path.
        path: String,
        /// What failed.
        reason: String,
    },
    /// A LUKS1 header (volctl manages LUKS2 only).
    #[error("{path} holds a LUKS1 header; volctl manages LUKS2 only (convert it with `cryptsetup convert --type luks2`)")]
    Luks1 {
        /// Device path.
        path: String,
    },
}

/// The parts of LUKS2 metadata volctl looks at.
#[derive(Debug, Clone)]
pub struct Luks2Header {
    /// Sequence id: bumped by every metadata write.
    pub seqid: u64,
    /// Header UUID.
    pub uuid: String,
    /// Header label.
    pub label: String,
    /// Size of one header copy (binary + JSON), in bytes.
    pub header_size: u64,
    /// The JSON metadata.
    pub json: Luks2Json,
}

/// LUKS2 JSON metadata, as far as volctl reads it.
#[derive(Debug, Clone, Deserialize)]
pub struct Luks2Json {
    /// Keyslots by number.
    pub keyslots: BTreeMap<String, Keyslot>,
    /// Tokens by id (raw JSON: types other than ours are kept as they are).
    #[serde(default)]
    pub tokens: BTreeMap<String, serde_json::Value>,
    /// Segments by id.
    pub segments: BTreeMap<String, Segment>,
    /// Digests by id.
    pub digests: BTreeMap<String, DigestEntry>,
    /// Config section.
    #[serde(default)]
    pub config: serde_json::Value,
}

/// A keyslot.
#[derive(Debug, Clone, Deserialize)]
pub struct Keyslot {
    /// `luks2` for ordinary keyslots.
    #[serde(rename = "type")]
    pub kind: String,
    /// Size of the key it stores (the volume key), bytes.
    pub key_size: u32,
    /// Anti-forensic splitter.
    pub af: serde_json::Value,
    /// Key material area.
    pub area: serde_json::Value,
    /// Key derivation.
    pub kdf: Kdf,
}

/// A keyslot's KDF parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Kdf {
    /// `argon2id`, `argon2i` or `pbkdf2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// argon2 time cost.
    #[serde(default)]
    pub time: Option<u32>,
    /// argon2 memory, KiB.
    #[serde(default)]
    pub memory: Option<u32>,
    /// argon2 threads.
    #[serde(default)]
    pub cpus: Option<u32>,
    /// pbkdf2 iterations.
    #[serde(default)]
    pub iterations: Option<u32>,
    /// pbkdf2 hash.
    #[serde(default)]
    pub hash: Option<String>,
}

/// A segment.
#[derive(Debug, Clone, Deserialize)]
pub struct Segment {
    /// `crypt` for the data segment.
    #[serde(rename = "type")]
    pub kind: String,
    /// Cipher spec, e.g. `aes-xts-plain64`.
    #[serde(default)]
    pub encryption: Option<String>,
    /// Sector size.
    #[serde(default)]
    pub sector_size: Option<u32>,
    /// Offset of the data, bytes (as a string in LUKS2 JSON).
    pub offset: String,
    /// Segment flags (e.g. reencryption markers).
    #[serde(default)]
    pub flags: Vec<String>,
}

/// A digest (of the volume key).
#[derive(Debug, Clone, Deserialize)]
pub struct DigestEntry {
    /// `pbkdf2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Keyslots whose key this digest verifies.
    pub keyslots: Vec<String>,
    /// Segments this digest applies to.
    pub segments: Vec<String>,
    /// The digest value (base64); changes only if the volume key changes.
    pub digest: String,
}

impl Luks2Header {
    /// Numbers of the active keyslots.
    pub fn keyslot_numbers(&self) -> Vec<u32> {
        self.json
            .keyslots
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect()
    }

    /// A keyslot by number.
    pub fn keyslot(&self, n: u32) -> Option<&Keyslot> {
        self.json.keyslots.get(&n.to_string())
    }

    /// Tokens by numeric id.
    pub fn tokens(&self) -> impl Iterator<Item = (u32, &serde_json::Value)> {
        self.json
            .tokens
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, v)))
    }
}

/// What the first bytes of a device say about LUKS.
#[derive(Debug)]
pub enum Probe {
    /// No LUKS magic anywhere we look.
    None,
    /// A LUKS2 header was read.
    Luks2(Box<Luks2Header>),
}

/// Reads the LUKS2 header of `path`, if there is one.
pub fn read(path: &Path) -> Result<Probe, HeaderError> {
    let io = |source| HeaderError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = File::open(path).map_err(io)?;
    let mut first = vec![0u8; LUKS2_BINARY_HEADER_SIZE];
    let n = read_at(&mut f, 0, &mut first).map_err(io)?;
    first.truncate(n);
    let primary_magic = first.len() >= 8 && &first[..6] == LUKS_MAGIC;
    if primary_magic && u16::from_be_bytes([first[6], first[7]]) == 1 {
        return Err(HeaderError::Luks1 {
            path: path.display().to_string(),
        });
    }
    let mut candidates = Vec::new();
    let mut failures = Vec::new();
    let mut any_magic = primary_magic;
    if primary_magic {
        match read_copy(&mut f, 0, LUKS_MAGIC) {
            Ok(h) => candidates.push(h),
            Err(e) => failures.push(format!("primary: {e}")),
        }
    }
    // The secondary sits right after the primary; if the primary is gone,
    // look at every offset LUKS2 allows.
    let offsets: Vec<u64> = match candidates.first() {
        Some(h) => vec![h.header_size],
        None => LUKS2_SECONDARY_OFFSETS.to_vec(),
    };
    for off in offsets {
        let mut magic = [0u8; 6];
        if read_at(&mut f, off, &mut magic).map_err(io)? == 6 && &magic == LUKS2_SECONDARY_MAGIC {
            any_magic = true;
            match read_copy(&mut f, off, LUKS2_SECONDARY_MAGIC) {
                Ok(h) => candidates.push(h),
                Err(e) => failures.push(format!("secondary at {off}: {e}")),
            }
        }
    }
    if !any_magic {
        return Ok(Probe::None);
    }
    candidates
        .into_iter()
        .max_by_key(|h| h.seqid)
        .map(|h| Probe::Luks2(Box::new(h)))
        .ok_or_else(|| HeaderError::Damaged {
            path: path.display().to_string(),
            reason: failures.join("; "),
        })
}

fn read_at(f: &mut File, off: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    f.seek(SeekFrom::Start(off))?;
    let mut done = 0;
    while done < buf.len() {
        match f.read(&mut buf[done..])? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn be64(b: &[u8]) -> u64 {
    u64::from_be_bytes(b[..8].try_into().expect("8 bytes"))
}

/// Reads and verifies one header copy at `off`.
fn read_copy(f: &mut File, off: u64, magic: &[u8; 6]) -> Result<Luks2Header, String> {
    let mut bin = vec![0u8; LUKS2_BINARY_HEADER_SIZE];
    if read_at(f, off, &mut bin).map_err(|e| e.to_string())? != bin.len() {
        return Err("truncated binary header".into());
    }
    if &bin[..6] != magic {
        return Err("bad magic".into());
    }
    let version = u16::from_be_bytes([bin[6], bin[7]]);
    if version != 2 {
        return Err(format!("version {version}"));
    }
    let hdr_size = be64(&bin[8..]);
    if !LUKS2_SECONDARY_OFFSETS.contains(&hdr_size) {
        return Err(format!("invalid header size {hdr_size}"));
    }
    let hdr_offset = be64(&bin[256..]);
    if hdr_offset != off {
        return Err(format!("header says offset {hdr_offset}, found at {off}"));
    }
    let alg = cstr(&bin[72..104]);
    if alg != "sha256" {
        return Err(format!("unsupported checksum algorithm `{alg}`"));
    }
    let mut json_area = vec![0u8; hdr_size as usize - LUKS2_BINARY_HEADER_SIZE];
    if read_at(f, off + LUKS2_BINARY_HEADER_SIZE as u64, &mut json_area)
        .map_err(|e| e.to_string())?
        != json_area.len()
    {
        return Err("truncated JSON area".into());
    }
    let stored = bin[448..448 + 32].to_vec();
    let mut zeroed = bin.clone();
    zeroed[448..448 + 64].fill(0);
    let mut h = Sha256::new();
    h.update(&zeroed);
    h.update(&json_area);
    if h.finalize().as_slice() != stored.as_slice() {
        return Err("checksum mismatch".into());
    }
    let json_text = cstr(&json_area);
    let json: Luks2Json = serde_json::from_str(&json_text).map_err(|e| format!("JSON: {e}"))?;
    Ok(Luks2Header {
        seqid: be64(&bin[16..]),
        label: cstr(&bin[24..72]),
        uuid: cstr(&bin[168..208]),
        header_size: hdr_size,
        json,
    })
}
