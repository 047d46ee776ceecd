//! Converge on the simulated device: KDF counts, the order of writes, what
//! is left alone, refusals with nothing written, and every power-cut point.
//! The same behaviour on real headers is tested in `tests/keyslots.rs`.

use super::*;
use crate::device::SimDevice;
use crate::luks2::token::TokenId;
use crate::luks2::token::VolctlToken;
use api_types::KeyslotId;
use plan::{Action, Note};
use providers::StateSalt;

const K1: KeyslotId = KeyslotId::nth(1);
const K7: KeyslotId = KeyslotId::nth(7);
const UUID: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";
use crate::units::MIB;

fn spec(keys: &[&str]) -> VolumeSpec {
    let mut y = String::from(
        "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n",
    );
    for k in keys {
        y.push_str(&format!("    - {k}\n"));
    }
    let p = api_types::parse_str("test.yaml", &y);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    VolumeSpec::from_documents(&p.documents, "EPHEMERAL").unwrap()
}

fn env() -> ProviderEnv {
    ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid: Ok(UUID.into()),
        state_salt: Some(StateSalt::new([7; 32])),
        kms: Default::default(),
        tpm: Default::default(),
        key_servers_until: None,
    }
}

fn run(spec: &VolumeSpec, dev: &Arc<SimDevice>, mode: Mode) -> Result<Outcome, ConvergeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(converge(
        spec,
        dev.clone() as Arc<dyn LuksDevice>,
        &env(),
        mode,
    ))
}

const S0: &str = "{slot: 0, static: {passphrase: old-secret}}";
const S0_NEW: &str = "{slot: 0, static: {passphrase: new-secret}}";
const N1: &str = "{slot: 1, nodeID: {}}";
const S2: &str = "{slot: 2, static: {passphrase: second}}";
const S3: &str = "{slot: 3, static: {passphrase: third}, lockToSTATE: true}";

/// A volume made with `keys`, behind a fresh handle (as after a reboot).
fn provisioned(keys: &[&str]) -> Arc<SimDevice> {
    let dev = Arc::new(SimDevice::blank(64 * MIB));
    run(&spec(keys), &dev, Mode::Apply).unwrap();
    Arc::new(dev.reboot(Access::ReadWrite))
}

fn slots(dev: &SimDevice) -> Vec<KeyslotId> {
    match dev.contents().unwrap() {
        Contents::Luks2(h) => h.keyslot_numbers(),
        other => panic!("{other:?}"),
    }
}

/// Whether some key of `keys` opens the device (a dry run unlocks).
fn opens_with(dev: &SimDevice, keys: &[&str]) -> bool {
    run(
        &spec(keys),
        &Arc::new(dev.reboot(Access::ReadOnly)),
        Mode::DryRun,
    )
    .is_ok()
}

#[test]
fn blank_device_is_formatted_with_one_kdf_run_per_key() {
    let dev = Arc::new(SimDevice::blank(64 * MIB));
    let o = run(&spec(&[S0, N1, S3]), &dev, Mode::Apply).unwrap();
    assert!(o.formatted && o.applied);
    assert_eq!(o.kdf_runs, 3);
    assert_eq!(o.keyslots, vec![0, 1, 3]);
    assert_eq!(dev.state().log[0], "format");
}

#[test]
fn converged_volume_costs_one_kdf_run_and_writes_nothing() {
    let dev = provisioned(&[S0, N1, S2, S3]);
    let o = run(&spec(&[S0, N1, S2, S3]), &dev, Mode::Apply).unwrap();
    assert!(o.plan.is_empty(), "{:?}", o.plan);
    assert_eq!(o.kdf_runs, 1);
    assert_eq!(dev.writes(), 0);
    assert_eq!(o.unlocked_by, Some((KeyslotId::nth(0), KeySource::Static)));
}

#[test]
fn unlock_tries_the_cheapest_kind_first_whatever_the_slot_numbers() {
    let keys = [
        "{slot: 5, nodeID: {}}",
        "{slot: 9, static: {passphrase: p}}",
    ];
    let dev = provisioned(&keys);
    let o = run(&spec(&keys), &dev, Mode::Apply).unwrap();
    assert_eq!(o.unlocked_by, Some((KeyslotId::nth(9), KeySource::Static)));
    assert_eq!(o.kdf_runs, 1);
}

#[test]
fn rotation_adds_before_it_replaces_and_removes_last() {
    let dev = provisioned(&[S0, N1, S2]);
    let o = run(
        &spec(&[N1, S2.replace("second", "rotated").as_str(), S3]),
        &dev,
        Mode::Apply,
    )
    .unwrap();
    // The changed static key at slot 2 is the cheapest and is tried first:
    // one failed attempt, the nodeID unlock, two enrolments.
    assert_eq!(o.kdf_runs, 1 + 1 + 2);
    assert_eq!(
        dev.state().log,
        [
            "add 3",
            "token+ [\"3\"]",
            "destroy 2",
            "token- 2",
            "add 2",
            "token+ [\"2\"]",
            "destroy 0",
            "token- 0"
        ]
    );
    assert_eq!(slots(&dev), vec![1, 2, 3]);
}

#[test]
fn the_slot_that_unlocked_is_never_removed() {
    let dev = provisioned(&[S0, N1]);
    // The config drops slot 1; slot 0 (static, cheapest) unlocks and stays.
    let o = run(&spec(&[S0]), &dev, Mode::Apply).unwrap();
    assert_eq!(o.unlocked_by, Some((KeyslotId::nth(0), KeySource::Static)));
    assert!(matches!(
        o.plan.actions.as_slice(),
        [Action::Remove { slot: K1, .. }]
    ));
    assert_eq!(slots(&dev), vec![0]);
}

#[test]
fn an_operators_keyslot_without_a_token_is_left_alone() {
    let dev = provisioned(&[S0]);
    dev.operator_add(KeyslotId::nth(7), b"operator");
    let o = run(&spec(&[S0]), &dev, Mode::Apply).unwrap();
    assert!(o.plan.actions.is_empty());
    assert_eq!(o.plan.notes, vec![Note::Unmanaged { slot: K7 }]);
    assert_eq!(slots(&dev), vec![0, 7]);
}

#[test]
fn a_forged_token_does_not_make_volctl_remove_an_operators_keyslot() {
    let dev = provisioned(&[S0]);
    dev.operator_add(KeyslotId::nth(7), b"operator");
    let forged = serde_json::json!({"type": "volctl", "keyslots": ["7"], "volctl_version": 2, "kind": "static",
        "lock_to_state": false, "data": {}, "binding": "AAAAAAAAAAAAAAAAAAA=", "owner": "AAAAAAAAAAAAAAAAAAA="});
    dev.edit(|s| {
        s.header.as_mut().unwrap().tokens.insert(TokenId(5), forged);
    });
    let o = run(&spec(&[S0]), &dev, Mode::Apply).unwrap();
    assert!(o.plan.actions.is_empty(), "{:?}", o.plan);
    assert!(
        matches!(o.plan.notes.as_slice(), [Note::Unverified { slot: K7, .. }]),
        "{:?}",
        o.plan.notes
    );
    assert_eq!(slots(&dev), vec![0, 7]);
}

#[test]
fn a_token_copied_to_another_keyslot_is_not_authenticated() {
    let dev = provisioned(&[S0, S2]);
    // Move slot 2's token onto an operator's slot 7: the owner tag covers
    // the keyslot's salt, so it does not verify there.
    dev.operator_add(KeyslotId::nth(7), b"operator");
    dev.edit(|s| {
        let h = s.header.as_mut().unwrap();
        let (id, mut t) = h
            .tokens
            .iter()
            .find(|(_, t)| t["keyslots"][0] == "2")
            .map(|(i, t)| (*i, t.clone()))
            .unwrap();
        t["keyslots"] = serde_json::json!(["7"]);
        t["binding"] = "x".into();
        h.tokens.insert(TokenId(id.0 + 10), t);
    });
    let o = run(&spec(&[S0, S2]), &dev, Mode::Apply).unwrap();
    assert!(
        !o.plan
            .actions
            .iter()
            .any(|a| matches!(a, Action::Remove { slot: K7, .. })),
        "{:?}",
        o.plan
    );
    assert!(slots(&dev).contains(&K7));
}

#[test]
fn token_data_that_does_not_read_as_its_kind_is_kept_and_never_makes_an_orphan() {
    let dev = provisioned(&[S0, N1]);
    // Slot 1's token as a later volctl (or damage) might leave it.
    let later = serde_json::json!({"from": "a later volctl", "v": [1, 2]});
    dev.edit(|s| {
        for t in s.header.as_mut().unwrap().tokens.values_mut() {
            if t["keyslots"][0] == "1" {
                t["data"] = later.clone();
            }
        }
    });
    let o = run(&spec(&[S0, N1]), &dev, Mode::Apply).unwrap();
    assert!(o.plan.is_empty(), "{:?}", o.plan);
    assert_eq!(slots(&dev), vec![0, 1]);
    let h = match dev.contents().unwrap() {
        Contents::Luks2(h) => h,
        other => panic!("{other:?}"),
    };
    let (_, t) = h.volctl_token(K1).expect("still volctl's token");
    assert!(
        matches!(&t.data.key, providers::KeyData::Unreadable { raw, .. } if *raw == later),
        "{t:?}"
    );
    assert_eq!(
        serde_json::to_value(&t).unwrap()["data"],
        later,
        "written back as found"
    );
}

#[test]
fn a_spare_slots_mark_reads_back_beside_its_kinds_data() {
    use crate::luks2::token::TokenData;
    let kinds = [
        (
            KeySource::Recovery,
            providers::KeyData::Recovery { held: true },
        ),
        (KeySource::Static, providers::KeyData::Nothing),
    ];
    for (kind, key) in kinds {
        let data = TokenData {
            key,
            replaces: Some(K7),
        };
        let json = data.to_json();
        assert_eq!(json["replaces"], 7, "{json}");
        assert_eq!(TokenData::read(kind, &json), data);
    }
}

#[test]
fn a_token_without_owner_tag_is_rewritten_when_its_binding_proves_it() {
    let dev = provisioned(&[S0, N1]);
    dev.edit(|s| {
        for t in s.header.as_mut().unwrap().tokens.values_mut() {
            t.as_object_mut().unwrap().remove("owner");
            t["volctl_version"] = 1.into();
        }
    });
    let o = run(&spec(&[S0, N1]), &dev, Mode::Apply).unwrap();
    assert_eq!(o.kdf_runs, 1, "no keyslot is re-enrolled");
    assert_eq!(o.plan.actions.len(), 2, "{:?}", o.plan);
    assert!(o
        .plan
        .actions
        .iter()
        .all(|a| matches!(a, Action::WriteToken { .. })));
    let again = run(
        &spec(&[S0, N1]),
        &Arc::new(dev.reboot(Access::ReadWrite)),
        Mode::Apply,
    )
    .unwrap();
    assert!(again.plan.is_empty(), "{:?}", again.plan);
    for t in dev.state().header.unwrap().tokens.values() {
        assert!(VolctlToken::parse(t).unwrap().unwrap().owner.is_some());
    }
}

#[test]
fn a_null_cipher_header_is_refused_before_any_kdf_run() {
    let dev = provisioned(&[S0]);
    dev.edit(|s| s.header.as_mut().unwrap().cipher = "cipher_null-ecb".into());
    let e = run(&spec(&[S0]), &dev, Mode::Apply).unwrap_err();
    assert!(
        matches!(
            e,
            ConvergeError::UntrustedHeader {
                reason: CheckError::NullCipher { .. },
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(dev.kdf_runs(), 0);
    assert_eq!(dev.writes(), 0);
}

#[test]
fn foreign_contents_are_not_formatted() {
    let dev = Arc::new(SimDevice::blank(64 * MIB));
    dev.edit(|s| s.foreign = Some("minix filesystem (signature at byte 1040)".into()));
    let e = run(&spec(&[S0]), &dev, Mode::Apply).unwrap_err();
    assert!(e.to_string().contains("minix"), "{e}");
    assert_eq!(dev.writes(), 0);
}

#[test]
fn a_device_too_small_for_luks2_is_refused_with_its_size() {
    let dev = Arc::new(SimDevice::blank(8 * MIB));
    let e = run(&spec(&[S0]), &dev, Mode::Apply).unwrap_err();
    assert!(
        matches!(e, ConvergeError::TooSmall { size, .. } if size == 8 * MIB),
        "{e}"
    );
    assert_eq!(dev.writes(), 0);
}

#[test]
fn a_dry_run_plans_the_change_and_writes_nothing() {
    let dev = provisioned(&[S0]);
    let ro = Arc::new(dev.reboot(Access::ReadOnly));
    let o = run(&spec(&[S0, N1]), &ro, Mode::DryRun).unwrap();
    assert!(matches!(
        o.plan.actions.as_slice(),
        [Action::Add { slot: K1, .. }]
    ));
    assert_eq!(o.kdf_runs, 1);
    assert!(!o.applied);
    assert_eq!(ro.writes(), 0);
}

#[test]
fn no_configured_key_opens_costs_one_kdf_run_per_attempt_and_writes_nothing() {
    let dev = provisioned(&[S0, S2]);
    let e = run(
        &spec(&[S0_NEW, "{slot: 2, static: {passphrase: wrong}}"]),
        &dev,
        Mode::Apply,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConvergeError::NoKeyOpens { .. }), "{msg}");
    assert!(
        msg.contains("slot 0 (static): wrong key") && msg.contains("slot 2 (static): wrong key"),
        "{msg}"
    );
    let ConvergeError::NoKeyOpens { tried, .. } = &e else {
        unreachable!()
    };
    let failures: Vec<(KeyslotId, bool)> = tried
        .0
        .iter()
        .map(|a| (a.slot, matches!(a.failure, Failure::WrongKey)))
        .collect();
    let (k0, k2) = (KeyslotId::nth(0), KeyslotId::nth(2));
    assert_eq!(failures, [(k0, true), (k2, true)], "typed: {tried}");
    assert!(
        !tried.0.iter().any(|a| a.failure.may_come_back()),
        "a refused key does not come back by waiting"
    );
    assert_eq!(dev.kdf_runs(), 2);
    assert_eq!(dev.writes(), 0);
    assert!(
        !msg.contains("new-secret") && !msg.contains("wrong}"),
        "no secret in errors: {msg}"
    );
}

#[test]
fn a_header_left_by_a_cut_first_format_is_formatted_again() {
    let dev = Arc::new(SimDevice::blank(64 * MIB));
    dev.cut_after(2); // format, then the first keyslot: no token yet.
    assert!(run(&spec(&[S0, N1]), &dev, Mode::Apply).is_err());
    let dev = Arc::new(dev.reboot(Access::ReadWrite));
    assert!(matches!(
        dev.contents().unwrap(),
        Contents::UnfinishedFormat(_)
    ));
    let o = run(&spec(&[S0, N1]), &dev, Mode::Apply).unwrap();
    assert!(o.formatted);
    assert_eq!(slots(&dev), vec![0, 1]);
}

/// A rotation from `OLD` to `NEW` cut after its `n`-th header write: the
/// volume opens with a key of the old or the new config, and the next run
/// with the new config finishes the job.
fn rotation_cut_after(n: u64) {
    const OLD: &[&str] = &[S0, N1, S2];
    let new = [N1, "{slot: 2, static: {passphrase: rotated}}", S3];
    let dev = provisioned(OLD);
    dev.cut_after(n);
    let cut = run(&spec(&new), &dev, Mode::Apply);
    assert!(cut.is_err(), "write {n} is within the rotation");
    assert!(
        opens_with(&dev, OLD) || opens_with(&dev, &new),
        "cut after write {n}"
    );
    let after = Arc::new(dev.reboot(Access::ReadWrite));
    run(&spec(&new), &after, Mode::Apply).unwrap();
    let o = run(
        &spec(&new),
        &Arc::new(after.reboot(Access::ReadWrite)),
        Mode::Apply,
    )
    .unwrap();
    assert!(
        o.plan.is_empty(),
        "converged after the cut at write {n}: {:?}",
        o.plan
    );
    assert_eq!(slots(&after), vec![1, 2, 3]);
}

#[test]
fn rotation_cut_after_write_1() {
    rotation_cut_after(1);
}
#[test]
fn rotation_cut_after_write_2() {
    rotation_cut_after(2);
}
#[test]
fn rotation_cut_after_write_3() {
    rotation_cut_after(3);
}
#[test]
fn rotation_cut_after_write_4() {
    rotation_cut_after(4);
}
#[test]
fn rotation_cut_after_write_5() {
    rotation_cut_after(5);
}
#[test]
fn rotation_cut_after_write_6() {
    rotation_cut_after(6);
}
#[test]
fn rotation_cut_after_write_7() {
    rotation_cut_after(7);
}
#[test]
fn rotation_cut_after_write_8_the_last() {
    rotation_cut_after(8);
}

#[test]
fn first_format_cut_after_any_write_is_finished_by_the_next_run() {
    for n in 1..=4 {
        let dev = Arc::new(SimDevice::blank(64 * MIB));
        dev.cut_after(n);
        assert!(
            run(&spec(&[S0, N1]), &dev, Mode::Apply).is_err(),
            "write {n}"
        );
        let dev = Arc::new(dev.reboot(Access::ReadWrite));
        run(&spec(&[S0, N1]), &dev, Mode::Apply)
            .unwrap_or_else(|e| panic!("after a cut at write {n}: {e}"));
        assert!(
            opens_with(&dev, &[S0]) && opens_with(&dev, &[N1]),
            "write {n}"
        );
    }
}

#[test]
fn a_recovery_key_is_not_enrolled_when_nobody_can_be_handed_it_and_never_tried_to_unlock() {
    // Unattended (a boot without --recovery-key-out): the slot is reported
    // unavailable, nothing else changes, and the static key unlocks.
    let dev = provisioned(&[S0]);
    let o = run(&spec(&[S0, "{slot: 9, recovery: {}}"]), &dev, Mode::Apply).unwrap();
    assert!(o.plan.actions.is_empty(), "{:?}", o.plan);
    assert!(
        matches!(o.plan.notes.as_slice(), [Note::Unavailable { slot, kind: KeySource::Recovery, .. }] if *slot == KeyslotId::nth(9)),
        "{:?}",
        o.plan.notes
    );
    assert_eq!(o.kdf_runs, 1);
    assert!(o.recovery_keys.is_empty());
    assert_eq!(slots(&dev), vec![0]);
}

#[test]
fn a_key_that_cannot_be_made_now_is_told_from_a_refused_one() {
    let dev = provisioned(&[S0, S3]);
    let no_salt = ProviderEnv {
        state_salt: None,
        ..env()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(converge(
            &spec(&[S3]),
            dev.clone() as Arc<dyn LuksDevice>,
            &no_salt,
            Mode::Apply,
        ))
        .unwrap_err();
    let ConvergeError::NoKeyOpens { tried, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(tried.0.len(), 1, "{tried}");
    assert_eq!(tried.0[0].slot, KeyslotId::nth(3));
    assert!(matches!(tried.0[0].failure, Failure::NotMade(_)), "{tried}");
    assert!(tried.0[0].failure.may_come_back(), "the salt may come back");
    assert_eq!(dev.kdf_runs(), 0, "no KDF for a key that cannot be made");
}
