//! Allowing a known update ahead of time: a TPM key re-sealed, the same
//! secret, to "the current PCR values, or these" (TPM2_PolicyOR over a
//! PolicyPCR digest per value set), so that the first boot after a planned
//! firmware or Secure Boot database update unseals it unattended. Once the
//! machine has moved to an allowed set, the key is narrowed back to the
//! values it then has. Neither touches the keyslot: only the token changes
//! (one header write, no KDF run).

use super::esapi::{seal, seal_to, unavailable, Sealed};
use super::policy::{
    digest_from_hex, or_policy, pcr_names, pcr_policy, PcrValues, Sha256Digest, MAX_BRANCHES,
};
use super::{blocking, unseal_token, TpmOptions};
use crate::sealed_key::{Base64Bytes, PcrValueSet, TpmTokenData};
use crate::ProviderError;
use api_types::KeySource;
use tss_esapi::traits::Marshall;
use zeroize::Zeroizing;

/// `token` re-sealed to its PCRs' current values or those values with
/// `changes` put in (beside the sets it already allows): the same secret,
/// unsealed first, so the current values must open it. Refused when a
/// changed PCR is not one the key is sealed to, or when the sets would
/// exceed PolicyOR's eight.
pub async fn allow(
    options: &TpmOptions,
    token: &TpmTokenData,
    changes: &PcrValues,
) -> Result<TpmTokenData, ProviderError> {
    if token.pin {
        return Err(refused(
            "it asks a PIN, and allowing PCR values beside one is not built (re-seal it after the update: another key opens, then converge)",
        ));
    }
    if token.signed.is_some() {
        return Err(refused(
            "it has a signed PCR policy: the new boot image's signature opens it, and allowing literal PCR values beside one is not built (re-seal it after the update, or keep another key)",
        ));
    }
    if token.pcrs.is_empty() {
        return Err(refused(
            "it is sealed to no PCR, so any values open it already",
        ));
    }
    let current = current_values(options, token).await?;
    let future = current.with(changes).map_err(|pcr| {
        refused(&format!(
            "PCR {pcr} is not one it is sealed to ({})",
            pcr_names(&token.pcrs)
        ))
    })?;
    let mut sets = vec![current];
    for set in value_sets(token)?.into_iter().chain([future]) {
        if !sets.contains(&set) {
            sets.push(set);
        }
    }
    if sets.len() > MAX_BRANCHES {
        return Err(refused(&format!(
            "it would allow {} sets of values, and a TPM's PolicyOR takes at most {MAX_BRANCHES} (boot into an allowed set and converge: it narrows to one)",
            sets.len()
        )));
    }
    let secret = unseal_token(options, token, None, None).await?;
    reseal(options, token, sets, secret).await
}

/// `token` narrowed to the current values when the machine has moved from
/// the values it was sealed at to another set it allows (the update came);
/// `None` while it still has the values it was sealed at, or when it
/// allows one set only.
pub async fn narrowed(
    options: &TpmOptions,
    token: &TpmTokenData,
) -> Result<Option<TpmTokenData>, ProviderError> {
    let sets = value_sets(token)?;
    if sets.len() < 2 {
        return Ok(None);
    }
    let current = current_values(options, token).await?;
    if current == sets[0] || !sets.contains(&current) {
        return Ok(None);
    }
    let secret = unseal_token(options, token, None, None).await?;
    reseal(options, token, vec![current], secret)
        .await
        .map(Some)
}

/// The PolicyPCR digests of the value sets a token allows (none: it is
/// sealed by PolicyPCR alone).
pub(super) fn branches(token: &TpmTokenData) -> Result<Vec<Sha256Digest>, ProviderError> {
    Ok(value_sets(token)?.iter().map(pcr_policy).collect())
}

/// `secret` sealed to `sets` (one: PolicyPCR alone, as enrolment does).
async fn reseal(
    options: &TpmOptions,
    token: &TpmTokenData,
    sets: Vec<PcrValues>,
    secret: Zeroizing<Vec<u8>>,
) -> Result<TpmTokenData, ProviderError> {
    let tcti = options.tcti.clone();
    let (sealed, policy, allowed) = if sets.len() == 1 {
        let pcrs = token.pcrs.clone();
        let (sealed, digest) = blocking(move || seal(&tcti, &pcrs, &secret)).await?;
        (sealed, digest, vec![])
    } else {
        let policy = or_policy(&sets.iter().map(pcr_policy).collect::<Vec<_>>());
        let sealed = blocking(move || seal_to(&tcti, &policy, &secret, None)).await?;
        (sealed, policy.to_vec(), sets.iter().map(as_hex).collect())
    };
    token_of(token, sealed, &policy, allowed)
}

fn token_of(
    old: &TpmTokenData,
    sealed: Sealed,
    policy: &[u8],
    allowed: Vec<PcrValueSet>,
) -> Result<TpmTokenData, ProviderError> {
    let public = sealed
        .public
        .marshall()
        .map_err(|e| unavailable(format!("marshalling: {e}")))?;
    Ok(TpmTokenData {
        public: Base64Bytes(public),
        private: Base64Bytes(sealed.private.value().to_vec()),
        pcrs: old.pcrs.clone(),
        hash: old.hash.clone(),
        policy_digest: hex::encode(policy),
        allowed,
        signed: None,
        pin: false,
    })
}

/// The current values of the PCRs a token names (checked first: a token
/// comes from a header, which anyone may have written).
async fn current_values(
    options: &TpmOptions,
    token: &TpmTokenData,
) -> Result<PcrValues, ProviderError> {
    super::read_pcrs(options, super::checked_pcrs(token)?).await
}

/// The value sets of a token, each checked to name exactly its PCRs.
fn value_sets(token: &TpmTokenData) -> Result<Vec<PcrValues>, ProviderError> {
    token
        .allowed
        .iter()
        .map(|set| from_hex(set, &token.pcrs))
        .collect()
}

fn from_hex(set: &PcrValueSet, pcrs: &[u32]) -> Result<PcrValues, ProviderError> {
    let bad = |reason: String| ProviderError::BadToken {
        kind: KeySource::Tpm,
        reason,
    };
    if set.keys().copied().collect::<Vec<_>>() != pcrs {
        return Err(bad(format!(
            "an allowed value set names PCRs other than {}",
            pcr_names(pcrs)
        )));
    }
    let mut values = PcrValues::default();
    for (pcr, hex_value) in set {
        let v = digest_from_hex(hex_value).ok_or_else(|| {
            bad(format!(
                "the allowed value of PCR {pcr} is not 64 hex digits"
            ))
        })?;
        values.0.insert(*pcr, v);
    }
    Ok(values)
}

fn as_hex(values: &PcrValues) -> PcrValueSet {
    values.0.iter().map(|(p, v)| (*p, hex::encode(v))).collect()
}

fn refused(reason: &str) -> ProviderError {
    ProviderError::Refused {
        kind: KeySource::Tpm,
        reason: reason.to_string(),
    }
}
