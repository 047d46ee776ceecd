//! Signed PCR policies in systemd's formats: a PEM RSA public key (a UKI's
//! `.pcrpkey`, which systemd-stub puts at
//! `/run/systemd/tpm2-pcr-public-key.pem`) and a JSON file of signatures
//! (a UKI's `.pcrsig`, at `/run/systemd/tpm2-pcr-signature.json`):
//!
//! ```json
//! {"sha256": [{"pcrs": [11], "pkfp": "<hex>", "pol": "<hex>", "sig": "<base64>"}]}
//! ```
//!
//! `pkfp` is the SHA-256 of the key's PKCS#1 DER (`RSAPublicKey`), `pol`
//! the PolicyPCR digest of the PCR values signed, `sig` an RSASSA-PKCS1-v1_5
//! SHA-256 signature of `pol`. `systemd-measure sign` and `ukify` write it.

use super::esapi::unavailable;
use super::policy::{digest_from_hex, pcr_names, Sha256Digest};
use crate::ProviderError;
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::structures::{
    Public, PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent, RsaScheme,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The most a public key or signature file may hold (a UKI's are a few KiB).
const MAX_FILE_BYTES: u64 = 1 << 20;
/// The exponent a TPM takes as 0 (TPM 2.0 Part 2, TPMS_RSA_PARMS).
const DEFAULT_EXPONENT: u32 = 65_537;

/// An RSA public key that signs PCR policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPublicKey {
    /// The PEM text, as read (kept in the token).
    pub pem: String,
    modulus: Vec<u8>,
    exponent: u32,
    fingerprint: Sha256Digest,
}

impl PcrPublicKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding an RSA key.
    pub fn from_pem(pem: &str) -> Result<PcrPublicKey, String> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .map_err(|e| format!("not PEM: {e}"))?;
        if block.label != "PUBLIC KEY" {
            return Err(format!(
                "a PEM `{}`, not a `PUBLIC KEY`",
                block.label.chars().take(40).collect::<String>()
            ));
        }
        let (_, spki) = SubjectPublicKeyInfo::from_der(&block.contents)
            .map_err(|e| format!("not a public key: {e}"))?;
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err("not an RSA key (systemd's signed PCR policies are RSA)".into());
        };
        let exponent = rsa
            .try_exponent()
            .ok()
            .and_then(|e| u32::try_from(e).ok())
            .ok_or("an RSA exponent beyond 32 bits, which a TPM does not take")?;
        let modulus = rsa
            .modulus
            .iter()
            .skip_while(|b| **b == 0)
            .copied()
            .collect();
        Ok(PcrPublicKey {
            pem: pem.to_string(),
            modulus,
            exponent,
            fingerprint: Sha256::digest(&*spki.subject_public_key.data).into(),
        })
    }

    /// Reads and parses the key at `path`.
    pub fn read(path: &Path) -> Result<PcrPublicKey, ProviderError> {
        let text = read_bounded(path, "the PCR public key")?;
        PcrPublicKey::from_pem(&text).map_err(|e| {
            unavailable(format!(
                "the PCR public key {} cannot be used: {e}",
                path.display()
            ))
        })
    }

    /// systemd's fingerprint (`pkfp`): SHA-256 of the PKCS#1 DER, hex.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.fingerprint)
    }

    /// The key as a TPM public area (an unrestricted RSA signing key, no
    /// scheme of its own), for TPM2_LoadExternal.
    pub(super) fn tpm_public(&self) -> Result<Public, ProviderError> {
        let bad = |what: &str, e: tss_esapi::Error| unavailable(format!("{what}: {e}"));
        let bits = u16::try_from(self.modulus.len() * 8)
            .ok()
            .and_then(|b| RsaKeyBits::try_from(b).ok())
            .ok_or_else(|| {
                unavailable(format!(
                    "an RSA key of {} bits, which a TPM does not take (1024, 2048, 3072, 4096)",
                    self.modulus.len() * 8
                ))
            })?;
        let exponent = match self.exponent {
            DEFAULT_EXPONENT => 0,
            e => e,
        };
        let params = PublicRsaParametersBuilder::new_unrestricted_signing_key(
            RsaScheme::Null,
            bits,
            RsaExponent::create(exponent).map_err(|e| bad("RSA exponent", e))?,
        )
        .build()
        .map_err(|e| bad("RSA parameters", e))?;
        let attrs = ObjectAttributesBuilder::new()
            .with_user_with_auth(true)
            .with_sign_encrypt(true)
            .build()
            .map_err(|e| bad("key attributes", e))?;
        PublicBuilder::new()
            .with_public_algorithm(PublicAlgorithm::Rsa)
            .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
            .with_object_attributes(attrs)
            .with_rsa_parameters(params)
            .with_rsa_unique_identifier(
                PublicKeyRsa::try_from(self.modulus.clone()).map_err(|e| bad("RSA modulus", e))?,
            )
            .build()
            .map_err(|e| bad("key template", e))
    }
}

/// One signed policy: the PolicyPCR digest and its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySignature {
    /// The PolicyPCR digest signed (`pol`).
    pub policy: Sha256Digest,
    /// The RSASSA-PKCS1-v1_5 SHA-256 signature (`sig`).
    pub signature: Vec<u8>,
}

/// An entry of systemd's signature file.
#[derive(serde::Deserialize)]
struct Entry {
    pcrs: Vec<u32>,
    pkfp: String,
    pol: String,
    sig: String,
}

/// The SHA-256 entries of the signature file at `path` made by the key
/// with fingerprint `pkfp` over exactly `pcrs`. None is an error that says
/// what the file holds.
pub fn signatures_for(
    path: &Path,
    pkfp: &str,
    pcrs: &[u32],
) -> Result<Vec<PolicySignature>, ProviderError> {
    let text = read_bounded(path, "the PCR signature file")?;
    let banks: BTreeMap<String, Vec<Entry>> = serde_json::from_str(&text).map_err(|e| {
        unavailable(format!(
            "the PCR signature file {} is not systemd's JSON: {e}",
            path.display()
        ))
    })?;
    let entries = banks.get("sha256").map(Vec::as_slice).unwrap_or_default();
    let by_key: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.pkfp.eq_ignore_ascii_case(pkfp))
        .collect();
    let found: Vec<PolicySignature> = by_key
        .iter()
        .filter(|e| sorted(&e.pcrs) == pcrs)
        .filter_map(|e| {
            Some(PolicySignature {
                policy: digest_from_hex(&e.pol)?,
                signature: base64::engine::general_purpose::STANDARD
                    .decode(&e.sig)
                    .ok()?,
            })
        })
        .collect();
    if found.is_empty() {
        return Err(unavailable(format!(
            "{} holds no SHA-256 signature by the enrolled public key (fingerprint {}) over {}: {} of its {} entries are by that key",
            path.display(),
            short(pkfp),
            pcr_names(pcrs),
            by_key.len(),
            entries.len()
        )));
    }
    Ok(found)
}

fn sorted(pcrs: &[u32]) -> Vec<u32> {
    let mut v = pcrs.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// A fingerprint's first 16 hex digits, for messages.
pub fn short(pkfp: &str) -> &str {
    pkfp.get(..16).unwrap_or(pkfp)
}

/// The text of `path`, refused beyond [`MAX_FILE_BYTES`].
fn read_bounded(path: &Path, what: &str) -> Result<String, ProviderError> {
    let cannot = |e: String| unavailable(format!("cannot read {what} {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| cannot(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| cannot(e.to_string()))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(cannot(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 2048-bit key made by `openssl genrsa 2048` and `openssl rsa -pubout`;
    /// `openssl rsa -pubin -RSAPublicKey_out -outform DER | sha256sum` gives
    /// the fingerprint below.
    const PEM: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA4KsizSsvp3pGXu7fwKdt
fOhDFDfEwekSRP2xGAm4HocVeKGadJpUn3trwb5h/45kr2IjSEaUTSRyTlx9oAnz
AJZqkQd6LNH4MDOzDqTg7x25AEsVXbYdeWRYx2dDEXQIof6LkfoDqAOh7FhSNoCl
2Nnslp6JcEiGY4Q9skXN/bmRcBSYvIP8cc7v8s2LOFgGVbcM8L+64EK+FV9Z/H1X
3h2QdKCPrJ84q5HELWKwnasMrM4QIa47ueWYWmRAJHl5zbT+Pltb5rJUjzxFGabc
R4xzcJGVULj6e7taUppaWReX+MRKhLyllZpMKrt+gO5R8ibWKy6r3WVStwCzZGyW
fQIDAQAB
-----END PUBLIC KEY-----
";

    #[test]
    fn a_pem_rsa_key_gives_systemd_s_fingerprint() {
        let key = PcrPublicKey::from_pem(PEM).unwrap();
        assert_eq!(key.modulus.len(), 256);
        assert_eq!(key.exponent, 65_537);
        assert_eq!(key.fingerprint(), FINGERPRINT);
        assert!(key.tpm_public().is_ok());
    }

    const FINGERPRINT: &str = "2af7fb0ec3aaeddff24068562e33e14ce001fe55ad0edbe53451a039bde8da4e";

    #[test]
    fn other_pem_is_refused_with_what_it_is() {
        let cert = PEM.replace("PUBLIC KEY", "CERTIFICATE");
        assert!(PcrPublicKey::from_pem(&cert)
            .unwrap_err()
            .contains("`CERTIFICATE`, not a `PUBLIC KEY`"));
        assert!(PcrPublicKey::from_pem("garbage")
            .unwrap_err()
            .starts_with("not PEM"));
    }

    #[test]
    fn signatures_are_picked_by_key_and_pcrs_and_none_is_explained() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sig.json");
        let pol = "ab".repeat(32);
        let entry = |pkfp: &str, pcrs: &str| {
            format!(r#"{{"pcrs":{pcrs},"pkfp":"{pkfp}","pol":"{pol}","sig":"AAEC"}}"#)
        };
        std::fs::write(
            &path,
            format!(
                r#"{{"sha256":[{},{},{}],"sha1":[{}]}}"#,
                entry("aa", "[11]"),
                entry("bb", "[11]"),
                entry("aa", "[7,11]"),
                entry("aa", "[11]"),
            ),
        )
        .unwrap();
        let found = signatures_for(&path, "AA", &[11]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].signature, [0, 1, 2]);
        assert_eq!(found[0].policy, [0xab; 32]);
        assert_eq!(signatures_for(&path, "aa", &[7, 11]).unwrap().len(), 1);
        let none = signatures_for(&path, "cc", &[11]).unwrap_err().to_string();
        assert!(
            none.contains("0 of its 3 entries are by that key"),
            "{none}"
        );
        std::fs::write(&path, "[1,2").unwrap();
        let bad = signatures_for(&path, "aa", &[11]).unwrap_err().to_string();
        assert!(bad.contains("is not systemd's JSON"), "{bad}");
    }
}
