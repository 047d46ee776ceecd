//! Replacing one key a person holds (`volctl passphrase change`, `volctl
//! recovery-key rotate`). The volume is unlocked as by converge (any key
//! that opens it); the new key is made (asked twice, or generated and
//! handed over) before anything is written; then three steps, each safe
//! under a power cut:
//!
//! 1. the new key goes to a free spare slot, whose token names the slot it
//!    stands in for;
//! 2. the slot is replaced (destroyed, then enrolled with the new key);
//! 3. the spare is removed.
//!
//! At every point the old or the new key opens the volume. If the run is
//! cut after step 1 or 2, the next unlock by the new key opens the spare,
//! and converge finishes the change ([`super::plan::Plan::finish_replacement`]).

use super::plan::{Action, Plan};
use super::{keys, outcome, run_plan, Contents, ConvergeError, Mode, NewRecoveryKey, Outcome};
use crate::device::LuksDevice;
use crate::volume::VolumeSpec;
use api_types::{KeySource, KeyslotId};
use providers::ProviderEnv;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a key cannot be replaced.
#[derive(Debug, thiserror::Error)]
pub enum ReplaceError {
    /// The config has no key of the kind (or not at that slot).
    #[error("{volume} has no {kind} key{at} in its config")]
    NoSuchKey {
        /// Volume.
        volume: String,
        /// Kind.
        kind: KeySource,
        /// ` at slot N`, or empty.
        at: String,
    },
    /// Several keys of the kind: say which.
    #[error("{volume} has {kind} keys in slots {slots}; choose one with --slot")]
    Ambiguous {
        /// Volume.
        volume: String,
        /// Kind.
        kind: KeySource,
        /// The slots.
        slots: String,
    },
    /// The device is not a LUKS2 volume yet.
    #[error("{0} is not a LUKS2 volume yet: run `volctl converge` (or boot) to create it")]
    NotEncrypted(String),
    /// Every keyslot is in use or configured.
    #[error("no free keyslot to hold the new key while the old one is replaced")]
    NoSpareSlot,
    /// The new recovery key could not be handed over (nothing was written).
    #[error("cannot hand the new recovery key over: {0}; nothing was written")]
    Handover(#[source] std::io::Error),
    /// Unlocking or writing failed.
    #[error(transparent)]
    Converge(#[from] ConvergeError),
}

/// Replaces the `kind` key (at `slot`, or the only one) with a new one.
/// `hand_over` receives a new recovery key before anything is written; an
/// error there stops the run with nothing written.
pub async fn replace_key(
    spec: &VolumeSpec,
    device: Arc<dyn LuksDevice>,
    env: &ProviderEnv,
    kind: KeySource,
    slot: Option<KeyslotId>,
    hand_over: impl FnOnce(&NewRecoveryKey) -> std::io::Result<()>,
) -> Result<Outcome, ReplaceError> {
    let kdf_before = device.kdf_runs();
    let keys = keys::keys(spec, env);
    let target = choose_slot(spec, &keys, kind, slot)?;
    let desired: Vec<_> = keys.iter().map(keys::desired_slot).collect();
    let Contents::Luks2(h) = super::blocking(&device, |d| d.contents()).await? else {
        return Err(ReplaceError::NotEncrypted(
            device.path().display().to_string(),
        ));
    };
    let present = h.keyslot(target).is_some();
    let spare = spare_slot(&h.occupied_slots(), &keys).ok_or(ReplaceError::NoSpareSlot)?;
    let mut p = super::prepare_existing(spec, *h, &keys, &desired, &device, env).await?;
    let key = keys::key_for(&keys, target);
    let new = key
        .provider
        .enroll(&key.ctx)
        .await
        .map_err(|source| ConvergeError::Provider {
            slot: target,
            source,
        })?;
    if kind == KeySource::Recovery {
        hand_over(&NewRecoveryKey {
            slot: target,
            key: new.passphrase.clone(),
        })
        .map_err(ReplaceError::Handover)?;
    }
    p.plan = replacement_plan(target, spare, kind, present);
    p.premade = BTreeMap::from([(target, new.passphrase)]);
    let recovery_keys = run_plan(spec, &keys, &mut p, &device, super::RunAt::Here)
        .await?
        .recovery_keys;
    let o = outcome(spec, &device, p.header.as_ref(), kdf_before, Mode::Apply).await?;
    Ok(Outcome {
        unlocked_by: p.unlocked_by,
        plan: p.plan,
        applied: true,
        recovery_keys,
        ..o
    })
}

/// The configured slot of `kind` to replace.
fn choose_slot(
    spec: &VolumeSpec,
    keys: &[keys::Key],
    kind: KeySource,
    slot: Option<KeyslotId>,
) -> Result<KeyslotId, ReplaceError> {
    let of_kind: Vec<KeyslotId> = keys
        .iter()
        .filter(|k| k.spec.kind.source() == kind && slot.is_none_or(|s| s == k.spec.slot))
        .map(|k| k.spec.slot)
        .collect();
    match of_kind.as_slice() {
        [one] => Ok(*one),
        [] => Err(ReplaceError::NoSuchKey {
            volume: spec.name.clone(),
            kind,
            at: slot.map(|s| format!(" at slot {s}")).unwrap_or_default(),
        }),
        many => Err(ReplaceError::Ambiguous {
            volume: spec.name.clone(),
            kind,
            slots: many
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The highest keyslot neither in use nor configured.
fn spare_slot(active: &[KeyslotId], keys: &[keys::Key]) -> Option<KeyslotId> {
    KeyslotId::all()
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .find(|s| !active.contains(s) && !keys.iter().any(|k| k.spec.slot == *s))
}

/// Spare first, then the slot, then the spare goes; a slot not yet
/// enrolled is simply added.
fn replacement_plan(slot: KeyslotId, spare: KeyslotId, kind: KeySource, present: bool) -> Plan {
    let actions = if present {
        vec![
            Action::AddSpare {
                slot: spare,
                replaces: slot,
                kind,
            },
            Action::Replace {
                slot,
                kind,
                lock_to_state: false,
                binds: None,
                reason: format!("new {kind} key"),
            },
            Action::RemoveSpare {
                slot: spare,
                replaced: slot,
            },
        ]
    } else {
        vec![Action::Add {
            slot,
            kind,
            lock_to_state: false,
            binds: None,
        }]
    };
    Plan {
        actions,
        notes: vec![],
    }
}
