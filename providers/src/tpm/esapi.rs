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
    Auth, Digest, DigestList, EccPoint, KeyedHashScheme, Nonce, PcrSelectionList,
    PcrSelectionListBuilder, PcrSlot, Private, Public, PublicBuilder, PublicEccParametersBuilder,
    PublicKeyRsa, PublicKeyedHashParameters, RsaSignature, SensitiveData, Signature,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

use super::policy::{
    auth_value_after, authorize_policy, pcr_names, pcr_policy_after, PcrValues, Sha256Digest,
};
use super::signed::PolicySignature;
use sha2::Digest as _;

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
    use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Kind;
    if let tss_esapi::Error::Tss2Error(rc) = e {
        match rc.kind() {
            Some(Kind::PolicyFail) => {
                return ProviderError::PcrMismatch {
                    what: format!("{what} (TPM error 0x99d, policy check failed)"),
                }
            }
            Some(Kind::AuthFail) => return ProviderError::WrongPin,
            _ => {}
        }
    }
    unavailable(format!("{what}: {e}"))
}

/// Whether `e` is the TPM's dictionary-attack lockout (TPM_RC_LOCKOUT).
fn locked_out(e: &tss_esapi::Error) -> bool {
    use tss_esapi::constants::response_code::Tss2ResponseCodeKind as Kind;
    matches!(e, tss_esapi::Error::Tss2Error(rc) if rc.kind() == Some(Kind::Lockout))
}

/// The lockout in words, with how long one wrong PIN stays counted.
fn lockout(ctx: &mut Context) -> ProviderError {
    use tss_esapi::constants::PropertyTag;
    let interval = ctx
        .get_tpm_property(PropertyTag::LockoutInterval)
        .ok()
        .flatten();
    unavailable(match interval {
        Some(s) => format!(
            "the TPM is locked out after too many wrong PINs: it forgets one wrong PIN every {s} s (its lockout interval); until then no PIN is tried"
        ),
        None => "the TPM is locked out after too many wrong PINs; no PIN is tried until it recovers".into(),
    })
}

/// The sealed object, as kept in the token.
pub(super) struct Sealed {
    pub public: Public,
    pub private: Private,
}

pub(super) fn pcr_selection(pcrs: &[u32]) -> Result<PcrSelectionList, ProviderError> {
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

pub(super) fn open(tcti: &str) -> Result<Context, ProviderError> {
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
    ecc_primary(ctx, Hierarchy::Owner, attrs, params, "the primary key")
}

/// An ECC primary key of `hierarchy` from a template of `attrs` and
/// `params` (deterministic: the same key from the same seed every time).
pub(super) fn ecc_primary(
    ctx: &mut Context,
    hierarchy: Hierarchy,
    attrs: tss_esapi::attributes::ObjectAttributes,
    params: tss_esapi::structures::PublicEccParameters,
    what: &str,
) -> Result<KeyHandle, ProviderError> {
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_ecc_parameters(params)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
        .map_err(|e| tpm_err(&format!("{what}'s template"), e))?;
    ctx.execute_with_nullauth_session(|ctx| {
        ctx.create_primary(hierarchy, public, None, None, None, None)
    })
    .map(|r| r.key_handle)
    .map_err(|e| tpm_err(&format!("creating {what}"), e))
}

/// A policy session (trial or real), nothing applied yet.
fn start_session(ctx: &mut Context, kind: SessionType) -> Result<PolicySession, ProviderError> {
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
    PolicySession::try_from(session).map_err(|e| tpm_err("policy session", e))
}

/// A policy session (trial or real) with PolicyPCR applied.
fn pcr_policy_session(
    ctx: &mut Context,
    kind: SessionType,
    pcrs: &[u32],
) -> Result<PolicySession, ProviderError> {
    let policy = start_session(ctx, kind)?;
    match ctx.policy_pcr(policy, Digest::default(), pcr_selection(pcrs)?) {
        Ok(()) => Ok(policy),
        Err(e) => {
            flush_session(ctx, policy);
            Err(tpm_err("PolicyPCR", e))
        }
    }
}

/// What a sealed object's policy asks, in the order a session satisfies it.
pub(super) struct PolicySteps {
    /// First, when the key has a signed policy: PolicyPCR over the signed
    /// PCRs, then PolicyAuthorize with a signature of what they hold.
    pub signed: Option<SignedStep>,
    /// Then PolicyPCR over these literal PCRs (none: no PolicyPCR).
    pub pcrs: Vec<u32>,
    /// Then PolicyOR over these PolicyPCR digests, when there are several.
    pub branches: Vec<Sha256Digest>,
    /// Last, PolicyAuthValue with this auth value (a PIN's SHA-256).
    pub pin: Option<Zeroizing<Vec<u8>>>,
}

impl PolicySteps {
    /// Whether the object has no policy (sealed to the empty auth).
    fn is_empty(&self) -> bool {
        self.signed.is_none() && self.pcrs.is_empty() && self.pin.is_none()
    }
}

/// A signed PCR policy's step: the key (as a TPM public area), the PCRs it
/// signs, and the signatures on offer.
pub(super) struct SignedStep {
    /// The public key, for TPM2_LoadExternal.
    pub key: Public,
    /// The signed PCRs.
    pub pcrs: Vec<u32>,
    /// The signatures by that key over those PCRs.
    pub signatures: Vec<PolicySignature>,
    /// Where they were read (for messages).
    pub source: String,
}

/// A real policy session with every step of `steps` applied.
fn policy_session(ctx: &mut Context, steps: &PolicySteps) -> Result<PolicySession, ProviderError> {
    let policy = start_session(ctx, SessionType::Policy)?;
    let applied = apply_steps(ctx, policy, steps);
    if applied.is_err() {
        flush_session(ctx, policy);
    }
    applied.map(|()| policy)
}

fn apply_steps(
    ctx: &mut Context,
    policy: PolicySession,
    steps: &PolicySteps,
) -> Result<(), ProviderError> {
    if let Some(signed) = &steps.signed {
        apply_signed(ctx, policy, signed)?;
    }
    if !steps.pcrs.is_empty() {
        ctx.policy_pcr(policy, Digest::default(), pcr_selection(&steps.pcrs)?)
            .map_err(|e| tpm_err("PolicyPCR", e))?;
    }
    if steps.branches.len() >= 2 {
        let list = digest_list(&steps.branches)?;
        // The TPM refuses (TPM_RC_VALUE) when the session's digest is none
        // of the branches: the PCRs hold none of the allowed value sets.
        ctx.policy_or(policy, list)
            .map_err(|_| ProviderError::PcrMismatch {
                what: "PolicyOR (TPM error 0x1c4): the PCRs hold none of the value sets allowed"
                    .into(),
            })?;
    }
    if steps.pin.is_some() {
        ctx.policy_auth_value(policy)
            .map_err(|e| tpm_err("PolicyAuthValue", e))?;
    }
    Ok(())
}

/// PolicyPCR over the signed PCRs, the signature of the digest that gives
/// verified by the TPM, and PolicyAuthorize with its ticket. No signature
/// of what the PCRs hold now: refused before any signature is checked.
fn apply_signed(
    ctx: &mut Context,
    policy: PolicySession,
    step: &SignedStep,
) -> Result<(), ProviderError> {
    ctx.policy_pcr(policy, Digest::default(), pcr_selection(&step.pcrs)?)
        .map_err(|e| tpm_err("PolicyPCR (signed PCRs)", e))?;
    let now = ctx
        .policy_get_digest(policy)
        .map_err(|e| tpm_err("reading the policy digest", e))?;
    let Some(chosen) = step
        .signatures
        .iter()
        .find(|s| s.policy[..] == *now.value())
    else {
        return Err(unavailable(format!(
            "none of the {} signatures in {} by the enrolled key is of the values {} holds now (a boot image signed for them brings one)",
            step.signatures.len(),
            step.source,
            pcr_names(&step.pcrs),
        )));
    };
    let (name, ticket) = verified(ctx, step, chosen)?;
    let approved = Digest::try_from(chosen.policy.to_vec()).map_err(|e| tpm_err("policy", e))?;
    ctx.policy_authorize(policy, approved, Nonce::default(), &name, ticket)
        .map_err(|e| tpm_err("PolicyAuthorize", e))
}

/// The key's name and the TPM's ticket saying it signed `chosen`.
fn verified(
    ctx: &mut Context,
    step: &SignedStep,
    chosen: &PolicySignature,
) -> Result<
    (
        tss_esapi::structures::Name,
        tss_esapi::structures::VerifiedTicket,
    ),
    ProviderError,
> {
    let key = ctx
        .load_external_public(step.key.clone(), Hierarchy::Owner)
        .map_err(|e| tpm_err("loading the PCR public key", e))?;
    let result = (|| {
        let name = ctx
            .tr_get_name(key.into())
            .map_err(|e| tpm_err("the PCR public key's name", e))?;
        // What is signed is the policy and an empty policyRef: H(pol).
        let digest = Digest::try_from(sha2::Sha256::digest(chosen.policy).to_vec())
            .map_err(|e| tpm_err("signed digest", e))?;
        let signature = PublicKeyRsa::try_from(chosen.signature.clone())
            .and_then(|s| RsaSignature::create(HashingAlgorithm::Sha256, s))
            .map_err(|e| {
                unavailable(format!("a signature in {} is malformed: {e}", step.source))
            })?;
        let ticket = ctx
            .verify_signature(key, digest, Signature::RsaSsa(signature))
            .map_err(|e| {
                unavailable(format!(
                    "the signature in {} of the values {} holds does not verify with the enrolled public key: {e}",
                    step.source,
                    pcr_names(&step.pcrs)
                ))
            })?;
        Ok((name, ticket))
    })();
    flush(ctx, key);
    result
}

/// The policy digest of an object sealed to: PolicyAuthorize by `key` (a
/// signed policy), then PolicyPCR over the current values of `literal`,
/// then PolicyAuthValue (`pin`); each when asked for, in that order, as
/// [`PolicySteps`] satisfies them.
pub(super) fn policy_digest(
    tcti: &str,
    key: Option<Public>,
    literal: &[u32],
    pin: bool,
) -> Result<Sha256Digest, ProviderError> {
    let mut ctx = open(tcti)?;
    let mut digest = [0u8; 32];
    if let Some(key) = key {
        let handle = ctx
            .load_external_public(key, Hierarchy::Owner)
            .map_err(|e| tpm_err("loading the PCR public key", e))?;
        let name = ctx.tr_get_name(handle.into());
        flush(&mut ctx, handle);
        let name = name.map_err(|e| tpm_err("the PCR public key's name", e))?;
        digest = authorize_policy(name.value());
    }
    if !literal.is_empty() {
        digest = pcr_policy_after(&digest, &read_pcrs_in(&mut ctx, literal)?);
    }
    if pin {
        digest = auth_value_after(&digest);
    }
    Ok(digest)
}

fn flush_session(ctx: &mut Context, policy: PolicySession) {
    flush(
        ctx,
        ObjectHandle::from(tss_esapi::handles::SessionHandle::from(policy)),
    );
}

fn digest_list(branches: &[Sha256Digest]) -> Result<DigestList, ProviderError> {
    let mut list = DigestList::new();
    for b in branches {
        let d = Digest::try_from(b.to_vec()).map_err(|e| tpm_err("policy digest", e))?;
        list.add(d).map_err(|e| tpm_err("policy digest list", e))?;
    }
    Ok(list)
}

pub(super) fn flush(ctx: &mut Context, h: impl Into<ObjectHandle>) {
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
    let sealed = seal_in(&mut ctx, digest.clone(), secret, None)?;
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
    auth: Option<&[u8]>,
) -> Result<Sealed, ProviderError> {
    let mut ctx = open(tcti)?;
    let digest = Digest::try_from(policy.to_vec()).map_err(|e| tpm_err("policy digest", e))?;
    seal_in(&mut ctx, Some(digest), secret, auth)
}

/// The PolicyPCR digest of the current values of `pcrs`, by a trial session.
fn trial_digest(ctx: &mut Context, pcrs: &[u32]) -> Result<Digest, ProviderError> {
    let trial = pcr_policy_session(ctx, SessionType::Trial, pcrs)?;
    let d = ctx
        .policy_get_digest(trial)
        .map_err(|e| tpm_err("reading the policy digest", e));
    flush_session(ctx, trial);
    d
}

/// Seals `secret` under `policy` (`None`: no policy, the empty auth), with
/// `auth` as the object's auth value when it has one (a PIN's hash: the
/// object is then subject to the TPM's dictionary-attack protection).
fn seal_in(
    ctx: &mut Context,
    policy: Option<Digest>,
    secret: &[u8],
    auth: Option<&[u8]>,
) -> Result<Sealed, ProviderError> {
    let parent = primary(ctx)?;
    let auth = auth
        .map(|a| Auth::try_from(a.to_vec()).map_err(|e| tpm_err("PIN auth value", e)))
        .transpose()?;
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(auth.is_none())
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
        ctx.create(parent, public, auth, Some(data), None, None)
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
    read_pcrs_in(&mut open(tcti)?, pcrs)
}

fn read_pcrs_in(ctx: &mut Context, pcrs: &[u32]) -> Result<PcrValues, ProviderError> {
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

/// Unseals `sealed` in a policy session that satisfies `steps` (none: the
/// empty auth).
pub(super) fn unseal(
    tcti: &str,
    steps: &PolicySteps,
    sealed: Sealed,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let mut ctx = open(tcti)?;
    let parent = primary(&mut ctx)?;
    let loaded =
        ctx.execute_with_nullauth_session(|ctx| ctx.load(parent, sealed.private, sealed.public));
    flush(&mut ctx, parent);
    let object = loaded.map_err(|e| tpm_err("loading the sealed key", e))?;
    let result = if steps.is_empty() {
        ctx.execute_with_nullauth_session(|ctx| ctx.unseal(object.into()))
    } else {
        let policy = match policy_session(&mut ctx, steps) {
            Ok(p) => p,
            Err(e) => {
                flush(&mut ctx, object);
                return Err(e);
            }
        };
        if let Err(e) = set_pin(&mut ctx, object, steps) {
            flush_session(&mut ctx, policy);
            flush(&mut ctx, object);
            return Err(e);
        }
        let r = ctx.execute_with_session(Some(AuthSession::from(policy)), |ctx| {
            ctx.unseal(object.into())
        });
        flush_session(&mut ctx, policy);
        r
    };
    flush(&mut ctx, object);
    let data = match result {
        Err(e) if locked_out(&e) => return Err(lockout(&mut ctx)),
        r => r.map_err(|e| tpm_err("unsealing", e))?,
    };
    Ok(Zeroizing::new(data.value().to_vec()))
}

/// The object's auth value for PolicyAuthValue: the PIN's hash.
fn set_pin(ctx: &mut Context, object: KeyHandle, steps: &PolicySteps) -> Result<(), ProviderError> {
    let Some(pin) = &steps.pin else {
        return Ok(());
    };
    let auth = Auth::try_from(pin.to_vec()).map_err(|e| tpm_err("PIN auth value", e))?;
    ctx.tr_set_auth(object.into(), auth)
        .map_err(|e| tpm_err("setting the PIN", e))
}
