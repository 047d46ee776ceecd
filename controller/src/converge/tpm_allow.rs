//! `volctl tpm allow`: the TPM keys of a volume re-sealed, each to its
//! current PCR values or those values with the given PCRs changed, ahead
//! of a planned firmware or Secure Boot database update (docs/keys.md,
//! "TPM across updates"). Only tokens change: one header write per TPM
//! slot, no keyslot touched, one KDF run (the unlock that proves the
//! volume key the tokens are bound to). The next converge after the update
//! narrows each key back to the values the machine then has.

use super::keys::{self, Key};
use super::plan::{Action, Plan};
use super::{outcome, run_plan, ConvergeError, Mode, Outcome};
use crate::device::LuksDevice;
use crate::luks2::header::Luks2Header;
use crate::volume::VolumeSpec;
use api_types::{KeySource, KeyslotId};
use providers::tpm::policy::PcrValues;
use providers::{KeyData, ProviderEnv};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Allows `changes` (PCR → the value it will have) beside the current
/// values, for every TPM key of the volume on `device`; `mode` `DryRun`
/// plans only.
pub async fn allow_tpm_values(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    mode: Mode,
    changes: &PcrValues,
) -> Result<Outcome, ConvergeError> {
    let super::Existing {
        kdf_before,
        keys,
        desired,
        header: h,
    } = super::existing(spec, &device, env, refused).await?;
    let mut p = super::prepare_existing(spec, h.clone(), &keys, &desired, &device, env).await?;
    let allowed = allowed_tokens(&h, &keys, env, changes).await?;
    p.plan = allow_plan(&keys, &allowed, changes);
    p.tokens = allowed;
    if mode == Mode::Apply {
        run_plan(spec, &keys, &mut p, &device, super::RunAt::Here).await?;
    }
    let o = outcome(spec, &device, Some(&h), kdf_before, mode).await?;
    Ok(Outcome {
        unlocked_by: p.unlocked_by,
        plan: p.plan,
        applied: mode == Mode::Apply,
        ..o
    })
}

/// The new token data of each TPM slot of the config that the header
/// holds, sealed to "current values or these".
async fn allowed_tokens(
    h: &Luks2Header,
    keys: &[Key],
    env: &ProviderEnv,
    changes: &PcrValues,
) -> Result<BTreeMap<KeyslotId, KeyData>, ConvergeError> {
    let mut tokens = BTreeMap::new();
    for key in keys
        .iter()
        .filter(|k| k.spec.kind.source() == KeySource::Tpm)
    {
        let slot = key.spec.slot;
        let Some((_, token)) = h.volctl_token(slot) else {
            continue;
        };
        let KeyData::Tpm(data) = &token.data.key else {
            continue;
        };
        let new = providers::tpm::allow(&env.tpm, data, changes)
            .await
            .map_err(|source| ConvergeError::Provider { slot, source })?;
        tokens.insert(slot, KeyData::Tpm(new));
    }
    if tokens.is_empty() {
        return Err(refused("none of its slots holds a tpm key of this config"));
    }
    Ok(tokens)
}

/// A token rewrite per TPM slot, saying what it allows.
fn allow_plan(keys: &[Key], tokens: &BTreeMap<KeyslotId, KeyData>, changes: &PcrValues) -> Plan {
    let values: Vec<String> = changes
        .0
        .iter()
        .map(|(pcr, v)| format!("PCR {pcr} = {}…", &hex::encode(v)[..16]))
        .collect();
    let reason = format!(
        "the TPM key sealed to its current PCR values or {} (volctl tpm allow)",
        values.join(", ")
    );
    let actions = tokens
        .keys()
        .map(|&slot| Action::WriteToken {
            slot,
            kind: KeySource::Tpm,
            lock_to_state: keys::key_for(keys, slot).spec.lock_to_state,
            reason: reason.clone(),
        })
        .collect();
    Plan {
        actions,
        ..Plan::default()
    }
}

fn refused(why: &str) -> ConvergeError {
    ConvergeError::Refused(format!(
        "cannot allow PCR values for the TPM keys: {why}; nothing was written"
    ))
}
