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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolctlToken {
    /// Always `volctl`.
    #[serde(rename = "type")]
    pub token_type: String,
    /// The one keyslot this token describes, as LUKS2 wants it: `["3"]`.
    pub keyslots: Vec<String>,
    /// Layout version.
    pub volctl_version: u32,
    /// Key kind: `static`, `nodeID`, `kms`, `tpm`.
    pub kind: KeySource,
    /// Whether the STATE salt is mixed into the passphrase.
    pub lock_to_state: bool,
    /// Kind-specific non-secret data (sealed blobs, endpoint, PCRs).
    pub data: serde_json::Value,
    /// HMAC binding, base64.
    pub binding: String,
    /// Owner tag, base64 (version 2; see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl VolctlToken {
    /// Builds the token for `slot`.
    pub fn new(
        slot: KeyslotId,
        kind: KeySource,
        lock_to_state: bool,
        data: serde_json::Value,
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

    /// Parses a header token; `None` if it is not a volctl token.
    pub fn parse(v: &serde_json::Value) -> Option<Result<Self, serde_json::Error>> {
        if v.get("type").and_then(|t| t.as_str()) != Some(TOKEN_TYPE) {
            return None;
        }
        Some(serde_json::from_value(v.clone()))
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
            (t.slot() == Some(slot)).then_some((id, t))
        })
    }

    /// The data of `slot`'s volctl token (`{}` without one): what a key
    /// re-enrolled in that slot keeps (sealed blobs, endpoints).
    pub fn volctl_token_data(&self, slot: KeyslotId) -> serde_json::Value {
        self.volctl_token(slot)
            .map(|(_, t)| t.data)
            .unwrap_or_else(|| serde_json::json!({}))
    }
}
