//! Disk volumes (`volumeType: disk`) on the simulated host: the whole disk
//! the selector picks, no table written, refused when the selector picks
//! several disks or one with a table.

use super::harness::{all_ready, volume, SimNode, DISK, DISK_SIZE, ENCRYPTED};
use crate::host::{Host, SimHost};
use crate::node::status::Phase;
use std::path::Path;
use std::sync::Arc;

const DATA: &str = "/dev/vdb";

/// A disk volume on the disk `selector` picks, encrypted.
fn whole(selector: &str) -> String {
    format!(
        "---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: whole
volumeType: disk
provisioning:
  diskSelector: {{match: '{selector}'}}
encryption:
  provider: luks2
  keys:
    - {{slot: 0, nodeID: {{}}}}
"
    )
}

/// The usual node, and blank data disks at `extra`.
fn node_with(extra: &[&str]) -> SimNode {
    let dir = tempfile::tempdir().unwrap();
    let mut host = SimHost::new(dir.path())
        .with_disk(DISK, DISK_SIZE)
        .with_partitions(DISK, &[("META", 1 << 20)]);
    for d in extra {
        host = host.with_disk(d, 512 << 20);
    }
    SimNode {
        dir,
        host: Arc::new(host),
    }
}

#[test]
fn a_disk_volume_takes_the_whole_disk_and_writes_no_table() {
    let mut node = node_with(&[DATA]);
    let cfg = node.config(&format!(
        "{ENCRYPTED}{}",
        whole("disk.dev_path == \"/dev/vdb\"")
    ));
    let status = node.boot(std::slice::from_ref(&cfg)).unwrap();
    all_ready(&status);
    let v = volume(&status, "whole");
    assert_eq!(v.partition.as_deref(), Some(DATA));
    assert_eq!(v.device.as_deref(), Some(DATA));
    assert_eq!(
        v.mapped_device.as_deref(),
        Some("/dev/mapper/luks2-u-whole")
    );
    assert_eq!(v.mount_point.as_deref(), Some("/var/mnt/whole"));
    assert!(v.created);
    let snap = node.host.snapshot(&[DATA.into()]);
    assert!(snap.disks[0].table.is_none(), "no table on the data disk");

    node.reboot();
    let status = node.boot(&[cfg]).unwrap();
    all_ready(&status);
    let v = volume(&status, "whole");
    assert!(!v.created);
    assert_eq!(v.kdf_runs, 1);
    assert_eq!(
        node.host.mounted_at(Path::new("/var/mnt/whole")),
        Some("/dev/mapper/luks2-u-whole".into())
    );
}

#[test]
fn a_disk_volume_is_refused_on_several_disks_or_a_disk_with_a_table() {
    let node = node_with(&[DATA, "/dev/vdc"]);
    let cfg = node.config(&format!("{ENCRYPTED}{}", whole("!system_disk")));
    let status = node.boot(&[cfg]).unwrap();
    let v = volume(&status, "whole");
    assert_eq!(v.phase, Phase::Missing, "{v:#?}");
    let err = v.error.as_deref().unwrap();
    assert!(
        err.contains("2 disks match its selector `!system_disk` (/dev/vdb, /dev/vdc)"),
        "{err}"
    );

    let node = node_with(&[]);
    let cfg = node.config(&format!(
        "{ENCRYPTED}{}",
        whole("disk.dev_path == \"/dev/vda\"")
    ));
    let status = node.boot(&[cfg]).unwrap();
    let v = volume(&status, "whole");
    assert_eq!(v.phase, Phase::Missing, "{v:#?}");
    assert!(
        v.error
            .as_deref()
            .unwrap()
            .contains("/dev/vda holds a partition table"),
        "{v:#?}"
    );
    assert_eq!(volume(&status, "EPHEMERAL").phase, Phase::Ready);
}
