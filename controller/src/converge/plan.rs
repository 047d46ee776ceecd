//! The pure decision: from (desired keys, observed keyslots) to an ordered
//! list of actions. No I/O, no KDF, no clock: every rule of keyslot
//! convergence lives here and is unit-tested without devices.
//!
//! Rules (docs/architecture.md has the why):
//! - a desired slot that is empty is added; one whose binding does not match
//!   is replaced; one without a volctl token is taken over (adopted if it is
//!   the slot that unlocked, else replaced);
//! - a managed slot not in the config is removed, but only when its token is
//!   authenticated (its owner tag, keyed by the volume key, matches the
//!   keyslot); an unmanaged or unauthenticated one is left alone and reported;
//! - the slot that unlocked this run is never replaced or removed;
//! - a key that cannot be produced now (salt missing, TPM absent, KMS down)
//!   is never touched: its slot is reported instead;
//! - actions are ordered add → replace → token fixes → remove → cleanup,
//!   so a crash between two of them leaves a volume that opens.

use crate::luks2::reencryption::Operation;
use crate::luks2::token::TokenId;
use api_types::KeySource;
use api_types::KeyslotId;
use serde::Serialize;
use std::collections::BTreeMap;

/// A key the config wants.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DesiredSlot {
    /// Keyslot.
    pub slot: KeyslotId,
    /// Kind.
    pub kind: KeySource,
    /// lockToSTATE.
    pub lock_to_state: bool,
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
        token: TokenId,
        /// Kind recorded in the token.
        kind: KeySource,
        /// lockToSTATE recorded in the token.
        lock_to_state: bool,
        /// Result of checking the binding (only meaningful for desired slots).
        binding: BindingCheck,
        /// Whether the token's owner tag proves volctl wrote it for this very
        /// keyslot (checked with the volume key; false until unlocked).
        owned: bool,
        /// A recovery key held on the node that nobody has seen yet.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        held: bool,
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
    pub slots: BTreeMap<KeyslotId, ObservedSlot>,
    /// volctl tokens bound to no existing keyslot.
    pub orphan_tokens: Vec<TokenId>,
}

impl ObservedKeyslots {
    /// The kind a managed slot's token records.
    pub fn kind_of(&self, slot: KeyslotId) -> Option<KeySource> {
        match self.slots.get(&slot)? {
            ObservedSlot::Managed { kind, .. } => Some(*kind),
            ObservedSlot::Unmanaged => None,
        }
    }
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
        slot: KeyslotId,
        /// Kind.
        kind: KeySource,
        /// lockToSTATE.
        lock_to_state: bool,
    },
    /// Destroy the slot and enrol the configured key in it.
    Replace {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind of the new key.
        kind: KeySource,
        /// lockToSTATE of the new key.
        lock_to_state: bool,
        /// Why.
        reason: String,
    },
    /// Seal a TPM slot's key anew to the current PCR values (they changed
    /// since it was sealed, and another key opened the volume): the slot is
    /// replaced, as [`Action::Replace`] does.
    Reseal {
        /// Keyslot.
        slot: KeyslotId,
        /// lockToSTATE of the key.
        lock_to_state: bool,
    },
    /// Write a fresh token for a slot whose key was proven by this unlock.
    WriteToken {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind.
        kind: KeySource,
        /// lockToSTATE.
        lock_to_state: bool,
        /// Why.
        reason: String,
    },
    /// Destroy a managed slot the config no longer lists.
    Remove {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind recorded in its token.
        kind: KeySource,
    },
    /// Enrol the new key of `replaces` in a free slot first, so that the
    /// volume opens by the old or the new key at every step of replacing
    /// `replaces` (its token names it; the spare is removed afterwards).
    AddSpare {
        /// The free keyslot.
        slot: KeyslotId,
        /// The slot being replaced.
        replaces: KeyslotId,
        /// Kind.
        kind: KeySource,
    },
    /// Destroy the spare that held a new key while `replaced` was replaced.
    RemoveSpare {
        /// The spare keyslot.
        slot: KeyslotId,
        /// The slot that now holds the new key.
        replaced: KeyslotId,
    },
    /// Drop the `held` mark of a recovery key that was just typed to open
    /// the volume: someone knows it, so it is no longer replaced.
    MarkSeen {
        /// Keyslot.
        slot: KeyslotId,
    },
    /// Encrypt the ext4 filesystem the device holds, in place
    /// (`inPlace`): shrink it if it reaches into the header's room, write
    /// the header with the keys of `slots` and volctl's proof, then
    /// reencrypt with a data shift (docs/migration.md).
    EncryptInPlace {
        /// The keys the header starts with.
        slots: Vec<NewSlot>,
        /// Sizes and the time estimate.
        #[serde(flatten)]
        work: Reencryption,
    },
    /// Finish the reencryption the header records (a run was cut short):
    /// resumed where it stopped, before anything else.
    ResumeReencryption {
        /// What it does.
        operation: Operation,
        /// Sizes and the time estimate.
        #[serde(flatten)]
        work: Reencryption,
    },
    /// A reencryption ended and its run was cut before cleaning up: remove
    /// its temporary keyslots and its proof token.
    FinishReencryption {
        /// What it did.
        operation: Operation,
    },
    /// Re-encrypt the data to a new volume key (`volctl rotate-volume-key`):
    /// every configured key is enrolled again, in its slot, with the new
    /// key; the old volume key no longer decrypts anything afterwards.
    RotateVolumeKey {
        /// The keys enrolled again.
        slots: Vec<KeyslotId>,
        /// Size and the time estimate.
        #[serde(flatten)]
        work: Reencryption,
    },
    /// Delete a volctl token whose keyslot is gone.
    RemoveOrphanToken {
        /// Token id.
        token: TokenId,
    },
}

/// A key an in-place encryption's header starts with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewSlot {
    /// Keyslot.
    pub slot: KeyslotId,
    /// Kind.
    pub kind: KeySource,
    /// lockToSTATE.
    pub lock_to_state: bool,
}

/// The work of an in-place encryption.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reencryption {
    /// MiB the ext4 filesystem shrinks by first.
    pub shrink_mib: u64,
    /// MiB still to encrypt.
    pub data_mib: u64,
    /// Estimated seconds, from the cipher's speed measured here (the disk
    /// makes it slower); `None` when it cannot be measured.
    pub eta_seconds: Option<u64>,
}

impl Action {
    /// Whether this action runs the PBKDF (enrols a keyslot).
    pub fn runs_kdf(&self) -> bool {
        !self.new_keys().is_empty()
            || matches!(
                self,
                Action::ResumeReencryption { .. } | Action::RotateVolumeKey { .. }
            )
    }

    /// The configured keys this action enrols (their slots in the config,
    /// and kinds): made once, before anything is written.
    pub fn new_keys(&self) -> Vec<(KeyslotId, KeySource)> {
        match self {
            Action::Add { slot, kind, .. }
            | Action::Replace { slot, kind, .. }
            | Action::AddSpare {
                replaces: slot,
                kind,
                ..
            } => vec![(*slot, *kind)],
            Action::Reseal { slot, .. } => vec![(*slot, KeySource::Tpm)],
            Action::EncryptInPlace { slots, .. } => {
                slots.iter().map(|s| (s.slot, s.kind)).collect()
            }
            _ => vec![],
        }
    }

    /// The configured slot whose new key this action needs (a spare's
    /// removal needs the key that replaced it to be in).
    pub fn key_slot(&self) -> Option<KeyslotId> {
        match self {
            Action::RemoveSpare { replaced, .. } => Some(*replaced),
            Action::EncryptInPlace { .. } => None,
            other => other.new_keys().first().map(|(slot, _)| *slot),
        }
    }

    /// The keyslot the action writes, if one.
    pub fn slot(&self) -> Option<KeyslotId> {
        match self {
            Action::Add { slot, .. }
            | Action::Replace { slot, .. }
            | Action::WriteToken { slot, .. }
            | Action::Remove { slot, .. }
            | Action::AddSpare { slot, .. }
            | Action::Reseal { slot, .. }
            | Action::MarkSeen { slot }
            | Action::RemoveSpare { slot, .. } => Some(*slot),
            Action::Format
            | Action::RemoveOrphanToken { .. }
            | Action::EncryptInPlace { .. }
            | Action::ResumeReencryption { .. }
            | Action::FinishReencryption { .. }
            | Action::RotateVolumeKey { .. } => None,
        }
    }
}

impl Note {
    /// The keyslot the note is about, if one.
    pub fn slot(&self) -> Option<KeyslotId> {
        match self {
            Note::Unmanaged { slot }
            | Note::Unavailable { slot, .. }
            | Note::Deferred { slot, .. }
            | Note::Unusable { slot, .. }
            | Note::Unverified { slot, .. } => Some(*slot),
            Note::AfterReencryption { .. } => None,
        }
    }
}

/// Something the user should know that is not an action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "note", rename_all = "kebab-case")]
pub enum Note {
    /// A slot volctl did not enrol and the config does not list.
    Unmanaged {
        /// Keyslot.
        slot: KeyslotId,
    },
    /// A configured key that cannot be produced now; its slot is untouched.
    Unavailable {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind.
        kind: KeySource,
        /// Why.
        reason: String,
    },
    /// A change that must wait until another key opens the volume.
    Deferred {
        /// Keyslot.
        slot: KeyslotId,
        /// Why.
        reason: String,
    },
    /// A slot whose key source cannot produce its key this boot (e.g. a TPM
    /// whose PCRs changed); kept, since another boot may use it again.
    Unusable {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind.
        kind: KeySource,
        /// Why.
        reason: String,
    },
    /// A managed slot whose binding could not be checked; left alone.
    Unverified {
        /// Keyslot.
        slot: KeyslotId,
        /// Why.
        reason: String,
    },
    /// A change that waits for a reencryption running online to finish
    /// (libcryptsetup changes no keyslot or token meanwhile).
    AfterReencryption {
        /// The action, as the plan shows it.
        action: String,
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
    /// A plan that resumes a reencryption which runs online, after the
    /// volume is opened: its other actions become notes, for the run after
    /// (libcryptsetup changes no keyslot or token mid-reencryption).
    pub fn defer_behind_online_reencryption(&mut self) {
        if !matches!(
            self.actions.first(),
            Some(Action::ResumeReencryption { .. })
        ) {
            return;
        }
        let rest = self.actions.split_off(1);
        self.notes
            .extend(rest.into_iter().map(|a| Note::AfterReencryption {
                action: a.to_string(),
            }));
    }

    /// Whether the plan changes nothing.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// KDF runs the actions will cost.
    pub fn kdf_runs(&self) -> usize {
        self.actions.iter().filter(|a| a.runs_kdf()).count()
    }

    /// A TPM slot whose PCRs changed, while another key opened the volume:
    /// instead of reporting it unusable, re-seal its key to the current PCR
    /// values (replace the slot; the slot that unlocked stays, so the volume
    /// opens throughout). Placed with the replacements, before token fixes
    /// and removals, as every plan is ordered.
    pub fn reseal(&mut self, slot: KeyslotId, lock_to_state: bool) {
        let Some(i) = self.notes.iter().position(
            |n| matches!(n, Note::Unusable { slot: s, kind: KeySource::Tpm, .. } if *s == slot),
        ) else {
            return;
        };
        self.notes.remove(i);
        let at = self
            .actions
            .iter()
            .position(|a| {
                matches!(
                    a,
                    Action::WriteToken { .. }
                        | Action::Remove { .. }
                        | Action::RemoveOrphanToken { .. }
                )
            })
            .unwrap_or(self.actions.len());
        self.actions.insert(
            at,
            Action::Reseal {
                slot,
                lock_to_state,
            },
        );
    }
}

impl Plan {
    /// A spare slot (holding the key meant for `slot`, see `volctl
    /// passphrase change`) opened the volume: the change was cut short.
    /// Finish it: the key just typed goes to `slot` (added, or replacing
    /// what is there), then the spare goes. Nothing else touches `slot`.
    pub fn finish_replacement(
        &mut self,
        slot: KeyslotId,
        spare: KeyslotId,
        present: bool,
        kind: Option<KeySource>,
    ) {
        let Some(kind) = kind else { return };
        self.actions.retain(|a| a.slot() != Some(slot));
        self.notes.retain(|n| n.slot() != Some(slot));
        let reason =
            "finishing a passphrase change that was cut short: the key typed now goes to its slot"
                .to_string();
        self.actions.insert(
            0,
            if present {
                Action::Replace {
                    slot,
                    kind,
                    lock_to_state: false,
                    reason,
                }
            } else {
                Action::Add {
                    slot,
                    kind,
                    lock_to_state: false,
                }
            },
        );
        self.actions.push(Action::RemoveSpare {
            slot: spare,
            replaced: slot,
        });
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
            None => false,
        })
        .collect();
    c.sort_by_key(|d| (d.kind.unlock_cost(), d.slot));
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
            Ok(()) => plan.actions.push(d.add()),
            Err(_) => plan.notes.push(d.unavailable()),
        }
    }
    if plan.actions.len() == 1 {
        let reasons: Vec<String> = desired
            .iter()
            .filter_map(|d| {
                let r = d.available.as_ref().err()?;
                Some(format!("slot {} ({}): {r}", d.slot, d.kind))
            })
            .collect();
        return Err(PlanError::NothingToEnrol(reasons.join("; ")));
    }
    Ok(plan)
}

/// Plans the in-place encryption of a device holding ext4: the header
/// starts with every key that can be produced now (as a format would).
pub fn plan_in_place(desired: &[DesiredSlot], work: Reencryption) -> Result<Plan, PlanError> {
    let formatted = plan_format(desired)?;
    let slots = formatted
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::Add {
                slot,
                kind,
                lock_to_state,
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
        ObservedSlot::Unmanaged => Some(Step::Note(Note::Unmanaged { slot })),
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

fn operation_text(op: Operation) -> &'static str {
    match op {
        Operation::Encrypt => "in-place encryption",
        Operation::RotateVolumeKey => "volume-key rotation",
    }
}

fn describe(kind: KeySource, lock: bool) -> String {
    if lock {
        format!("{kind}+lockToSTATE")
    } else {
        kind.to_string()
    }
}

impl std::fmt::Display for Action {
    /// One line: `+ add slot 2 (static)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::Format => write!(f, "+ format as LUKS2"),
            Action::Add {
                slot,
                kind,
                lock_to_state,
            } => write!(
                f,
                "+ add slot {slot} ({})",
                kind_text(*kind, *lock_to_state)
            ),
            Action::Replace {
                slot,
                kind,
                lock_to_state,
                reason,
            } => write!(
                f,
                "~ replace slot {slot} with {}: {reason}",
                kind_text(*kind, *lock_to_state)
            ),
            Action::Reseal {
                slot,
                lock_to_state,
            } => write!(
                f,
                "~ reseal slot {slot} ({}): the PCR values changed since it was sealed",
                kind_text(KeySource::Tpm, *lock_to_state)
            ),
            Action::WriteToken { slot, reason, .. } => {
                write!(f, "~ rewrite token of slot {slot}: {reason}")
            }
            Action::Remove { slot, kind } => {
                write!(f, "- remove slot {slot} ({kind}): not in the config")
            }
            Action::AddSpare {
                slot,
                replaces,
                kind,
            } => write!(
                f,
                "+ add slot {slot} ({kind}): holds the new key while slot {replaces} is replaced"
            ),
            Action::RemoveSpare { slot, replaced } => write!(
                f,
                "- remove slot {slot}: the spare, now that slot {replaced} holds the new key"
            ),
            Action::MarkSeen { slot } => write!(
                f,
                "~ mark the recovery key of slot {slot} as seen: it was typed to open the volume"
            ),
            Action::EncryptInPlace { slots, work } => {
                let keys: Vec<String> = slots
                    .iter()
                    .map(|s| format!("{} ({})", s.slot, kind_text(s.kind, s.lock_to_state)))
                    .collect();
                write!(
                    f,
                    "+ encrypt in place ({work}); keys in slots {}",
                    keys.join(", ")
                )
            }
            Action::ResumeReencryption { operation, work } => {
                write!(f, "~ finish the {} ({work})", operation_text(*operation))
            }
            Action::FinishReencryption { operation } => write!(
                f,
                "~ clean up after the {}: its temporary keyslots and proof token",
                operation_text(*operation)
            ),
            Action::RotateVolumeKey { slots, work } => {
                let slots: Vec<String> = slots.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "~ rotate the volume key ({work}); slots {} enrolled again with the new key",
                    slots.join(", ")
                )
            }
            Action::RemoveOrphanToken { token } => write!(
                f,
                "- remove token {token}: a volctl token bound to no keyslot of its own"
            ),
        }
    }
}

impl std::fmt::Display for Reencryption {
    /// `shrink ext4 by 32 MiB, reencrypt 992 MiB, about 9 s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shrink_mib > 0 {
            write!(f, "shrink ext4 by {} MiB, ", self.shrink_mib)?;
        }
        write!(f, "reencrypt {} MiB", self.data_mib)?;
        match self.eta_seconds {
            Some(s) => write!(f, ", about {s} s"),
            None => Ok(()),
        }
    }
}

impl std::fmt::Display for Note {
    /// One line, without its `!` marker.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Note::Unmanaged { slot } => write!(
                f,
                "slot {slot} holds a key volctl did not enrol and the config does not list: left alone"
            ),
            Note::Unavailable { slot, kind, reason } => {
                write!(f, "slot {slot} ({kind}) left alone: {reason}")
            }
            Note::Deferred { slot, reason } => write!(f, "slot {slot} left as it is: {reason}"),
            Note::Unverified { slot, reason } => write!(f, "slot {slot} not checked: {reason}"),
            Note::Unusable { slot, kind, reason } => {
                write!(f, "slot {slot} ({kind}) cannot be used this boot, kept: {reason}")
            }
            Note::AfterReencryption { action } => write!(
                f,
                "`{action}` waits until the reencryption running online has finished (the next boot or converge)"
            ),
        }
    }
}

fn kind_text(kind: KeySource, lock: bool) -> String {
    if lock {
        format!("{kind}, lockToSTATE")
    } else {
        kind.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K0: KeyslotId = KeyslotId::nth(0);
    const K1: KeyslotId = KeyslotId::nth(1);
    const K2: KeyslotId = KeyslotId::nth(2);
    const K3: KeyslotId = KeyslotId::nth(3);
    const K4: KeyslotId = KeyslotId::nth(4);
    const K7: KeyslotId = KeyslotId::nth(7);

    /// `plan_converge` with the unlocking slot given as a number.
    fn plan(d: &[DesiredSlot], o: &ObservedKeyslots, unlocked_by: u32) -> Plan {
        plan_converge(d, o, KeyslotId::nth(unlocked_by))
    }

    /// `unlock_order` as numbers.
    fn order(d: &[DesiredSlot], o: &ObservedKeyslots) -> Vec<u32> {
        unlock_order(d, o).into_iter().map(KeyslotId::get).collect()
    }

    fn want(slot: u32, kind: &str) -> DesiredSlot {
        DesiredSlot {
            slot: KeyslotId::nth(slot),
            kind: KeySource::from_name(kind).unwrap(),
            lock_to_state: false,
            available: Ok(()),
        }
    }

    fn managed(kind: &str, binding: BindingCheck) -> ObservedSlot {
        ObservedSlot::Managed {
            token: TokenId(0),
            kind: KeySource::from_name(kind).unwrap(),
            lock_to_state: false,
            binding,
            owned: true,
            held: false,
        }
    }

    fn held_recovery() -> ObservedSlot {
        ObservedSlot::Managed {
            token: TokenId(1),
            kind: KeySource::Recovery,
            lock_to_state: false,
            binding: BindingCheck::Match,
            owned: true,
            held: true,
        }
    }

    #[test]
    fn a_held_recovery_key_is_replaced_until_someone_has_seen_it() {
        let d = [want(0, "static"), want(9, "recovery")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (9, held_recovery()),
        ]);
        // Opened by the static key: nobody knows the held key; a fresh one.
        let p = plan(&d, &o, 0);
        assert!(
            matches!(&p.actions[..], [Action::Replace { slot, kind: KeySource::Recovery, .. }] if slot.get() == 9),
            "{:?}",
            p.actions
        );
        // Opened by the recovery key itself: typed, so seen; kept.
        let p = plan(&d, &o, 9);
        assert!(
            matches!(&p.actions[..], [Action::MarkSeen { slot }] if slot.get() == 9),
            "{:?}",
            p.actions
        );
        // Nobody to hand a fresh one to (apply --mode no-reboot): reported, kept.
        let mut nobody = d.clone();
        nobody[1].available = Err("nobody to hand a new recovery key to".into());
        let p = plan(&nobody, &o, 0);
        assert!(p.actions.is_empty(), "{:?}", p.actions);
        assert!(matches!(&p.notes[..], [Note::Unavailable { .. }]));
        // Seen (no mark): nothing to do.
        let seen = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (9, managed("recovery", BindingCheck::Match)),
        ]);
        assert!(plan(&d, &seen, 0).actions.is_empty());
    }

    fn unowned(kind: &str, binding: BindingCheck) -> ObservedSlot {
        match managed(kind, binding) {
            ObservedSlot::Managed {
                token,
                kind,
                lock_to_state,
                binding,
                ..
            } => ObservedSlot::Managed {
                token,
                kind,
                lock_to_state,
                binding,
                owned: false,
                held: false,
            },
            o => o,
        }
    }

    #[test]
    fn a_slot_whose_token_is_not_authenticated_is_never_removed() {
        // A forged token on an operator's slot: left alone, reported.
        let d = [want(0, "static")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (
                3,
                unowned("static", BindingCheck::Unknown("not listed".into())),
            ),
        ]);
        let p = plan(&d, &o, 0);
        assert!(p.actions.is_empty(), "{p:?}");
        assert!(
            matches!(p.notes.as_slice(), [Note::Unverified { slot: K3, .. }]),
            "{p:?}"
        );
    }

    #[test]
    fn an_older_token_proven_by_its_binding_is_rewritten_with_an_owner_tag() {
        let d = [want(0, "static"), want(1, "nodeID")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Match)),
            (1, unowned("nodeID", BindingCheck::Match)),
        ]);
        let p = plan(&d, &o, 0);
        assert!(
            matches!(p.actions.as_slice(), [Action::WriteToken { slot: K1, .. }]),
            "{p:?}"
        );
        assert_eq!(p.kdf_runs(), 0);
    }

    fn obs(slots: &[(u32, ObservedSlot)]) -> ObservedKeyslots {
        ObservedKeyslots {
            slots: slots
                .iter()
                .map(|(n, o)| (KeyslotId::nth(*n), o.clone()))
                .collect(),
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
        let p = plan(&d, &o, 0);
        assert!(p.is_empty() && p.notes.is_empty(), "{p:?}");
    }

    #[test]
    fn a_tpm_slot_whose_pcrs_changed_is_resealed_before_removals() {
        let mut p = Plan {
            actions: vec![Action::Remove {
                slot: K3,
                kind: KeySource::Static,
            }],
            notes: vec![Note::Unusable {
                slot: K2,
                kind: KeySource::Tpm,
                reason: "PCR values changed".into(),
            }],
        };
        p.reseal(K1, false); // no such note: nothing happens
        assert_eq!(p.actions.len(), 1);
        p.reseal(K2, true);
        assert!(p.notes.is_empty());
        assert!(
            matches!(&p.actions[..], [Action::Reseal { slot, lock_to_state: true }, Action::Remove { .. }] if *slot == K2),
            "{p:?}"
        );
        assert_eq!(p.kdf_runs(), 1);
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
        assert_eq!(order(&d, &o), vec![6, 1, 5, 3]);
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
        assert_eq!(order(&d, &o), vec![0]);
        let p = plan(&d, &o, 0);
        assert!(p.actions.is_empty(), "{p:?}");
        assert_eq!(p.notes.len(), 2);
        assert!(matches!(&p.notes[0], Note::Unavailable { slot: K1, .. }));
    }

    #[test]
    fn rotation_orders_add_then_replace_then_remove() {
        let d = [want(1, "static"), want(2, "nodeID"), want(3, "static")];
        let o = obs(&[
            (0, managed("static", BindingCheck::Unknown("n/a".into()))),
            (1, managed("static", BindingCheck::Mismatch)),
            (2, managed("nodeID", BindingCheck::Match)),
        ]);
        let p = plan(&d, &o, 2);
        let kinds: Vec<(&str, KeyslotId)> = p
            .actions
            .iter()
            .map(|a| match a {
                Action::Add { slot, .. } => ("add", *slot),
                Action::Replace { slot, .. } => ("replace", *slot),
                Action::Remove { slot, .. } => ("remove", *slot),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(kinds, vec![("add", K3), ("replace", K1), ("remove", K0)]);
        assert_eq!(p.kdf_runs(), 2);
    }

    #[test]
    fn the_unlocking_slot_is_never_replaced_or_removed() {
        // Derivable key with a stale token: rewrite the token only.
        let d = [want(0, "static")];
        let o = obs(&[(0, managed("static", BindingCheck::Mismatch))]);
        let p = plan(&d, &o, 0);
        assert!(
            matches!(p.actions.as_slice(), [Action::WriteToken { slot: K0, .. }]),
            "{p:?}"
        );
        // Non-derivable key: deferred.
        let d = [want(0, "kms")];
        let o = obs(&[(0, managed("kms", BindingCheck::Mismatch))]);
        let p = plan(&d, &o, 0);
        assert!(p.actions.is_empty());
        assert!(matches!(
            p.notes.as_slice(),
            [Note::Deferred { slot: K0, .. }]
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
        let p = plan(&d, &o, 0);
        assert!(
            matches!(p.actions.as_slice(), [Action::Replace { slot: K4, .. }]),
            "{p:?}"
        );
        assert_eq!(p.notes, vec![Note::Unmanaged { slot: K7 }]);
        // Adopted, not replaced, when it is the slot that unlocked.
        let p = plan(&d, &o, 4);
        assert!(
            matches!(p.actions.as_slice(), [Action::WriteToken { slot: K4, .. }]),
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
        let p = plan(&d, &o, 0);
        match p.actions.as_slice() {
            [Action::Replace {
                slot: K1, reason, ..
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
        o.orphan_tokens = vec![TokenId(9)];
        let p = plan(&d, &o, 0);
        assert_eq!(
            p.actions.last(),
            Some(&Action::RemoveOrphanToken { token: TokenId(9) })
        );
        assert!(matches!(p.actions[0], Action::Remove { slot: K1, .. }));
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

    #[test]
    fn actions_and_notes_render_as_one_line_each() {
        let add = Action::Add {
            slot: K2,
            kind: KeySource::Static,
            lock_to_state: false,
        };
        assert_eq!(add.to_string(), "+ add slot 2 (static)");
        let replace = Action::Replace {
            slot: K1,
            kind: KeySource::NodeId,
            lock_to_state: true,
            reason: "why".into(),
        };
        assert_eq!(
            replace.to_string(),
            "~ replace slot 1 with nodeID, lockToSTATE: why"
        );
        let note = Note::Unavailable {
            slot: K3,
            kind: KeySource::Kms,
            reason: "down".into(),
        };
        assert_eq!(note.to_string(), "slot 3 (kms) left alone: down");
    }

    #[test]
    fn an_online_reencryption_keeps_the_other_actions_for_the_run_after() {
        let resume = Action::ResumeReencryption {
            operation: crate::luks2::reencryption::Operation::Encrypt,
            work: Reencryption {
                shrink_mib: 0,
                data_mib: 90,
                eta_seconds: None,
            },
        };
        let add = Action::Add {
            slot: K2,
            kind: KeySource::Static,
            lock_to_state: false,
        };
        let mut plan = Plan {
            actions: vec![resume.clone(), add.clone()],
            notes: vec![],
        };
        plan.defer_behind_online_reencryption();
        assert_eq!(plan.actions, vec![resume]);
        assert_eq!(
            plan.notes[0].to_string(),
            "`+ add slot 2 (static)` waits until the reencryption running online has finished (the next boot or converge)"
        );
        // Without a reencryption to resume, nothing moves.
        let mut plan = Plan {
            actions: vec![add.clone()],
            notes: vec![],
        };
        plan.defer_behind_online_reencryption();
        assert_eq!(plan.actions, vec![add]);
        assert!(plan.notes.is_empty());
    }
}
