//! The per-volume boot steps on the simulated device: each transition, and
//! what each failure means (the error policy).

use super::super::volume::{self, VolumeDef, VolumeError};
use crate::device::{Access, LuksDevice, SimDevice};
use crate::node::status::{Phase, VolumeStatus};
use providers::{ProviderEnv, StateSalt};
use std::path::Path;
use std::sync::Arc;

fn def() -> VolumeDef {
    let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - {slot: 0, static: {passphrase: pw}}\n    - {slot: 1, nodeID: {}}\n";
    let p = api_types::parse_str("t.yaml", y);
    VolumeDef::from_doc(&p.documents[0], Path::new("/state"))
}

fn env() -> ProviderEnv {
    ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid: Ok("4c4c4544-0038-5910-8057-b4c04f4d3732".into()),
        state_salt: Some(StateSalt::new([1; 32])),
        kms: Default::default(),
        tpm: Default::default(),
        key_servers_until: None,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Provisioned → Opened on a device, from a fresh status.
fn provision_and_activate(dev: &Arc<SimDevice>) -> (VolumeStatus, Result<(), VolumeError>) {
    let d = def();
    let enc = d.encryption.clone().unwrap();
    let mut st = VolumeStatus::new(&d.name, &d.label, true);
    let r = rt().block_on(async {
        let (vk, online) = volume::provision(
            &d,
            &enc,
            dev.clone() as Arc<dyn LuksDevice>,
            &env(),
            &mut st,
        )
        .await?;
        let key = (vk, online.as_ref());
        volume::activate(&d, &enc, dev.clone() as Arc<dyn LuksDevice>, key, &mut st).await?;
        Ok(())
    });
    (st, r)
}

#[test]
fn a_blank_device_is_provisioned_and_opened_and_the_status_says_so() {
    let dev = Arc::new(SimDevice::blank(64 << 20));
    let (st, r) = provision_and_activate(&dev);
    r.unwrap();
    assert_eq!(st.phase, Phase::Opened);
    assert!(st.created);
    assert_eq!(st.keyslots, vec![0, 1]);
    assert_eq!(st.kdf_runs, 2);
    assert_eq!(
        st.mapped_device.as_deref(),
        Some("/dev/mapper/luks2-EPHEMERAL")
    );
    assert_eq!(dev.state().active.as_deref(), Some("luks2-EPHEMERAL"));
}

#[test]
fn the_next_boot_opens_it_with_one_kdf_run_and_no_write() {
    let dev = Arc::new(SimDevice::blank(64 << 20));
    provision_and_activate(&dev).1.unwrap();
    let dev = Arc::new(dev.reboot(Access::ReadWrite));
    let (st, r) = provision_and_activate(&dev);
    r.unwrap();
    assert_eq!(st.kdf_runs, 1);
    assert!(!st.created && st.changes.is_empty());
    assert_eq!(dev.writes(), 0);
}

#[test]
fn foreign_contents_mean_waiting_for_wipe_and_nothing_written() {
    let dev = Arc::new(SimDevice::blank(64 << 20));
    dev.edit(|s| s.foreign = Some("ext2/3/4 filesystem (signature at byte 1080)".into()));
    let (mut st, r) = provision_and_activate(&dev);
    let e = r.unwrap_err();
    assert_eq!(e.phase(), Phase::WaitingForWipe);
    volume::fail(&mut st, &e);
    assert_eq!(st.phase, Phase::WaitingForWipe);
    let msg = st.error.unwrap();
    assert!(
        msg.contains("ext2/3/4") && msg.contains("reset --system-labels-to-wipe EPHEMERAL"),
        "{msg}"
    );
    assert_eq!(dev.writes(), 0);
}

#[test]
fn no_key_opening_means_failed_and_the_volume_is_not_activated() {
    let dev = Arc::new(SimDevice::blank(64 << 20));
    provision_and_activate(&dev).1.unwrap();
    let dev = Arc::new(dev.reboot(Access::ReadWrite));
    let mut d = def();
    let enc = {
        let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - {slot: 0, static: {passphrase: other}}\n";
        api_types::parse_str("t.yaml", y).documents[0]
            .encryption()
            .cloned()
            .unwrap()
    };
    d.encryption = Some(enc.clone());
    let mut st = VolumeStatus::new(&d.name, &d.label, true);
    let e = rt()
        .block_on(volume::provision(
            &d,
            &enc,
            dev.clone() as Arc<dyn LuksDevice>,
            &env(),
            &mut st,
        ))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.phase(), Phase::Failed);
    assert!(e.to_string().contains("no configured key opens"), "{e}");
    assert_eq!(dev.state().active, None);
}

#[test]
fn a_missing_partition_means_missing() {
    let d = def();
    let mut st = VolumeStatus::new(&d.name, &d.label, true);
    let e = volume::locate(&crate::host::RealHost, &d, None, &mut st).unwrap_err();
    assert_eq!(e.phase(), Phase::Missing);
    assert_eq!(e.to_string(), "no partition labelled `EPHEMERAL`");
}
