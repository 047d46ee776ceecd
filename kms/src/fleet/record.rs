//! What the KMS keeps per node, and about its master keys, in its store.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a node may still unseal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Seals and unseals.
    Active,
    /// Revoked: its key-encryption keys are destroyed; nothing it sealed
    /// opens again, from any copy of its disk.
    Revoked,
}

impl std::fmt::Display for NodeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NodeState::Active => "active",
            NodeState::Revoked => "revoked",
        })
    }
}

/// One node's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node UUID.
    pub uuid: String,
    /// Active or revoked.
    pub state: NodeState,
    /// Its key-encryption keys, one per master-key version that wrapped
    /// one, each wrapped by that master key (base64 of nonce and
    /// ciphertext; never a key in clear).
    pub keks: BTreeMap<String, String>,
    /// The master-key version of the KEK its newest blob uses.
    pub key_version: Option<String>,
    /// When it first sealed (seconds since the epoch).
    pub first_seen: u64,
    /// When it last sealed or unsealed.
    pub last_seen: u64,
    /// Its TPM's attestation key and PCR policy, once it sent a quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<AttestRecord>,
}

/// What the KMS knows of a node's TPM: recorded at its first attested
/// request (trust on first use), checked at every later one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestRecord {
    /// The attestation key (base64 of its TPM2B_PUBLIC contents).
    pub ak: String,
    /// The PCRs its quotes cover (SHA-256 bank).
    pub pcrs: Vec<u32>,
    /// The PCR digests its quotes may report (hex), in the order they
    /// were allowed: the one in use first, then any an admin allowed for
    /// a planned update. A quote with a later one drops those before it.
    pub allowed: Vec<String>,
    /// Nonces already used, with when they expire (a replayed quote is
    /// refused; expired ones are forgotten).
    pub used: Vec<(u64, String)>,
}

/// What every replica must agree on about the master keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// The master-key version new KEKs are wrapped by (`None`: the key
    /// file's newest, until the first `volctl kms rotate`).
    pub current: Option<String>,
    /// Versions retired: no KEK wrapped by them is kept or accepted.
    pub retired: Vec<String>,
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
