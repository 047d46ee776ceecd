//! Key rotation through staged configs, and power cuts across it.

use super::harness::*;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn reboot_driven_key_rotation_with_staged_configs() {
    let mut vm = Vm::new("rotation", LAYOUT);
    vm.write("a.yaml", &config_with_ephemeral(&[OLD, NODE]));
    vm.write("b.yaml", &config_with_ephemeral(&[OLD, NODE, NEW]));
    vm.write("c.yaml", &config_with_ephemeral(&[NODE, NEW]));
    vm.write(
        "bad.yaml",
        &config_with_ephemeral(&["{slot: 40, static: {passphrase: x}}"]),
    );
    vm.write(
        "lockout.yaml",
        &config_with_ephemeral(&["{slot: 5, static: {passphrase: never-enrolled}}"]),
    );

    let b = vm.boot(
        "-f /job/a.yaml",
        "echo ephemeral-file > /var/f; volctl apply-config -f /job/b.yaml --mode staged",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert!(b.log.contains("takes effect at the next boot"), "{}", b.log);
    assert_eq!(b.keyslots("EPHEMERAL"), vec![0, 1]);

    let b = vm.boot("", "echo 'BEGIN files'; cat /var/f; echo 'END files'; volctl apply-config -f /job/c.yaml --mode staged");
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.status["config_source"],
        "STATE (staged config promoted at this boot)"
    );
    assert_eq!(b.keyslots("EPHEMERAL"), vec![0, 1, 2]);
    assert_eq!(b.volume("EPHEMERAL")["changes"][0], "+ add slot 2 (static)");
    assert_eq!(b.section("files"), "ephemeral-file\n");

    let bad = "volctl apply-config -f /job/bad.yaml --mode staged; echo \"BAD-RC $?\"; volctl apply-config -f /job/lockout.yaml --mode staged; echo \"LOCKOUT-RC $?\"; echo 'BEGIN state'; ls /var/lib/volctl/state; echo 'END state'";
    let b = vm.boot(
        "",
        &format!("echo 'BEGIN files'; cat /var/f; echo 'END files'; {bad}"),
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.keyslots("EPHEMERAL"), vec![1, 2]);
    assert!(b.volume("EPHEMERAL")["changes"][0]
        .as_str()
        .unwrap()
        .starts_with("- remove slot 0"));
    assert_eq!(b.section("files"), "ephemeral-file\n");
    assert!(
        b.log.contains("BAD-RC 1") && b.log.contains("slot 40 is outside 0–31"),
        "{}",
        b.log
    );
    assert!(
        b.log.contains("LOCKOUT-RC 1")
            && b.log
                .contains("none of the keys in this config opens the volume"),
        "{}",
        b.log
    );
    assert!(
        !b.section("state").contains("config.pending.yaml"),
        "a rejected config is not stored"
    );

    assert!(
        !vm.opens("EPHEMERAL", 0, b"old-pass"),
        "the old passphrase no longer opens slot 0"
    );
    assert!(!vm.opens("EPHEMERAL", 2, b"old-pass"));
    assert!(vm.opens("EPHEMERAL", 2, b"new-pass"));
    vm.summary("slots {0,1} → {0,1,2} → {1,2}; bad and lock-out configs refused");
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn power_cut_at_every_step_of_a_rotation_leaves_old_or_new_keys_working() {
    let old = "{slot: 0, static: {passphrase: old-pass}}";
    let new = "{slot: 1, static: {passphrase: new-pass}}";
    let mut vm = Vm::new("power-cut", LAYOUT);
    vm.write("a.yaml", &config_with_ephemeral(&[old]));
    vm.write("b.yaml", &config_with_ephemeral(&[old, new]));
    vm.write("c.yaml", &config_with_ephemeral(&[new]));
    let b = vm.boot(
        "-f /job/a.yaml",
        "echo survives > /var/f; volctl apply-config -f /job/b.yaml --mode staged",
    );
    assert!(b.all_ready(), "{}", b.log);
    let mut cuts = 0;
    for (step, next) in [("b", Some("c")), ("c", None)] {
        let stage = next
            .map(|n| format!("volctl apply-config -f /job/{n}.yaml --mode staged"))
            .unwrap_or_default();
        let mut done = false;
        for n in 1..=8 {
            let b = vm.boot_with(&format!("export VOLCTL_POWER_CUT_AFTER_WRITES={n}"), "", &format!("unset VOLCTL_POWER_CUT_AFTER_WRITES; echo 'BEGIN files'; cat /var/f; echo 'END files'; {stage}"));
            if b.log.contains("simulated power cut") {
                cuts += 1;
                let ok =
                    vm.opens("EPHEMERAL", 0, b"old-pass") || vm.opens("EPHEMERAL", 1, b"new-pass");
                assert!(
                    ok,
                    "step {step}, cut after {n} write(s): neither the old nor the new key opens EPHEMERAL\n{}\n{}\n{}\n{}",
                    vm.why_not_opened("EPHEMERAL", 0, b"old-pass"),
                    vm.why_not_opened("EPHEMERAL", 1, b"new-pass"),
                    vm.luks_dump("EPHEMERAL"),
                    b.log
                );
                continue;
            }
            assert!(b.all_ready(), "step {step}: {}", b.log);
            assert_eq!(b.section("files"), "survives\n", "step {step}: {}", b.log);
            done = true;
            break;
        }
        assert!(done, "step {step} never completed");
    }
    assert!(cuts >= 3, "only {cuts} power cuts happened");
    assert!(!vm.opens("EPHEMERAL", 0, b"old-pass"));
    assert!(vm.opens("EPHEMERAL", 1, b"new-pass"));
    vm.summary(&format!(
        "{cuts} power cuts across add and remove; always openable"
    ));
}
