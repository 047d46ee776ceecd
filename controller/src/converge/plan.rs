//! The pure decision: from (desired keys, observed keyslots) to an ordered
//! list of actions. No I/O, no KDF, no clock: every rule of keyslot
//! convergence lives here and is unit-tested without devices.
//!
//! Rules (docs/architecture.md has the why):
//! - a desired slot that is empty is added; one whose binding does not match
//!   is replaced; one without a volctl token is taken over (adopted if it is
//!   the slot that unlocked, else replaced);
//! - a managed slot not in the config is removed; an unmanaged one is left
//!   alone and reported;
//! - the slot that unlocked this run is never replaced or removed;
//! - a key that cannot be produced now (salt missing, TPM absent, KMS down)
//!   is never touched: its slot is reported instead;
//! - actions are ordered add → replace → token fixes → remove → cleanup,
//!   so a crash between two of them leaves a volume that opens.

use serde::Serialize;
use std::collections::BTreeMap;

/// A key the config wants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredSlot {
    /// Keyslot.
    pub slot: u32,
    /// Kind name.
    pub kind: String,
    /// lockToSTATE.
    pub lock_to_state: bool,
    /// Whether the key can be computed from the config alone.
    pub derivable: bool,
    /// Unlock cost rank (lower first).
    pub cost: u8,
    /// `Err(reason)` when the key cannot be produced right now.
    pub available: Result<(), String>,
}

/// What the header holds at a keyslot.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum ObservedSlot {
    /// A keyslot with our token.
    Managed {
        /// Token id.
        token: u32,
        /// Kind recorded in the token.
        kind: String,
        /// lockToSTATE recorded in the token.
        lock_to_state: bool,
        /// Result of checking the binding (only meaningful for desired slots).
        binding: BindingCheck,
    },
    /// A keyslot without a volctl token (made by cryptsetup or another tool).
    Unmanaged,
}

/// Outcome of checking a managed slot's binding against the config.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", content = "reason", rename_all = "kebab-case")]
pub enum BindingCheck {
    /// The slot holds the configured key.
    Match,
    /// The slot holds another key (or another kind, or other parameters).
    Mismatch,
    /// Could not be checked (volume not unlocked, key material unavailable).
    Unknown(String),
}

/// The observed header, as the planner needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObservedKeyslots {
    /// Active keyslots.
    pub slots: BTreeMap<u32, ObservedSlot>,
    /// volctl tokens bound to no existing keyslot.
    pub orphan_tokens: Vec<u32>,
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write a new LUKS2 header on the blank device.
    Format,
    /// Enrol a key in an empty slot.
    Add {
        /// Keyslot.
        slot: u32,
        /// Kind.
        kind: String,
        /// lockToSTATE.
        lock_to_state: bool,
    },
    /// Destroy the slot and enrol the configured key in it.
    Replace {
        /// Keyslot.
        slot: u32,
        /// Kind of the new key.
        kind: String,
        /// lockToSTATE of the new key.
        lock_to_state: bool,
        /// Why.
        reason: String,
    },
    /// Write a fresh token for a slot whose key was proven by this unlock.
    WriteToken {
        /// Keyslot.
        slot: u32,
        /// Kind.
        kind: String,
        /// lockToSTATE.
        lock_to_state: bool,
        /// Why.
        reason: String,
    },
    /// Destroy a managed slot the config no longer lists.
    Remove {
        /// Keyslot.
        slot: u32,
        /// Kind recorded in its token.
        kind: String,
    },
    /// Delete a volctl token whose keyslot is gone.
    RemoveOrphanToken {
        /// Token id.
        token: u32,
    },
}

impl Action {
    /// Whether this action runs the PBKDF (enrols a keyslot).
    pub fn runs_kdf(&self) -> bool {
        matches!(self, Action::Add { .. } | Action::Replace { .. })
    }
}

/// Something the user should know that is not an action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "note", rename_all = "kebab-case")]
pub enum Note {
    /// A slot volctl did not enrol and the config does not list.
    Unmanaged {
        /// Keyslot.
        slot: u32,
    },
    /// A configured key that cannot be produced now; its slot is untouched.
    Unavailable {
        /// Keyslot.
        slot: u32,
        /// Kind.
        kind: String,
        /// Why.
        reason: String,
    },
    /// A change that must wait until another key opens the volume.
    Deferred {
        /// Keyslot.
        slot: u32,
        /// Why.
        reason: String,
    },
    /// A slot whose key source cannot produce its key this boot (e.g. a TPM
    /// whose PCRs changed); kept, since another boot may use it again.
    Unusable {
        /// Keyslot.
        slot: u32,
        /// Kind.
        kind: String,
        /// Why.
        reason: String,
    },
    /// A managed slot whose binding could not be checked; left alone.
    Unverified {
        /// Keyslot.
        slot: u32,
        /// Why.
        reason: String,
    },
}

/// The plan: actions in execution order, and notes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    /// Actions, in the order they must run.
    pub actions: Vec<Action>,
    /// Things left alone, with reasons.
    pub notes: Vec<Note>,
}

impl Plan {
    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// KDF runs the actions will cost.
    pub fn kdf_runs(&self) -> usize {
        self.actions.iter().filter(|a| a.runs_kdf()).count()
    }
}

/// Why no safe plan exists.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The device is blank and no configured key can be enrolled now.
    #[error("cannot format: none of the configured keys can be enrolled now ({0})")]
    NothingToEnrol(String),
}

/// Which desired slots to try, in order, to unlock the volume: each key only
/// against its own slot, cheapest kind first; only slots whose token says
/// they hold that kind (or, for keys computable from the config, slots
/// without a volctl token), and only keys that can be produced now.
pub fn unlock_order(desired: &[DesiredSlot], observed: &ObservedKeyslots) -> Vec<u32> {
    let mut c: Vec<&DesiredSlot> = desired
        .iter()
        .filter(|d| d.available.is_ok())
        .filter(|d| match observed.slots.get(&d.slot) {
            Some(ObservedSlot::Managed {
                kind,
                lock_to_state,
                ..
            }) => *kind == d.kind && *lock_to_state == d.lock_to_state,
            Some(ObservedSlot::Unmanaged) => d.derivable,
            None => false,
        })
        .collect();
    c.sort_by_key(|d| (d.cost, d.slot));
    c.into_iter().map(|d| d.slot).collect()
}

/// Plans a blank device: format, then add every key that can be produced.
pub fn plan_format(desired: &[DesiredSlot]) -> Result<Plan, PlanError> {
    let mut plan = Plan {
        actions: vec![Action::Format],
        notes: vec![],
    };
    for d in desired {
        match &d.available {
            Ok(()) => plan.actions.push(Action::Add {
                slot: d.slot,
                kind: d.kind.clone(),
                lock_to_state: d.lock_to_state,
            }),
            Err(reason) => plan.notes.push(Note::Unavailable {
                slot: d.slot,
                kind: d.kind.clone(),
                reason: reason.clone(),
            }),
        }
    }
    if plan.actions.len() == 1 {
        let reasons: Vec<String> = plan
            .notes
            .iter()
            .filter_map(|n| match n {
                Note::Unavailable { slot, kind, reason } => {
                    Some(format!("slot {slot} ({kind}): {reason}"))
                }
                _ => None,
            })
            .collect();
        return Err(PlanError::NothingToEnrol(reasons.join("; ")));
    }
    Ok(plan)
}

/// Plans an existing volume that `unlocked_by` opened.
pub fn plan_converge(
    desired: &[DesiredSlot],
    observed: &ObservedKeyslots,
    unlocked_by: u32,
) -> Plan {
    let mut adds = Vec::new();
    let mut replaces = Vec::new();
    let mut tokens = Vec::new();
    let mut removes = Vec::new();
    let mut notes = Vec::new();
    let want: BTreeMap<u32, &DesiredSlot> = desired.iter().map(|d| (d.slot, d)).collect();

    for d in desired {
        let proven = d.slot == unlocked_by;
        let replace =
            |reason: &str, replaces: &mut Vec<Action>, notes: &mut Vec<Note>| match &d.available {
                Ok(()) => replaces.push(Action::Replace {
                    slot: d.slot,
                    kind: d.kind.clone(),
                    lock_to_state: d.lock_to_state,
                    reason: reason.to_string(),
                }),
                Err(r) => notes.push(Note::Unavailable {
                    slot: d.slot,
                    kind: d.kind.clone(),
                    reason: r.clone(),
                }),
            };
        let write_token = |reason: &str| Action::WriteToken {
            slot: d.slot,
            kind: d.kind.clone(),
            lock_to_state: d.lock_to_state,
            reason: reason.to_string(),
        };
        match observed.slots.get(&d.slot) {
            None => match &d.available {
                Ok(()) => adds.push(Action::Add {
                    slot: d.slot,
                    kind: d.kind.clone(),
                    lock_to_state: d.lock_to_state,
                }),
                Err(r) => notes.push(Note::Unavailable {
                    slot: d.slot,
                    kind: d.kind.clone(),
                    reason: r.clone(),
                }),
            },
            Some(ObservedSlot::Unmanaged) if proven => tokens.push(write_token(
                "the slot has no volctl token; its key opened the volume, so volctl takes it over",
            )),
            Some(ObservedSlot::Unmanaged) => replace(
                "the slot holds a key volctl did not enrol, and the config takes this slot over",
                &mut replaces,
                &mut notes,
            ),
            Some(ObservedSlot::Managed {
                binding: BindingCheck::Match,
                ..
            }) => {}
            Some(ObservedSlot::Managed {
                binding: BindingCheck::Unknown(reason),
                ..
            }) => notes.push(Note::Unverified {
                slot: d.slot,
                reason: reason.clone(),
            }),
            Some(ObservedSlot::Managed {
                binding: BindingCheck::Mismatch,
                ..
            }) if proven => {
                if d.derivable {
                    tokens.push(write_token(
                        "the token is out of date; the key itself opened the volume",
                    ));
                } else {
                    notes.push(Note::Deferred {
                        slot: d.slot,
                        reason: "its key opened the volume this time, so it is re-enrolled on a run where another key opens it".into(),
                    });
                }
            }
            Some(ObservedSlot::Managed {
                kind,
                lock_to_state,
                ..
            }) => {
                let reason = if *kind != d.kind || *lock_to_state != d.lock_to_state {
                    format!(
                        "the slot holds a {} key, the config wants {}",
                        describe(kind, *lock_to_state),
                        describe(&d.kind, d.lock_to_state)
                    )
                } else {
                    "the slot's key no longer matches the config".to_string()
                };
                replace(&reason, &mut replaces, &mut notes);
            }
        }
    }
    for (slot, o) in &observed.slots {
        if want.contains_key(slot) {
            continue;
        }
        match o {
            ObservedSlot::Managed { kind, .. } if *slot != unlocked_by => {
                removes.push(Action::Remove {
                    slot: *slot,
                    kind: kind.clone(),
                })
            }
            ObservedSlot::Managed { .. } => {}
            ObservedSlot::Unmanaged => notes.push(Note::Unmanaged { slot: *slot }),
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

fn describe(kind: &str, lock: bool) -> String {
    if lock {
        format!("{kind}+lockToSTATE")
    } else {
        kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn want(slot: u32, kind: &str) -> DesiredSlot {
        let derivable = matches!(kind, "static" | "nodeID");
        DesiredSlot {
            slot,
            kind: kind.into(),
            lock_to_state: false,
            derivable,
            cost: match kind {
                "static" => 0,
                "nodeID" => 1,
                "tpm" => 2,
                _ => 3,
            },
            available: Ok(()),
        }
    }

    fn managed(kind: &str, binding: BindingCheck) -> ObservedSlot {
        ObservedSlot::Managed {
            token: 0,
            kind: kind.into(),
            lock_to_state: false,
            binding,
        }
    }

    fn obs(slots: &[(u32, ObservedSlot)]) -> ObservedKeyslots {
        ObservedKeyslots {
            slots: slots.iter().cloned().collect(),
            orphan_tokens: vec![],
        }
    }

    #[test]
    fn converged_volume_plans_nothing() {
        let d = [want(0, "static"), want(2, "nodeID")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (2, managed("nodeID", BindingCheck::Match)),
        ]);
        let p = plan_converge(&d, &o, 0);
        assert!(p.is_empty() && p.notes.is_empty(), "{p:?}");
    }

    #[test]
    fn unlock_order_is_by_cost_and_only_own_kind() {
        let d = [
            want(3, "kms"),
            want(1, "nodeID"),
            want(0, "static"),
            want(5, "tpm"),
            want(6, "static"),
        ];
        let o = obs(&[
            (0, managed("nodeID", BindingCheck::Unknown("locked".into()))), // kind changed: not a candidate
            (1, managed("nodeID", BindingCheck::Unknown("locked".into()))),
            (3, managed("kms", BindingCheck::Unknown("locked".into()))),
            (5, managed("tpm", BindingCheck::Unknown("locked".into()))),
            (6, ObservedSlot::Unmanaged),
        ]);
        assert_eq!(unlock_order(&d, &o), vec![6, 1, 5, 3]);
    }

    #[test]
    fn unavailable_keys_are_not_tried_and_not_touched() {
        let mut k = want(1, "kms");
        k.available = Err("server down".into());
        let d = [want(0, "static"), k.clone(), {
            let mut n = want(2, "tpm");
            n.available = Err("no tpm".into());
            n
        }];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (1, managed("static", BindingCheck::Mismatch)),
        ]);
        assert_eq!(unlock_order(&d, &o), vec![0]);
        let p = plan_converge(&d, &o, 0);
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.notes.len(), 2);
        assert!(matches!(&p.notes[0], Note::Unavailable { slot: 1, .. }));
    }

    #[test]
    fn rotation_orders_add_then_replace_then_remove() {
        let d = [want(1, "static"), want(2, "nodeID"), want(3, "static")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Unknown("n/a".into()))),
            (1, managed("static", BindingCheck::Mismatch)),
            (2, managed("nodeID", BindingCheck::Match)),
        ]);
        let p = plan_converge(&d, &o, 2);
        let kinds: Vec<(&str, u32)> = p
            .actions
            .iter()
            .map(|a| match a {
                Action::Add { slot, .. } => ("add", *slot),
                Action::Replace { slot, .. } => ("replace", *slot),
                Action::Remove { slot, .. } => ("remove", *slot),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![("add", 3), ("replace", 1), ("remove", 0)]);
        assert_eq!(p.kdf_runs(), 2);
    }

    #[test]
    fn the_unlocking_slot_is_never_replaced_or_removed() {
        // Derivable key with a stale token: rewrite the token only.
        let d = [want(0, "static")];
        let o = obs(&[(0, managed("static", BindingCheck::Mismatch))]);
        let p = plan_converge(&d, &o, 0);
        assert!(
            matches!(p.actions.as_slice(), [Action::WriteToken { slot: 0, .. }]),
            "{p:?}"
        );
        // Non-derivable key: deferred.
        let d = [want(0, "kms")];
        let o = obs(&[(0, managed("kms", BindingCheck::Mismatch))]);
        let p = plan_converge(&d, &o, 0);
        assert!(p.actions.is_empty());
        assert!(matches!(
            p.notes.as_slice(),
            [Note::Deferred { slot: 0, .. }]
        ));
    }

    #[test]
    fn unmanaged_slots_are_left_alone_unless_the_config_takes_them() {
        let d = [want(0, "static"), want(4, "static")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (4, ObservedSlot::Unmanaged),
            (7, ObservedSlot::Unmanaged),
        ]);
        let p = plan_converge(&d, &o, 0);
        assert!(
            matches!(p.actions.as_slice(), [Action::Replace { slot: 4, .. }]),
            "{p:?}"
        );
        assert_eq!(p.notes, vec![Note::Unmanaged { slot: 7 }]);
        // Adopted, not replaced, when it is the slot that unlocked.
        let p = plan_converge(&d, &o, 4);
        assert!(
            matches!(p.actions.as_slice(), [Action::WriteToken { slot: 4, .. }]),
            "{p:?}"
        );
    }

    #[test]
    fn kind_change_is_a_replace_with_a_reason() {
        let d = [want(0, "static"), want(1, "nodeID")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (1, managed("static", BindingCheck::Mismatch)),
        ]);
        let p = plan_converge(&d, &o, 0);
        match p.actions.as_slice() {
            [Action::Replace {
                slot: 1, reason, ..
            }] => assert!(
                reason.contains("static key, the config wants nodeID"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn orphan_tokens_are_cleaned_last() {
        let d = [want(0, "static")];
        let mut o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (1, managed("static", BindingCheck::Unknown("x".into()))),
        ]);
        o.orphan_tokens = vec![9];
        let p = plan_converge(&d, &o, 0);
        assert_eq!(
            p.actions.last(),
            Some(&Action::RemoveOrphanToken { token: 9 })
        );
        assert!(matches!(p.actions[0], Action::Remove { slot: 1, .. }));
    }

    #[test]
    fn format_needs_at_least_one_enrollable_key() {
        let mut k = want(0, "kms");
        k.available = Err("server down".into());
        let e = plan_format(&[k.clone()]).unwrap_err();
        assert!(e.to_string().contains("server down"));
        let p = plan_format(&[k, want(1, "static")]).unwrap();
        assert_eq!(p.actions.len(), 2);
        assert_eq!(p.notes.len(), 1);
    }
}
