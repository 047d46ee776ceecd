//! What the sealing key kinds (`kms`, `tpm`) share: a fresh random key, the
//! passphrase LUKS2 gets for it (its base64, as Talos does), their typed
//! token payloads ([`KmsTokenData`], [`TpmTokenData`]) and the base64 blobs
//! inside them.

use crate::{KeyData, Passphrase, ProviderError};
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

/// Bytes kept in a token as a base64 string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base64Bytes(pub Vec<u8>);

impl serde::Serialize for Base64Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for Base64Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text)
            .map(Base64Bytes)
            .map_err(|_| serde::de::Error::custom("not base64"))
    }
}

/// What a `kms` slot's token keeps: where it was sealed and the sealed key.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KmsTokenData {
    /// The endpoint that sealed it (informational: unlocking uses the
    /// config's endpoint, never one read from the disk).
    pub endpoint: String,
    /// The sealed key (Talos's `sealedData`).
    #[serde(rename = "sealedData")]
    pub sealed_data: Base64Bytes,
}

/// What a `tpm` slot's token keeps: the sealed object and its PCR policy.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TpmTokenData {
    /// TPM2B_PUBLIC of the sealed object.
    pub public: Base64Bytes,
    /// TPM2B_PRIVATE of the sealed object.
    pub private: Base64Bytes,
    /// The PCRs it is sealed to, ascending.
    pub pcrs: Vec<u32>,
    /// PCR bank.
    pub hash: String,
    /// The object's policy digest, hex: PolicyPCR's, or with `allowed`,
    /// PolicyOR's over a PolicyPCR digest per value set.
    #[serde(rename = "policyDigest")]
    pub policy_digest: String,
    /// The value sets it is sealed to, when more than one (`volctl tpm
    /// allow`): the values when it was sealed first, then the allowed ones.
    /// Empty: sealed to the values the PCRs had (PolicyPCR alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<PcrValueSet>,
    /// The public key whose signatures of PCR values satisfy the policy
    /// first (PolicyAuthorize), when the key has a signed policy.
    #[serde(
        default,
        rename = "signedPolicy",
        skip_serializing_if = "Option::is_none"
    )]
    pub signed: Option<SignedPolicyToken>,
    /// Whether the object also asks a PIN (PolicyAuthValue; its auth value
    /// is the PIN's SHA-256).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pin: bool,
}

/// A signed PCR policy as a `tpm` token keeps it: the key (its PEM, so that
/// unlocking needs the signature file only, whose path is the config's)
/// and the PCRs it signs.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SignedPolicyToken {
    /// The PEM RSA public key.
    #[serde(rename = "publicKey")]
    pub public_key: String,
    /// Its systemd fingerprint (SHA-256 of the PKCS#1 DER), hex.
    pub pkfp: String,
    /// The PCRs its signatures cover, ascending.
    pub pcrs: Vec<u32>,
}

/// One set of SHA-256 PCR values: PCR number → value (hex).
pub type PcrValueSet = std::collections::BTreeMap<u32, String>;

/// The `BadToken` error for a token of `kind` whose data is not its kind's.
pub(crate) fn bad_token(kind: api_types::KeySource, data: &KeyData) -> ProviderError {
    ProviderError::BadToken {
        kind,
        reason: match data {
            KeyData::Unreadable { reason, .. } => reason.clone(),
            other => format!("it holds another kind's data ({other:?})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_payloads_round_trip_and_bad_ones_say_why() {
        use api_types::KeySource;
        let k = KmsTokenData {
            endpoint: "https://kms:4050".into(),
            sealed_data: Base64Bytes(vec![0, 1, 2]),
        };
        let json = KeyData::Kms(k.clone()).to_json();
        assert_eq!(
            json,
            serde_json::json!({"endpoint": "https://kms:4050", "sealedData": "AAEC"})
        );
        assert_eq!(KeyData::read(KeySource::Kms, &json), KeyData::Kms(k));
        let reason = |v: serde_json::Value| match bad_token(
            KeySource::Tpm,
            &KeyData::read(KeySource::Tpm, &v),
        ) {
            ProviderError::BadToken { kind, reason } => format!("{kind}: {reason}"),
            other => panic!("{other:?}"),
        };
        let good = serde_json::json!({"public": "AAEC", "private": "AAEC", "pcrs": [7], "hash": "sha256", "policyDigest": "00"});
        assert!(matches!(
            KeyData::read(KeySource::Tpm, &good),
            KeyData::Tpm(_)
        ));
        let mut bad = good.clone();
        bad["public"] = "@@".into();
        assert!(reason(bad).starts_with("tpm: not base64"));
        let mut bad = good.clone();
        bad["pcrs"] = serde_json::json!([4294967303u64]);
        assert!(reason(bad).contains("invalid value"));
        let mut bad = good;
        bad.as_object_mut().unwrap().remove("private");
        assert!(reason(bad).contains("missing field `private`"));
    }

    #[test]
    fn random_keys_differ_and_their_passphrase_is_base64() {
        let (a, b) = (random_key(), random_key());
        assert_ne!(a.as_ref(), b.as_ref());
        let p = passphrase(a.as_ref());
        assert_eq!(B64.decode(p.expose()).unwrap(), a.as_ref());
    }
}
