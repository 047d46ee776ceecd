//! The plan's vocabulary: desired and observed slots, actions, notes, the
//! plan itself and why planning failed.

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
    /// What the key binds beyond its kind (a TPM key's PCRs), if it says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binds: Option<String>,
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
    /// A keyslot without a volctl token that `clevis luks bind` bound with
    /// a `tang` pin (a `tang` key opens it) or an `sss` pin over tang pins
    /// (a `threshold` of tang members opens it).
    Clevis {
        /// The clevis token's id.
        token: TokenId,
        /// Bound with `sss`, not a single `tang` pin.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        sss: bool,
    },
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
            ObservedSlot::Unmanaged | ObservedSlot::Clevis { .. } => None,
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
        /// What the key binds beyond its kind, if it says.
        #[serde(skip_serializing_if = "Option::is_none")]
        binds: Option<String>,
    },
    /// Destroy the slot and enrol the configured key in it.
    Replace {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind of the new key.
        kind: KeySource,
        /// lockToSTATE of the new key.
        lock_to_state: bool,
        /// What the new key binds beyond its kind, if it says.
        #[serde(skip_serializing_if = "Option::is_none")]
        binds: Option<String>,
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
    /// The filesystem an encryption in place starts from (`ext4`,
    /// `btrfs`); `None` for a run already under way.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<&'static str>,
    /// MiB the filesystem shrinks by first.
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
            | Note::Unverified { slot, .. }
            | Note::Opened { slot, .. } => Some(*slot),
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
    /// What the key that opened the volume met on its way (e.g. key
    /// servers that did not answer before one did).
    Opened {
        /// Keyslot.
        slot: KeyslotId,
        /// Kind.
        kind: KeySource,
        /// What it met.
        report: String,
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
    /// A key asked for new token data for its slot (same passphrase, no
    /// KDF run): a `WriteToken`, with the token fixes, before removals.
    pub fn rewrite_token(
        &mut self,
        slot: KeyslotId,
        kind: KeySource,
        lock_to_state: bool,
        reason: String,
    ) {
        let at = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::Remove { .. } | Action::RemoveOrphanToken { .. }))
            .unwrap_or(self.actions.len());
        self.actions.insert(
            at,
            Action::WriteToken {
                slot,
                kind,
                lock_to_state,
                reason,
            },
        );
    }

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
                    binds: None,
                    reason,
                }
            } else {
                Action::Add {
                    slot,
                    kind,
                    lock_to_state: false,
                    binds: None,
                }
            },
        );
        self.actions.push(Action::RemoveSpare {
            slot: spare,
            replaced: slot,
        });
    }
}

pub use crate::volume::RecoveryOnly;

/// Why no safe plan exists.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlanError {
    /// The device is blank and no configured key can be enrolled now.
    #[error(
        "cannot format: none of the configured keys can be enrolled now ({0}); nothing was written"
    )]
    NothingToEnrol(String),
    /// The device is blank and, of its configured keys, only recovery keys
    /// can be made now: it would open at no later unattended boot.
    #[error("cannot format: no key it is meant to open with can be made now, only its recovery key ({0}); nothing was written (`--allow-incomplete` formats it anyway)")]
    NoDailyKey(String),
}
