//! TPM2 policy digests computed in software (TPM 2.0 Part 3, PolicyPCR and
//! PolicyOR), so that a key can be sealed to PCR values the machine does
//! not have yet: "the current values, or these" (`volctl tpm allow`). The
//! swtpm tests check these against the digests a TPM's trial session makes.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// TPM_CC_PolicyPCR.
const CC_POLICY_PCR: u32 = 0x0000_017F;
/// TPM_CC_PolicyOR.
const CC_POLICY_OR: u32 = 0x0000_0171;
/// TPM_CC_PolicyAuthorize.
const CC_POLICY_AUTHORIZE: u32 = 0x0000_016A;
/// TPM_CC_PolicyAuthValue.
const CC_POLICY_AUTH_VALUE: u32 = 0x0000_016B;
/// TPM_ALG_SHA256.
const ALG_SHA256: u16 = 0x000B;
/// Bytes of a PCR selection bitmap (PCRs 0–23).
const SELECT_BYTES: u8 = 3;
/// The most branches TPM2_PolicyOR takes.
pub const MAX_BRANCHES: usize = 8;

/// A SHA-256 digest (a PCR value, a policy digest).
pub type Sha256Digest = [u8; 32];

/// A SHA-256 value from its 64 hex digits (`None`: not that).
pub fn digest_from_hex(hex_value: &str) -> Option<Sha256Digest> {
    hex::decode(hex_value.trim())
        .ok()
        .and_then(|v| Sha256Digest::try_from(v).ok())
}

/// `PCR 7` or `PCR 7, 11`, for messages.
pub fn pcr_names(pcrs: &[u32]) -> String {
    let list: Vec<String> = pcrs.iter().map(u32::to_string).collect();
    format!("PCR {}", list.join(", "))
}

/// Values of SHA-256 PCRs, by PCR number (0–23), ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PcrValues(pub BTreeMap<u32, Sha256Digest>);

impl PcrValues {
    /// The PCR numbers, ascending.
    pub fn pcrs(&self) -> Vec<u32> {
        self.0.keys().copied().collect()
    }

    /// These values with `changes` put in (each must be one of these PCRs).
    pub fn with(&self, changes: &PcrValues) -> Result<PcrValues, u32> {
        let mut v = self.clone();
        for (pcr, value) in &changes.0 {
            *v.0.get_mut(pcr).ok_or(*pcr)? = *value;
        }
        Ok(v)
    }
}

/// The policy digest of TPM2_PolicyPCR over `values`, from a fresh session:
/// H(0…0 ‖ TPM_CC_PolicyPCR ‖ TPML_PCR_SELECTION ‖ H(values in PCR order)).
pub fn pcr_policy(values: &PcrValues) -> Sha256Digest {
    pcr_policy_after(&[0u8; 32], values)
}

/// The policy digest after TPM2_PolicyPCR over `values` in a session whose
/// digest was `before`.
pub fn pcr_policy_after(before: &Sha256Digest, values: &PcrValues) -> Sha256Digest {
    let mut pcr_digest = Sha256::new();
    for value in values.0.values() {
        pcr_digest.update(value);
    }
    let mut h = Sha256::new();
    h.update(before);
    h.update(CC_POLICY_PCR.to_be_bytes());
    h.update(selection(&values.pcrs()));
    h.update(pcr_digest.finalize());
    h.finalize().into()
}

/// The policy digest of TPM2_PolicyAuthorize by the key named `key_name`
/// (its TPM name: hash algorithm, then the hash of its public area), with
/// an empty policyRef: H(H(0…0 ‖ TPM_CC_PolicyAuthorize ‖ name) ‖ ""). Any
/// policy that key signs satisfies it.
pub fn authorize_policy(key_name: &[u8]) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(CC_POLICY_AUTHORIZE.to_be_bytes());
    h.update(key_name);
    let first: Sha256Digest = h.finalize().into();
    Sha256::digest(first).into()
}

/// The policy digest after TPM2_PolicyAuthValue in a session whose digest
/// was `before`: H(before ‖ TPM_CC_PolicyAuthValue).
pub fn auth_value_after(before: &Sha256Digest) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(before);
    h.update(CC_POLICY_AUTH_VALUE.to_be_bytes());
    h.finalize().into()
}

/// The auth value of an object sealed with a PIN: the PIN's SHA-256 (a TPM
/// takes at most a digest's length).
pub fn pin_auth(pin: &[u8]) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(Sha256::digest(pin).to_vec())
}

/// The policy digest of TPM2_PolicyOR over `branches`:
/// H(0…0 ‖ TPM_CC_PolicyOR ‖ branch digests).
pub fn or_policy(branches: &[Sha256Digest]) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update([0u8; 32]);
    h.update(CC_POLICY_OR.to_be_bytes());
    for b in branches {
        h.update(b);
    }
    h.finalize().into()
}

/// A marshalled TPML_PCR_SELECTION of one SHA-256 bank.
fn selection(pcrs: &[u32]) -> Vec<u8> {
    let mut bitmap = [0u8; SELECT_BYTES as usize];
    for &p in pcrs {
        bitmap[(p / 8) as usize] |= 1 << (p % 8);
    }
    let mut out = 1u32.to_be_bytes().to_vec();
    out.extend(ALG_SHA256.to_be_bytes());
    out.push(SELECT_BYTES);
    out.extend(bitmap);
    out
}

/// A PCR's value after extending it by `measurement` (SHA-256 bank):
/// H(old ‖ measurement), as a boot measures.
pub fn extended(old: &Sha256Digest, measurement: &Sha256Digest) -> Sha256Digest {
    let mut h = Sha256::new();
    h.update(old);
    h.update(measurement);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_marks_each_pcr_in_its_byte() {
        assert_eq!(
            selection(&[0, 7, 23]),
            vec![0, 0, 0, 1, 0, 0x0B, 3, 0b1000_0001, 0, 0b1000_0000]
        );
    }

    #[test]
    fn a_changed_value_changes_the_digest_and_an_or_depends_on_its_branches() {
        let a = PcrValues([(7, [0u8; 32])].into());
        let b = a.with(&PcrValues([(7, [1u8; 32])].into())).unwrap();
        assert_ne!(pcr_policy(&a), pcr_policy(&b));
        let or = or_policy(&[pcr_policy(&a), pcr_policy(&b)]);
        assert_ne!(or, or_policy(&[pcr_policy(&b), pcr_policy(&a)]));
        assert_eq!(a.with(&PcrValues([(4, [1u8; 32])].into())), Err(4));
    }
}
