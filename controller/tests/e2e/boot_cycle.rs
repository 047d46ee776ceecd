//! Boots, reboots, wipes, volumes that cannot come up, maintenance mode.

use super::harness::*;
use crate::common;
use std::process::Command;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn first_boot_second_boot_and_wiped_state() {
    // persistence leaves room at the disk's end for the ETCD and swap
    // volumes.
    let layout = [
        ("META", 1),
        ("STATE", 64),
        ("EPHEMERAL", 48),
        ("persistence", 48),
    ];
    let mut vm = Vm::new("boot-reboot-wipe-state", &layout);
    // More Talos documents ride along: an encrypted swap volume (its key
    // locked to STATE), a directory volume made on EPHEMERAL, ETCD on an
    // encrypted partition of its own, LOG a directory on EPHEMERAL.
    vm.write("config.yaml", &format!("{CONFIG}{EXTRA_VOLUMES}"));

    // Boot 1: blank disk → everything formatted, opened, mounted.
    let write_files = "echo state-file > /var/lib/volctl/state/f && echo ephemeral-file > /var/f && echo persistence-file > /persistence/f && echo etcd-file > /var/lib/etcd/f && echo files-written; echo 'BEGIN mounts'; grep -E ' (/var|/persistence|/var/lib/etcd) ' /proc/mounts; echo 'END mounts'; [ -d /var/mnt/scratch ] && echo scratch-directory-made; echo 'BEGIN swaps'; tail -n +2 /proc/swaps; echo 'END swaps'";
    let b = vm.boot("-f /job/config.yaml", write_files);
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    // The swap volume: s-swap1 laid out, encrypted, swap made and on.
    assert_eq!(b.phase("swap1"), "ready", "{}", b.volume("swap1"));
    assert_eq!(b.volume("swap1")["swap"], true);
    assert_eq!(b.volume("swap1")["created"], true);
    assert_eq!(
        b.volume("swap1")["mapped_device"],
        "/dev/mapper/luks2-s-swap1"
    );
    let swaps = b.section("swaps");
    assert!(
        swaps.lines().count() == 1 && swaps.starts_with("/dev/mapper/luks2-s-swap1 "),
        "one swap, on dm-crypt: {swaps}"
    );
    // ETCD on its partition, mounted over /var/lib/etcd (secure, as the
    // mounts check below shows); LOG a directory on EPHEMERAL.
    assert_eq!(b.phase("ETCD"), "ready", "{}", b.volume("ETCD"));
    assert_eq!(b.volume("ETCD")["mount_point"], "/var/lib/etcd");
    assert_eq!(b.volume("ETCD")["mapped_device"], "/dev/mapper/luks2-ETCD");
    assert_eq!(b.phase("LOG"), "ready", "{}", b.volume("LOG"));
    assert_eq!(b.volume("LOG")["mount_point"], "/var/log");
    assert_eq!(b.phase("scratch"), "ready", "{}", b.volume("scratch"));
    assert_eq!(b.volume("scratch")["mount_point"], "/var/mnt/scratch");
    assert!(b.log.contains("scratch-directory-made"), "{}", b.log);
    // mount.secure defaults to true (nosuid, nodev); disableAccessTime: true on persistence.
    let mounts = b.section("mounts");
    for line in mounts.lines() {
        assert!(
            line.contains("nosuid") && line.contains("nodev"),
            "{mounts}"
        );
    }
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /persistence ") && l.contains("noatime")),
        "{mounts}"
    );
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("/dev/mapper/luks2-ETCD /var/lib/etcd ")),
        "{mounts}"
    );
    for v in ["STATE", "EPHEMERAL", "persistence"] {
        assert_eq!(b.phase(v), "ready", "{v}: {}", b.volume(v));
        assert_eq!(b.volume(v)["created"], true);
        assert!(b.volume(v)["mapped_device"]
            .as_str()
            .unwrap()
            .starts_with("/dev/mapper/luks2-"));
    }
    assert_eq!(b.volume("STATE")["mount_point"], "/var/lib/volctl/state");
    assert!(b.log.contains("files-written"), "{}", b.log);
    let headers: Vec<(u64, Vec<u32>)> = ["STATE", "EPHEMERAL", "persistence"]
        .iter()
        .map(|l| vm.header(l))
        .collect();
    for (_, slots) in &headers {
        assert_eq!(slots, &vec![0]);
    }
    // META holds STATE's encryption config, not the other volumes'.
    let meta = vm.partition("META");
    let m = controller::node::meta::read(meta.path()).unwrap();
    let state_enc: serde_json::Value =
        serde_json::from_slice(&m.records[&controller::node::meta::TAG_STATE_ENCRYPTION]).unwrap();
    assert!(state_enc["keys"][0].get("nodeID").is_some(), "{state_enc}");
    drop(meta);

    // Boot 2, no -f: STATE's config from META, the rest from STATE; files
    // read back; one KDF run per volume; no header written.
    let read_files = "echo 'BEGIN files'; cat /var/lib/volctl/state/f /var/f /persistence/f /var/lib/etcd/f; echo 'END files'; echo \"swaps-on $(grep -c luks2-s-swap1 /proc/swaps)\"; volctl close > /tmp/close.out 2>&1; cat /tmp/close.out; echo \"swaps-after-close $(grep -c luks2-s-swap1 /proc/swaps)\"";
    let b = vm.boot("", read_files);
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    for v in ["STATE", "EPHEMERAL", "persistence", "swap1", "ETCD"] {
        assert_eq!(b.phase(v), "ready", "{v}: {}", b.volume(v));
        assert_eq!(
            b.volume(v)["kdf_runs"],
            1,
            "{v} must unlock with exactly one KDF run"
        );
        assert_eq!(b.volume(v)["changes"].as_array().unwrap().len(), 0);
        assert_eq!(b.volume(v)["unlocked_by"][0], 0);
    }
    assert_eq!(
        b.status["config_source"],
        "STATE (encryption config from META)"
    );
    assert_eq!(
        b.section("files"),
        "state-file\nephemeral-file\npersistence-file\netcd-file\n"
    );
    assert_eq!(b.volume("swap1")["created"], false, "swap made once");
    assert!(b.log.contains("swaps-on 1"), "{}", b.log);
    assert!(
        b.log.contains("disabled swap on /dev/mapper/luks2-s-swap1"),
        "{}",
        b.log
    );
    assert!(b.log.contains("swaps-after-close 0"), "{}", b.log);
    let after: Vec<(u64, Vec<u32>)> = ["STATE", "EPHEMERAL", "persistence"]
        .iter()
        .map(|l| vm.header(l))
        .collect();
    assert_eq!(after, headers, "no keyslot changed, no header written");

    // Wipe STATE on the host as `volctl reset` does (its header area and
    // its last MiB: a device counts as blank only when both ends are zero):
    // its salt is gone, so EPHEMERAL (lockToSTATE) no longer opens;
    // persistence (static) still does.
    {
        let l = vm.partition("STATE");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(l.path())
            .unwrap();
        let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap();
        let mib = vec![0u8; 1 << 20];
        for at in (0..20).map(|i| i << 20).chain([size - (1 << 20)]) {
            std::os::unix::fs::FileExt::write_all_at(&f, &mib, at).unwrap();
        }
        f.sync_all().unwrap();
    }
    let b = vm.boot(
        "-f /job/config.yaml",
        "echo 'BEGIN files'; cat /persistence/f; echo 'END files'",
    );
    assert_eq!(b.boot_rc, 3, "not everything is ready: {}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.volume("STATE")["created"], true);
    assert_eq!(b.phase("EPHEMERAL"), "failed");
    let err = b.volume("EPHEMERAL")["error"].as_str().unwrap();
    assert!(err.contains("no configured key opens"), "{err}");
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.section("files"), "persistence-file\n");
    // The swap volume's key was locked to STATE too: swap keeps nothing,
    // so it is made again rather than left failed.
    assert_eq!(b.phase("swap1"), "ready", "{}", b.volume("swap1"));
    assert_eq!(b.volume("swap1")["created"], true);
    let changes = b.volume("swap1")["changes"].to_string();
    assert!(
        changes.contains("header wiped and swap made again"),
        "{changes}"
    );
    vm.summary("first boot, reboot (1 KDF each, no writes), STATE wiped");
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn volumes_that_cannot_come_up_are_reported_and_left_alone() {
    // No persistence partition; EPHEMERAL holds a plain ext4 with data.
    let mut vm = Vm::new(
        "waiting-for-wipe-and-missing",
        &[("META", 1), ("STATE", 64), ("EPHEMERAL", 0)],
    );
    vm.write("config.yaml", CONFIG);
    let digest = {
        let l = vm.partition("EPHEMERAL");
        assert!(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(l.path())
            .status()
            .unwrap()
            .success());
        common::sha256_file(l.path())
    };
    let b = vm.boot("-f /job/config.yaml", "");
    assert_eq!(b.boot_rc, 3, "{}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.phase("EPHEMERAL"), "waiting-for-wipe");
    assert!(b.volume("EPHEMERAL")["error"]
        .as_str()
        .unwrap()
        .contains("volctl reset --system-labels-to-wipe EPHEMERAL"));
    assert_eq!(b.phase("persistence"), "missing");
    let l = vm.partition("EPHEMERAL");
    assert_eq!(
        common::sha256_file(l.path()),
        digest,
        "EPHEMERAL's data is untouched"
    );
    vm.summary("waiting-for-wipe kept intact, missing reported");
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn wiped_state_enters_maintenance_mode_and_takes_a_config() {
    let mut vm = Vm::new("maintenance", LAYOUT);
    // STATE starts plain, and is encrypted by the config given in maintenance mode.
    let plain_state = CONFIG.replacen("name: STATE\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      nodeID: {}\n", "name: STATE\n", 1);
    assert_ne!(plain_state, CONFIG);
    vm.write("plain-state.yaml", &plain_state);
    vm.write("config.yaml", CONFIG);
    let b = vm.boot(
        "-f /job/plain-state.yaml",
        "echo p > /persistence/f; volctl reset --system-labels-to-wipe STATE",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("STATE")["encrypted"], false);
    assert!(
        b.log.contains("the next boot enters maintenance mode"),
        "{}",
        b.log
    );

    let deliver = "(sleep 2; volctl apply-config --insecure -f /job/bad-then-good.yaml 2>&1 | sed 's/^/BAD: /'; volctl apply-config --insecure -f /job/config.yaml) &";
    vm.write("bad-then-good.yaml", "kind: Nope\n");
    let b = vm.boot_with(
        deliver,
        "",
        "echo 'BEGIN files'; cat /persistence/f; echo 'END files'",
    );
    assert!(
        b.log.contains("maintenance mode: STATE is blank"),
        "{}",
        b.log
    );
    assert!(
        b.log.contains("BAD: error: the config is invalid"),
        "{}",
        b.log
    );
    assert_eq!(
        b.status["config_source"],
        "maintenance mode (apply-config --insecure)"
    );
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.volume("STATE")["encrypted"], true);
    assert_eq!(
        b.phase("EPHEMERAL"),
        "failed",
        "its lockToSTATE key died with the old STATE"
    );
    assert!(b.volume("EPHEMERAL")["error"]
        .as_str()
        .unwrap()
        .contains("no configured key opens"));
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.section("files"), "p\n");
    vm.summary("reset STATE → maintenance → apply-config --insecure → STATE encrypted");
}
