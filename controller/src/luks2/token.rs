//! The `volctl` LUKS2 token kept beside every keyslot volctl manages:
//! the key's kind, its non-secret data, and the binding that proves the
//! slot still matches its config (see `binding.rs`).
//!
//! ```json
//! {"type": "volctl", "keyslots": ["2"], "volctl_version": 2,
//!  "kind": "nodeID", "lock_to_state": true, "data": {},
//!  "binding": "base64…", "owner": "base64…"}
//! ```
//!
//! `owner` (version 2) authenticates the token itself: only a holder of the
//! volume key can make it, and it covers the keyslot's KDF salt, so a forged
//! token, or one copied to another slot, never makes volctl remove a slot.

use crate::luks2::consts::{TOKEN_TYPE, TOKEN_VERSION};
use crate::luks2::header::Luks2Header;
use api_types::{KeySource, KeyslotId};
use providers::KeyData;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The id of a token in a LUKS2 header's `tokens` object; a type of its own
/// so it is never taken for the keyslot the token describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct TokenId(pub u32);

impl fmt::Display for TokenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A volctl token as stored in the LUKS2 header.
#[derive(Debug, Clone, PartialEq)]
pub struct VolctlToken {
    /// Always `volctl`.
    pub token_type: String,
    /// The one keyslot this token describes, as LUKS2 wants it: `["3"]`.
    pub keyslots: Vec<String>,
    /// Layout version.
    pub volctl_version: u32,
    /// Key kind: `static`, `nodeID`, `kms`, `tpm`.
    pub kind: KeySource,
    /// Whether the STATE salt is mixed into the passphrase.
    pub lock_to_state: bool,
    /// Kind-specific non-secret data (sealed blobs, endpoint, PCRs), and a
    /// spare slot's mark.
    pub data: TokenData,
    /// HMAC binding, base64.
    pub binding: String,
    /// Owner tag, base64 (version 2; see the module docs).
    pub owner: Option<String>,
}

/// A volctl token's `data`: what its key kind keeps, and, on a spare slot
/// (a passphrase change or a recovery-key rotation under way), the slot
/// whose key it holds a copy of (`replaces`, beside the kind's fields).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenData {
    /// The key kind's data.
    pub key: KeyData,
    /// On a spare slot: the slot it stands in for.
    pub replaces: Option<KeyslotId>,
}

/// The field of `data` that marks a spare slot.
const REPLACES: &str = "replaces";

impl TokenData {
    /// The data of a slot that is no spare.
    pub fn of(key: KeyData) -> Self {
        TokenData {
            key,
            replaces: None,
        }
    }

    /// Reads a token's `data` for a key of `kind`.
    pub fn read(kind: KeySource, raw: &serde_json::Value) -> Self {
        let mut raw = raw.clone();
        let replaces = raw
            .get(REPLACES)
            .and_then(serde_json::Value::as_u64)
            .and_then(|n| KeyslotId::new(u32::try_from(n).ok()?));
        if replaces.is_some() {
            raw.as_object_mut().map(|o| o.remove(REPLACES));
        }
        TokenData {
            key: KeyData::read(kind, &raw),
            replaces,
        }
    }

    /// The JSON kept as the token's `data`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = self.key.to_json();
        if let (Some(slot), Some(o)) = (self.replaces, json.as_object_mut()) {
            o.insert(REPLACES.into(), slot.get().into());
        }
        json
    }
}

/// The token as serialised: its `data` is read by its `kind`.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(rename = "type")]
    token_type: String,
    keyslots: Vec<String>,
    volctl_version: u32,
    kind: KeySource,
    lock_to_state: bool,
    data: serde_json::Value,
    binding: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

impl Serialize for VolctlToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Stored {
            token_type: self.token_type.clone(),
            keyslots: self.keyslots.clone(),
            volctl_version: self.volctl_version,
            kind: self.kind,
            lock_to_state: self.lock_to_state,
            data: self.data.to_json(),
            binding: self.binding.clone(),
            owner: self.owner.clone(),
        }
        .serialize(s)
    }
}

impl From<Stored> for VolctlToken {
    fn from(s: Stored) -> Self {
        VolctlToken {
            data: TokenData::read(s.kind, &s.data),
            token_type: s.token_type,
            keyslots: s.keyslots,
            volctl_version: s.volctl_version,
            kind: s.kind,
            lock_to_state: s.lock_to_state,
            binding: s.binding,
            owner: s.owner,
        }
    }
}

impl VolctlToken {
    /// Builds the token for `slot`.
    pub fn new(
        slot: KeyslotId,
        kind: KeySource,
        lock_to_state: bool,
        data: TokenData,
        binding: String,
        owner: String,
    ) -> Self {
        VolctlToken {
            token_type: TOKEN_TYPE.to_string(),
            keyslots: vec![slot.to_string()],
            volctl_version: TOKEN_VERSION,
            kind,
            lock_to_state,
            data,
            binding,
            owner: Some(owner),
        }
    }

    /// Parses a header token; `None` if it is not a volctl token. Data that
    /// does not read as its kind's does not make the token unreadable
    /// ([`KeyData::Unreadable`]).
    pub fn parse(v: &serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        if v.get("type").and_then(|t| t.as_str()) != Some(TOKEN_TYPE) {
            return None;
        }
        Some(serde_json::from_value::<Stored>(v.clone()).map(VolctlToken::from))
    }

    /// The keyslot this token is bound to, if exactly one.
    pub fn slot(&self) -> Option<KeyslotId> {
        match self.keyslots.as_slice() {
            [one] => one.parse().ok(),
            _ => None,
        }
    }
}
/// Header queries about volctl's tokens.
impl Luks2Header {
    /// The volctl token of `slot`, with its id (a token that does not parse
    /// is not volctl's).
    pub fn volctl_token(&self, slot: KeyslotId) -> Option<(TokenId, VolctlToken)> {
        self.tokens().find_map(|(id, raw)| {
            let t = VolctlToken::parse(raw)?.ok()?;
            (t.slot() == Some(slot)).then(|| (id, self.with_clevis_jwe(t)))
        })
    }

    /// The data of `slot`'s volctl token (nothing without one): what a key
    /// re-enrolled in that slot keeps (sealed blobs, endpoints).
    pub fn volctl_token_data(&self, slot: KeyslotId) -> TokenData {
        self.volctl_token(slot)
            .map_or_else(|| TokenData::of(KeyData::Nothing), |(_, t)| t.data)
    }
}
