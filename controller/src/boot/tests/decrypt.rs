//! `decryptInPlace` on the simulated host: an encrypted volume is
//! decrypted in place before it is mounted, then stays plain; a volume
//! whose decryption is under way is left alone while its config still
//! encrypts it. (The decryption itself is proven on real LUKS2 images, at
//! every write: `tests/every_write_decrypt.rs`.)

use super::harness::{all_ready, volume, SimNode, ENCRYPTED};
use crate::node::status::Phase;
use std::path::Path;

#[test]
fn an_encrypted_volume_is_decrypted_before_it_is_mounted_and_stays_plain() {
    let mut node = SimNode::new();
    let encrypted = node.config(ENCRYPTED);
    all_ready(&node.boot(std::slice::from_ref(&encrypted)).unwrap());
    node.reboot();
    let plain = node.config(&format!("{ENCRYPTED}  decryptInPlace: true\n"));
    let status = node.boot(std::slice::from_ref(&plain)).unwrap();
    all_ready(&status);
    let e = volume(&status, "EPHEMERAL");
    assert!(!e.encrypted, "{e:#?}");
    assert!(
        e.changes
            .iter()
            .any(|c| c.starts_with("decrypted in place")),
        "{e:#?}"
    );
    assert_eq!(e.mapped_device, None);
    assert_eq!(
        node.host.mounted_at(Path::new("/var")),
        Some("/dev/vda3".into()),
        "mounted from the partition itself"
    );
    assert_eq!(node.host.counts().decryptions, 1);

    // The next boot: plain, nothing to decrypt, no KDF run.
    node.reboot();
    let status = node.boot(&[plain]).unwrap();
    all_ready(&status);
    assert_eq!(node.host.counts().decryptions, 0);
    assert_eq!(volume(&status, "EPHEMERAL").kdf_runs, 0);
}

#[test]
fn a_volume_whose_decryption_is_under_way_is_left_alone_while_its_config_encrypts_it() {
    let mut node = SimNode::new();
    let cfg = node.config(ENCRYPTED);
    all_ready(&node.boot(std::slice::from_ref(&cfg)).unwrap());
    node.reboot();
    // `volctl disable-encryption` was cut: its header is on STATE.
    // STATE is at its staging point while the volumes come up.
    let run_dir = crate::node::paths::run_dir(&node.opts(&[]).node.status_file);
    let headers = run_dir.join("staging-STATE").join("decrypt");
    let dir = crate::decrypt::volume_dir(&headers, "EPHEMERAL");
    node.host.put_files(&dir);
    let status = node.boot(&[cfg]).unwrap();
    let e = volume(&status, "EPHEMERAL");
    assert_eq!(e.phase, Phase::Failed, "{e:#?}");
    assert!(
        e.error
            .as_deref()
            .unwrap()
            .starts_with("a decryption in place of this volume is under way"),
        "{e:#?}"
    );
    assert_eq!(node.host.mounted_at(Path::new("/var")), None);
    assert_eq!(e.kdf_runs, 0, "not even unlocked");
}
