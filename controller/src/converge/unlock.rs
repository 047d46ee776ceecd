//! Unlock once: try configured keys, each only against its own slot,
//! cheapest kind first, until one yields the volume key (one KDF run per
//! attempt); then probe TPM slots (cheap, no KDF) so a PCR change is
//! reported before the key is needed.

use super::keys::{key_for, Key};
use super::observe::token_of;
use super::plan::{self, BindingCheck, DesiredSlot, Note, ObservedKeyslots, ObservedSlot};
use super::{blocking, ConvergeError};
use crate::device::{DeviceError, LuksDevice};
use crate::luks2::binding::VolumeKey;
use crate::luks2::header::Luks2Header;
use api_types::KeyslotId;
use api_types::{KeySize, KeySource};
use providers::Passphrase;
use std::sync::Arc;

/// The slot that opened the volume, and the volume key.
pub(super) async fn unlock(
    h: &Luks2Header,
    keys: &[Key],
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    device: &Arc<dyn LuksDevice>,
) -> Result<(KeyslotId, VolumeKey, Passphrase), ConvergeError> {
    let mut tried = Vec::new();
    for slot in plan::unlock_order(desired, observed) {
        let key = key_for(keys, slot);
        let kind = key.spec.kind.source();
        let data = token_of(h, observed, slot)
            .map(|t| t.data)
            .unwrap_or_else(|| serde_json::json!({}));
        let pass = match key.provider.recover(&key.ctx, &data).await {
            Ok(p) => p,
            Err(e) => {
                tried.push(format!("slot {slot} ({kind}): {e}"));
                continue;
            }
        };
        let size = h
            .keyslot(slot)
            .map_or(KeySize::from_bits(512), |k| k.size());
        let p = pass.clone();
        match blocking(device, move |d| d.volume_key(slot, size, p.expose())).await {
            Ok(vk) => {
                tracing::info!(slot = slot.get(), kind = %kind, "unlocked");
                return Ok((slot, vk, pass));
            }
            Err(ConvergeError::Device(DeviceError::WrongKey { .. })) => {
                tried.push(format!("slot {slot} ({kind}): wrong key"))
            }
            Err(e) => return Err(e),
        }
    }
    Err(no_key_opens(device, desired, observed, tried))
}

fn no_key_opens(
    device: &Arc<dyn LuksDevice>,
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    mut tried: Vec<String>,
) -> ConvergeError {
    for d in desired {
        if let Err(r) = &d.available {
            tried.push(format!("slot {} ({}): {r}", d.slot, d.kind));
        }
    }
    let slots = observed
        .slots
        .iter()
        .map(|(s, o)| match o {
            ObservedSlot::Managed { kind, .. } => format!("{s} ({kind})"),
            ObservedSlot::Unmanaged => format!("{s} (not enrolled by volctl)"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    ConvergeError::NoKeyOpens {
        path: device.path().display().to_string(),
        slots: if slots.is_empty() {
            "none".into()
        } else {
            slots
        },
        tried: if tried.is_empty() {
            "no configured key matches a keyslot's kind".into()
        } else {
            tried.join("; ")
        },
    }
}

/// What probing the TPM slots found: notes, and the slots whose PCRs
/// changed (candidates for re-sealing).
#[derive(Default)]
pub(super) struct TpmProbe {
    pub notes: Vec<Note>,
    pub pcr_changed: Vec<KeyslotId>,
}

/// Tries to unseal every TPM slot other than the one that unlocked.
pub(super) async fn check_tpm_slots(
    h: &Luks2Header,
    keys: &[Key],
    observed: &ObservedKeyslots,
    unlocked: KeyslotId,
) -> TpmProbe {
    let mut probe = TpmProbe::default();
    for key in keys
        .iter()
        .filter(|k| k.spec.slot != unlocked && k.provider.kind() == KeySource::Tpm)
    {
        let slot = key.spec.slot;
        let in_sync = matches!(
            observed.slots.get(&slot),
            Some(ObservedSlot::Managed {
                binding: BindingCheck::Match,
                ..
            })
        );
        let Some(token) = token_of(h, observed, slot).filter(|_| in_sync) else {
            continue;
        };
        if let Err(e) = key.provider.recover(&key.ctx, &token.data).await {
            tracing::warn!(slot = slot.get(), "TPM key unusable: {e}");
            if matches!(e, providers::ProviderError::PcrMismatch { .. }) {
                probe.pcr_changed.push(slot);
            }
            probe.notes.push(Note::Unusable {
                slot,
                kind: KeySource::Tpm,
                reason: e.to_string(),
            });
        }
    }
    probe
}
