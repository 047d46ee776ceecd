//! A Tang server's advertisement (`GET /adv`): a JWS over its JWK set,
//! signed by each of its signing keys (ES512). It is trusted when every
//! signing key it lists signed it and so did the pinned key, as
//! `clevis encrypt tang` checks it.

use super::jwk::{EcJwk, JwkSet, Thumbprint, B64URL};
use base64::Engine;
use p521::ecdsa::signature::Verifier;
use p521::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;

/// An advertisement whose signatures verified.
#[derive(Debug, Clone)]
pub struct Advertisement {
    /// The JWK set it advertises (signing and exchange keys).
    pub keys: JwkSet,
    /// The thumbprints of the signing keys that signed it.
    pub signers: Vec<Thumbprint>,
}

/// Why an advertisement is not trusted.
#[derive(Debug, thiserror::Error)]
pub enum AdvError {
    /// Not a JWS over a JWK set.
    #[error("the advertisement is malformed: {0}")]
    Malformed(String),
    /// A signing key did not sign it.
    #[error("the advertisement is not signed by its signing key {0}")]
    Unsigned(Thumbprint),
    /// None of its signing keys is the pinned one.
    #[error("the advertisement is not signed by the pinned key {pinned} (it lists the signing keys {found})")]
    NotPinned {
        /// The pinned thumbprint.
        pinned: Thumbprint,
        /// The signing keys' thumbprints.
        found: String,
    },
    /// It advertises no exchange key.
    #[error("the advertisement has no exchange key (key_ops deriveKey)")]
    NoExchangeKey,
}

/// One signature of a JWS (flattened or general serialization).
#[derive(Deserialize)]
struct JwsSignature {
    protected: String,
    signature: String,
}

#[derive(Deserialize)]
struct Jws {
    payload: String,
    #[serde(default)]
    signatures: Vec<JwsSignature>,
    #[serde(flatten)]
    flattened: Option<JwsSignature>,
}

#[derive(Deserialize)]
struct JwsHeader {
    alg: String,
}

/// Which signing key an advertisement must carry a signature of.
#[derive(Debug, Clone, Copy)]
pub enum Pin<'a> {
    /// The key with this thumbprint: among the keys it lists, or, after
    /// the server rotated its keys, among `known` (an advertisement read
    /// at binding), whose signature the server still adds when asked for
    /// `/adv/<thumbprint>`.
    Thumbprint {
        /// The pinned thumbprint.
        pinned: &'a Thumbprint,
        /// Keys read before, from an advertisement the pin trusted then.
        known: &'a [EcJwk],
    },
    /// Whatever keys it lists (trust on first use).
    FirstUse,
}

impl Advertisement {
    /// Reads and verifies an advertisement: every signing key it lists
    /// signed it, and so did the pinned one.
    pub fn verify(jws: &[u8], pin: Pin<'_>) -> Result<Self, AdvError> {
        let malformed = |e: &dyn std::fmt::Display| AdvError::Malformed(e.to_string());
        let jws: Jws = serde_json::from_slice(jws).map_err(|e| malformed(&e))?;
        let payload = B64URL.decode(&jws.payload).map_err(|e| malformed(&e))?;
        let keys: JwkSet = serde_json::from_slice(&payload).map_err(|e| malformed(&e))?;
        let signatures: Vec<&JwsSignature> = jws
            .signatures
            .iter()
            .chain(jws.flattened.as_ref())
            .collect();
        let listed: Vec<&EcJwk> = keys.keys.iter().filter(|k| k.can("verify")).collect();
        if listed.is_empty() {
            return Err(malformed(&"it lists no signing key (key_ops verify)"));
        }
        let signed = |key: &EcJwk| signatures.iter().any(|s| signed_by(key, s, &jws.payload));
        if let Some(key) = listed.iter().find(|k| !signed(k)) {
            return Err(AdvError::Unsigned(key.thumbprint()));
        }
        let signers: Vec<Thumbprint> = listed.iter().map(|k| k.thumbprint()).collect();
        if let Pin::Thumbprint { pinned, known } = pin {
            let pinned_key = listed
                .iter()
                .copied()
                .chain(known.iter().filter(|k| k.can("verify")))
                .find(|k| &k.thumbprint() == pinned);
            if !pinned_key.is_some_and(signed) {
                let found: Vec<String> = signers.iter().map(|t| t.0.clone()).collect();
                return Err(AdvError::NotPinned {
                    pinned: pinned.clone(),
                    found: found.join(", "),
                });
            }
        }
        Ok(Advertisement { keys, signers })
    }

    /// The exchange key new bindings use (the first, as clevis picks it).
    pub fn exchange_key(&self) -> Result<&EcJwk, AdvError> {
        self.keys
            .keys
            .iter()
            .find(|k| k.can("deriveKey"))
            .ok_or(AdvError::NoExchangeKey)
    }

    /// Whether it advertises the exchange key named `kid`.
    pub fn has_exchange_key(&self, kid: &Thumbprint) -> bool {
        self.keys
            .keys
            .iter()
            .any(|k| k.can("deriveKey") && &k.thumbprint() == kid)
    }
}

/// Whether `sig` is `key`'s ES512 signature over `payload`.
fn signed_by(key: &EcJwk, sig: &JwsSignature, payload: &str) -> bool {
    let header = B64URL
        .decode(&sig.protected)
        .ok()
        .and_then(|h| serde_json::from_slice::<JwsHeader>(&h).ok());
    if header.is_none_or(|h| h.alg != "ES512") {
        return false;
    }
    let (Ok(point), Ok(raw)) = (key.point(), B64URL.decode(&sig.signature)) else {
        return false;
    };
    let (Ok(verifier), Ok(signature)) = (
        VerifyingKey::from_affine(point),
        Signature::from_slice(&raw),
    ) else {
        return false;
    };
    let input = format!("{}.{}", sig.protected, payload);
    verifier.verify(input.as_bytes(), &signature).is_ok()
}
