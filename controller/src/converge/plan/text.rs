//! The plan as people read it: one line per action and note.

use super::vocabulary::*;
use crate::luks2::reencryption::Operation;
use crate::luks2::token::TokenId;
use api_types::{KeySource, KeyslotId};

fn operation_text(op: Operation) -> &'static str {
    match op {
        Operation::Encrypt => "in-place encryption",
        Operation::RotateVolumeKey => "volume-key rotation",
        Operation::Decrypt => "decryption in place",
    }
}

pub(super) fn describe(kind: KeySource, lock: bool) -> String {
    if lock {
        format!("{kind}+lockToState")
    } else {
        kind.to_string()
    }
}

impl std::fmt::Display for Action {
    /// One line: `+ add slot 2 (static)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use Action as A;
        let line = match self {
            A::Format => "+ format as LUKS2".to_string(),
            A::Add {
                slot,
                kind,
                lock_to_state: l,
                binds,
            } => format!("+ add slot {slot} ({})", bound(kind_text(*kind, *l), binds)),
            A::Replace {
                slot,
                kind,
                lock_to_state: l,
                binds,
                reason,
            } => replace_line(*slot, bound(kind_text(*kind, *l), binds), reason),
            A::Reseal {
                slot,
                lock_to_state,
            } => reseal_line(*slot, *lock_to_state),
            A::WriteToken { slot, reason, .. } => {
                format!("~ rewrite token of slot {slot}: {reason}")
            }
            A::Remove { slot, kind } => format!("- remove slot {slot} ({kind}): not in the config"),
            A::AddSpare {
                slot,
                replaces,
                kind,
            } => spare_line(*slot, *replaces, *kind),
            A::RemoveSpare { slot, replaced } => spare_removal_line(*slot, *replaced),
            A::MarkSeen { slot } => mark_seen_line(*slot),
            A::EncryptInPlace { slots, work } => encrypt_line(slots, work),
            A::ResumeReencryption { operation: o, work } => {
                format!("~ finish the {} ({work})", operation_text(*o))
            }
            A::FinishReencryption { operation } => finish_line(*operation),
            A::RotateVolumeKey { slots, work } => rotate_line(slots, work),
            A::RemoveOrphanToken { token } => orphan_line(*token),
        };
        f.write_str(&line)
    }
}

/// `tpm` or, when the key says what it binds, `tpm: PCR 7`.
fn bound(kind: String, binds: &Option<String>) -> String {
    match binds {
        Some(b) => format!("{kind}: {b}"),
        None => kind,
    }
}

fn replace_line(slot: KeyslotId, kind: String, reason: &str) -> String {
    format!("~ replace slot {slot} with {kind}: {reason}")
}

fn reseal_line(slot: KeyslotId, lock_to_state: bool) -> String {
    let kind = kind_text(KeySource::Tpm, lock_to_state);
    format!("~ reseal slot {slot} ({kind}): the PCR values changed since it was sealed")
}

fn spare_line(slot: KeyslotId, replaces: KeyslotId, kind: KeySource) -> String {
    format!("+ add slot {slot} ({kind}): holds the new key while slot {replaces} is replaced")
}

fn spare_removal_line(slot: KeyslotId, replaced: KeyslotId) -> String {
    format!("- remove slot {slot}: the spare, now that slot {replaced} holds the new key")
}

fn mark_seen_line(slot: KeyslotId) -> String {
    format!("~ mark the recovery key of slot {slot} as seen: it was typed to open the volume")
}

fn encrypt_line(slots: &[NewSlot], work: &Reencryption) -> String {
    let keys = new_slots_text(slots);
    format!("+ encrypt in place ({work}); keys in slots {keys}")
}

fn finish_line(operation: Operation) -> String {
    let what = operation_text(operation);
    format!("~ clean up after the {what}: its temporary keyslots and proof token")
}

fn rotate_line(slots: &[KeyslotId], work: &Reencryption) -> String {
    let slots = join(slots);
    format!("~ rotate the volume key ({work}); slots {slots} enrolled again with the new key")
}

fn orphan_line(token: TokenId) -> String {
    format!("- remove token {token}: a volctl token bound to no keyslot of its own")
}

/// `2 (static), 3 (tpm, lockToState)`.
fn new_slots_text(slots: &[NewSlot]) -> String {
    let keys: Vec<String> = slots
        .iter()
        .map(|s| format!("{} ({})", s.slot, kind_text(s.kind, s.lock_to_state)))
        .collect();
    keys.join(", ")
}

/// `1, 2`.
fn join(slots: &[KeyslotId]) -> String {
    let slots: Vec<String> = slots.iter().map(ToString::to_string).collect();
    slots.join(", ")
}

impl std::fmt::Display for Reencryption {
    /// `shrink ext4 by 32 MiB, reencrypt 992 MiB, about 9 s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.shrink_mib > 0 {
            let fs = self.filesystem.unwrap_or("the filesystem");
            write!(f, "shrink {fs} by {} MiB, ", self.shrink_mib)?;
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
            Note::Opened { slot, kind, report } => {
                write!(f, "slot {slot} ({kind}) opened it: {report}")
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
        format!("{kind}, lockToState")
    } else {
        kind.to_string()
    }
}
