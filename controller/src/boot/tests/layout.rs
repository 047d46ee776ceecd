//! A node's first boots on the simulated host: what is laid out, made,
//! opened and mounted, and how often the boot reads the disks.

use super::harness::{all_ready, nothing_written, volume, SimNode, ENCRYPTED, USER_VOLUME};
use crate::boot::BootError;
use crate::host::HostCounts;
use crate::node::status::Phase;
use api_types::FilesystemType;
use std::path::Path;

#[test]
fn the_first_boot_lays_out_formats_and_mounts_state_and_ephemeral() {
    let node = SimNode::new();
    let status = node.boot(&[node.config(ENCRYPTED)]).unwrap();
    all_ready(&status);
    let names: Vec<&str> = status.volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["STATE", "EPHEMERAL"]);
    assert_eq!(status.partitions_created.len(), 2, "{status:#?}");
    for v in &status.volumes {
        assert!(v.created && v.encrypted, "{v:#?}");
    }
    assert_eq!(volume(&status, "EPHEMERAL").keyslots, vec![0, 1]);
    assert_eq!(
        volume(&status, "EPHEMERAL").mount_point.as_deref(),
        Some("/var")
    );
    let state = node.host.partition("STATE").unwrap();
    assert_eq!(state.fs, Some(FilesystemType::Ext4));
    assert!(state.device.state().header.is_some());
    // STATE ends at its own mount point, holding the config and the salt.
    let mount = node.state_mount();
    assert_eq!(
        node.host.mounted_at(&mount),
        Some("/dev/mapper/luks2-STATE".into())
    );
    assert!(mount.join("config.yaml").exists() && mount.join("encryption-salt").exists());
    assert_eq!(
        node.host.mounted_at(Path::new("/var")),
        Some("/dev/mapper/luks2-EPHEMERAL".into())
    );
}

#[test]
fn the_next_boot_finds_everything_by_label_and_writes_nothing() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    node.reboot();
    let status = node.boot(&[]).unwrap();
    all_ready(&status);
    assert_eq!(status.config_source, "STATE (encryption config from META)");
    assert!(status.partitions_created.is_empty());
    for v in &status.volumes {
        assert!(!v.created && v.changes.is_empty(), "{v:#?}");
        assert_eq!(v.kdf_runs, 1, "{}: one KDF run", v.name);
    }
    nothing_written(&node);
}

#[test]
fn a_boot_reads_each_gpt_once_and_again_only_after_writing_a_table() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    let first = node.host.counts();
    node.reboot();
    node.boot(&[]).unwrap();
    let next = node.host.counts();
    node.reboot();
    let grown = format!("{ENCRYPTED}{USER_VOLUME}");
    node.boot(&[node.config(&grown)]).unwrap();
    let added = node.host.counts();
    // First boot: the snapshot, and one refresh after laying out STATE and
    // EPHEMERAL. Next: the snapshot only. Adding a volume: one refresh.
    assert_eq!(
        (first.gpt_reads, next.gpt_reads, added.gpt_reads),
        (2, 1, 2)
    );
    // META: read once a boot (pending wipes, STATE's config, the mirror
    // share it), written on the first boot only.
    assert_eq!((first.meta_reads, first.meta_writes), (1, 1), "{first:#?}");
    assert_eq!((next.meta_reads, next.meta_writes), (1, 0), "{next:#?}");
    // The next boot, whole: one snapshot, META, STATE and EPHEMERAL
    // attached once each, two mounts and STATE's move into place.
    let expected = HostCounts {
        snapshots: 1,
        gpt_reads: 1,
        attaches: 3,
        meta_reads: 1,
        mounts: 2,
        moves: 1,
        ..Default::default()
    };
    assert_eq!(next, expected);
}

#[test]
fn a_user_volume_added_later_gets_its_partition_and_the_others_are_left_alone() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    node.reboot();
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{USER_VOLUME}"))])
        .unwrap();
    all_ready(&status);
    assert_eq!(status.partitions_created.len(), 1, "{status:#?}");
    assert!(status.partitions_created[0].contains("u-data"));
    let data = volume(&status, "data");
    assert!(data.created);
    assert_eq!(data.mount_point.as_deref(), Some("/var/mnt/data"));
    assert!(!volume(&status, "EPHEMERAL").created);
    assert_eq!(
        node.host.counts().mkfs,
        1,
        "only the new volume's filesystem"
    );
}

#[test]
fn a_volume_that_fits_nowhere_is_a_problem_and_the_others_come_up() {
    let node = SimNode::new();
    let huge = USER_VOLUME.replace("maxSize: 500MiB", "minSize: 100GiB");
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{huge}"))])
        .unwrap();
    assert_eq!(volume(&status, "data").phase, Phase::Missing);
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.contains("no disk has room")),
        "{:?}",
        status.problems
    );
    for name in ["STATE", "EPHEMERAL"] {
        assert_eq!(volume(&status, name).phase, Phase::Ready, "{name}");
    }
}

#[test]
fn a_label_on_two_partitions_stops_the_boot_naming_both() {
    let node = SimNode::laid_out(&[
        ("META", 1 << 20),
        ("STATE", 100 << 20),
        ("STATE", 100 << 20),
    ]);
    let e = node.boot(&[node.config(ENCRYPTED)]).unwrap_err();
    assert!(matches!(e, BootError::Disks(_)), "{e}");
    let text = e.to_string();
    assert!(
        text.contains("/dev/vda2") && text.contains("/dev/vda3"),
        "{text}"
    );
    assert_eq!(node.host.counts().mkfs, 0);
}

/// A directory volume (Talos 1.12).
const DIRECTORY: &str = "---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: cache
volumeType: directory
";

#[test]
fn a_directory_volume_is_made_on_ephemeral_with_no_partition_of_its_own() {
    let node = SimNode::new();
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{DIRECTORY}"))])
        .unwrap();
    all_ready(&status);
    let cache = volume(&status, "cache");
    assert_eq!(cache.mount_point.as_deref(), Some("/var/mnt/cache"));
    assert!(!cache.encrypted && cache.device.is_none(), "{cache:#?}");
    assert!(node.host.has_dir(Path::new("/var/mnt/cache")));
    assert_eq!(
        status.partitions_created.len(),
        2,
        "STATE and EPHEMERAL only"
    );
    assert!(status.all_ready());
}

#[test]
fn a_directory_volume_without_ephemeral_says_why() {
    let node = SimNode::new();
    let state_only = ENCRYPTED.split("---").next().unwrap();
    let status = node
        .boot(&[node.config(&format!("{state_only}{DIRECTORY}"))])
        .unwrap();
    let cache = volume(&status, "cache");
    assert_eq!(cache.phase, Phase::Failed, "{cache:#?}");
    assert!(cache
        .error
        .as_deref()
        .unwrap()
        .contains("EPHEMERAL, which is not mounted"));
    assert!(!node.host.has_dir(Path::new("/var/mnt/cache")));
}
