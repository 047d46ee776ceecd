//! The tss-esapi plumbing, apart from the provider: a context from a TCTI,
//! the owner hierarchy's ECC P-256 primary (deterministic, so recreated
//! rather than persisted), PolicyPCR sessions, sealing a secret as a
//! KeyedHash object under a PCR policy, and unsealing it.

use crate::ProviderError;
use std::str::FromStr;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, DigestList, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder,
    PcrSlot, Private, Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters,
    SensitiveData, SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use super::policy::{PcrValues, Sha256Digest};

/// The TPM cannot be used now, and why.
pub(super) fn unavailable(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unavailable {
        kind: api_types::KeySource::Tpm,
        reason: reason.into(),
    }
}

/// A TPM error as a provider error: a failed policy check (a PCR changed)
/// is [`ProviderError::PcrMismatch`], which re-sealing mends.
pub(super) fn tpm_err(what: &str, e: tss_esapi::Error) -> ProviderError {
    if let tss_esapi::Error::Tss2Error(rc) = e {
        if rc.kind() == Some(tss_esapi::constants::response_code::Tss2ResponseCodeKind::PolicyFail)
        {
            return ProviderError::PcrMismatch {
                what: format!("{what} (TPM error 0x99d, policy check failed)"),
            };
        }
    }
    unavailable(format!("{what}: {e}"))
}

/// The sealed object, as kept in the token.
pub(super) struct Sealed {
    pub public: Public,
    pub private: Private,
}

fn pcr_selection(pcrs: &[u32]) -> Result<PcrSelectionList, ProviderError> {
    let slots: Vec<PcrSlot> = pcrs
        .iter()
        .map(|&p| {
            // Beyond PCR 31 the shift has no bit to set: 0, which no slot is.
            let bit = 1u32.checked_shl(p).unwrap_or(0);
            PcrSlot::try_from(bit).map_err(|e| unavailable(format!("PCR {p}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    PcrSelectionListBuilder::new()
        .with_selection(HashingAlgorithm::Sha256, &slots)
        .build()
        .map_err(|e| unavailable(format!("PCR selection: {e}")))
}

fn open(tcti: &str) -> Result<Context, ProviderError> {
    let conf =
        TctiNameConf::from_str(tcti).map_err(|e| unavailable(format!("bad TCTI `{tcti}`: {e}")))?;
    Context::new(conf).map_err(|e| unavailable(format!("cannot open the TPM at `{tcti}`: {e}")))
}

/// The owner-hierarchy ECC P-256 storage primary (deterministic).
fn primary(ctx: &mut Context) -> Result<KeyHandle, ProviderError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_decrypt(true)
        .with_restricted(true)
        .with_no_da(true)
        .build()
        .map_err(|e| tpm_err("primary attributes", e))?;
    let params = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()
    .map_err(|e| tpm_err("primary parameters", e))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(|e| tpm_err("primary template", e))?;
    ctx.execute_with_nullauth_session(|ctx| {
        ctx.create_primary(Hierarchy::Owner, public, None, None, None, None)
    })
    .map(|r| r.key_handle)
    .map_err(|e| tpm_err("creating the primary key", e))
}

/// A policy session (trial or real) with PolicyPCR applied.
fn pcr_policy_session(
    ctx: &mut Context,
    kind: SessionType,
    pcrs: &[u32],
) -> Result<PolicySession, ProviderError> {
    let session = ctx
        .start_auth_session(
            None,
            None,
            None,
            kind,
            SymmetricDefinition::AES_128_CFB,
            HashingAlgorithm::Sha256,
        )
        .map_err(|e| tpm_err("starting a policy session", e))?
        .ok_or_else(|| unavailable("the TPM returned no session"))?;
    let (attrs, mask) = SessionAttributesBuilder::new()
        .with_decrypt(true)
        .with_encrypt(true)
        .build();
    ctx.tr_sess_set_attributes(session, attrs, mask)
        .map_err(|e| tpm_err("session attributes", e))?;
    let policy = PolicySession::try_from(session).map_err(|e| tpm_err("policy session", e))?;
    ctx.policy_pcr(policy, Digest::default(), pcr_selection(pcrs)?)
        .map_err(|e| tpm_err("PolicyPCR", e))?;
    Ok(policy)
}

/// A real policy session: PolicyPCR, then PolicyOR over `branches` when
/// there are several.
fn policy_session(
    ctx: &mut Context,
    pcrs: &[u32],
    branches: &[Sha256Digest],
) -> Result<PolicySession, ProviderError> {
    let policy = pcr_policy_session(ctx, SessionType::Policy, pcrs)?;
    if branches.len() < 2 {
        return Ok(policy);
    }
    let or = digest_list(branches).and_then(|list| {
        // The TPM refuses (TPM_RC_VALUE) when the session's digest is none
        // of the branches: the PCRs hold none of the allowed value sets.
        ctx.policy_or(policy, list)
            .map_err(|_| ProviderError::PcrMismatch {
                what: "PolicyOR (TPM error 0x1c4): the PCRs hold none of the value sets allowed"
                    .into(),
            })
    });
    match or {
        Ok(()) => Ok(policy),
        Err(e) => {
            flush(
                ctx,
                ObjectHandle::from(tss_esapi::handles::SessionHandle::from(policy)),
            );
            Err(e)
        }
    }
}

fn digest_list(branches: &[Sha256Digest]) -> Result<DigestList, ProviderError> {
    let mut list = DigestList::new();
    for b in branches {
        let d = Digest::try_from(b.to_vec()).map_err(|e| tpm_err("policy digest", e))?;
        list.add(d).map_err(|e| tpm_err("policy digest list", e))?;
    }
    Ok(list)
}

fn flush(ctx: &mut Context, h: impl Into<ObjectHandle>) {
    let _ = ctx.flush_context(h.into());
}

/// Seals `secret` to the current values of `pcrs`; returns the object and the policy digest.
pub(super) fn seal(
    tcti: &str,
    pcrs: &[u32],
    secret: &[u8],
) -> Result<(Sealed, Vec<u8>), ProviderError> {
    let mut ctx = open(tcti)?;
    let digest = if pcrs.is_empty() {
        None
    } else {
        Some(trial_digest(&mut ctx, pcrs)?)
    };
    let sealed = seal_in(&mut ctx, digest.clone(), secret)?;
    Ok((
        sealed,
        digest.map(|d| d.value().to_vec()).unwrap_or_default(),
    ))
}

/// Seals `secret` under the policy digest `policy` (computed elsewhere,
/// e.g. "these PCR values or those").
pub(super) fn seal_to(
    tcti: &str,
    policy: &Sha256Digest,
    secret: &[u8],
) -> Result<Sealed, ProviderError> {
    let mut ctx = open(tcti)?;
    let digest = Digest::try_from(policy.to_vec()).map_err(|e| tpm_err("policy digest", e))?;
    seal_in(&mut ctx, Some(digest), secret)
}

/// The PolicyPCR digest of the current values of `pcrs`, by a trial session.
fn trial_digest(ctx: &mut Context, pcrs: &[u32]) -> Result<Digest, ProviderError> {
    let trial = pcr_policy_session(ctx, SessionType::Trial, pcrs)?;
    let d = ctx
        .policy_get_digest(trial)
        .map_err(|e| tpm_err("reading the policy digest", e));
    flush(
        ctx,
        ObjectHandle::from(tss_esapi::handles::SessionHandle::from(trial)),
    );
    d
}

/// Seals `secret` under `policy` (`None`: no policy, the empty auth).
fn seal_in(
    ctx: &mut Context,
    policy: Option<Digest>,
    secret: &[u8],
) -> Result<Sealed, ProviderError> {
    let parent = primary(ctx)?;
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_admin_with_policy(policy.is_some())
        .with_user_with_auth(policy.is_none())
        .build()
        .map_err(|e| tpm_err("sealed object attributes", e))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(policy.unwrap_or_default())
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(|e| tpm_err("sealed object template", e))?;
    let data = SensitiveData::try_from(secret.to_vec()).map_err(|e| tpm_err("secret", e))?;
    let created = ctx.execute_with_nullauth_session(|ctx| {
        ctx.create(parent, public, None, Some(data), None, None)
    });
    flush(ctx, parent);
    let created = created.map_err(|e| tpm_err("sealing", e))?;
    Ok(Sealed {
        public: created.out_public,
        private: created.out_private,
    })
}

/// The current SHA-256 values of `pcrs` (read one at a time: a TPM answers
/// at most eight a call).
pub(super) fn read_pcrs(tcti: &str, pcrs: &[u32]) -> Result<PcrValues, ProviderError> {
    let mut ctx = open(tcti)?;
    let mut values = PcrValues::default();
    for &p in pcrs {
        let (_, _, digests) = ctx
            .pcr_read(pcr_selection(&[p])?)
            .map_err(|e| tpm_err("reading the PCRs", e))?;
        let value = digests
            .value()
            .first()
            .and_then(|d| Sha256Digest::try_from(d.value()).ok())
            .ok_or_else(|| unavailable(format!("the TPM has no SHA-256 value for PCR {p}")))?;
        values.0.insert(p, value);
    }
    Ok(values)
}

/// Unseals `sealed` under PolicyPCR over `pcrs`, then, when the object is
/// sealed to several sets of values (`branches`: their PolicyPCR digests),
/// PolicyOR over them.
pub(super) fn unseal(
    tcti: &str,
    pcrs: &[u32],
    branches: &[Sha256Digest],
    sealed: Sealed,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let mut ctx = open(tcti)?;
    let parent = primary(&mut ctx)?;
    let loaded =
        ctx.execute_with_nullauth_session(|ctx| ctx.load(parent, sealed.private, sealed.public));
    flush(&mut ctx, parent);
    let object = loaded.map_err(|e| tpm_err("loading the sealed key", e))?;
    let result = if pcrs.is_empty() {
        ctx.execute_with_nullauth_session(|ctx| ctx.unseal(object.into()))
    } else {
        let policy = match policy_session(&mut ctx, pcrs, branches) {
            Ok(p) => p,
            Err(e) => {
                flush(&mut ctx, object);
                return Err(e);
            }
        };
        let r = ctx.execute_with_session(Some(AuthSession::from(policy)), |ctx| {
            ctx.unseal(object.into())
        });
        flush(
            &mut ctx,
            ObjectHandle::from(tss_esapi::handles::SessionHandle::from(policy)),
        );
        r
    };
    flush(&mut ctx, object);
    let data = result.map_err(|e| tpm_err("unsealing", e))?;
    Ok(Zeroizing::new(data.value().to_vec()))
}
