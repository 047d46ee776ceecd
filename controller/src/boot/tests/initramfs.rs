//! A boot in two steps, as an initramfs and the real root's systemd run
//! it: `volctl boot --open-only` unlocks, converges and opens every volume
//! and mounts none; the next boot (same kernel, no reboot) finds them open
//! and mounts them with no KDF run and no write to a header.

use super::harness::{all_ready, volume, SimNode, ENCRYPTED, LAID_OUT};
use crate::boot::Until;
use crate::node::status::Phase;
use std::path::Path;

#[test]
fn an_initramfs_boot_opens_every_volume_and_mounts_none() {
    let node = SimNode::new();
    let mut opts = node.opts(&[node.config(ENCRYPTED)]);
    opts.until = Until::Opened;
    let status = node.boot_with(&opts).unwrap();
    for v in &status.volumes {
        assert_eq!(v.phase, Phase::Opened, "{}: {:?}", v.name, v.error);
        assert!(
            v.mount_point.is_none() && v.mapped_device.is_some(),
            "{v:#?}"
        );
        assert!(v.kdf_runs >= 1, "{}: unlocked here", v.name);
    }
    assert!(status.all_reached(Phase::Opened) && !status.all_ready());
    assert_eq!(node.host.mounted_at(&node.state_mount()), None);
    assert_eq!(node.host.mounted_at(Path::new("/var")), None);
    assert_eq!(node.host.counts().mkfs, 1, "STATE's only: it was read");
}

#[test]
fn the_root_s_boot_then_mounts_what_the_initramfs_opened_with_no_kdf_run() {
    let node = SimNode::new();
    let mut opts = node.opts(&[node.config(ENCRYPTED)]);
    opts.until = Until::Opened;
    node.boot_with(&opts).unwrap();
    let writes = |label| node.host.partition(label).unwrap().device.writes();
    let before = (writes("STATE"), writes("EPHEMERAL"));

    let status = node.boot(&[]).unwrap();
    all_ready(&status);
    for v in &status.volumes {
        assert!(v.opened_before, "{}: found open", v.name);
        assert_eq!(v.kdf_runs, 0, "{}: no KDF run", v.name);
        assert_eq!(v.unlocked_by, None, "{}", v.name);
    }
    assert!(
        volume(&status, "EPHEMERAL").created,
        "its filesystem made now"
    );
    let table = status.table();
    let row = table.lines().find(|l| l.starts_with("EPHEMERAL")).unwrap();
    assert!(row.contains("(already open)"), "{table}");
    assert_eq!(
        node.host.mounted_at(Path::new("/var")),
        Some("/dev/mapper/luks2-EPHEMERAL".into())
    );
    assert!(node.state_mount().join("encryption-salt").exists());
    let after = (writes("STATE"), writes("EPHEMERAL"));
    assert_eq!(before, after, "no header write");
}

#[test]
fn a_mapping_of_another_device_under_a_volume_s_name_is_refused_not_used() {
    let mut labels = LAID_OUT.to_vec();
    labels.push(("OTHER", 1 << 20));
    let mut node = SimNode::laid_out(&labels);
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    node.reboot();
    // Another device holds the name EPHEMERAL's mapping would take.
    node.host.edit("OTHER", |p| {
        p.device.edit(|s| s.active = Some("luks2-EPHEMERAL".into()))
    });
    let status = node.boot(&[]).unwrap();
    let eph = volume(&status, "EPHEMERAL");
    assert_eq!(eph.phase, Phase::Failed);
    let err = eph.error.as_deref().unwrap();
    assert!(
        err.contains("/dev/mapper/luks2-EPHEMERAL is open on"),
        "{err}"
    );
    assert_eq!(node.host.mounted_at(Path::new("/var")), None);
}
