//! Provisioning: a system disk and a blank data disk laid out, grown.

use super::harness::*;
use crate::common;
use controller::node::loopdev::LoopDevice;
use std::process::Command;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn provisioning_lays_out_a_system_disk_and_a_blank_data_disk() {
    // The system disk holds META and a partition made elsewhere (MY-DATA,
    // ext4 with a file); a second, blank disk is attached.
    let mut vm = Vm::new("provision", &[("META", 1), ("MY-DATA", 16)]);
    let src = vm.dir.join("my-data");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "made elsewhere\n").unwrap();
    {
        let l = vm.partition("MY-DATA");
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&src)
            .arg(l.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let data_disk = vm.dir.join("data.img");
    std::fs::File::create(&data_disk)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    // A third disk, blank, for a disk volume (the whole disk, no table).
    let whole_disk = vm.dir.join("whole.img");
    std::fs::File::create(&whole_disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    vm.qemu_extra = format!(
        "-drive file={},format=raw,if=virtio,cache=unsafe -drive file={},format=raw,if=virtio,cache=unsafe",
        data_disk.display(),
        whole_disk.display()
    );
    let config = "apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
provisioning:
  maxSize: 64MiB
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning:
  diskSelector:
    match: '!system_disk && disk.size >= 500u * MiB'
  minSize: 400MiB
  grow: true
filesystem:
  type: xfs
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
      lockToState: true
    - slot: 9
      recovery: {}
---
apiVersion: v1alpha1
kind: RawVolumeConfig
name: scratch
provisioning:
  diskSelector:
    match: system_disk
  maxSize: 32MiB
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: whole
volumeType: disk
provisioning:
  diskSelector:
    match: disk.dev_path == \"/dev/vdd\"
filesystem:
  type: ext4
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: ExistingVolumeConfig
name: legacy
discovery:
  volumeSelector:
    match: volume.partition_label == \"MY-DATA\" && volume.name == \"ext4\"
mount:
  readOnly: true
";
    vm.write("config.yaml", config);
    let disks = "--disk /dev/vdc --disk /dev/vdd";
    let b = vm.boot(
        &format!("{disks} --recovery-key-out /tmp/recovery.txt -f /job/config.yaml"),
        "echo data-file > /var/mnt/data/f && echo whole-file > /var/mnt/whole/f && echo written; echo 'BEGIN legacy'; cat /var/mnt/legacy/hello; touch /var/mnt/legacy/x 2>/dev/null || echo read-only; echo 'END legacy'; echo 'BEGIN rk'; ls -l /tmp/recovery.txt | cut -c1-10; cat /tmp/recovery.txt; echo 'END rk'",
    );
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    let made: Vec<String> = serde_json::from_value(b.status["partitions_created"].clone()).unwrap();
    // STATE, EPHEMERAL; a table and u-data on the data disk; r-scratch.
    assert_eq!(made.len(), 5, "{made:?}");
    assert!(made[0].contains("STATE on /dev/vda"), "{made:?}");
    assert!(made[3].contains("u-data on /dev/vdc"), "{made:?}");
    assert!(made[4].contains("r-scratch on /dev/vda"), "{made:?}");
    for v in ["STATE", "EPHEMERAL", "data", "scratch", "legacy", "whole"] {
        assert_eq!(b.phase(v), "ready", "{v}: {}", b.volume(v));
    }
    // The disk volume: LUKS2 from the disk's first byte, no table.
    assert_eq!(b.volume("whole")["partition"], "/dev/vdd");
    assert_eq!(
        b.volume("whole")["mapped_device"],
        "/dev/mapper/luks2-u-whole"
    );
    assert_eq!(b.volume("whole")["mount_point"], "/var/mnt/whole");
    let head = std::fs::read(&whole_disk).unwrap();
    assert_eq!(&head[..6], b"LUKS\xba\xbe", "a LUKS2 header at byte 0");
    assert!(
        !head[512..520].starts_with(b"EFI PART"),
        "no GPT on the disk volume's disk"
    );
    assert_eq!(
        b.volume("scratch")["mapped_device"],
        "/dev/mapper/luks2-r-scratch"
    );
    assert_eq!(
        b.volume("scratch")["mount_point"],
        serde_json::Value::Null,
        "a raw volume is not mounted"
    );
    assert_eq!(b.section("legacy"), "made elsewhere\nread-only\n");
    // The recovery key went to the 0600 file, and only there; the host's
    // cryptsetup opens u-data's slot 9 with it.
    let rk = b.section("rk");
    let mut lines = rk.lines();
    assert_eq!(lines.next(), Some("-rw-------"), "{rk}");
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix("data slot 9: "))
        .expect(&rk)
        .to_string();
    assert_eq!(
        b.log.matches(&key).count(),
        1,
        "the key appears only where the test printed the file"
    );
    {
        let p = controller::node::disks::by_label(std::slice::from_ref(&data_disk)).unwrap();
        let l = LoopDevice::attach(&data_disk, p["u-data"].offset, p["u-data"].size).unwrap();
        assert!(common::opens(l.path(), 9, key.as_bytes()));
    }
    assert_eq!(b.volume("data")["mount_point"], "/var/mnt/data");
    assert!(b.log.contains("written"), "{}", b.log);

    // Reboot: nothing to lay out, the file is there.
    let b = vm.boot(
        disks,
        "echo 'BEGIN f'; cat /var/mnt/data/f /var/mnt/whole/f; echo 'END f'",
    );
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert_eq!(
        b.status["partitions_created"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(b.section("f"), "data-file\nwhole-file\n");
    assert_eq!(b.volume("whole")["kdf_runs"], 1);
    let table = String::from_utf8_lossy(
        &Command::new("sgdisk")
            .arg("-p")
            .arg(&data_disk)
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(table.contains("u-data"), "{table}");

    // The data disk grows: the next boot grows the partition, then the
    // filesystem on the opened volume, online; the file is still there.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data_disk)
        .unwrap()
        .set_len(768 << 20)
        .unwrap();
    let b = vm.boot(disks, "echo 'BEGIN f'; cat /var/mnt/data/f; echo 'END f'");
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    let made = b.status["partitions_created"].to_string();
    assert!(made.contains("grow partition u-data on /dev/vdc"), "{made}");
    let changes = b.volume("data")["changes"].to_string();
    assert!(changes.contains("grew the filesystem from"), "{changes}");
    assert_eq!(b.section("f"), "data-file\n");
    vm.summary("META + MY-DATA disk and a blank disk → STATE, EPHEMERAL, u-data (xfs, encrypted), r-scratch (raw, encrypted), MY-DATA mounted read-only as an existing volume, a third disk whole as an encrypted disk volume (no table), a recovery key handed over in a 0600 file; reboot; the disk grows and so do partition and filesystem");
}
