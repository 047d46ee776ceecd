//! Wipes and contents volctl did not make, on the simulated host: a wipe
//! `reset --reboot` left for the boot, a reset STATE, foreign contents
//! where an encrypted volume belongs, a LUKS2 header where a plain one
//! does, and an existing volume found by its selector.

use super::harness::{all_ready, volume, SimNode, ENCRYPTED, LAID_OUT};
use crate::host::{update_meta, Host, WipeMode};
use crate::node::meta::TAG_PENDING_WIPE;
use crate::node::status::Phase;
use crate::reset::{reset, WhenBusy};
use api_types::FilesystemType;
use std::path::Path;

#[test]
fn a_wipe_left_by_reset_reboot_is_done_first_and_the_volume_made_again() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    let meta = node
        .host
        .attach(&node.host.partition("META").unwrap().part)
        .unwrap();
    update_meta(
        &*node.host,
        &meta.path,
        TAG_PENDING_WIPE,
        Some(b"fast:EPHEMERAL".to_vec()),
    )
    .unwrap();
    node.reboot();
    let status = node.boot(&[]).unwrap();
    all_ready(&status);
    assert_eq!(status.wiped.len(), 1, "{:?}", status.wiped);
    assert!(
        status.wiped[0].starts_with("wiped EPHEMERAL"),
        "{:?}",
        status.wiped
    );
    assert!(volume(&status, "EPHEMERAL").created);
    assert!(!volume(&status, "STATE").created);
    let meta = node.host.partition("META").unwrap().meta.unwrap();
    assert!(
        !meta.records.contains_key(&TAG_PENDING_WIPE),
        "the record is done with"
    );
}

#[test]
fn a_reset_state_sends_the_next_boot_to_maintenance_mode() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    node.reboot();
    let done = reset(
        &*node.host,
        &["STATE".into()],
        &[],
        None,
        WipeMode::Fast,
        WhenBusy::Fail,
    )
    .unwrap();
    assert!(
        done.iter().any(|d| d.contains("maintenance mode")),
        "{done:?}"
    );
    let e = node.boot(&[]).unwrap_err();
    assert!(matches!(e, crate::boot::BootError::NoConfig), "{e}");
    // Given the config again, STATE is made anew; EPHEMERAL is kept.
    node.reboot();
    let status = node.boot(&[node.config(ENCRYPTED)]).unwrap();
    all_ready(&status);
    assert!(volume(&status, "STATE").created);
    assert!(!volume(&status, "EPHEMERAL").created);
}

#[test]
fn a_filesystem_where_an_encrypted_volume_belongs_waits_for_a_wipe_untouched() {
    let node = SimNode::laid_out(LAID_OUT);
    node.host
        .mkfs(Path::new("/dev/vda3"), FilesystemType::Xfs, "old")
        .unwrap();
    let status = node.boot(&[node.config(ENCRYPTED)]).unwrap();
    let eph = volume(&status, "EPHEMERAL");
    assert_eq!(eph.phase, Phase::WaitingForWipe, "{eph:#?}");
    assert!(eph.error.as_deref().unwrap().contains("XFS"), "{eph:#?}");
    assert_eq!(volume(&status, "STATE").phase, Phase::Ready);
    let after = node.host.partition("EPHEMERAL").unwrap();
    assert_eq!(after.fs, Some(FilesystemType::Xfs));
    assert_eq!(after.device.writes(), 0);
}

#[test]
fn a_luks2_header_where_a_plain_volume_belongs_is_refused() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    node.reboot();
    let plain = ENCRYPTED.split("---").next().unwrap().to_string()
        + "---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nprovisioning:\n  maxSize: 1GiB\n";
    let status = node.boot(&[node.config(&plain)]).unwrap();
    let eph = volume(&status, "EPHEMERAL");
    assert_eq!(eph.phase, Phase::Failed);
    assert!(
        eph.error
            .as_deref()
            .unwrap()
            .contains("holds a LUKS2 header"),
        "{eph:#?}"
    );
    assert_eq!(node.host.counts().mkfs, 0);
}

#[test]
fn an_existing_volume_is_found_by_its_selector_and_mounted_never_formatted() {
    let node = SimNode::laid_out(&[
        ("META", 1 << 20),
        ("scratch", 64 << 20),
        ("old-data", 64 << 20),
    ]);
    node.host
        .mkfs(Path::new("/dev/vda3"), FilesystemType::Ext4, "old-data")
        .unwrap();
    let existing = "---\napiVersion: v1alpha1\nkind: ExistingVolumeConfig\nname: archive\ndiscovery:\n  volumeSelector:\n    match: volume.partition_label == \"old-data\"\n";
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{existing}"))])
        .unwrap();
    all_ready(&status);
    let archive = volume(&status, "archive");
    assert_eq!(archive.mount_point.as_deref(), Some("/var/mnt/archive"));
    assert_eq!(archive.partition.as_deref(), Some("/dev/vda3"));
    assert_eq!(
        node.host.mounted_at(Path::new("/var/mnt/archive")),
        Some("/dev/vda3".into())
    );
    assert_eq!(
        node.host.counts().mkfs,
        3,
        "STATE, EPHEMERAL and the mkfs above"
    );
}
