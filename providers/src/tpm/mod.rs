//! `tpm`: a random 32-byte key sealed to this machine's TPM 2.0 under a
//! PolicyPCR policy (default PCR 7, SHA-256). The passphrase is the key's
//! base64; the token keeps the sealed object's public and private blobs,
//! the PCR list, the hash and the policy digest. The parent is an ECC P-256
//! storage primary in the owner hierarchy, which the TPM derives the same
//! way every time, so nothing needs to be persisted in the TPM.
//!
//! With a signed policy (`signedPolicy`, systemd's format), the object is
//! first bound to a public key (TPM2_PolicyAuthorize): any PCR values that
//! key signed open it, so a new boot image with its own signature needs no
//! re-seal. See `signed.rs`.
//!
//! When a bound PCR has changed (another OS booted, Secure Boot state
//! changed), unsealing fails: the slot is reported unusable for this boot
//! and another key must open the volume. The slot itself is kept.

use crate::sealed_key::{
    bad_token, passphrase, random_key, Base64Bytes, SignedPolicyToken, TpmTokenData,
};
use crate::KeyData;
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;
use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};
use zeroize::Zeroizing;

mod allow;
mod esapi;
mod pin;
pub mod policy;
pub mod quote;
pub mod signed;

use crate::ask::AskerHandle;
pub use allow::{allow, narrowed};
use api_types::{KeySource, PromptParams, SignedPcrPolicy};
use esapi::{seal, seal_to, tpm_err, unavailable, unseal, PolicySteps, Sealed, SignedStep};
pub use pin::{ask_new_pin, with_new_pin};
use signed::PcrPublicKey;
use std::path::Path;

/// Default TCTI: the kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// UEFI variable that says whether Secure Boot is on.
pub const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// Where the TPM is and how to check Secure Boot.
#[derive(Debug, Clone)]
pub struct TpmOptions {
    /// TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// The efivarfs directory (for `checkSecurebootStatusOnEnroll`).
    pub efivars_dir: std::path::PathBuf,
}

impl Default for TpmOptions {
    fn default() -> Self {
        let tcti = std::env::var("TPM2TOOLS_TCTI")
            .or_else(|_| std::env::var("TCTI"))
            .unwrap_or_else(|_| DEFAULT_TCTI.into());
        TpmOptions {
            tcti,
            efivars_dir: "/sys/firmware/efi/efivars".into(),
        }
    }
}

/// Keys sealed to the TPM.
pub struct TpmProvider {
    pcrs: Vec<u32>,
    check_secureboot: bool,
    options: TpmOptions,
    signed: Option<SignedPcrPolicy>,
    pin: Option<pin::PinAsking>,
}

impl TpmProvider {
    /// A provider sealing to `pcrs` (sorted; empty = no PCR policy).
    pub fn new(pcrs: Vec<u32>, check_secureboot: bool, options: TpmOptions) -> Self {
        TpmProvider {
            pcrs,
            check_secureboot,
            options,
            signed: None,
            pin: None,
        }
    }

    /// The same, with a PIN a person chooses at enrolment and types at
    /// every unlock (PolicyAuthValue), asked through `asker`.
    pub fn with_pin(mut self, asker: Option<AskerHandle>, params: PromptParams) -> Self {
        self.pin = Some(pin::PinAsking { asker, params });
        self
    }

    /// The same, bound first to `signed`'s public key (PolicyAuthorize).
    pub fn with_signed_policy(mut self, signed: Option<SignedPcrPolicy>) -> Self {
        self.signed = signed;
        self
    }

    /// Where the signatures of a signed policy are read.
    fn signatures(&self) -> Option<&Path> {
        self.signed.as_ref().map(|s| s.signature.as_path())
    }

    /// The signed policy's key, read from its file (enrolment and binding).
    fn signing_key(&self) -> Result<Option<(PcrPublicKey, &SignedPcrPolicy)>, ProviderError> {
        self.signed
            .as_ref()
            .map(|s| Ok((PcrPublicKey::read(&s.public_key)?, s)))
            .transpose()
    }
}

/// Whether the efivarfs `SecureBoot` variable says enabled.
pub fn secure_boot_enabled(efivars_dir: &std::path::Path) -> Result<bool, String> {
    let p = efivars_dir.join(SECURE_BOOT_VAR);
    let raw = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    // 4 bytes of attributes, then the value.
    raw.get(4)
        .map(|&v| v == 1)
        .ok_or_else(|| format!("{} is too short", p.display()))
}

/// The secret a TPM token seals, unsealed under the PCRs it names (and,
/// when it allows several value sets, PolicyOR over them; with a signed
/// policy, after a signature from `signatures` of the signed PCRs' values).
async fn unseal_token(
    options: &TpmOptions,
    token: &TpmTokenData,
    signatures: Option<&Path>,
    pin: Option<Zeroizing<Vec<u8>>>,
) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let bad = |reason: &str| ProviderError::BadToken {
        kind: api_types::KeySource::Tpm,
        reason: reason.into(),
    };
    let public = Public::unmarshall(&token.public.0).map_err(|_| bad("public blob"))?;
    let private = Private::try_from(token.private.0.clone()).map_err(|_| bad("private blob"))?;
    let steps = PolicySteps {
        signed: signed_step(token, signatures)?,
        pcrs: checked_pcrs(token)?.to_vec(),
        branches: allow::branches(token)?,
        pin,
    };
    let tcti = options.tcti.clone();
    blocking(move || unseal(&tcti, &steps, Sealed { public, private })).await
}

/// The signed step of a token with a signed policy: its key and the
/// signatures in `signatures` by that key over its PCRs (read before any
/// TPM call: none costs nothing).
fn signed_step(
    token: &TpmTokenData,
    signatures: Option<&Path>,
) -> Result<Option<SignedStep>, ProviderError> {
    let Some(signed) = &token.signed else {
        return Ok(None);
    };
    let bad = |reason: String| ProviderError::BadToken {
        kind: api_types::KeySource::Tpm,
        reason,
    };
    let key = PcrPublicKey::from_pem(&signed.public_key)
        .map_err(|e| bad(format!("its signed policy's public key: {e}")))?;
    if key.fingerprint() != signed.pkfp {
        return Err(bad(
            "its signed policy's fingerprint is not its key's".into()
        ));
    }
    in_range(&signed.pcrs)?;
    let path = signatures.ok_or_else(|| {
        unavailable("the key has a signed PCR policy and no signature file is configured")
    })?;
    Ok(Some(SignedStep {
        key: key.tpm_public()?,
        pcrs: signed.pcrs.clone(),
        signatures: signed::signatures_for(path, &signed.pkfp, &signed.pcrs)?,
        source: path.display().to_string(),
    }))
}

/// The PCRs a token names, each 0–23 (beyond u32, serde refuses it).
fn checked_pcrs(token: &TpmTokenData) -> Result<&[u32], ProviderError> {
    in_range(&token.pcrs)?;
    Ok(&token.pcrs)
}

/// Refuses a PCR number beyond 23 (a token comes from a header, which
/// anyone may have written).
fn in_range(pcrs: &[u32]) -> Result<(), ProviderError> {
    if pcrs.iter().any(|p| *p > api_types::encryption::MAX_PCR) {
        return Err(ProviderError::BadToken {
            kind: api_types::KeySource::Tpm,
            reason: format!("a PCR number outside 0–{}", api_types::encryption::MAX_PCR),
        });
    }
    Ok(())
}

/// The current SHA-256 values of `pcrs`.
pub async fn read_pcrs(
    options: &TpmOptions,
    pcrs: &[u32],
) -> Result<policy::PcrValues, ProviderError> {
    let (tcti, pcrs) = (options.tcti.clone(), pcrs.to_vec());
    blocking(move || esapi::read_pcrs(&tcti, &pcrs)).await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(format!("TPM task failed: {e}")))?
}

impl TpmProvider {
    /// `secret` sealed to this key's policy: PolicyPCR over the current
    /// values of its PCRs, after PolicyAuthorize by `signing` when it has
    /// a signed policy, and then PolicyAuthValue with `pin` when it asks
    /// one. Returns the object and its policy digest.
    async fn seal(
        &self,
        signing: Option<&PcrPublicKey>,
        pin: Option<Zeroizing<Vec<u8>>>,
        secret: &[u8],
    ) -> Result<(Sealed, Vec<u8>), ProviderError> {
        let (tcti, pcrs, secret) = (
            self.options.tcti.clone(),
            self.pcrs.clone(),
            Zeroizing::new(secret.to_vec()),
        );
        if signing.is_none() && pin.is_none() {
            return blocking(move || seal(&tcti, &pcrs, &secret)).await;
        }
        let public = signing.map(PcrPublicKey::tpm_public).transpose()?;
        blocking(move || {
            let policy = esapi::policy_digest(&tcti, public, &pcrs, pin.is_some())?;
            let sealed = seal_to(&tcti, &policy, &secret, pin.as_deref().map(|p| &p[..]))?;
            Ok((sealed, policy.to_vec()))
        })
        .await
    }

    /// The PIN's auth value, asked twice, when this key asks one.
    async fn new_pin(&self, ctx: &KeyContext) -> Result<Option<Zeroizing<Vec<u8>>>, ProviderError> {
        match &self.pin {
            None => Ok(None),
            Some(asking) => asking.new_pin(&ctx.volume_id).await.map(Some),
        }
    }
}

#[async_trait]
impl KeyProvider for TpmProvider {
    fn kind(&self) -> KeySource {
        match self.pin {
            Some(_) => KeySource::TpmPin,
            None => KeySource::Tpm,
        }
    }
    async fn enroll(&self, ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        if self.check_secureboot {
            match secure_boot_enabled(&self.options.efivars_dir) {
                Ok(true) => {}
                Ok(false) => return Err(unavailable("checkSecurebootStatusOnEnroll is set and Secure Boot is disabled; refusing to enrol")),
                Err(e) => return Err(unavailable(format!("checkSecurebootStatusOnEnroll is set and the Secure Boot state is unknown: {e}"))),
            }
        }
        let key = random_key();
        let signing = self.signing_key()?;
        let pin = self.new_pin(ctx).await?;
        let asks_pin = pin.is_some();
        let (sealed, digest) = self
            .seal(signing.as_ref().map(|(k, _)| k), pin, &key[..])
            .await?;
        let public = sealed
            .public
            .marshall()
            .map_err(|e| tpm_err("marshalling", e))?;
        Ok(Enrolled {
            passphrase: passphrase(key.as_ref()),
            token_data: KeyData::Tpm(TpmTokenData {
                public: Base64Bytes(public),
                private: Base64Bytes(sealed.private.value().to_vec()),
                pcrs: self.pcrs.clone(),
                hash: "sha256".into(),
                policy_digest: hex::encode(digest),
                allowed: vec![],
                signed: signing.map(|(k, s)| SignedPolicyToken {
                    pkfp: k.fingerprint(),
                    public_key: k.pem,
                    pcrs: s.pcrs.clone(),
                }),
                pin: asks_pin,
            }),
        })
    }
    async fn recover(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Passphrase, ProviderError> {
        let KeyData::Tpm(token) = token_data else {
            return Err(bad_token(api_types::KeySource::Tpm, token_data));
        };
        if token.pin {
            return Err(pin::asks_a_pin());
        }
        let key = unseal_token(&self.options, token, self.signatures(), None).await?;
        Ok(passphrase(&key))
    }
    async fn recover_typed(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
        answer: &Passphrase,
    ) -> Result<Passphrase, ProviderError> {
        let KeyData::Tpm(token) = token_data else {
            return Err(bad_token(KeySource::TpmPin, token_data));
        };
        let auth = token.pin.then(|| policy::pin_auth(answer.expose()));
        let key = unseal_token(&self.options, token, self.signatures(), auth).await?;
        Ok(passphrase(&key))
    }
    async fn refresh(
        &self,
        _ctx: &KeyContext,
        token_data: &KeyData,
    ) -> Result<Option<KeyData>, ProviderError> {
        let KeyData::Tpm(token) = token_data else {
            return Err(bad_token(api_types::KeySource::Tpm, token_data));
        };
        Ok(narrowed(&self.options, token).await?.map(KeyData::Tpm))
    }
    fn describe(&self) -> Option<String> {
        let literal = match self.pcrs.as_slice() {
            [] => "no literal PCR".to_string(),
            pcrs => policy::pcr_names(pcrs),
        };
        let pin = if self.pin.is_some() { "; a PIN" } else { "" };
        // An unreadable key file shows as the key's availability instead.
        let Ok(Some((key, signed))) = self.signing_key() else {
            return Some(format!("{literal}{pin}"));
        };
        Some(format!(
            "{literal}; {} as signed by key {}{pin}",
            policy::pcr_names(&signed.pcrs),
            signed::short(&key.fingerprint())
        ))
    }
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let list = |pcrs: &[u32]| {
            pcrs.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut material = format!(
            "tpm\0sha256\0{}\0secureboot={}",
            list(&self.pcrs),
            self.check_secureboot
        );
        // A key without a signed policy or a PIN binds as it always did.
        if let Some((key, signed)) = self.signing_key()? {
            material += &format!("\0signed={}:{}", key.fingerprint(), list(&signed.pcrs));
        }
        if self.pin.is_some() {
            material += "\0pin";
        }
        Ok(Passphrase::new(material.into_bytes()))
    }
}
