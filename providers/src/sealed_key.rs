//! What the sealing key kinds (`kms`, `tpm`) share: a fresh random key, the
//! passphrase LUKS2 gets for it (its base64, as Talos does), and the
//! base64 fields of their tokens.

use crate::{Passphrase, ProviderError};
use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

/// Base64 as the tokens and passphrases use it (standard, padded).
pub(crate) const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A fresh random 32-byte key from the OS.
pub(crate) fn random_key() -> Zeroizing<[u8; 32]> {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    key
}

/// The passphrase of a sealed key: the key's base64.
pub(crate) fn passphrase(key: &[u8]) -> Passphrase {
    Passphrase::new(B64.encode(key).into_bytes())
}

/// The base64-decoded string field `name` of a `kind` token.
pub(crate) fn token_bytes(
    kind: api_types::KeySource,
    token_data: &serde_json::Value,
    name: &str,
) -> Result<Vec<u8>, ProviderError> {
    let bad = |reason: String| ProviderError::BadToken { kind, reason };
    let text = token_data
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| bad(format!("no {name}")))?;
    B64.decode(text)
        .map_err(|_| bad(format!("{name} is not base64")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_fields_decode_or_name_the_field() {
        let t = serde_json::json!({"blob": "AAEC", "bad": "@@", "num": 3});
        assert_eq!(
            token_bytes(api_types::KeySource::Kms, &t, "blob").unwrap(),
            vec![0, 1, 2]
        );
        let reason = |name| match token_bytes(api_types::KeySource::Tpm, &t, name) {
            Err(ProviderError::BadToken { kind, reason }) => format!("{kind}: {reason}"),
            other => panic!("{other:?}"),
        };
        assert_eq!(reason("bad"), "tpm: bad is not base64");
        assert_eq!(reason("num"), "tpm: no num");
        assert_eq!(reason("gone"), "tpm: no gone");
    }

    #[test]
    fn random_keys_differ_and_their_passphrase_is_base64() {
        let (a, b) = (random_key(), random_key());
        assert_ne!(a.as_ref(), b.as_ref());
        let p = passphrase(a.as_ref());
        assert_eq!(B64.decode(p.expose()).unwrap(), a.as_ref());
    }
}
