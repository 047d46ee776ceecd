//! `volctl tpm pin change`: a TPM key's PIN changed without a new keyslot.
//! The volume is unlocked as by converge (by the PIN, or any key that opens
//! it); the key's secret comes from the slot's own unlock, or from the
//! current PIN asked now; the new PIN is asked twice; then the same secret
//! is sealed again under the same policy with the new PIN. Only the token
//! is written (one header write, safe under a cut as every token rewrite:
//! the old token or the new one, the keyslot untouched).

use super::keys::Key;
use super::plan::{Action, Plan};
use super::{outcome, run_plan, ConvergeError, Mode, Outcome, Prepared};
use crate::device::LuksDevice;
use crate::luks2::header::Luks2Header;
use crate::volume::VolumeSpec;
use api_types::{KeySource, KeyslotId, PromptParams};
use providers::{KeyData, Passphrase, ProviderEnv, TpmTokenData};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why the token of slot N is rewritten.
const REASON: &str = "the TPM key sealed again with a new PIN (volctl tpm pin change)";

/// Changes the PIN of the TPM key at `slot` (or the volume's only one).
pub async fn change_tpm_pin(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    slot: Option<KeyslotId>,
) -> Result<Outcome, ConvergeError> {
    let super::Existing {
        kdf_before,
        keys,
        desired,
        header: h,
    } = super::existing(spec, &device, env, refused).await?;
    let key = pin_key(&keys, slot)?;
    let token = pin_token(&h, key.spec.slot)?;
    let mut p = super::prepare_existing(spec, h.clone(), &keys, &desired, &device, env).await?;
    let secret = secret_of(&p, key, &token, env).await?;
    let new_pin =
        providers::tpm::ask_new_pin(env.asker.as_ref(), &PromptParams::default(), &spec.name)
            .await
            .map_err(|source| provider(key, source))?;
    let new = providers::tpm::with_new_pin(&env.tpm, &token, &secret, &new_pin)
        .await
        .map_err(|source| provider(key, source))?;
    p.plan = Plan {
        actions: vec![Action::WriteToken {
            slot: key.spec.slot,
            kind: KeySource::TpmPin,
            lock_to_state: key.spec.lock_to_state,
            reason: REASON.into(),
        }],
        ..Plan::default()
    };
    p.tokens = BTreeMap::from([(key.spec.slot, KeyData::Tpm(new))]);
    run_plan(spec, &keys, &mut p, &device, super::RunAt::Here).await?;
    let o = outcome(spec, &device, Some(&h), kdf_before, Mode::Apply).await?;
    Ok(Outcome {
        unlocked_by: p.unlocked_by,
        plan: p.plan,
        applied: true,
        ..o
    })
}

/// The configured TPM key with a PIN at `slot`, or the only one.
fn pin_key(keys: &[Key], slot: Option<KeyslotId>) -> Result<&Key, ConvergeError> {
    let found: Vec<&Key> = keys
        .iter()
        .filter(|k| k.spec.kind.source() == KeySource::TpmPin)
        .filter(|k| slot.is_none_or(|s| s == k.spec.slot))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => Err(refused("its config has no `tpm: {pin: true}` key there")),
        many => Err(refused(&format!(
            "it has TPM keys with a PIN in slots {}; choose one with --slot",
            many.iter()
                .map(|k| k.spec.slot.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// The slot's TPM token, which must ask a PIN.
fn pin_token(h: &Luks2Header, slot: KeyslotId) -> Result<TpmTokenData, ConvergeError> {
    match h.volctl_token(slot).map(|(_, t)| t.data.key) {
        Some(KeyData::Tpm(data)) if data.pin => Ok(data),
        _ => Err(refused(&format!(
            "slot {slot} holds no TPM key with a PIN yet (converge enrols it)"
        ))),
    }
}

/// The key's passphrase: from the unlock when this slot opened the volume
/// (its PIN was typed), else unsealed with the current PIN, asked now.
async fn secret_of(
    p: &Prepared,
    key: &Key,
    token: &TpmTokenData,
    env: &ProviderEnv,
) -> Result<Passphrase, ConvergeError> {
    if let Some((slot, pass)) = &p.unlock {
        if *slot == key.spec.slot {
            return Ok(pass.clone());
        }
    }
    let asker = env
        .asker
        .as_ref()
        .ok_or_else(|| refused("nobody can be asked for the current PIN here"))?;
    let question = providers::ask::Question {
        id: String::new(),
        message: format!("Current TPM PIN for {}", key.ctx.volume_id),
        timeout: None,
    };
    let pin = asker
        .ask(&question)
        .await
        .map_err(|e| refused(&format!("no current PIN: {e}")))?;
    key.provider
        .recover_typed(&key.ctx, &KeyData::Tpm(token.clone()), &pin)
        .await
        .map_err(|source| provider(key, source))
}

fn provider(key: &Key, source: providers::ProviderError) -> ConvergeError {
    ConvergeError::Provider {
        slot: key.spec.slot,
        source,
    }
}

fn refused(why: &str) -> ConvergeError {
    ConvergeError::Refused(format!(
        "cannot change the TPM PIN: {why}; nothing was written"
    ))
}
