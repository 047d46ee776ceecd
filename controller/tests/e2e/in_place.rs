//! In-place encryption and volume-key rotation online, cut and resumed.

use super::harness::*;
use crate::common;
use std::process::Command;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn persistence_holding_data_is_encrypted_in_place_online_and_a_cut_run_resumes() {
    let mut vm = Vm::new("in-place", LAYOUT);
    vm.write("plain.yaml", &config_with_persistence(false));
    vm.write("inplace.yaml", &config_with_persistence(true));
    // The same with a second key, staged while the encryption runs.
    let two_keys = format!(
        "{}    - slot: 1\n      static: {{passphrase: second-pass}}\n",
        config_with_persistence(true)
    );
    vm.write("twokeys.yaml", &two_keys);
    // Plain persistence, filled with data; the inPlace config staged.
    let b = vm.boot(
        "-f /job/plain.yaml",
        &format!("dd if=/dev/urandom of=/persistence/big bs=1M count=24 2>/dev/null; mkdir -p /persistence/a/b/c/d/e; echo deep > /persistence/a/b/c/d/e/f; dd if=/dev/urandom of=/persistence/a/mid bs=1M count=3 2>/dev/null; {SUMS}; volctl apply-config -f /job/inplace.yaml --mode staged"),
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("persistence")["encrypted"], false);
    let sums = b.section("sums");
    assert!(
        sums.contains("./big") && sums.contains("./a/b/c/d/e/f"),
        "{sums}"
    );
    // (No empty file: busybox's `head -c` takes no size suffix.)
    assert!(!sums.contains(EMPTY_SHA256), "{sums}");

    // The boot mounts it and encrypts it online: once the run has done
    // something, a file is written and synced, the run still going; then
    // the power is cut. The run is given the lowest CPU priority once it
    // has started (every thread of its process group), so that what this
    // script does before the cut does not race it to its end on the VM's
    // one emulated CPU.
    let during = "i=0; while ! grep -q '\"done_bytes\": [1-9]' /run/volctl/reencrypt/persistence.json && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; run=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' /run/volctl/reencrypt/persistence.json); renice -n 19 -g $run > /dev/null && echo RENICED; volctl status; dd if=/dev/urandom of=/persistence/during bs=1M count=5 2>/dev/null; sync; echo 'BEGIN progress'; cat /run/volctl/reencrypt/persistence.json; echo; echo 'END progress'; volctl apply-config -f /job/twokeys.yaml --mode staged > /tmp/staged.out 2>&1; echo \"STAGED-RC $?\"; tail -5 /tmp/staged.out; echo CUT-HERE";
    let log = vm.boot_cut_when("", during, "CUT-HERE\n");
    assert!(log.contains("BOOT-RC 0"), "{log}");
    assert!(log.contains("RENICED"), "{log}");
    assert!(log.contains("STAGED-RC 0"), "{log}");
    assert!(
        log.contains("persistence: encrypting in place 0% (0/"),
        "{log}"
    );
    let progress = progress_record(&section(&log, "progress"));
    assert_eq!(progress["state"], "running", "{progress}");
    assert!(
        progress["done_bytes"].as_u64() < progress["total_bytes"].as_u64(),
        "{progress}"
    );
    let dump = vm.luks_dump("persistence");
    assert!(dump.contains("online-reencrypt"), "{dump}");

    // The next boot resumes it online and finishes it: the data as it was,
    // the file written mid-run too.
    // The key the staged config adds waits for the run (libcryptsetup
    // changes no keyslot mid-reencryption).
    let b = vm.boot("", &format!("{WAIT_ONLINE}; {SUMS}"));
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("persistence")["encrypted"], true);
    // Where the cut landed decides how it resumes: mid-run, online (and the
    // staged key waits for it); in the run's last step, this boot finishes
    // the step itself from the moved copy, and the key goes in at once.
    let finished_by_boot = b.section("online").trim().is_empty();
    let changes = b.volume("persistence")["changes"].clone();
    let notes = b.volume("persistence")["notes"].to_string();
    if finished_by_boot {
        assert!(
            changes[0]
                .as_str()
                .is_some_and(|c| c.starts_with("~ finish the in-place encryption")),
            "{}",
            b.status
        );
        assert_eq!(changes[1], "+ add slot 1 (static)", "{}", b.status);
        assert!(!notes.contains("waits until"), "no stale note: {notes}");
        assert_eq!(b.keyslots("persistence"), vec![0, 1]);
    } else {
        let online = progress_record(&b.section("online"));
        assert_eq!(online["state"], "done", "{online}");
        assert!(
            notes.contains(
                "`+ add slot 1 (static)` waits until the reencryption running online has finished"
            ),
            "{}",
            b.status
        );
        assert_eq!(b.keyslots("persistence"), vec![0]);
    }
    let after = b.section("sums");
    assert_same_but_during(&after, &sums);
    assert!(vm.opens("persistence", 0, b"persistence-pass"));
    assert!(!vm.luks_dump("persistence").contains("online-reencrypt"));
    let p = vm.partition("persistence");
    let old_key = common::volume_key(p.path(), 0, b"persistence-pass");
    drop(p);
    assert!(data_reads_as_ext4(&vm, &old_key));

    // The next boot adds the second key; then the volume key is rotated
    // online, the volume mounted and written to meanwhile; `volctl close`
    // stops the rotation part way (after its step), and the next boot
    // resumes it online: the same data, the old volume key decrypts
    // garbage, both configured keyslots open it, no other is left.
    let rotate = "volctl rotate-volume-key --volume persistence -f /job/twokeys.yaml --online > /tmp/rotate.out 2>&1 & R=$!; i=0; while ! grep -q '\"done_bytes\": [1-9]' /run/volctl/reencrypt/persistence.json 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; dd if=/dev/urandom of=/persistence/rotating bs=1M count=1 conv=fsync 2>/dev/null; echo 'BEGIN rotating'; cd /persistence; sha256sum ./rotating; cd /; echo 'END rotating'";
    let b = vm.boot(
        "",
        &format!("{rotate}; volctl close; echo \"CLOSE-RC $?\"; wait $R; echo \"ROTATE-RC $?\"; cat /tmp/rotate.out; volctl status"),
    );
    assert!(b.all_ready(), "{}", b.log);
    if !finished_by_boot {
        assert_eq!(
            b.volume("persistence")["changes"][0],
            "+ add slot 1 (static)"
        );
    }
    assert!(b.log.contains("CLOSE-RC 0"), "{}", b.log);
    assert!(
        b.log
            .contains("stopped the online reencryption of persistence at"),
        "{}",
        b.log
    );
    assert!(!b.log.contains("ROTATE-RC 0"), "{}", b.log);
    assert!(
        b.log.contains("re-encrypting to the new volume key")
            && b.log.contains("(stopped; the next boot resumes it)"),
        "{}",
        b.log
    );
    let rotated = format!("{after}{}", b.section("rotating"));
    let dump = vm.luks_dump("persistence");
    assert!(dump.contains("online-reencrypt"), "{dump}");
    let b = vm.boot("", &format!("{WAIT_ONLINE}; {SUMS}"));
    assert!(b.all_ready(), "{}", b.log);
    let online = progress_record(&b.section("online"));
    assert_eq!(online["state"], "done", "{online}");
    assert_eq!(online["operation"], "rotate-volume-key", "{online}");
    let mut want: Vec<&str> = rotated.lines().collect();
    want.sort_by_key(|l| l.split_whitespace().nth(1).map(str::to_string));
    assert_eq!(b.section("sums").lines().collect::<Vec<_>>(), want);
    let p = vm.partition("persistence");
    let new_key = common::volume_key(p.path(), 0, b"persistence-pass");
    assert_eq!(common::slots(p.path()), vec![0, 1]);
    assert!(common::opens(p.path(), 1, b"second-pass"));
    drop(p);
    assert_ne!(new_key, old_key);
    assert!(
        !data_reads_as_ext4(&vm, &old_key),
        "the old key still decrypts"
    );
    assert!(data_reads_as_ext4(&vm, &new_key));
    vm.summary("plain persistence with data → inPlace staged → encrypted online, written meanwhile, power cut mid-run → resumed online (a staged key waits for it), data identical → key added, volume key rotated online, written meanwhile, stopped by volctl close → resumed online by the next boot → old key decrypts garbage");
}

/// The checksums `after` a run are those of `before` and of the file
/// `./during` written while it ran.
fn assert_same_but_during(after: &str, before: &str) {
    assert!(after.contains("./during"), "{after}");
    let without_during: String = after
        .lines()
        .filter(|l| !l.ends_with("./during"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        without_during.trim_end(),
        before.trim_end(),
        "the data is as it was"
    );
}

/// The online run cut at every write (tests/vm/online_every_write.sh): an
/// open, mounted volume's key rotated online, cut at each of its writes,
/// whole in one VM and torn in another (the two run at once); after each
/// cut the volume opens, and after the next converge `cryptsetup` decrypts
/// the same files.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn an_online_rotation_survives_a_cut_at_every_write() {
    let vms = ["online-every-write-whole", "online-every-write-torn"];
    every_write_online(vms, "rotate", "online rotation");
}

/// The same for a decryption in place the boot's way (`disable-encryption
/// --activate`: the closed volume activated by its header file once the
/// decryption is recorded, and decrypted through it): after each cut a
/// configured key opens it (by the device's header or the header file's)
/// unless every byte is plain already, and after the next offline run the
/// device holds the same files, plain.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn an_online_decryption_survives_a_cut_at_every_write() {
    let vms = [
        "online-decrypt-every-write-whole",
        "online-decrypt-every-write-torn",
    ];
    every_write_online(
        vms,
        "decrypt",
        "online decryption (activated by its header file)",
    );
}

/// The same for `disable-encryption --online`: the volume open by its own
/// header and mounted, libcryptsetup mapping it anew. This sweep found a
/// volume whose data is one step long taken for decrypted mid-step.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn a_decryption_of_an_open_volume_survives_a_cut_at_every_write() {
    let vms = [
        "open-decrypt-every-write-whole",
        "open-decrypt-every-write-torn",
    ];
    every_write_online(vms, "decrypt-online", "decryption of the open volume");
}

/// Sweeps `op` at every write, whole and torn in the two VMs `vms` at
/// once; every cut point must recover.
fn every_write_online(vms: [&'static str; 2], op: &'static str, what: &str) {
    let [whole, torn] = vms;
    let sweeps = std::thread::scope(|s| {
        let whole = s.spawn(|| online_sweep(whole, op, "whole"));
        let torn = s.spawn(|| online_sweep(torn, op, "torn"));
        [whole.join().unwrap(), torn.join().unwrap()]
    });
    let writes = sweeps[0].0;
    assert_eq!(sweeps[1].0, writes, "both VMs count the same writes");
    let points: Vec<&String> = sweeps.iter().flat_map(|s| &s.1).collect();
    let failed: Vec<&&String> = points.iter().filter(|l| !l.ends_with(" ok")).collect();
    assert!(
        failed.is_empty(),
        "{} of {} cut points failed:\n{}",
        failed.len(),
        points.len(),
        failed
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if std::env::var("VOLCTL_E2E_ONLY").is_err() {
        assert_eq!(points.len(), 2 * writes, "every write, both modes");
    }
    assert!(writes >= 8, "{writes}");
    sweeps[0].2.summary(&format!(
        "{what}: {writes} writes, {} cut points (whole and torn, two VMs at once), all recovered",
        points.len()
    ));
}

/// The config of the in-place user-volume scenarios: STATE (nodeID) and
/// a user volume `data` on the system disk, `inPlace` with a static key;
/// `provisioning` and `filesystem` lines as given.
fn data_in_place_config(provisioning: &str, filesystem: &str) -> String {
    let state = CONFIG.split("---\n").next().unwrap();
    format!(
        "{state}---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning:
  diskSelector: {{match: system_disk}}
{provisioning}{filesystem}encryption:
  provider: luks2
  inPlace: true
  pbkdf: {{type: argon2id, memoryKiB: 1024, iterations: 4}}
  keys:
    - slot: 0
      static: {{passphrase: data-pass}}
"
    )
}

/// Boots `vm` with `config` once the online run is done: `data` is ready
/// and encrypted, and holds the files of `want`, no more.
fn boot_data_in_place(vm: &mut Vm, config: &str, want: &common::ext4fs::Sums) -> Boot {
    vm.write("config.yaml", config);
    let wait = WAIT_ONLINE.replace("persistence.json", "data.json");
    let sums = "cd /var/mnt/data && echo 'BEGIN sums' && find . -type f | sort | xargs sha256sum && echo 'END sums'; cd /";
    let b = vm.boot("-f /job/config.yaml", &format!("{wait}; {sums}"));
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert_eq!(b.phase("data"), "ready", "{}", b.volume("data"));
    assert_eq!(b.volume("data")["encrypted"], true);
    let got = b.section("sums");
    for (path, sum) in want {
        assert!(got.contains(&format!("{sum}  ./{path}")), "{path}: {got}");
    }
    assert_eq!(got.lines().count(), want.len(), "{got}");
    b
}

/// Outside volctl: `data-pass` opens u-data with `cryptsetup`, and the data
/// decrypted with the volume key it shows, written to `plain.img`; the
/// checker `check` (with its arguments) passes on it.
fn decrypted_data_passes(vm: &Vm, check: &[&str]) -> std::path::PathBuf {
    let l = vm.partition("u-data");
    assert!(common::opens(l.path(), 0, b"data-pass"));
    let vk = common::hex_bytes(&common::volume_key(l.path(), 0, b"data-pass"));
    let plain = vm.dir.join("plain.img");
    common::ext4fs::decrypt_with(l.path(), &vk, &plain);
    drop(l);
    let out = Command::new(check[0])
        .args(&check[1..])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{check:?}: {}",
        common::text(&out.stderr)
    );
    plain
}

/// A user volume holding btrfs that fills its partition, with files: the
/// boot mounts it for a moment to shrink it (`btrfs filesystem resize`),
/// encrypts it in place online, and mounts it; the files are as they
/// were, and the host's `cryptsetup` and `btrfs check` agree.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn a_btrfs_user_volume_is_shrunk_and_encrypted_in_place() {
    // btrfs shrinks to no less than 256 MiB: a 320 MiB partition.
    let mut vm = Vm::sized(
        "in-place-btrfs",
        &[("META", 1), ("STATE", 48), ("u-data", 320)],
        400,
    );
    let want = common::ext4fs::tree(&vm.dir, 4);
    {
        let l = vm.partition("u-data");
        let out = Command::new("mkfs.btrfs")
            .args(["-q", "--rootdir"])
            .arg(vm.dir.join("tree"))
            .arg(l.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", common::text(&out.stderr));
    }
    let config = data_in_place_config("  maxSize: 320MiB\n", "filesystem:\n  type: btrfs\n");
    let b = boot_data_in_place(&mut vm, &config, &want);
    let changes = b.volume("data")["changes"].to_string();
    assert!(
        changes.contains("shrink"),
        "the filesystem was shrunk: {changes}"
    );
    // The plaintext is a clean btrfs, smaller than its partition by the
    // header and its moved copy.
    let plain = decrypted_data_passes(&vm, &["btrfs", "check", "--readonly"]);
    let sb = std::fs::read(&plain).unwrap();
    let total = u64::from_le_bytes(sb[0x1_0000 + 0x70..0x1_0000 + 0x78].try_into().unwrap());
    assert_eq!(total, (320 - 32) << 20, "btrfs shrunk by 32 MiB");
    vm.summary("btrfs filling its partition, with files → shrunk mounted, encrypted in place online → the same files; cryptsetup opens it, btrfs check passes on the plaintext");
}

/// A user volume holding XFS that fills its partition, with files, and
/// free space after the partition: XFS cannot shrink, so the boot grows
/// the partition first (`provisioning.grow`), encrypts in place online,
/// mounts it and grows the filesystem back into the device.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn an_xfs_user_volume_is_given_room_by_growing_its_partition_and_encrypted_in_place() {
    let mut vm = Vm::sized(
        "in-place-xfs",
        &[("META", 1), ("STATE", 48), ("u-data", 320)],
        440,
    );
    let want = common::ext4fs::tree(&vm.dir, 4);
    {
        let l = vm.partition("u-data");
        let mkfs = Command::new("mkfs.xfs")
            .args(["-q", "-f"])
            .arg(l.path())
            .status()
            .unwrap();
        assert!(mkfs.success());
        common::ext4fs::copy_in(l.path(), &vm.dir.join("tree"), &vm.dir);
    }
    let config = data_in_place_config("  maxSize: 384MiB\n  grow: true\n", "");
    let b = boot_data_in_place(&mut vm, &config, &want);
    let made = b.status["partitions_created"].to_string();
    assert!(made.contains("grow partition u-data"), "{made}");
    let changes = b.volume("data")["changes"].to_string();
    assert!(changes.contains("grew the filesystem from"), "{changes}");
    decrypted_data_passes(&vm, &["xfs_repair", "-n"]);
    vm.summary("XFS filling its partition, with files, free space after it → partition grown, encrypted in place online, filesystem grown → the same files; cryptsetup opens it, xfs_repair -n passes on the plaintext");
}

/// An encrypted persistence holding data, its config then asking for it
/// plain (`decryptInPlace`): the boot exports its header to STATE, wipes
/// it on the device, activates the volume by the header file and mounts
/// it, and a process of its own decrypts the data online, the volume in
/// use. A power cut part way: the next boot resumes online from the file;
/// at the end the file is gone and the next boot mounts the partition
/// plain, with no KDF run.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn an_encrypted_persistence_is_decrypted_in_place_online_and_stays_plain() {
    let mut vm = Vm::new("decrypt-in-place", LAYOUT);
    let encrypted = config_with_persistence(true);
    vm.write("encrypted.yaml", &encrypted);
    vm.write(
        "decrypt.yaml",
        &encrypted.replace("  inPlace: true\n", "  decryptInPlace: true\n"),
    );
    let fill = "dd if=/dev/urandom of=/persistence/big bs=1M count=12 2>/dev/null; mkdir -p /persistence/a/b/c; echo deep > /persistence/a/b/c/f";
    let b = vm.boot("-f /job/encrypted.yaml", &format!("{fill}; {SUMS}"));
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("persistence")["encrypted"], true);
    let want = b.section("sums");
    assert!(
        want.contains("./big") && want.contains("./a/b/c/f"),
        "{want}"
    );

    // The boot mounts it mid-decryption; once the run has done something
    // (lowest CPU priority from then on, as for an encryption), a file is
    // written and synced, then the power is cut.
    let during = "i=0; while ! grep -q '\"done_bytes\": [1-9]' /run/volctl/reencrypt/persistence.json && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; run=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' /run/volctl/reencrypt/persistence.json); renice -n 19 -g $run > /dev/null && echo RENICED; volctl status; grep ' /persistence ' /proc/mounts; dd if=/dev/urandom of=/persistence/during bs=1M count=3 2>/dev/null; sync; echo 'BEGIN progress'; cat /run/volctl/reencrypt/persistence.json; echo; echo 'END progress'; echo \"HEADER-FILES $(ls -A /var/lib/volctl/state/decrypt/persistence | wc -l)\"; echo CUT-HERE";
    let log = vm.boot_cut_when("-f /job/decrypt.yaml", during, "CUT-HERE\n");
    assert!(log.contains("BOOT-RC 0"), "{log}");
    assert!(log.contains("RENICED"), "{log}");
    assert!(
        log.contains("/dev/mapper/luks2-persistence /persistence "),
        "mounted through dm-crypt meanwhile: {log}"
    );
    assert!(log.contains("persistence: decrypting in place"), "{log}");
    assert!(log.contains("HEADER-FILES 1"), "{log}");
    let progress = progress_record(&section(&log, "progress"));
    assert_eq!(progress["state"], "running", "{progress}");
    assert_eq!(progress["operation"], "decrypt", "{progress}");
    assert!(
        progress["done_bytes"].as_u64() < progress["total_bytes"].as_u64(),
        "{progress}"
    );
    assert!(
        vm.luks_dump("persistence").is_empty(),
        "the device's header is wiped"
    );

    // The next boot resumes it online from the header file on STATE.
    let headers =
        "echo \"HEADER-FILES $(ls -A /var/lib/volctl/state/decrypt/persistence | wc -l)\"";
    let b = vm.boot(
        "-f /job/decrypt.yaml",
        &format!(
            "{WAIT_ONLINE}; {SUMS}; {headers}; volctl close; echo \"CLOSE-RC $?\"; ls /dev/mapper"
        ),
    );
    assert!(b.all_ready(), "{}", b.log);
    let p = b.volume("persistence");
    assert_eq!(p["mapped_device"], "/dev/mapper/luks2-persistence", "{p}");
    assert!(
        p["changes"]
            .to_string()
            .contains("decrypting in place online"),
        "{p}"
    );
    // One to find the key, one to activate it mid-decryption.
    assert_eq!(p["kdf_runs"], 2, "{p}");
    let online = progress_record(&b.section("online"));
    assert_eq!(online["state"], "done", "{online}");
    assert_eq!(online["operation"], "decrypt", "{online}");
    let after = b.section("sums");
    assert_same_but_during(&after, &want);
    assert!(
        b.log.contains("HEADER-FILES 0"),
        "the run removed it: {}",
        b.log
    );
    assert!(vm.luks_dump("persistence").is_empty());
    // Its mapping, linear over the plaintext now, closes like any other.
    assert!(b.log.contains("CLOSE-RC 0"), "{}", b.log);
    assert!(
        b.log.contains("closed /dev/mapper/luks2-persistence"),
        "{}",
        b.log
    );

    let b = vm.boot("-f /job/decrypt.yaml", SUMS);
    assert!(b.all_ready(), "{}", b.log);
    let p = b.volume("persistence");
    assert_eq!(p["encrypted"], false, "{p}");
    assert_eq!(p["mapped_device"], serde_json::Value::Null, "{p}");
    assert_eq!(p["kdf_runs"], 0, "{p}");
    assert_eq!(p["changes"], serde_json::json!([]), "{p}");
    assert_eq!(b.section("sums"), after);
    vm.summary("encrypted persistence with data → decryptInPlace: header to STATE, mounted mid-decryption, decrypted online, written meanwhile, power cut → resumed online by the next boot from the header on STATE, the file removed at the end → the same files; next boot: plain, no KDF");
}
