//! Human-readable output of plans and outcomes.

use crate::converge::plan::{Action, Note};
use crate::converge::Outcome;
use std::fmt::Write;

/// One line per action and note, for `volctl plan` and `volctl converge`.
pub fn outcome_text(o: &Outcome) -> String {
    let mut s = String::new();
    let verb = if o.dry_run { "plan for" } else { "converged" };
    let _ = writeln!(s, "{verb} volume {} on {}", o.volume, o.device);
    match &o.unlocked_by {
        Some((slot, kind)) => {
            let _ = writeln!(s, "  unlocked by slot {slot} ({kind})");
        }
        None => {
            let _ = writeln!(s, "  device is blank: it will be formatted as LUKS2");
        }
    }
    for a in &o.plan.actions {
        let _ = writeln!(s, "  {}", action_line(a));
    }
    notes(&mut s, o);
    if o.plan.is_empty() {
        let _ = writeln!(s, "  = nothing to change");
    }
    let _ = writeln!(s, "  KDF runs: {}", o.kdf_runs);
    s
}

/// One line for an action: `+ add slot 2 (static)`.
pub fn action_line(a: &Action) -> String {
    match a {
        Action::Format => "+ format as LUKS2".to_string(),
        Action::Add {
            slot,
            kind,
            lock_to_state,
        } => format!("+ add slot {slot} ({})", kind_str(kind, *lock_to_state)),
        Action::Replace {
            slot,
            kind,
            lock_to_state,
            reason,
        } => {
            format!(
                "~ replace slot {slot} with {}: {reason}",
                kind_str(kind, *lock_to_state)
            )
        }
        Action::WriteToken { slot, reason, .. } => {
            format!("~ rewrite token of slot {slot}: {reason}")
        }
        Action::Remove { slot, kind } => {
            format!("- remove slot {slot} ({kind}): not in the config")
        }
        Action::RemoveOrphanToken { token } => {
            format!("- remove token {token}: its keyslot is gone")
        }
    }
}

fn notes(s: &mut String, o: &Outcome) {
    for n in &o.plan.notes {
        let line = match n {
            Note::Unmanaged { slot } => format!("slot {slot} holds a key volctl did not enrol and the config does not list: left alone"),
            Note::Unavailable { slot, kind, reason } => format!("slot {slot} ({kind}) left alone: {reason}"),
            Note::Deferred { slot, reason } => format!("slot {slot} left as it is: {reason}"),
            Note::Unverified { slot, reason } => format!("slot {slot} not checked: {reason}"),
            Note::Unusable { slot, kind, reason } => format!("slot {slot} ({kind}) cannot be used this boot, kept: {reason}"),
        };
        let _ = writeln!(s, "  ! {line}");
    }
}

fn kind_str(kind: &api_types::KeySource, lock: bool) -> String {
    if lock {
        format!("{kind}, lockToSTATE")
    } else {
        kind.to_string()
    }
}
