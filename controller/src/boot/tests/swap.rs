//! Swap volumes (`SwapVolumeConfig`) on the simulated host: `s-<name>`
//! laid out, swap made once and enabled every boot, made again when its
//! keys no longer open it, and never made over anything else.

use super::harness::{all_ready, volume, SimNode, ENCRYPTED};
use crate::host::Host;
use crate::node::status::Phase;
use api_types::FilesystemType;
use std::path::Path;

/// An encrypted swap volume on the system disk.
fn swap(keys: &str) -> String {
    format!(
        "---
apiVersion: v1alpha1
kind: SwapVolumeConfig
name: swap1
provisioning:
  diskSelector: {{match: system_disk}}
  maxSize: 256MiB
encryption:
  provider: luks2
  keys:
    - {keys}
"
    )
}

const MAPPED: &str = "/dev/mapper/luks2-s-swap1";

#[test]
fn a_swap_volume_is_laid_out_made_once_and_enabled_every_boot() {
    let mut node = SimNode::new();
    let cfg = node.config(&format!("{ENCRYPTED}{}", swap("{slot: 0, nodeID: {}}")));
    let status = node.boot(std::slice::from_ref(&cfg)).unwrap();
    all_ready(&status);
    let s = volume(&status, "swap1");
    assert_eq!(s.label, "s-swap1");
    assert!(s.swap && s.created && s.mount_point.is_none(), "{s:#?}");
    assert_eq!(s.mapped_device.as_deref(), Some(MAPPED));
    assert!(node.host.swap_is_on(Path::new(MAPPED)));
    assert_eq!(node.host.counts().mkswap, 1);
    let table = status.table();
    let row = table.lines().find(|l| l.starts_with("swap1")).unwrap();
    assert!(row.contains("[SWAP]"), "{table}");

    node.reboot();
    let status = node.boot(&[cfg]).unwrap();
    all_ready(&status);
    let s = volume(&status, "swap1");
    assert!(s.swap && !s.created, "{s:#?}");
    assert_eq!(s.kdf_runs, 1);
    assert_eq!(node.host.counts().mkswap, 0, "made once");
    assert!(node.host.swap_is_on(Path::new(MAPPED)));
}

#[test]
fn a_swap_volume_its_keys_no_longer_open_is_made_again() {
    let mut node = SimNode::new();
    let before = swap("{slot: 0, static: {passphrase: old-swap-key}}");
    node.boot(&[node.config(&format!("{ENCRYPTED}{before}"))])
        .unwrap();
    node.reboot();
    let after = swap("{slot: 0, static: {passphrase: new-swap-key}}");
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{after}"))])
        .unwrap();
    all_ready(&status);
    let s = volume(&status, "swap1");
    assert!(s.swap && s.created, "{s:#?}");
    assert!(
        s.changes
            .iter()
            .any(|c| c.contains("header wiped and swap made again")),
        "{:?}",
        s.changes
    );
    assert_eq!(node.host.counts().wipes, 1);
    assert_eq!(node.host.counts().mkswap, 1);
    // The new key opens it: the next boot makes nothing.
    node.reboot();
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{after}"))])
        .unwrap();
    all_ready(&status);
    assert_eq!(
        (node.host.counts().wipes, node.host.counts().mkswap),
        (0, 0)
    );
}

#[test]
fn swap_is_never_made_over_a_filesystem() {
    // A plain swap volume whose partition holds ext4, and an encrypted
    // one whose partition does: both left as they are.
    let plain = "---
apiVersion: v1alpha1
kind: SwapVolumeConfig
name: swap1
provisioning:
  diskSelector: {match: system_disk}
  maxSize: 256MiB
";
    let mut node = SimNode::new();
    let cfg = node.config(&format!("{ENCRYPTED}{plain}"));
    node.boot(std::slice::from_ref(&cfg)).unwrap();
    let part = node.host.partition("s-swap1").unwrap();
    let dev = node.host.attach(&part.part).unwrap();
    node.host
        .mkfs(&dev.path, FilesystemType::Ext4, "data")
        .unwrap();
    drop(dev);
    node.reboot();
    let status = node.boot(&[cfg]).unwrap();
    let s = volume(&status, "swap1");
    assert_eq!(s.phase, Phase::Failed, "{s:#?}");
    assert!(
        s.error
            .as_deref()
            .unwrap()
            .contains("not swap; volctl will not make swap over it"),
        "{s:#?}"
    );
    assert!(!s.swap);
    assert_eq!(node.host.counts().mkswap, 0);

    node.reboot();
    let encrypted = swap("{slot: 0, nodeID: {}}");
    let status = node
        .boot(&[node.config(&format!("{ENCRYPTED}{encrypted}"))])
        .unwrap();
    let s = volume(&status, "swap1");
    assert_eq!(s.phase, Phase::WaitingForWipe, "{s:#?}");
    let c = node.host.counts();
    assert_eq!((c.wipes, c.mkswap), (0, 0), "{c:#?}");
    assert_eq!(
        node.host.partition("s-swap1").unwrap().fs,
        Some(FilesystemType::Ext4)
    );
}
