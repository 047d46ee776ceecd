//! The node's half of attestation-gated release (`kms: {attest: true}`):
//! a TPM2 quote of its PCRs over the KMS's nonce, signed by its
//! attestation key (AK).
//!
//! The AK is a restricted ECDSA P-256 signing key created as a primary of
//! the endorsement hierarchy from a fixed template: the TPM derives the
//! same key from its endorsement seed every time, so nothing is stored
//! and it never leaves the TPM. Being restricted, it signs only data the
//! TPM produced itself (a forged "quote" cannot be signed by it); being
//! `fixedTPM`, it cannot be duplicated to another TPM. The KMS trusts it on
//! first use (see `kms::attest`).

use super::esapi::{ecc_primary, flush, open, pcr_selection, tpm_err, unavailable};
use crate::ProviderError;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::HashingAlgorithm;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    Data, EccScheme, HashScheme, KeyDerivationFunctionScheme, PublicEccParametersBuilder,
    SignatureScheme, SymmetricDefinitionObject,
};
use tss_esapi::traits::Marshall;
use tss_esapi::Context;

/// A quote and what verifies it, as the TPM marshals them.
#[derive(Debug, Clone)]
pub struct Quote {
    /// The AK's TPM2B_PUBLIC contents (TPMT_PUBLIC).
    pub ak_public: Vec<u8>,
    /// TPMS_ATTEST.
    pub quote: Vec<u8>,
    /// TPMT_SIGNATURE.
    pub signature: Vec<u8>,
}

/// The attestation key: the endorsement hierarchy's primary for the fixed
/// template.
fn attestation_key(ctx: &mut Context) -> Result<KeyHandle, ProviderError> {
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_restricted(true)
        .with_sign_encrypt(true)
        .build()
        .map_err(|e| tpm_err("attestation key attributes", e))?;
    let params = PublicEccParametersBuilder::new()
        .with_symmetric(SymmetricDefinitionObject::Null)
        .with_ecc_scheme(EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)))
        .with_curve(EccCurve::NistP256)
        .with_key_derivation_function_scheme(KeyDerivationFunctionScheme::Null)
        .with_is_signing_key(true)
        .with_restricted(true)
        .build()
        .map_err(|e| tpm_err("attestation key parameters", e))?;
    ecc_primary(
        ctx,
        Hierarchy::Endorsement,
        attrs,
        params,
        "the attestation key",
    )
}

/// Quotes `pcrs` (SHA-256 bank) over `nonce` with the attestation key of
/// the TPM at `tcti`.
pub fn quote(tcti: &str, pcrs: &[u32], nonce: &[u8]) -> Result<Quote, ProviderError> {
    let mut ctx = open(tcti)?;
    let ak = attestation_key(&mut ctx)?;
    let result = quote_with(&mut ctx, ak, pcrs, nonce);
    flush(&mut ctx, ak);
    result
}

fn quote_with(
    ctx: &mut Context,
    ak: KeyHandle,
    pcrs: &[u32],
    nonce: &[u8],
) -> Result<Quote, ProviderError> {
    let (public, _, _) = ctx
        .read_public(ak)
        .map_err(|e| tpm_err("reading the attestation key", e))?;
    let data =
        Data::try_from(nonce.to_vec()).map_err(|e| unavailable(format!("the KMS's nonce: {e}")))?;
    let scheme = SignatureScheme::EcDsa {
        hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
    };
    let selection = pcr_selection(pcrs)?;
    let (attest, signature) = ctx
        .execute_with_nullauth_session(|ctx| ctx.quote(ak, data, scheme, selection))
        .map_err(|e| tpm_err("quoting the PCRs", e))?;
    let marshal = |what: &str, r: tss_esapi::Result<Vec<u8>>| r.map_err(|e| tpm_err(what, e));
    Ok(Quote {
        ak_public: marshal("the attestation key", public.marshall())?,
        quote: marshal("the quote", attest.marshall())?,
        signature: marshal("the signature", signature.marshall())?,
    })
}
