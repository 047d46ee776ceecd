//! Master keys of the KMS server, and the sealed-blob format.
//!
//! Key file: one key per line, `KEY_ID:BASE64(32 bytes)`; `#` comments and
//! blank lines are ignored. The last key seals; every key unseals, so
//! appending a new key (`volctl kms-server genkey >> keys`) rotates without
//! breaking old blobs. The file must not be readable by group or others.
//!
//! Blob: `version | key-id length (u8) | key id | 12-byte nonce |
//! AES-256-GCM ciphertext+tag`, with the node UUID as associated data, so
//! a blob sealed for one node does not unseal for another. Version 1 (the
//! stateless server) is sealed by the master key itself; version 2 (a
//! server with node records, `--store`) by the node's own key-encryption
//! key, which the master key `key id` wraps in the node's record.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;
use std::path::Path;
use zeroize::Zeroizing;

const BLOB_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// Why keys could not be loaded or a blob handled. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// The key file is not a private regular file, or unreadable.
    #[error("the master key file: {0}")]
    File(#[from] private_file::PrivateFileError),
    /// A line is malformed.
    #[error("master key file line {line}: {reason}")]
    Format {
        /// 1-based line.
        line: usize,
        /// Why.
        reason: String,
    },
    /// The file holds no key.
    #[error("the master key file holds no key (add one with `volctl kms-server genkey`)")]
    Empty,
    /// A blob cannot be opened.
    #[error("cannot unseal: {0}")]
    Unseal(String),
}

/// The server's master keys, newest last.
pub struct Keyring {
    keys: Vec<(String, Zeroizing<[u8; 32]>)>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        write!(f, "Keyring({ids:?})")
    }
}

impl Keyring {
    /// Loads the key file, enforcing mode 0600.
    pub fn load(path: &Path) -> Result<Self, KeyringError> {
        /// A key file of a thousand keys is 64 KiB; this bound is far above.
        const MAX_KEY_FILE: u64 = 1 << 20;
        let raw = private_file::read_private(path, MAX_KEY_FILE)?;
        let text = std::str::from_utf8(&raw).map_err(|_| KeyringError::Format {
            line: 0,
            reason: "the key file is not UTF-8 text".into(),
        })?;
        Self::parse(text)
    }

    /// Parses key-file text.
    pub fn parse(text: &str) -> Result<Self, KeyringError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |reason: &str| KeyringError::Format {
                line: i + 1,
                reason: reason.into(),
            };
            let (id, b64) = line
                .split_once(':')
                .ok_or_else(|| fail("expected KEY_ID:BASE64"))?;
            if id.is_empty()
                || id.len() > 64
                || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(fail("a key id is 1–64 characters of a-z, A-Z, 0-9 and -"));
            }
            let raw = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|_| fail("the key is not base64"))?,
            );
            let key: [u8; 32] = raw
                .as_slice()
                .try_into()
                .map_err(|_| fail("a key is 32 bytes"))?;
            if keys.iter().any(|(k, _)| k == id) {
                return Err(fail("duplicate key id"));
            }
            keys.push((id.to_string(), Zeroizing::new(key)));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty);
        }
        Ok(Keyring { keys })
    }

    /// A new key-file line with a random id and key.
    pub fn generate_line() -> String {
        let mut id = [0u8; 4];
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut id);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        format!(
            "{}:{}",
            hex::encode(id),
            base64::engine::general_purpose::STANDARD.encode(key.as_ref())
        )
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.keys.last().expect("a keyring is never empty").0
    }

    /// Seals `data` for `node_uuid` with the newest key (the stateless
    /// format, version 1).
    pub fn seal(&self, node_uuid: &str, data: &[u8]) -> Vec<u8> {
        let (id, key) = self.keys.last().expect("a keyring is never empty");
        blob(
            BLOB_VERSION,
            id,
            &aead_seal(key, node_uuid.as_bytes(), data),
        )
    }

    /// Opens a version-1 blob sealed for `node_uuid` by any key of the ring.
    pub fn unseal(&self, node_uuid: &str, blob: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
        let (version, id, sealed) = parts(blob)?;
        if version != BLOB_VERSION {
            return Err(KeyringError::Unseal(
                "a blob sealed with a node's own key; this server keeps no node records (give it --store)".into(),
            ));
        }
        aead_open(self.key(id)?, node_uuid.as_bytes(), sealed)
    }

    /// Whether the ring holds master key `id`.
    pub fn has(&self, id: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == id)
    }

    /// The master-key ids, oldest first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|(id, _)| id.as_str())
    }

    /// The key attestation nonces are authenticated with, derived from
    /// master key `id` (every replica with the key file derives the same).
    pub fn nonce_key(&self, id: &str) -> Result<crate::attest::NonceKey, KeyringError> {
        Ok(crate::attest::NonceKey::derive(self.key(id)?))
    }

    fn key(&self, id: &str) -> Result<&Zeroizing<[u8; 32]>, KeyringError> {
        self.keys
            .iter()
            .find(|(k, _)| k == id)
            .map(|(_, key)| key)
            .ok_or_else(|| {
                KeyringError::Unseal(format!(
                    "sealed with key `{id}`, which this server does not have"
                ))
            })
    }

    /// A node's key-encryption key wrapped by master key `id` (base64 of
    /// nonce and ciphertext, bound to the node).
    pub fn wrap_kek(
        &self,
        id: &str,
        node_uuid: &str,
        kek: &[u8; 32],
    ) -> Result<String, KeyringError> {
        let sealed = aead_seal(self.key(id)?, &kek_aad(node_uuid), kek);
        Ok(base64::engine::general_purpose::STANDARD.encode(sealed))
    }

    /// The key-encryption key `wrapped` holds.
    pub fn unwrap_kek(
        &self,
        id: &str,
        node_uuid: &str,
        wrapped: &str,
    ) -> Result<Zeroizing<[u8; 32]>, KeyringError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .map_err(|_| KeyringError::Unseal("a wrapped node key that is not base64".into()))?;
        let kek = aead_open(self.key(id)?, &kek_aad(node_uuid), &raw)?;
        let kek: [u8; 32] = kek
            .as_slice()
            .try_into()
            .map_err(|_| KeyringError::Unseal("a wrapped node key of the wrong size".into()))?;
        Ok(Zeroizing::new(kek))
    }
}

/// Seals `data` for `node_uuid` under a node's key-encryption key `kek`,
/// wrapped by master key `id` (version 2).
pub fn seal_for_node(kek: &[u8; 32], id: &str, node_uuid: &str, data: &[u8]) -> Vec<u8> {
    blob(
        NODE_BLOB_VERSION,
        id,
        &aead_seal(kek, node_uuid.as_bytes(), data),
    )
}

/// Opens a version-2 blob with the node's key-encryption key.
pub fn open_for_node(
    kek: &[u8; 32],
    node_uuid: &str,
    blob: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    let (_, _, sealed) = parts(blob)?;
    aead_open(kek, node_uuid.as_bytes(), sealed)
}

/// A blob's format version and the master-key id it names.
pub fn blob_header(blob: &[u8]) -> Result<(u8, &str), KeyringError> {
    parts(blob).map(|(v, id, _)| (v, id))
}

/// The version of blobs sealed by a node's own key.
pub const NODE_BLOB_VERSION: u8 = 2;

fn kek_aad(node_uuid: &str) -> Vec<u8> {
    let mut aad = b"volctl-kek\0".to_vec();
    aad.extend_from_slice(node_uuid.as_bytes());
    aad
}

fn blob(version: u8, id: &str, sealed: &[u8]) -> Vec<u8> {
    let id_len =
        u8::try_from(id.len()).expect("key ids are at most 64 bytes (checked when parsed)");
    let mut blob = vec![version, id_len];
    blob.extend_from_slice(id.as_bytes());
    blob.extend_from_slice(sealed);
    blob
}

/// (version, key id, nonce and ciphertext) of a blob.
fn parts(blob: &[u8]) -> Result<(u8, &str, &[u8]), KeyringError> {
    let bad = |why: &str| KeyringError::Unseal(why.into());
    let [version @ (BLOB_VERSION | NODE_BLOB_VERSION), id_len, rest @ ..] = blob else {
        return Err(bad("not a volctl KMS blob"));
    };
    let id_len = usize::from(*id_len);
    if rest.len() < id_len + NONCE_LEN + 16 {
        return Err(bad("truncated blob"));
    }
    let id = std::str::from_utf8(&rest[..id_len]).map_err(|_| bad("bad key id"))?;
    Ok((*version, id, &rest[id_len..]))
}

/// AES-256-GCM under `key` with `aad`: a fresh nonce, then the ciphertext.
fn aead_seal(key: &[u8; 32], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg, aad })
        .expect("AES-GCM encryption does not fail for in-memory data");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    out
}

/// Opens what [`aead_seal`] made.
fn aead_open(
    key: &[u8; 32],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, KeyringError> {
    if sealed.len() < NONCE_LEN + 16 {
        return Err(KeyringError::Unseal("truncated blob".into()));
    }
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| {
            KeyringError::Unseal(
                "authentication failed (tampered, or sealed for another node)".into(),
            )
        })
}

/// The id of the key that sealed `blob`, for a log line (no secret): `?`
/// when the blob does not read as a volctl blob or the id is not plain.
pub fn blob_key_id(blob: &[u8]) -> &str {
    let id = match blob {
        [BLOB_VERSION | NODE_BLOB_VERSION, len, rest @ ..] if rest.len() >= usize::from(*len) => {
            &rest[..usize::from(*len)]
        }
        _ => return "?",
    };
    match std::str::from_utf8(id) {
        Ok(id)
            if id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
        {
            id
        }
        _ => "?",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seal_unseal_binds_the_node_and_detects_tampering() {
        let ring = Keyring::parse(&Keyring::generate_line()).unwrap();
        let blob = ring.seal("node-a", b"0123456789abcdef0123456789abcdef");
        assert_eq!(
            ring.unseal("node-a", &blob).unwrap().as_slice(),
            b"0123456789abcdef0123456789abcdef"
        );
        assert!(ring
            .unseal("node-b", &blob)
            .unwrap_err()
            .to_string()
            .contains("another node"));
        let mut t = blob.clone();
        *t.last_mut().unwrap() ^= 1;
        assert!(ring.unseal("node-a", &t).is_err());
        assert!(ring.unseal("node-a", &blob[..10]).is_err());
    }

    #[test]
    fn rotation_keeps_old_blobs_and_seals_with_the_newest() {
        let old_line = Keyring::generate_line();
        let old = Keyring::parse(&old_line).unwrap();
        let blob = old.seal("n", b"k");
        let both = Keyring::parse(&format!(
            "# keys\n{old_line}\n\n{}\n",
            Keyring::generate_line()
        ))
        .unwrap();
        assert_ne!(both.current_id(), old.current_id());
        assert_eq!(both.unseal("n", &blob).unwrap().as_slice(), b"k");
        let new_blob = both.seal("n", b"k");
        assert!(old
            .unseal("n", &new_blob)
            .unwrap_err()
            .to_string()
            .contains("does not have"));
    }

    #[test]
    fn key_file_errors_are_clear_and_never_show_keys() {
        let e = Keyring::parse("abc:not-base64!").unwrap_err().to_string();
        assert!(
            e.contains("line 1") && e.contains("base64") && !e.contains("not-base64!"),
            "{e}"
        );
        assert!(matches!(
            Keyring::parse("# nothing\n"),
            Err(KeyringError::Empty)
        ));
        let line = Keyring::generate_line();
        assert!(Keyring::parse(&format!("{line}\n{line}"))
            .unwrap_err()
            .to_string()
            .contains("duplicate"));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("keys");
        std::fs::write(&p, &line).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keyring::load(&p),
            Err(KeyringError::File(
                private_file::PrivateFileError::Permissions { .. }
            ))
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(Keyring::load(&p).is_ok());
        assert!(
            !format!("{:?}", Keyring::load(&p).unwrap()).contains(line.split(':').nth(1).unwrap())
        );
    }
}
