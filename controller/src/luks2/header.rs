//! Reads LUKS2 metadata straight from the device, without libcryptsetup
//! and without any KDF: the binary header, its checksum, and the JSON area
//! (keyslots, tokens, segments, digests). Both copies are read and chosen
//! between by libcryptsetup's own rule; copies that disagree in anything
//! but seqid-ordered history are refused. The model it reads into is
//! `model.rs` (re-exported here).

pub use super::model::*;
use super::strict_json;
use crate::io::read_at;
use crate::luks2::consts::{
    LUKS2_BINARY_HEADER_SIZE, LUKS2_MAX_HEADER_SIZE, LUKS2_SECONDARY_MAGIC,
    LUKS2_SECONDARY_OFFSETS, LUKS_MAGIC,
};
use sha2::{Digest, Sha256};
use std::fs::File;
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
    /// The two copies, or two parsers, disagree: refused, whatever either says.
    #[error("refusing the LUKS2 header on {path}: {reason}; it may have been tampered with")]
    Inconsistent {
        /// Device path.
        path: String,
        /// What disagrees.
        reason: String,
    },
    /// A LUKS1 header (volctl manages LUKS2 only).
    #[error("{path} holds a LUKS1 header; volctl manages LUKS2 only (convert it with `cryptsetup convert --type luks2`)")]
    Luks1 {
        /// Device path.
        path: String,
    },
}

/// What the first bytes of a device say about LUKS.
#[derive(Debug)]
pub enum Probe {
    /// No LUKS magic anywhere we look.
    None,
    /// A LUKS2 header was read.
    Luks2(Box<Luks2Header>),
}

/// One header copy as found on disk.
#[derive(Debug, Clone)]
pub enum CopyRead {
    /// No magic at the place looked at.
    Absent,
    /// A magic, but the copy is not intact (checksum, size, version).
    Invalid(CopyDefect),
    /// An intact copy (checksum verified).
    Valid(Box<HeaderCopy>),
}

impl CopyRead {
    /// Whether a magic was found there.
    pub fn present(&self) -> bool {
        !matches!(self, CopyRead::Absent)
    }
}

/// Why a header copy with a magic is not intact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyDefect {
    /// Shorter than a binary header.
    #[error("truncated binary header")]
    TruncatedBinary,
    /// Not LUKS2.
    #[error("version {0}")]
    Version(u16),
    /// A header size LUKS2 does not allow.
    #[error("invalid header size {0}")]
    HeaderSize(u64),
    /// The copy names another offset than where it was found.
    #[error("header says offset {said}, found at {found}")]
    Offset {
        /// The offset it states.
        said: u64,
        /// Where it is.
        found: u64,
    },
    /// A checksum other than sha256.
    #[error("unsupported checksum algorithm `{0}`")]
    ChecksumAlgorithm(String),
    /// The JSON area runs past the device's end.
    #[error("truncated JSON area")]
    TruncatedJson,
    /// The checksum does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// A secondary copy's defect, at the offset searched.
    #[error("at {at}: {defect}")]
    At {
        /// The offset.
        at: u64,
        /// Its defect.
        defect: Box<CopyDefect>,
    },
}

/// An intact header copy: its binary header fields and its JSON.
#[derive(Debug, Clone)]
pub struct HeaderCopy {
    /// Where it starts on the device.
    pub offset: u64,
    /// Sequence id.
    pub seqid: u64,
    /// Header UUID.
    pub uuid: String,
    /// Header label.
    pub label: String,
    /// Header subsystem (`volctl` on volumes volctl formats).
    pub subsystem: String,
    /// Size of the copy (binary + JSON area).
    pub header_size: u64,
    /// The JSON area, parsed strictly (duplicate keys refused), or why not.
    pub json: Result<serde_json::Value, JsonError>,
}

/// Both copies of a LUKS2 header, as found on disk.
#[derive(Debug, Clone)]
pub struct RawHeader {
    /// The copy at offset 0.
    pub primary: CopyRead,
    /// The secondary copy: right after an intact primary, else the first
    /// intact one at the offsets LUKS2 allows (libcryptsetup's search).
    pub secondary: CopyRead,
}

/// Reads both header copies of `path`; `None` when no LUKS magic is there.
pub fn read_raw(path: &Path) -> Result<Option<RawHeader>, HeaderError> {
    read_raw_as(path, path)
}

/// Reads both header copies from `copy` (a snapshot of the header area of
/// the device at `path`), naming `path` in errors.
pub fn read_raw_as(copy: &Path, path: &Path) -> Result<Option<RawHeader>, HeaderError> {
    let io = |source| HeaderError::Io {
        path: path.display().to_string(),
        source,
    };
    let f = File::open(copy).map_err(io)?;
    let mut first = [0u8; 8];
    let n = read_at(&f, 0, &mut first).map_err(io)?;
    let primary_magic = n == 8 && &first[..6] == LUKS_MAGIC;
    if primary_magic && u16::from_be_bytes([first[6], first[7]]) == 1 {
        return Err(HeaderError::Luks1 {
            path: path.display().to_string(),
        });
    }
    let primary = if primary_magic {
        read_copy(&f, 0, LUKS_MAGIC).map_err(io)?
    } else {
        CopyRead::Absent
    };
    let secondary = match &primary {
        // libcryptsetup reads the secondary right after a primary whose
        // binary header it could read, and searches every offset otherwise.
        CopyRead::Valid(h) => read_copy(&f, h.header_size, LUKS2_SECONDARY_MAGIC).map_err(io)?,
        _ => first_secondary(&f).map_err(io)?,
    };
    if matches!((&primary, &secondary), (CopyRead::Absent, CopyRead::Absent)) {
        return Ok(None);
    }
    Ok(Some(RawHeader { primary, secondary }))
}

/// The first intact secondary copy in offset order (or the last failure).
fn first_secondary(f: &File) -> std::io::Result<CopyRead> {
    let mut last = CopyRead::Absent;
    for &off in LUKS2_SECONDARY_OFFSETS {
        match read_copy(f, off, LUKS2_SECONDARY_MAGIC)? {
            CopyRead::Valid(h) => return Ok(CopyRead::Valid(h)),
            CopyRead::Invalid(e) => {
                last = CopyRead::Invalid(CopyDefect::At {
                    at: off,
                    defect: Box::new(e),
                })
            }
            CopyRead::Absent => {}
        }
    }
    Ok(last)
}

impl RawHeader {
    /// The copy libcryptsetup loads, after refusing copies that disagree in
    /// anything but seqid-ordered history: the intact copy with the higher
    /// seqid, the primary on a tie. A copy whose checksum is valid but whose
    /// JSON is malformed (or has duplicate keys) is never an interrupted
    /// write, so it is refused too.
    pub fn select(self, path: &Path) -> Result<Luks2Header, HeaderError> {
        let path_s = path.display().to_string();
        let refuse = |reason: String| HeaderError::Inconsistent {
            path: path_s.clone(),
            reason,
        };
        let copies: Vec<(&str, &HeaderCopy)> =
            [("primary", &self.primary), ("secondary", &self.secondary)]
                .into_iter()
                .filter_map(|(n, c)| match c {
                    CopyRead::Valid(h) => Some((n, h.as_ref())),
                    _ => None,
                })
                .collect();
        for (name, c) in &copies {
            if let Err(e) = &c.json {
                return Err(refuse(format!("the {name} copy's JSON is malformed ({e})")));
            }
        }
        let chosen = match copies.as_slice() {
            [] => {
                return Err(HeaderError::Damaged {
                    path: path_s,
                    reason: [&self.primary, &self.secondary]
                        .iter()
                        .filter_map(|c| match c {
                            CopyRead::Invalid(e) => Some(e.to_string()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join("; "),
                })
            }
            [(_, one)] => *one,
            [(_, p), (_, s)] => {
                if p.seqid == s.seqid && !same_content(p, s) {
                    return Err(refuse(format!(
                        "both copies have seqid {} but different contents",
                        p.seqid
                    )));
                }
                if s.seqid > p.seqid {
                    *s
                } else {
                    *p
                }
            }
            _ => unreachable!("two copies at most"),
        };
        chosen.to_header().map_err(|e| refuse(format!("JSON: {e}")))
    }
}

fn same_content(a: &HeaderCopy, b: &HeaderCopy) -> bool {
    a.json.as_ref().ok() == b.json.as_ref().ok()
        && a.uuid == b.uuid
        && a.label == b.label
        && a.header_size == b.header_size
}

impl HeaderCopy {
    fn to_header(&self) -> Result<Luks2Header, JsonError> {
        let value = self.json.clone()?;
        let mut h = Luks2Header::from_json(self.seqid, value)?;
        h.uuid.clone_from(&self.uuid);
        h.label.clone_from(&self.label);
        h.subsystem.clone_from(&self.subsystem);
        h.header_size = self.header_size;
        Ok(h)
    }
}

/// Reads the LUKS2 header of `path` the way libcryptsetup picks it, refusing
/// copies that disagree. Devices read headers through
/// `LuksDevice::header` (in `device`), which also checks that
/// libcryptsetup loaded this same JSON.
pub fn read(path: &Path) -> Result<Probe, HeaderError> {
    match read_raw(path)? {
        None => Ok(Probe::None),
        Some(raw) => Ok(Probe::Luks2(Box::new(raw.select(path)?))),
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

/// Reads one header copy at `off`: absent (no magic), invalid, or intact.
fn read_copy(f: &File, off: u64, magic: &[u8; 6]) -> std::io::Result<CopyRead> {
    let mut bin = vec![0u8; LUKS2_BINARY_HEADER_SIZE];
    let n = read_at(f, off, &mut bin)?;
    if n < 6 || &bin[..6] != magic {
        return Ok(CopyRead::Absent);
    }
    if n != bin.len() {
        return Ok(CopyRead::Invalid(CopyDefect::TruncatedBinary));
    }
    Ok(match verify_copy(f, off, &bin)? {
        Ok(c) => CopyRead::Valid(Box::new(c)),
        Err(e) => CopyRead::Invalid(e),
    })
}

/// How many bytes from the start of `path` hold both metadata copies: twice
/// the header size the primary's binary header gives, or, without a
/// readable one, every offset a secondary copy may be at.
pub fn metadata_span(path: &Path) -> std::io::Result<u64> {
    let f = File::open(path)?;
    let mut bin = [0u8; 16];
    let n = read_at(&f, 0, &mut bin)?;
    let size = be64(&bin[8..]);
    Ok(
        if n == bin.len() && &bin[..6] == LUKS_MAGIC && LUKS2_SECONDARY_OFFSETS.contains(&size) {
            2 * size
        } else {
            2 * LUKS2_MAX_HEADER_SIZE
        },
    )
}

/// Checks version, size, offset and checksum of the copy whose binary
/// header is `bin`; parses its JSON strictly.
fn verify_copy(f: &File, off: u64, bin: &[u8]) -> std::io::Result<Result<HeaderCopy, CopyDefect>> {
    let version = u16::from_be_bytes([bin[6], bin[7]]);
    if version != 2 {
        return Ok(Err(CopyDefect::Version(version)));
    }
    let hdr_size = be64(&bin[8..]);
    if !LUKS2_SECONDARY_OFFSETS.contains(&hdr_size) {
        return Ok(Err(CopyDefect::HeaderSize(hdr_size)));
    }
    let hdr_offset = be64(&bin[256..]);
    if hdr_offset != off {
        return Ok(Err(CopyDefect::Offset {
            said: hdr_offset,
            found: off,
        }));
    }
    let alg = cstr(&bin[72..104]);
    if alg != "sha256" {
        return Ok(Err(CopyDefect::ChecksumAlgorithm(alg)));
    }
    let area_len = usize::try_from(hdr_size).unwrap_or(usize::MAX) - LUKS2_BINARY_HEADER_SIZE;
    let mut json_area = vec![0u8; area_len];
    if read_at(f, off + LUKS2_BINARY_HEADER_SIZE as u64, &mut json_area)? != json_area.len() {
        return Ok(Err(CopyDefect::TruncatedJson));
    }
    let mut zeroed = bin.to_vec();
    zeroed[448..448 + 64].fill(0);
    let mut h = Sha256::new();
    h.update(&zeroed);
    h.update(&json_area);
    if h.finalize().as_slice() != &bin[448..448 + 32] {
        return Ok(Err(CopyDefect::Checksum));
    }
    Ok(Ok(HeaderCopy {
        offset: off,
        seqid: be64(&bin[16..]),
        label: cstr(&bin[24..72]),
        uuid: cstr(&bin[168..208]),
        subsystem: cstr(&bin[208..256]),
        header_size: hdr_size,
        json: strict_json::parse(&cstr(&json_area)).map_err(JsonError::new),
    }))
}
