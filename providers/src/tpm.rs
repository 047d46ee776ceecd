//! `tpm`: a random 32-byte key sealed to this machine's TPM 2.0 under a
//! PolicyPCR policy (default PCR 7, SHA-256). The passphrase is the key's
//! base64; the token keeps the sealed object's public and private blobs,
//! the PCR list, the hash and the policy digest. The parent is an ECC P-256
//! storage primary in the owner hierarchy, which the TPM derives the same
//! way every time, so nothing needs to be persisted in the TPM.
//!
//! When a bound PCR has changed (another OS booted, Secure Boot state
//! changed), unsealing fails: the slot is reported unusable for this boot
//! and another key must open the volume. The slot itself is kept.

use crate::sealed_key::{
    parse_token, passphrase, random_key, token_json, Base64Bytes, TpmTokenData,
};
use crate::{Enrolled, KeyContext, KeyProvider, Passphrase, ProviderError};
use async_trait::async_trait;
use std::str::FromStr;
use tss_esapi::attributes::{ObjectAttributesBuilder, SessionAttributesBuilder};
use tss_esapi::constants::SessionType;
use tss_esapi::handles::{KeyHandle, ObjectHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::{AuthSession, PolicySession};
use tss_esapi::structures::{
    Digest, EccPoint, KeyedHashScheme, PcrSelectionList, PcrSelectionListBuilder, PcrSlot, Private,
    Public, PublicBuilder, PublicEccParametersBuilder, PublicKeyedHashParameters, SensitiveData,
    SymmetricDefinition, SymmetricDefinitionObject,
};
use tss_esapi::traits::{Marshall, UnMarshall};
use tss_esapi::{Context, TctiNameConf};
use zeroize::Zeroizing;

/// Default TCTI: the kernel's TPM resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";
/// UEFI variable that says whether Secure Boot is on.
pub const SECURE_BOOT_VAR: &str = "SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c";
/// TPM error code of a failed policy check (a PCR changed).
const TPM_RC_POLICY_FAIL: u32 = 0x99d;

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
}

impl TpmProvider {
    /// A provider sealing to `pcrs` (sorted; empty = no PCR policy).
    pub fn new(pcrs: Vec<u32>, check_secureboot: bool, options: TpmOptions) -> Self {
        TpmProvider {
            pcrs,
            check_secureboot,
            options,
        }
    }
}

fn unavailable(reason: impl Into<String>) -> ProviderError {
    ProviderError::Unavailable {
        kind: api_types::KeySource::Tpm,
        reason: reason.into(),
    }
}

fn tpm_err(what: &str, e: tss_esapi::Error) -> ProviderError {
    if let tss_esapi::Error::Tss2Error(rc) = e {
        if rc.kind() == Some(tss_esapi::constants::response_code::Tss2ResponseCodeKind::PolicyFail)
        {
            return unavailable(format!(
                "{what}: the PCR values changed since the key was sealed (TPM error {TPM_RC_POLICY_FAIL:#x}, policy check failed); another key must open the volume"
            ));
        }
    }
    unavailable(format!("{what}: {e}"))
}

/// The sealed object, as kept in the token.
struct Sealed {
    public: Public,
    private: Private,
}

fn pcr_selection(pcrs: &[u32]) -> Result<PcrSelectionList, ProviderError> {
    let slots: Vec<PcrSlot> = pcrs
        .iter()
        .map(|&p| PcrSlot::try_from(1u32 << p).map_err(|e| unavailable(format!("PCR {p}: {e}"))))
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

fn flush(ctx: &mut Context, h: impl Into<ObjectHandle>) {
    let _ = ctx.flush_context(h.into());
}

/// Seals `secret` to the current values of `pcrs`; returns the object and the policy digest.
fn seal(tcti: &str, pcrs: &[u32], secret: &[u8]) -> Result<(Sealed, Vec<u8>), ProviderError> {
    let mut ctx = open(tcti)?;
    let parent = primary(&mut ctx)?;
    let digest = if pcrs.is_empty() {
        Digest::default()
    } else {
        let trial = pcr_policy_session(&mut ctx, SessionType::Trial, pcrs)?;
        let d = ctx
            .policy_get_digest(trial)
            .map_err(|e| tpm_err("reading the policy digest", e));
        flush(
            &mut ctx,
            ObjectHandle::from(tss_esapi::handles::SessionHandle::from(trial)),
        );
        d?
    };
    let attrs = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_no_da(true)
        .with_admin_with_policy(!pcrs.is_empty())
        .with_user_with_auth(pcrs.is_empty())
        .build()
        .map_err(|e| tpm_err("sealed object attributes", e))?;
    let public = PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::KeyedHash)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attrs)
        .with_auth_policy(digest.clone())
        .with_keyed_hash_parameters(PublicKeyedHashParameters::new(KeyedHashScheme::Null))
        .with_keyed_hash_unique_identifier(Digest::default())
        .build()
        .map_err(|e| tpm_err("sealed object template", e))?;
    let data = SensitiveData::try_from(secret.to_vec()).map_err(|e| tpm_err("secret", e))?;
    let created = ctx.execute_with_nullauth_session(|ctx| {
        ctx.create(parent, public, None, Some(data), None, None)
    });
    flush(&mut ctx, parent);
    let created = created.map_err(|e| tpm_err("sealing", e))?;
    Ok((
        Sealed {
            public: created.out_public,
            private: created.out_private,
        },
        digest.value().to_vec(),
    ))
}

fn unseal(tcti: &str, pcrs: &[u32], sealed: Sealed) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
    let mut ctx = open(tcti)?;
    let parent = primary(&mut ctx)?;
    let loaded =
        ctx.execute_with_nullauth_session(|ctx| ctx.load(parent, sealed.private, sealed.public));
    flush(&mut ctx, parent);
    let object = loaded.map_err(|e| tpm_err("loading the sealed key", e))?;
    let result = if pcrs.is_empty() {
        ctx.execute_with_nullauth_session(|ctx| ctx.unseal(object.into()))
    } else {
        let policy = match pcr_policy_session(&mut ctx, SessionType::Policy, pcrs) {
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

/// Whether the efivarfs `SecureBoot` variable says enabled.
pub fn secure_boot_enabled(efivars_dir: &std::path::Path) -> Result<bool, String> {
    let p = efivars_dir.join(SECURE_BOOT_VAR);
    let raw = std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
    // 4 bytes of attributes, then the value.
    raw.get(4)
        .map(|&v| v == 1)
        .ok_or_else(|| format!("{} is too short", p.display()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProviderError> + Send + 'static,
) -> Result<T, ProviderError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| unavailable(format!("TPM task failed: {e}")))?
}

#[async_trait]
impl KeyProvider for TpmProvider {
    fn kind(&self) -> api_types::KeySource {
        api_types::KeySource::Tpm
    }
    async fn enroll(&self, _ctx: &KeyContext) -> Result<Enrolled, ProviderError> {
        if self.check_secureboot {
            match secure_boot_enabled(&self.options.efivars_dir) {
                Ok(true) => {}
                Ok(false) => return Err(unavailable("checkSecurebootStatusOnEnroll is set and Secure Boot is disabled; refusing to enrol")),
                Err(e) => return Err(unavailable(format!("checkSecurebootStatusOnEnroll is set and the Secure Boot state is unknown: {e}"))),
            }
        }
        let key = random_key();
        let (tcti, pcrs, secret) = (self.options.tcti.clone(), self.pcrs.clone(), key.to_vec());
        let (sealed, digest) =
            blocking(move || seal(&tcti, &pcrs, &Zeroizing::new(secret))).await?;
        let public = sealed
            .public
            .marshall()
            .map_err(|e| tpm_err("marshalling", e))?;
        Ok(Enrolled {
            passphrase: passphrase(key.as_ref()),
            token_data: token_json(&TpmTokenData {
                public: Base64Bytes(public),
                private: Base64Bytes(sealed.private.value().to_vec()),
                pcrs: self.pcrs.clone(),
                hash: "sha256".into(),
                policy_digest: hex::encode(digest),
            }),
        })
    }
    async fn recover(
        &self,
        _ctx: &KeyContext,
        token_data: &serde_json::Value,
    ) -> Result<Passphrase, ProviderError> {
        let bad = |reason: &str| ProviderError::BadToken {
            kind: api_types::KeySource::Tpm,
            reason: reason.into(),
        };
        let token: TpmTokenData = parse_token(api_types::KeySource::Tpm, token_data)?;
        let public = Public::unmarshall(&token.public.0).map_err(|_| bad("public blob"))?;
        let private = Private::try_from(token.private.0).map_err(|_| bad("private blob"))?;
        // Unseal under the PCRs the key was sealed to (the token's list).
        // A PCR number beyond 23 is refused (beyond u32, serde refuses it).
        let pcrs = token.pcrs;
        if pcrs.iter().any(|p| *p > 23) {
            return Err(bad("a PCR number outside 0–23"));
        }
        let tcti = self.options.tcti.clone();
        let key = blocking(move || unseal(&tcti, &pcrs, Sealed { public, private })).await?;
        Ok(passphrase(&key))
    }
    fn binding_material(&self, _ctx: &KeyContext) -> Result<Passphrase, ProviderError> {
        let pcrs: Vec<String> = self.pcrs.iter().map(u32::to_string).collect();
        Ok(Passphrase::new(
            format!(
                "tpm\0sha256\0{}\0secureboot={}",
                pcrs.join(","),
                self.check_secureboot
            )
            .into_bytes(),
        ))
    }
}
