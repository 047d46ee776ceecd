//! The JWE clevis's tang pin writes (RFC 7516, flattened JSON as the
//! `clevis` LUKS2 token keeps it): ECDH-ES key agreement with the Tang
//! server's exchange key, A256GCM content encryption, and in its protected
//! header the server's URL and advertisement (`clevis.tang`).

use super::jwk::{EcJwk, JwkSet, Thumbprint, B64URL};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use p521::elliptic_curve::rand_core::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// The only key agreement and content encryption clevis's tang pin writes.
const ALG: &str = "ECDH-ES";
const ENC: &str = "A256GCM";

/// A JWE in flattened JSON serialization, each part base64url.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClevisJwe {
    /// The authenticated header, base64url of its JSON.
    pub protected: String,
    /// Empty with ECDH-ES (the key is agreed, not wrapped).
    #[serde(default)]
    pub encrypted_key: String,
    /// The AES-GCM nonce.
    pub iv: String,
    /// The encrypted passphrase.
    pub ciphertext: String,
    /// The AES-GCM tag.
    pub tag: String,
}

/// The protected header, as far as volctl reads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    /// `ECDH-ES`.
    pub alg: String,
    /// The clevis pin and its configuration.
    pub clevis: ClevisPin,
    /// `A256GCM`.
    pub enc: String,
    /// The client's ephemeral public key.
    pub epk: EcJwk,
    /// The thumbprint of the server's exchange key.
    pub kid: Thumbprint,
}

/// `clevis`: which pin, and its data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClevisPin {
    /// `tang`.
    pub pin: String,
    /// The tang pin's data.
    pub tang: TangPin,
}

/// `clevis.tang`: the server and what it advertised at binding.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TangPin {
    /// The server's advertisement (its JWK set) at binding.
    pub adv: JwkSet,
    /// The server's URL.
    pub url: String,
}

/// Why a JWE cannot be read or opened.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// Not a clevis tang JWE volctl reads.
    #[error("not a clevis tang JWE: {0}")]
    Malformed(String),
    /// The agreed key does not open it (a wrong exchange answer, or altered).
    #[error(
        "the JWE does not open with the key the Tang exchange gave (altered, or another server's)"
    )]
    DoesNotOpen,
}

impl ClevisJwe {
    /// The compact serialization (`clevis decrypt` reads it).
    pub fn compact(&self) -> String {
        [
            &self.protected,
            &self.encrypted_key,
            &self.iv,
            &self.ciphertext,
            &self.tag,
        ]
        .map(String::as_str)
        .join(".")
    }

    /// From the compact serialization (`clevis encrypt` writes it).
    pub fn from_compact(text: &str) -> Result<Self, JweError> {
        let parts: Vec<&str> = text.trim().split('.').collect();
        let [protected, encrypted_key, iv, ciphertext, tag] = parts.as_slice() else {
            return Err(JweError::Malformed(format!("{} parts, not 5", parts.len())));
        };
        Ok(ClevisJwe {
            protected: protected.to_string(),
            encrypted_key: encrypted_key.to_string(),
            iv: iv.to_string(),
            ciphertext: ciphertext.to_string(),
            tag: tag.to_string(),
        })
    }

    /// Its protected header.
    pub fn header(&self) -> Result<Header, JweError> {
        let bad = |e: &dyn std::fmt::Display| JweError::Malformed(e.to_string());
        let raw = B64URL.decode(&self.protected).map_err(|e| bad(&e))?;
        let h: Header = serde_json::from_slice(&raw).map_err(|e| bad(&e))?;
        if (h.alg.as_str(), h.enc.as_str(), h.clevis.pin.as_str()) != (ALG, ENC, "tang") {
            return Err(bad(&format!(
                "alg {}, enc {}, pin {} (volctl reads ECDH-ES, A256GCM, tang)",
                h.alg, h.enc, h.clevis.pin
            )));
        }
        Ok(h)
    }

    /// Encrypts `plaintext` to the server's exchange key `server` (one of
    /// `adv`'s), as `clevis encrypt tang` does.
    pub fn seal(
        server: &EcJwk,
        url: &str,
        adv: &JwkSet,
        plaintext: &[u8],
    ) -> Result<Self, JweError> {
        let point = server
            .point()
            .map_err(|e| JweError::Malformed(e.to_string()))?;
        let ephemeral = p521::ecdh::EphemeralSecret::random(&mut OsRng);
        let z = ephemeral.diffie_hellman(
            &p521::PublicKey::from_affine(point).map_err(|e| JweError::Malformed(e.to_string()))?,
        );
        let epk = EcJwk::of_point(ephemeral.public_key().as_affine(), None);
        let header = Header {
            alg: ALG.into(),
            clevis: ClevisPin {
                pin: "tang".into(),
                tang: TangPin {
                    adv: adv.clone(),
                    url: url.into(),
                },
            },
            enc: ENC.into(),
            epk,
            kid: server.thumbprint(),
        };
        let protected = B64URL.encode(serde_json::to_vec(&header).expect("a header serialises"));
        let mut iv = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let cek = content_key(z.raw_secret_bytes());
        let sealed = Aes256Gcm::new(cek.as_ref().into())
            .encrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: plaintext,
                    aad: protected.as_bytes(),
                },
            )
            .map_err(|_| JweError::DoesNotOpen)?;
        let (ciphertext, tag) = sealed.split_at(sealed.len() - 16);
        Ok(ClevisJwe {
            protected,
            encrypted_key: String::new(),
            iv: B64URL.encode(iv),
            ciphertext: B64URL.encode(ciphertext),
            tag: B64URL.encode(tag),
        })
    }

    /// Decrypts with `z`, the x coordinate of the agreed point.
    pub fn open(&self, z: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        self.open_with_key(content_key(z).as_ref())
    }

    /// Decrypts with the content key itself (`alg: dir`: 32 bytes).
    pub fn open_with_key(&self, cek: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        let bad = |e: &dyn std::fmt::Display| JweError::Malformed(e.to_string());
        if cek.len() != 32 {
            return Err(bad(&format!("a {}-byte key for A256GCM", cek.len())));
        }
        let iv = B64URL.decode(&self.iv).map_err(|e| bad(&e))?;
        let mut sealed = B64URL.decode(&self.ciphertext).map_err(|e| bad(&e))?;
        sealed.extend(B64URL.decode(&self.tag).map_err(|e| bad(&e))?);
        if iv.len() != 12 {
            return Err(bad(&format!("an IV of {} bytes, not 12", iv.len())));
        }
        Aes256Gcm::new(cek.into())
            .decrypt(
                Nonce::from_slice(&iv),
                Payload {
                    msg: &sealed,
                    aad: self.protected.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| JweError::DoesNotOpen)
    }
}

/// The content key ECDH-ES derives from `z` for A256GCM (no PartyU or
/// PartyV info, as jose writes it).
fn content_key(z: &[u8]) -> Zeroizing<[u8; 32]> {
    concat_kdf(z, ENC.as_bytes(), b"", b"", 256)
}

/// RFC 7518's Concat KDF with SHA-256, one round (`bits` up to 256): the
/// first `bits` of the result count.
fn concat_kdf(z: &[u8], alg: &[u8], apu: &[u8], apv: &[u8], bits: u32) -> Zeroizing<[u8; 32]> {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    for field in [alg, apu, apv] {
        h.update(
            u32::try_from(field.len())
                .expect("a short field")
                .to_be_bytes(),
        );
        h.update(field);
    }
    h.update(bits.to_be_bytes());
    Zeroizing::new(h.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_concat_kdf_gives_rfc_7518_appendix_c_s_key() {
        let z = [
            158u8, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let key = concat_kdf(&z, b"A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(
            &key[..16],
            &[86, 170, 141, 234, 248, 35, 109, 32, 92, 34, 40, 205, 113, 167, 16, 26]
        );
    }

    #[test]
    fn a_sealed_jwe_opens_with_the_agreed_key_only() {
        let server = p521::SecretKey::random(&mut OsRng);
        let jwk = EcJwk::of_point(server.public_key().as_affine(), Some("ECMR"));
        let adv = JwkSet {
            keys: vec![jwk.clone()],
        };
        let jwe = ClevisJwe::seal(&jwk, "http://tang", &adv, b"secret").unwrap();
        let h = jwe.header().unwrap();
        assert_eq!(
            (h.kid, h.clevis.tang.url.as_str()),
            (jwk.thumbprint(), "http://tang")
        );
        let z = p521::ecdh::diffie_hellman(server.to_nonzero_scalar(), h.epk.point().unwrap());
        assert_eq!(
            jwe.open(z.raw_secret_bytes()).unwrap().as_slice(),
            b"secret"
        );
        assert!(matches!(jwe.open(&[0; 66]), Err(JweError::DoesNotOpen)));
    }
}
