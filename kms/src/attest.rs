//! Attestation-gated release, the server's half: nonces any replica can
//! check, and the verification of a node's TPM2 quote.
//!
//! - **The attestation key (AK)** is a restricted ECDSA P-256 signing key,
//!   a primary of the node TPM's endorsement hierarchy (the same key every
//!   boot, derived from the TPM's endorsement seed; it never leaves the
//!   TPM). A restricted key signs only what the TPM itself produced, so a
//!   quote it signed reports the TPM's own PCRs. The server trusts it on
//!   first use: the node's first attested request records it (with
//!   `--enrol registered`, only for a node an admin expected).
//! - **Nonces** are `time ‖ random ‖ HMAC(key, uuid ‖ time ‖ random)`,
//!   the key derived from the current master key, so any replica checks a
//!   nonce another issued; each is accepted once (the node's record keeps
//!   the ones used until they expire) and for [`NONCE_LIFETIME`].
//! - **A quote** must verify under the recorded AK, carry the nonce as its
//!   qualifying data, and report the PCR digest the node's policy allows.

use hmac::Mac;
use sha2::{Digest, Sha256};
use tss_esapi::structures::{Attest, AttestInfo, Public, Signature};
use tss_esapi::traits::UnMarshall;

/// How long a nonce is good for.
pub const NONCE_LIFETIME: u64 = 60;

const TIME: usize = 8;
const RANDOM: usize = 16;
const MAC: usize = 16;
/// The length of a nonce.
pub const NONCE_LEN: usize = TIME + RANDOM + MAC;

/// Why a quote or a nonce was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    /// A structure that does not unmarshal, or the wrong kind of key.
    #[error("the attestation does not read: {0}")]
    Malformed(String),
    /// The signature does not verify under the attestation key.
    #[error("the quote's signature does not verify under the attestation key")]
    BadSignature,
    /// The nonce was not issued for this node, or expired.
    #[error("the quote's nonce {0}")]
    BadNonce(&'static str),
}

/// What a verified quote says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    /// The PCRs quoted (SHA-256 bank), in order.
    pub pcrs: Vec<u32>,
    /// The TPM's digest of their values.
    pub pcr_digest: Vec<u8>,
    /// The qualifying data: the server's nonce.
    pub nonce: Vec<u8>,
}

/// The key nonces are authenticated with.
pub struct NonceKey(zeroize::Zeroizing<[u8; 32]>);

type HmacSha256 = hmac::Hmac<Sha256>;

impl NonceKey {
    /// The key derived from master key material `master`.
    pub fn derive(master: &[u8; 32]) -> Self {
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Hkdf::<Sha256>::new(None, master)
            .expand(b"volctl kms attestation nonce", out.as_mut())
            .expect("32 bytes is a valid HKDF length");
        NonceKey(out)
    }

    fn mac(&self, uuid: &str, head: &[u8]) -> [u8; MAC] {
        let mut m = HmacSha256::new_from_slice(self.0.as_ref()).expect("any key length");
        m.update(uuid.as_bytes());
        m.update(head);
        let full = m.finalize().into_bytes();
        let mut out = [0u8; MAC];
        out.copy_from_slice(&full[..MAC]);
        out
    }

    /// A fresh nonce for `uuid` at `now` (seconds since the epoch).
    pub fn issue(&self, uuid: &str, now: u64) -> Vec<u8> {
        let mut head = now.to_be_bytes().to_vec();
        let mut random = [0u8; RANDOM];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
        head.extend_from_slice(&random);
        let mac = self.mac(uuid, &head);
        head.extend_from_slice(&mac);
        head
    }

    /// Checks that `nonce` was issued for `uuid` and is still good at
    /// `now`; when it expires.
    pub fn check(&self, uuid: &str, nonce: &[u8], now: u64) -> Result<u64, AttestError> {
        if nonce.len() != NONCE_LEN {
            return Err(AttestError::BadNonce("is not one this KMS issued"));
        }
        let (head, mac) = nonce.split_at(TIME + RANDOM);
        let expected = self.mac(uuid, head);
        if !constant_time_eq(&expected, mac) {
            return Err(AttestError::BadNonce(
                "was not issued by this KMS for this node",
            ));
        }
        let mut t = [0u8; TIME];
        t.copy_from_slice(&head[..TIME]);
        let expiry = u64::from_be_bytes(t).saturating_add(NONCE_LIFETIME);
        if now > expiry {
            return Err(AttestError::BadNonce("has expired (ask for a new one)"));
        }
        Ok(expiry)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A short name of a nonce, kept to refuse it a second time.
pub fn nonce_id(nonce: &[u8]) -> String {
    hex::encode(&Sha256::digest(nonce)[..16])
}

/// The SHA-256 fingerprint of an attestation key (TPM2B_PUBLIC bytes).
pub fn ak_fingerprint(ak_public: &[u8]) -> String {
    hex::encode(Sha256::digest(ak_public))
}

/// Verifies `quote` (TPMS_ATTEST) and its `signature` (TPMT_SIGNATURE)
/// under the attestation key `ak_public` (TPM2B_PUBLIC contents): a
/// restricted, TPM-bound ECDSA P-256 signing key.
pub fn verify(ak_public: &[u8], quote: &[u8], signature: &[u8]) -> Result<Quoted, AttestError> {
    let key = verifying_key(ak_public)?;
    let sig = ecdsa_signature(signature)?;
    p256::ecdsa::signature::Verifier::verify(&key, quote, &sig)
        .map_err(|_| AttestError::BadSignature)?;
    quoted(quote)
}

fn malformed(what: &str, e: impl std::fmt::Display) -> AttestError {
    AttestError::Malformed(format!("{what}: {e}"))
}

fn verifying_key(ak_public: &[u8]) -> Result<p256::ecdsa::VerifyingKey, AttestError> {
    let public = Public::unmarshall(ak_public).map_err(|e| malformed("the attestation key", e))?;
    let Public::Ecc {
        object_attributes,
        parameters,
        unique,
        ..
    } = public
    else {
        return Err(malformed("the attestation key", "not an ECC key"));
    };
    let attrs = object_attributes;
    if !(attrs.restricted() && attrs.sign_encrypt() && attrs.fixed_tpm() && !attrs.decrypt()) {
        return Err(malformed(
            "the attestation key",
            "not a restricted signing key bound to its TPM",
        ));
    }
    if parameters.ecc_curve() != tss_esapi::interface_types::ecc::EccCurve::NistP256 {
        return Err(malformed("the attestation key", "not on curve P-256"));
    }
    let (x, y) = (unique.x().value(), unique.y().value());
    if x.len() > 32 || y.len() > 32 {
        return Err(malformed("the attestation key", "a coordinate too long"));
    }
    let point =
        p256::EncodedPoint::from_affine_coordinates(&pad32(x).into(), &pad32(y).into(), false);
    p256::ecdsa::VerifyingKey::from_encoded_point(&point)
        .map_err(|e| malformed("the attestation key", e))
}

fn pad32(v: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out[32 - v.len()..].copy_from_slice(v);
    out
}

fn ecdsa_signature(signature: &[u8]) -> Result<p256::ecdsa::Signature, AttestError> {
    let sig = Signature::unmarshall(signature).map_err(|e| malformed("the signature", e))?;
    let Signature::EcDsa(sig) = sig else {
        return Err(malformed("the signature", "not ECDSA"));
    };
    if sig.hashing_algorithm() != tss_esapi::interface_types::algorithm::HashingAlgorithm::Sha256 {
        return Err(malformed("the signature", "not over SHA-256"));
    }
    let (r, s) = (sig.signature_r().value(), sig.signature_s().value());
    if r.len() > 32 || s.len() > 32 {
        return Err(malformed("the signature", "a scalar too long"));
    }
    p256::ecdsa::Signature::from_scalars(pad32(r), pad32(s))
        .map_err(|e| malformed("the signature", e))
}

fn quoted(quote: &[u8]) -> Result<Quoted, AttestError> {
    let attest = Attest::unmarshall(quote).map_err(|e| malformed("the quote", e))?;
    let AttestInfo::Quote { info } = attest.attested() else {
        return Err(malformed("the quote", "not a quote"));
    };
    let mut pcrs = Vec::new();
    for sel in info.pcr_selection().get_selections() {
        if sel.hashing_algorithm()
            != tss_esapi::interface_types::algorithm::HashingAlgorithm::Sha256
        {
            return Err(malformed("the quote", "a PCR bank other than SHA-256"));
        }
        pcrs.extend(
            sel.selected()
                .iter()
                .map(|slot| u32::from(*slot).trailing_zeros()),
        );
    }
    pcrs.sort_unstable();
    Ok(Quoted {
        pcrs,
        pcr_digest: info.pcr_digest().value().to_vec(),
        nonce: attest.extra_data().value().to_vec(),
    })
}

/// The digest a quote of these PCR values reports: SHA-256 over the
/// values in PCR order (what the TPM computes for one bank).
pub fn pcr_digest(values: &[&[u8]]) -> Vec<u8> {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_for_its_node_and_its_minute_only() {
        let key = NonceKey::derive(&[7u8; 32]);
        let n = key.issue("a", 1000);
        assert_eq!(n.len(), NONCE_LEN);
        assert_eq!(key.check("a", &n, 1000), Ok(1000 + NONCE_LIFETIME));
        assert!(key.check("b", &n, 1000).is_err(), "another node");
        assert!(
            key.check("a", &n, 1000 + NONCE_LIFETIME + 1).is_err(),
            "expired"
        );
        let other = NonceKey::derive(&[8u8; 32]);
        assert!(other.check("a", &n, 1000).is_err(), "another KMS");
        let mut forged = n.clone();
        forged[0] ^= 1;
        assert!(key.check("a", &forged, 1000).is_err(), "a changed time");
        assert!(key.check("a", &n[..10], 1000).is_err());
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        for (a, q, s) in [
            (&b""[..], &b""[..], &b""[..]),
            (&[0u8; 200][..], &[1u8; 100][..], &[2u8; 70][..]),
        ] {
            assert!(verify(a, q, s).is_err());
        }
    }
}
