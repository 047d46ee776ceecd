//! Where the config in force comes from on the simulated host: given,
//! stored on STATE, staged and promoted, delivered in maintenance mode,
//! none at all; and STATE following its own config.

use super::harness::{all_ready, nothing_written, volume, SimNode, ENCRYPTED, USER_VOLUME};
use crate::boot::BootError;
use crate::node::meta::TAG_STATE_ENCRYPTION;
use crate::node::paths::{MAINTENANCE_MARKER, PENDING_FILE};
use api_types::Encryption;
use std::time::Duration;

/// STATE's encryption config as META holds it.
fn meta_state_encryption(node: &SimNode) -> Option<Encryption> {
    let meta = node.host.partition("META").unwrap().meta?;
    let record = meta.records.get(&TAG_STATE_ENCRYPTION)?;
    Some(serde_json::from_slice(record).unwrap())
}

#[test]
fn a_blank_node_without_config_waits_in_maintenance_and_writes_nothing() {
    let node = SimNode::new();
    let e = node.boot(&[]).unwrap_err();
    assert!(matches!(e, BootError::NoConfig), "{e}");
    nothing_written(&node);
    let marker = node.dir.path().join("run").join(MAINTENANCE_MARKER);
    assert!(!marker.exists(), "the marker goes when the wait ends");
}

#[test]
fn a_config_delivered_in_maintenance_mode_brings_the_node_up_and_is_stored() {
    let node = SimNode::new();
    let mut opts = node.opts(&[]);
    opts.maintenance_timeout = Some(Duration::from_secs(20));
    let status_file = opts.node.status_file.clone();
    let delivery = std::thread::spawn(move || {
        let docs = api_types::parse_str("c.yaml", ENCRYPTED).documents;
        for _ in 0..200 {
            match crate::node::maintenance::deliver(&status_file, &docs, ENCRYPTED, false) {
                Ok(_) => return,
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        panic!("the boot never waited for a config");
    });
    let status = node.boot_with(&opts).unwrap();
    delivery.join().unwrap();
    all_ready(&status);
    assert_eq!(
        status.config_source,
        "maintenance mode (apply-config --insecure)"
    );
    let stored = std::fs::read_to_string(node.state_mount().join("config.yaml")).unwrap();
    assert_eq!(stored, ENCRYPTED);
    assert!(meta_state_encryption(&node).is_some());
}

#[test]
fn an_invalid_config_given_at_boot_stops_it_before_anything_is_written() {
    let node = SimNode::new();
    let bad = ENCRYPTED.replace("provider: luks2", "provider: luks3");
    let e = node.boot(&[node.config(&bad)]).unwrap_err();
    assert!(matches!(e, BootError::Config(_)), "{e}");
    assert!(e.to_string().contains("luks3"), "{e}");
    // Only what comes before the -f files: META read for a pending wipe.
    nothing_written(&node);
}

#[test]
fn a_config_staged_on_state_is_promoted_at_the_next_boot() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    // What `volctl apply-config --mode staged` leaves on the mounted STATE.
    let staged = format!("{ENCRYPTED}{USER_VOLUME}");
    std::fs::write(node.state_mount().join(PENDING_FILE), &staged).unwrap();
    node.reboot();
    let status = node.boot(&[]).unwrap();
    all_ready(&status);
    assert_eq!(
        status.config_source,
        "STATE (staged config promoted at this boot)"
    );
    assert!(volume(&status, "data").created);
    let mount = node.state_mount();
    assert!(!mount.join(PENDING_FILE).exists());
    assert_eq!(
        std::fs::read_to_string(mount.join("config.yaml")).unwrap(),
        staged
    );
}

#[test]
fn state_follows_a_new_config_for_itself_and_meta_mirrors_it() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    node.reboot();
    let more_keys = ENCRYPTED.replacen(
        "    - {slot: 0, nodeID: {}}\n",
        "    - {slot: 0, nodeID: {}}\n    - {slot: 1, static: {passphrase: state-pw}}\n",
        1,
    );
    let status = node.boot(&[node.config(&more_keys)]).unwrap();
    all_ready(&status);
    let state = volume(&status, "STATE");
    assert_eq!(state.keyslots, vec![0, 1], "{state:#?}");
    assert!(
        state.changes.iter().any(|c| c.contains("slot 1")),
        "{state:#?}"
    );
    let mirrored = meta_state_encryption(&node).unwrap();
    assert_eq!(mirrored.resolved_keys().len(), 2);
    // The boot after needs no -f: META opens STATE, STATE gives the rest.
    node.reboot();
    let status = node.boot(&[]).unwrap();
    all_ready(&status);
    assert_eq!(volume(&status, "STATE").keyslots, vec![0, 1]);
    assert_eq!(node.host.counts().meta_writes, 0);
}

#[test]
fn a_state_holding_no_config_falls_to_maintenance_and_the_wait_ends_the_boot() {
    let mut node = SimNode::new();
    node.boot(&[node.config(ENCRYPTED)]).unwrap();
    std::fs::remove_file(node.state_mount().join("config.yaml")).unwrap();
    node.reboot();
    let e = node.boot(&[]).unwrap_err();
    assert!(matches!(e, BootError::NoConfig), "{e}");
    // STATE was opened (META knows its keys) before the wait: no volume
    // beyond it, nothing made.
    let c = node.host.counts();
    assert_eq!((c.table_writes, c.mkfs), (0, 0), "{c:#?}");
}
