//! The parts of LUKS2 metadata volctl looks at, as a model: the header's
//! binary fields and its JSON area (keyslots, tokens, segments, digests),
//! with the queries the planner and the checks ask of it. Reading it from
//! a device (both copies, libcryptsetup's choice) is `header.rs`.

use super::token::TokenId;
use api_types::KeyslotId;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The parts of LUKS2 metadata volctl looks at.
#[derive(Debug, Clone)]
pub struct Luks2Header {
    /// Sequence id: bumped by every metadata write.
    pub seqid: u64,
    /// Header UUID.
    pub uuid: String,
    /// Header label.
    pub label: String,
    /// Header subsystem (`volctl` on volumes volctl formats).
    pub subsystem: String,
    /// Size of one header copy (binary + JSON), in bytes.
    pub header_size: u64,
    /// The JSON metadata.
    pub json: Luks2Json,
    /// The same JSON, untyped (compared with what libcryptsetup loaded).
    pub raw_json: serde_json::Value,
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
    /// Anti-forensic splitter (absent on a `reencrypt` keyslot).
    #[serde(default)]
    pub af: serde_json::Value,
    /// Key material area.
    pub area: serde_json::Value,
    /// Key derivation (absent on a `reencrypt` keyslot).
    #[serde(default)]
    pub kdf: Kdf,
    /// A `reencrypt` keyslot's mode: `encrypt`, `reencrypt` or `decrypt`.
    #[serde(default)]
    pub mode: Option<String>,
    /// A `reencrypt` keyslot's direction: `forward` or `backward`.
    #[serde(default)]
    pub direction: Option<String>,
}

/// A keyslot's KDF parameters.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
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
    /// Salt, base64.
    #[serde(default)]
    pub salt: Option<String>,
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
    /// Size in bytes (a string number), or `dynamic` (to the device's end).
    #[serde(default)]
    pub size: Option<String>,
    /// Segment flags (e.g. reencryption markers).
    #[serde(default)]
    pub flags: Vec<String>,
    /// IV tweak (a string number; volctl writes "0").
    #[serde(default)]
    pub iv_tweak: Option<String>,
    /// dm-integrity parameters (volctl never writes them).
    #[serde(default)]
    pub integrity: Option<serde_json::Value>,
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

/// The type of an ordinary keyslot.
pub const LUKS2_KEYSLOT: &str = "luks2";
/// The type of the keyslot a reencryption keeps its progress in.
pub const REENCRYPT_KEYSLOT: &str = "reencrypt";

impl Luks2Json {
    /// The mandatory requirements (`online-reencrypt-v2` while a
    /// reencryption runs), if any.
    pub fn requirements(&self) -> Vec<String> {
        self.config
            .get("requirements")
            .and_then(|r| r.get("mandatory"))
            .and_then(|m| m.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether the header carries mandatory requirements.
    pub fn has_requirements(&self) -> bool {
        !self.requirements().is_empty()
    }
}

impl Keyslot {
    /// The size of the key it stores.
    pub fn size(&self) -> api_types::KeySize {
        api_types::KeySize::from_bytes(self.key_size)
    }

    /// The keyslot's key material area on the device: (offset, size) in bytes.
    pub fn area_range(&self) -> Option<(u64, u64)> {
        let num = |k: &str| self.area.get(k)?.as_str()?.parse::<u64>().ok();
        Some((num("offset")?, num("size")?))
    }
}

impl Kdf {
    /// The salt (base64), which is new for every keyslot written.
    pub fn salt(&self) -> &str {
        self.salt.as_deref().unwrap_or("")
    }
}

impl Luks2Header {
    /// Numbers of the active keyslots that hold the volume key (a
    /// reencryption's own `reencrypt` keyslot is not one).
    pub fn keyslot_numbers(&self) -> Vec<KeyslotId> {
        self.json
            .keyslots
            .iter()
            .filter(|(_, k)| k.kind == LUKS2_KEYSLOT)
            .filter_map(|(n, _)| n.parse().ok())
            .collect()
    }

    /// Numbers of every keyslot in use, a reencryption's included.
    pub fn occupied_slots(&self) -> Vec<KeyslotId> {
        self.json
            .keyslots
            .keys()
            .filter_map(|k| k.parse().ok())
            .collect()
    }

    /// The keyslot of a reencryption in progress, if one is.
    pub fn reencrypt_keyslot(&self) -> Option<&Keyslot> {
        self.json
            .keyslots
            .values()
            .find(|k| k.kind == REENCRYPT_KEYSLOT)
    }

    /// Whether a reencryption (an in-place encryption, a volume-key
    /// rotation) is recorded in the header: its keyslot, or the requirement
    /// libcryptsetup sets while one runs.
    pub fn in_reencryption(&self) -> bool {
        self.reencrypt_keyslot().is_some() || self.json.has_requirements()
    }

    /// A keyslot by number.
    pub fn keyslot(&self, n: KeyslotId) -> Option<&Keyslot> {
        self.json.keyslots.get(&n.to_string())
    }

    /// Tokens by numeric id.
    pub fn tokens(&self) -> impl Iterator<Item = (TokenId, &serde_json::Value)> {
        self.json
            .tokens
            .iter()
            .filter_map(|(k, v)| Some((TokenId(k.parse().ok()?), v)))
    }
}

/// The JSON area's parse error (shared: header copies are cloned).
pub type JsonError = std::sync::Arc<serde_json::Error>;

impl Luks2Header {
    /// A header from its binary fields and its JSON (as read from disk, or
    /// as libcryptsetup loaded it).
    pub fn from_json(seqid: u64, value: serde_json::Value) -> Result<Self, JsonError> {
        let json: Luks2Json = serde_json::from_value(value.clone())?;
        Ok(Luks2Header {
            seqid,
            uuid: String::new(),
            label: String::new(),
            subsystem: String::new(),
            header_size: 0,
            json,
            raw_json: value,
        })
    }

    /// Whether any token is a `volctl` token.
    pub fn has_volctl_token(&self) -> bool {
        self.tokens()
            .any(|(_, t)| t.get("type").and_then(|v| v.as_str()) == Some(super::consts::TOKEN_TYPE))
    }

    /// The data segment's offset in bytes, if there is exactly one segment.
    pub fn data_offset(&self) -> Option<u64> {
        match self.json.segments.values().collect::<Vec<_>>()[..] {
            [s] => s.offset.parse().ok(),
            _ => None,
        }
    }
}
