//! The decisions: which actions bring observed keyslots to the desired
//! ones, in an order that survives a crash between any two.

use super::text::describe;
use super::vocabulary::*;
use api_types::{KeySource, KeyslotId};
use std::collections::BTreeMap;

/// Which desired slots to try, in order, to unlock the volume: each key only
/// against its own slot, cheapest kind first; only slots whose token says
/// they hold that kind (or, for keys computable from the config, slots
/// without a volctl token), and only keys that can be produced now.
pub fn unlock_order(desired: &[DesiredSlot], observed: &ObservedKeyslots) -> Vec<KeyslotId> {
    let mut c: Vec<&DesiredSlot> = desired
        .iter()
        .filter(|d| d.available.is_ok() && d.kind.opens_unattended())
        .filter(|d| match observed.slots.get(&d.slot) {
            Some(ObservedSlot::Managed {
                kind,
                lock_to_state,
                ..
            }) => *kind == d.kind && *lock_to_state == d.lock_to_state,
            Some(ObservedSlot::Unmanaged) => d.kind.locally_derivable(),
            Some(ObservedSlot::Clevis { sss, .. }) => {
                let opener = match sss {
                    true => KeySource::Threshold,
                    false => KeySource::Tang,
                };
                d.kind == opener && !d.lock_to_state
            }
            None => false,
        })
        .collect();
    c.sort_by_key(|d| (d.kind.unlock_cost(), d.slot));
    c.into_iter().map(|d| d.slot).collect()
}

/// Plans a blank device: format, then add every key that can be produced.
pub fn plan_format(desired: &[DesiredSlot], rule: RecoveryOnly) -> Result<Plan, PlanError> {
    let mut plan = Plan {
        actions: vec![Action::Format],
        notes: vec![],
    };
    for d in desired {
        match &d.available {
            Ok(()) => plan.actions.push(d.add()),
            Err(_) => plan.notes.push(d.unavailable()),
        }
    }
    let reasons: Vec<String> = desired
        .iter()
        .filter_map(|d| {
            let r = d.available.as_ref().err()?;
            Some(format!("slot {} ({}): {r}", d.slot, d.kind))
        })
        .collect();
    let made = plan
        .actions
        .iter()
        .flat_map(Action::new_keys)
        .map(|(_, k)| k);
    may_format(desired.iter().map(|d| d.kind), made, rule, || {
        reasons.join("; ")
    })?;
    Ok(plan)
}

/// Whether a blank device may be formatted with the keys `made` (of the
/// configured kinds `wanted`): some key, and one it opens with every day
/// (any kind but `recovery`) when the config has one. A volume left with
/// only its recovery key opens at no later unattended boot, unless `rule`
/// allows it. `why` says which keys could not be made.
pub fn may_format(
    wanted: impl Iterator<Item = KeySource>,
    made: impl Iterator<Item = KeySource>,
    rule: RecoveryOnly,
    why: impl FnOnce() -> String,
) -> Result<(), PlanError> {
    let daily = |k: &KeySource| *k != KeySource::Recovery;
    let made: Vec<KeySource> = made.collect();
    if made.is_empty() {
        return Err(PlanError::NothingToEnrol(why()));
    }
    let refused = rule == RecoveryOnly::Refused;
    if refused && wanted.into_iter().any(|k| daily(&k)) && !made.iter().any(daily) {
        return Err(PlanError::NoDailyKey(why()));
    }
    Ok(())
}

/// Plans the in-place encryption of a device holding ext4: the header
/// starts with every key that can be produced now (as a format would).
pub fn plan_in_place(
    desired: &[DesiredSlot],
    work: Reencryption,
    rule: RecoveryOnly,
) -> Result<Plan, PlanError> {
    let formatted = plan_format(desired, rule)?;
    let slots = formatted
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Add {
                slot,
                kind,
                lock_to_state,
                ..
            } => Some(NewSlot {
                slot: *slot,
                kind: *kind,
                lock_to_state: *lock_to_state,
            }),
            _ => None,
        })
        .collect();
    Ok(Plan {
        actions: vec![Action::EncryptInPlace { slots, work }],
        notes: formatted.notes,
    })
}

/// Where an action goes in the plan's order.
enum Step {
    Add(Action),
    Replace(Action),
    Token(Action),
    Remove(Action),
    Note(Note),
}

impl DesiredSlot {
    fn add(&self) -> Action {
        Action::Add {
            slot: self.slot,
            kind: self.kind,
            lock_to_state: self.lock_to_state,
            binds: self.binds.clone(),
        }
    }

    fn unavailable(&self) -> Note {
        Note::Unavailable {
            slot: self.slot,
            kind: self.kind,
            reason: self.available.clone().err().unwrap_or_default(),
        }
    }

    /// Enrols anew (if the key can be made now) in place of what is there.
    fn replace(&self, reason: &str) -> Step {
        match &self.available {
            Ok(()) => Step::Replace(Action::Replace {
                slot: self.slot,
                kind: self.kind,
                lock_to_state: self.lock_to_state,
                binds: self.binds.clone(),
                reason: reason.to_string(),
            }),
            Err(_) => Step::Note(self.unavailable()),
        }
    }

    fn write_token(&self, reason: &str) -> Step {
        Step::Token(Action::WriteToken {
            slot: self.slot,
            kind: self.kind,
            lock_to_state: self.lock_to_state,
            reason: reason.to_string(),
        })
    }
}

/// What to do with a slot the config lists; `proven` when its key opened
/// the volume this run.
fn plan_desired(d: &DesiredSlot, observed: Option<&ObservedSlot>, proven: bool) -> Option<Step> {
    let Some(o) = observed else {
        return Some(match d.available {
            Ok(()) => Step::Add(d.add()),
            Err(_) => Step::Note(d.unavailable()),
        });
    };
    if let (ObservedSlot::Clevis { sss, .. }, true) = (o, proven) {
        return Some(proven_clevis_slot(d, *sss));
    }
    let ObservedSlot::Managed {
        kind,
        lock_to_state,
        binding,
        owned,
        held,
        ..
    } = o
    else {
        return Some(if proven {
            d.write_token(
                "the slot has no volctl token; its key opened the volume, so volctl takes it over",
            )
        } else {
            d.replace(
                "the slot holds a key volctl did not enrol, and the config takes this slot over",
            )
        });
    };
    match binding {
        BindingCheck::Match if *owned && *held => Some(held_recovery_key(d, proven)),
        BindingCheck::Match if *owned => None,
        BindingCheck::Match => Some(d.write_token(
            "the token has no owner tag for this keyslot (written by an older volctl); the binding proves the key, so the token is rewritten",
        )),
        BindingCheck::Unknown(reason) => Some(Step::Note(Note::Unverified {
            slot: d.slot,
            reason: reason.clone(),
        })),
        BindingCheck::Mismatch if proven => Some(stale_proven_slot(d)),
        BindingCheck::Mismatch => {
            let reason = if *kind != d.kind || *lock_to_state != d.lock_to_state {
                format!(
                    "the slot holds a {} key, the config wants {}",
                    describe(*kind, *lock_to_state),
                    describe(d.kind, d.lock_to_state)
                )
            } else {
                "the slot's key no longer matches the config".to_string()
            };
            Some(d.replace(&reason))
        }
    }
}

/// A slot `clevis luks bind` made whose key opened the volume: a `tang`
/// pin is adopted (volctl's token written beside clevis's); an `sss` one
/// is left until another key opens the volume.
fn proven_clevis_slot(d: &DesiredSlot, sss: bool) -> Step {
    if sss {
        return Step::Note(Note::Deferred {
            slot: d.slot,
            reason: "bound by clevis with sss over tang pins: its threshold opened the volume, and it is made again as volctl's own threshold on a run another key opens it".into(),
        });
    }
    d.write_token(&format!(
        "adopt slot {} bound by clevis: its Tang key opened the volume, so volctl keeps its JWE and writes its own token beside clevis's",
        d.slot
    ))
}

/// A recovery key nobody has seen: typed to open the volume, someone knows
/// it now; else it is replaced by a fresh one (held or shown in turn).
fn held_recovery_key(d: &DesiredSlot, proven: bool) -> Step {
    if proven {
        Step::Token(Action::MarkSeen { slot: d.slot })
    } else {
        d.replace(
            "nobody has fetched or been shown this recovery key, so a fresh one takes its place",
        )
    }
}

/// The slot that unlocked has a stale token: rewrite it when the key is
/// computable from the config, else wait for a run another key opens.
fn stale_proven_slot(d: &DesiredSlot) -> Step {
    if d.kind.locally_derivable() {
        d.write_token("the token is out of date; the key itself opened the volume")
    } else {
        Step::Note(Note::Deferred {
            slot: d.slot,
            reason: "its key opened the volume this time, so it is re-enrolled on a run where another key opens it".into(),
        })
    }
}

/// What to do with a slot the config does not list.
fn plan_extra(slot: KeyslotId, o: &ObservedSlot, unlocked_by: KeyslotId) -> Option<Step> {
    match o {
        ObservedSlot::Managed { .. } if slot == unlocked_by => None,
        ObservedSlot::Managed {
            kind, owned: true, ..
        } => Some(Step::Remove(Action::Remove { slot, kind: *kind })),
        ObservedSlot::Managed { .. } => Some(Step::Note(Note::Unverified {
            slot,
            reason: "its volctl token cannot be authenticated for this keyslot (forged, copied, or written by an older volctl), so the slot is left alone".into(),
        })),
        ObservedSlot::Unmanaged | ObservedSlot::Clevis { .. } => {
            Some(Step::Note(Note::Unmanaged { slot }))
        }
    }
}

/// Plans an existing volume that `unlocked_by` opened.
pub fn plan_converge(
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    unlocked_by: KeyslotId,
) -> Plan {
    let want: BTreeMap<KeyslotId, &DesiredSlot> = desired.iter().map(|d| (d.slot, d)).collect();
    let steps = desired
        .iter()
        .filter_map(|d| plan_desired(d, observed.slots.get(&d.slot), d.slot == unlocked_by))
        .chain(
            observed
                .slots
                .iter()
                .filter(|(s, _)| !want.contains_key(s))
                .filter_map(|(s, o)| plan_extra(*s, o, unlocked_by)),
        );
    let (mut adds, mut replaces, mut tokens, mut removes, mut notes) =
        (vec![], vec![], vec![], vec![], vec![]);
    for step in steps {
        match step {
            Step::Add(a) => adds.push(a),
            Step::Replace(a) => replaces.push(a),
            Step::Token(a) => tokens.push(a),
            Step::Remove(a) => removes.push(a),
            Step::Note(n) => notes.push(n),
        }
    }
    let cleanup = observed
        .orphan_tokens
        .iter()
        .map(|&token| Action::RemoveOrphanToken { token });
    let actions = adds
        .into_iter()
        .chain(replaces)
        .chain(tokens)
        .chain(removes)
        .chain(cleanup)
        .collect();
    Plan { actions, notes }
}
