//! Talos's other system volumes on the simulated host: ETCD, CRI, KUBELET
//! and LOG as directories on EPHEMERAL by default, on partitions of their
//! own (placed before EPHEMERAL, encrypted as configured, mounted under
//! /var) when their provisioning asks; IMAGECACHE on its own partition.

use super::harness::{all_ready, volume, SimNode, ENCRYPTED};
use std::path::Path;

/// ETCD on a partition of its own, encrypted; LOG left a directory;
/// the image cache with Talos's default sizes.
const SYSTEM: &str = "---
apiVersion: v1alpha1
kind: VolumeConfig
name: ETCD
provisioning:
  maxSize: 200MiB
encryption:
  provider: luks2
  keys:
    - {slot: 0, nodeID: {}}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: LOG
---
apiVersion: v1alpha1
kind: VolumeConfig
name: IMAGECACHE
";

#[test]
fn promoted_volumes_get_partitions_before_ephemeral_and_the_others_directories() {
    let mut node = SimNode::new();
    let cfg = node.config(&format!("{ENCRYPTED}{SYSTEM}"));
    let status = node.boot(std::slice::from_ref(&cfg)).unwrap();
    all_ready(&status);
    let etcd = node.host.partition("ETCD").unwrap();
    let ephemeral = node.host.partition("EPHEMERAL").unwrap();
    let cache = node.host.partition("IMAGECACHE").unwrap();
    assert!(
        etcd.part.offset < ephemeral.part.offset,
        "a promoted volume is placed before the growing EPHEMERAL"
    );
    assert_eq!(etcd.part.size, 200 << 20);
    assert_eq!(cache.part.size, 1 << 30, "Talos's image cache size");
    assert!(cache.part.offset > ephemeral.part.offset);
    assert!(
        node.host.partition("LOG").is_none(),
        "LOG stays a directory"
    );

    let e = volume(&status, "ETCD");
    assert_eq!(e.mount_point.as_deref(), Some("/var/lib/etcd"));
    assert_eq!(e.mapped_device.as_deref(), Some("/dev/mapper/luks2-ETCD"));
    assert_eq!(
        node.host.mounted_at(Path::new("/var/lib/etcd")),
        Some("/dev/mapper/luks2-ETCD".into())
    );
    let log = volume(&status, "LOG");
    assert_eq!(log.mount_point.as_deref(), Some("/var/log"));
    assert!(node.host.has_dir(Path::new("/var/log")));
    assert_eq!(
        volume(&status, "IMAGECACHE").mount_point.as_deref(),
        Some("/system/imagecache/disk")
    );
    let mounts: Vec<&str> = status
        .volumes
        .iter()
        .filter_map(|v| v.mount_point.as_deref())
        .collect();
    let at = |m: &str| mounts.iter().position(|x| *x == m).unwrap();
    assert!(
        at("/var") < at("/var/lib/etcd"),
        "EPHEMERAL first: {mounts:?}"
    );

    // The next boot finds them again and lays out nothing.
    node.reboot();
    let status = node.boot(&[cfg]).unwrap();
    all_ready(&status);
    assert_eq!(node.host.counts().table_writes, 0);
    assert!(!volume(&status, "ETCD").created);
}

#[test]
fn a_directory_volume_s_data_is_never_hidden_by_a_partition_mounted_over_it() {
    // ETCD lived as a directory on EPHEMERAL and holds etcd's data; a
    // config then asks for a partition of its own (`-f` at boot, which
    // apply-config would have refused).
    let mut node = SimNode::new();
    let as_directory = "---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: ETCD\n";
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{as_directory}"))])
        .unwrap();
    all_ready(&status);
    node.host.put_files(Path::new("/var/lib/etcd"));
    node.reboot();
    node.host.put_files(Path::new("/var/lib/etcd"));
    let promoted = "---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: ETCD\nprovisioning: {maxSize: 200MiB}\n";
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{promoted}"))])
        .unwrap();
    let e = volume(&status, "ETCD");
    assert_eq!(e.phase, crate::node::status::Phase::Failed, "{e:#?}");
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .starts_with("/var/lib/etcd holds files (a directory volume's data?)"),
        "{e:#?}"
    );
    assert_eq!(node.host.mounted_at(Path::new("/var/lib/etcd")), None);
    assert_eq!(
        node.host.counts().mkfs,
        0,
        "nothing made on the new partition"
    );
    assert_eq!(
        volume(&status, "EPHEMERAL").phase,
        crate::node::status::Phase::Ready
    );
}

#[test]
fn a_volume_under_var_is_not_mounted_on_the_root_filesystem_when_ephemeral_fails() {
    let mut node = SimNode::new();
    let cfg = node.config(&format!("{ENCRYPTED}{SYSTEM}"));
    all_ready(&node.boot(std::slice::from_ref(&cfg)).unwrap());
    node.reboot();
    // EPHEMERAL now holds another filesystem than its config asks for.
    node.host
        .edit("EPHEMERAL", |p| p.fs = Some(api_types::FilesystemType::Xfs));
    let status = node.boot(&[cfg]).unwrap();
    let failed = crate::node::status::Phase::Failed;
    assert_eq!(volume(&status, "EPHEMERAL").phase, failed);
    let e = volume(&status, "ETCD");
    assert_eq!(e.phase, failed, "{e:#?}");
    assert_eq!(
        e.error.as_deref(),
        Some("it is mounted under /var, where EPHEMERAL is not mounted; it is left unmounted")
    );
    assert_eq!(node.host.mounted_at(Path::new("/var/lib/etcd")), None);
    assert_eq!(
        volume(&status, "IMAGECACHE").phase,
        crate::node::status::Phase::Ready,
        "a volume outside /var still comes up"
    );
}
