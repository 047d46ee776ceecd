use super::*;
use crate::luks2::token::TokenId;
use api_types::{KeySource, KeyslotId};

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
        binds: None,
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
    let e = plan_format(&[k.clone()], RecoveryOnly::Refused).unwrap_err();
    assert!(e.to_string().contains("server down"));
    let p = plan_format(&[k, want(1, "static")], RecoveryOnly::Refused).unwrap();
    assert_eq!(p.actions.len(), 2);
    assert_eq!(p.notes.len(), 1);
}

#[test]
fn actions_and_notes_render_as_one_line_each() {
    let add = Action::Add {
        slot: K2,
        kind: KeySource::Static,
        lock_to_state: false,
        binds: None,
    };
    assert_eq!(add.to_string(), "+ add slot 2 (static)");
    let replace = Action::Replace {
        slot: K1,
        kind: KeySource::NodeId,
        lock_to_state: true,
        binds: None,
        reason: "why".into(),
    };
    assert_eq!(
        replace.to_string(),
        "~ replace slot 1 with nodeID, lockToState: why"
    );
    let signed = Action::Add {
        slot: K2,
        kind: KeySource::Tpm,
        lock_to_state: false,
        binds: Some("PCR 7; PCR 11 as signed by key 2af7fb0ec3aaeddf".into()),
    };
    assert_eq!(
        signed.to_string(),
        "+ add slot 2 (tpm: PCR 7; PCR 11 as signed by key 2af7fb0ec3aaeddf)"
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
            filesystem: None,
            shrink_mib: 0,
            data_mib: 90,
            eta_seconds: None,
        },
    };
    let add = Action::Add {
        slot: K2,
        kind: KeySource::Static,
        lock_to_state: false,
        binds: None,
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

#[test]
fn a_blank_device_is_formatted_only_with_a_key_it_opens_with_every_day() {
    use api_types::KeySource::{Kms, Prompt, Recovery};
    let why = || "slot 0 (prompt): nobody answered".to_string();
    let ok = |wanted: &[KeySource], made: &[KeySource]| {
        may_format(
            wanted.iter().copied(),
            made.iter().copied(),
            RecoveryOnly::Refused,
            why,
        )
    };
    assert!(ok(&[Prompt, Recovery], &[Prompt, Recovery]).is_ok());
    assert!(
        ok(&[Prompt, Kms, Recovery], &[Kms]).is_ok(),
        "one daily key is enough"
    );
    assert!(
        ok(&[Recovery], &[Recovery]).is_ok(),
        "a config of recovery keys only"
    );
    let e = ok(&[Prompt, Recovery], &[Recovery]).unwrap_err();
    assert!(matches!(e, PlanError::NoDailyKey(_)), "{e}");
    assert!(e.to_string().contains("nobody answered"), "{e}");
    let e = ok(&[Prompt], &[]).unwrap_err();
    assert!(matches!(e, PlanError::NothingToEnrol(_)), "{e}");
    // Told to (`--allow-incomplete`): the recovery key alone is enough;
    // no key at all is still not.
    let allowed = |wanted: &[KeySource], made: &[KeySource]| {
        may_format(
            wanted.iter().copied(),
            made.iter().copied(),
            RecoveryOnly::Allowed,
            why,
        )
    };
    assert!(allowed(&[Prompt, Recovery], &[Recovery]).is_ok());
    assert!(allowed(&[Prompt], &[]).is_err());
}
