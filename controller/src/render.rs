//! Human-readable output of plans and outcomes (each action and note
//! renders itself: `Display` in `converge::plan`).

use crate::converge::Outcome;
use std::fmt::Write;

/// One line per action and note, for `volctl plan` and `volctl converge`.
pub fn outcome_text(o: &Outcome) -> String {
    let mut s = String::new();
    let verb = if o.dry_run { "plan for" } else { "converged" };
    let _ = writeln!(s, "{verb} volume {} on {}", o.volume, o.device);
    let in_place = match o.plan.actions.first() {
        Some(crate::converge::plan::Action::EncryptInPlace { work, .. }) => {
            Some(work.filesystem.unwrap_or("a filesystem"))
        }
        _ => None,
    };
    let _ = match (&o.unlocked_by, in_place) {
        (Some((slot, kind)), _) => writeln!(s, "  unlocked by slot {slot} ({kind})"),
        (None, Some(fs)) => writeln!(s, "  device holds {fs}: it is encrypted in place (inPlace)"),
        (None, None) => writeln!(s, "  device is blank: it will be formatted as LUKS2"),
    };
    for a in &o.plan.actions {
        let _ = writeln!(s, "  {a}");
    }
    for n in &o.plan.notes {
        let _ = writeln!(s, "  ! {n}");
    }
    if o.plan.is_empty() {
        let _ = writeln!(s, "  = nothing to change");
    }
    if let Some(e) = &o.encrypted {
        let what = match e.operation {
            crate::luks2::reencryption::Operation::Encrypt => "encrypted in place",
            crate::luks2::reencryption::Operation::RotateVolumeKey => {
                "re-encrypted to the new volume key"
            }
            crate::luks2::reencryption::Operation::Decrypt => "decrypted in place",
        };
        let _ = writeln!(
            s,
            "  {} MiB {what} in {:.1} s ({:.0} MiB/s)",
            e.mib, e.seconds, e.rate.0
        );
    }
    let _ = writeln!(s, "  KDF runs: {}", o.kdf_runs);
    s
}
