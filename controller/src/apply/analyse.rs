//! What a config changes on each volume the last boot brought up, and
//! what must be refused (a lock-out, a change that needs a wipe in
//! no-reboot mode). Runs converge as a dry run: nothing is written.

use super::{ApplyError, Change, VolumeChange};
use crate::converge::{converge, open_device, ConvergeError, Mode};
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use crate::volume::VolumeSpec;
use api_types::{Document, SystemVolume};
use providers::ProviderEnv;
use std::path::Path;

/// The change of every document, or every refusal.
pub(super) async fn all(
    docs: &[Document],
    status: &BootStatus,
    env: &ProviderEnv,
) -> Result<Vec<VolumeChange>, ApplyError> {
    let mut changes = Vec::new();
    let mut refused = Vec::new();
    for doc in docs {
        let row = status.volumes.iter().find(|v| v.name == doc.name());
        match analyse(doc, row, env).await {
            Ok(change) => changes.push(VolumeChange {
                volume: doc.name().to_string(),
                change,
            }),
            Err(reason) => refused.push(reason),
        }
    }
    if refused.is_empty() {
        Ok(changes)
    } else {
        Err(ApplyError::Refused(refused))
    }
}

/// Why a document's change is refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// No key of the new config opens the volume.
    #[error("{volume}: none of the keys in this config opens the volume (keyslots now: {slots}). A rotation must keep a key that works until the new one is enrolled: apply a config with both the old and the new key first, reboot, then remove the old one")]
    LockOut {
        /// Volume name.
        volume: String,
        /// Its keyslots now, with their kinds.
        slots: String,
    },
    /// The backing of a promotable system volume (ETCD, CRI, KUBELET,
    /// LOG) is fixed once it exists, as in Talos: moving its data between
    /// a directory on EPHEMERAL and a partition of its own is not done.
    #[error("the backing of the {volume:?} system volume cannot be changed after creation (current: {current}, requested: {requested}); moving a system volume to or from a partition of its own is not supported")]
    Backing {
        /// Volume name.
        volume: String,
        /// `directory` or `partition`.
        current: &'static str,
        /// `directory` or `partition`.
        requested: &'static str,
    },
    /// The dry run failed.
    #[error("{volume}: {source}")]
    Failed {
        /// Volume name.
        volume: String,
        /// Why.
        source: ConvergeError,
    },
}

/// What `doc` changes on the volume the last boot reported as `row`; `Err`
/// when it must be refused.
async fn analyse(
    doc: &Document,
    row: Option<&VolumeStatus>,
    env: &ProviderEnv,
) -> Result<Change, Refusal> {
    let name = doc.name();
    let label = doc.partition_label();
    if let Some(change) = directory_change(doc, row) {
        return change;
    }
    if !doc.managed() && !crate::boot::disk_volume::is_disk_volume(doc) {
        return Ok(Change::NextBoot(crate::volume::not_managed_reason(doc)));
    }
    let Some(row) =
        row.filter(|r| matches!(r.phase, Phase::Ready | Phase::Opened | Phase::Provisioned))
    else {
        let why = row.map(|r| format!("it is {} now", r.phase));
        return Ok(Change::NextBoot(format!(
            "not open ({}); the config takes effect when it is provisioned at boot",
            why.unwrap_or_else(|| "not configured before".into())
        )));
    };
    match (row.encrypted, doc.encryption()) {
        (true, Some(enc)) if enc.decrypt_in_place() => Ok(Change::NextBoot(
            "it is encrypted; with decryptInPlace it is decrypted in place at the next boot, before it is mounted (its data stays; the header is kept on STATE meanwhile)".into(),
        )),
        (false, Some(enc)) if enc.decrypt_in_place() => Ok(Change::Unchanged),
        (false, Some(enc)) if enc.in_place() => Ok(Change::NextBoot(
            "it holds a plain filesystem; with inPlace it is encrypted in place at the next boot (ext4 shrunk by 32 MiB, then reencrypted; its data stays)".into(),
        )),
        (false, Some(_)) => Ok(Change::NeedsWipe(format!(
            "it holds a plain filesystem; encrypting it needs a wipe: stage this config, back up its data, run `volctl reset --system-labels-to-wipe {label}`, then reboot"
        ))),
        (true, None) => Ok(Change::NeedsWipe(format!(
            "it is encrypted; making it plain needs a wipe (`volctl reset --system-labels-to-wipe {label}`) and a reboot, or keep the encryption block with `decryptInPlace: true` to decrypt it in place at the next boot, its data kept"
        ))),
        (false, None) => Ok(Change::Unchanged),
        (true, Some(enc)) => {
            let Some(dev) = &row.device else {
                return Ok(Change::NextBoot("its device is not known".into()));
            };
            let spec = VolumeSpec::new(name, &label, enc.clone());
            let dry_run = match open_device(&spec, Path::new(dev), Mode::DryRun) {
                Ok(device) => converge(&spec, device, env, Mode::DryRun).await,
                Err(e) => Err(e),
            };
            match dry_run {
                Ok(o) if o.plan.is_empty() => Ok(Change::Unchanged),
                Ok(o) => Ok(Change::Keys(o.plan.actions.iter().map(ToString::to_string).collect())),
                Err(ConvergeError::NoKeyOpens { slots, .. }) => Err(Refusal::LockOut { volume: name.to_string(), slots }),
                Err(ConvergeError::UntrustedHeader { reason, .. }) => Ok(Change::NeedsWipe(reason.to_string())),
                Err(source) => Err(Refusal::Failed { volume: name.to_string(), source }),
            }
        }
    }
}

/// What a config changes on a directory volume, or on a promotable system
/// volume whose backing it would move (refused); `None` for other volumes.
fn directory_change(doc: &Document, row: Option<&VolumeStatus>) -> Option<Result<Change, Refusal>> {
    let directory = crate::boot::directory::is_directory(doc);
    let promotable =
        matches!(doc, Document::Volume(v) if v.system().is_some_and(SystemVolume::promotable));
    let ready = row.filter(|r| r.phase == Phase::Ready);
    if let Some(row) = ready.filter(|_| promotable) {
        let was = crate::boot::directory::came_up_as_directory(row);
        if was != directory {
            return Some(Err(Refusal::Backing {
                volume: doc.name().to_string(),
                current: backing(was),
                requested: backing(directory),
            }));
        }
    }
    directory.then(|| {
        Ok(match ready {
            Some(_) => Change::Unchanged,
            None => Change::NextBoot("a directory on EPHEMERAL, made at the next boot".into()),
        })
    })
}

/// A volume's backing, as the refusal names it.
fn backing(directory: bool) -> &'static str {
    if directory {
        "directory"
    } else {
        "partition"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> ProviderEnv {
        ProviderEnv {
            recovery_handover: providers::RecoveryHandover::Nobody,
            asker: None,
            node_uuid: Ok("4c4c4544-0038-5910-8057-b4c04f4d3732".into()),
            state_salt: None,
            kms: Default::default(),
            tpm: Default::default(),
            key_servers_until: None,
        }
    }

    fn docs(yaml: &str) -> Vec<Document> {
        let p = api_types::parse_str("c.yaml", yaml);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        p.documents
    }

    /// The status of a boot that brought ETCD up as a directory.
    fn etcd_a_directory() -> BootStatus {
        let mut st = VolumeStatus::new("ETCD", "ETCD", false);
        st.phase = Phase::Ready;
        st.partition = Some("directory on EPHEMERAL (/var)".into());
        BootStatus {
            volumes: vec![st],
            ..Default::default()
        }
    }

    fn run(yaml: &str, status: &BootStatus) -> Result<Vec<VolumeChange>, ApplyError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(all(&docs(yaml), status, &env()))
    }

    #[test]
    fn a_promoted_volume_s_backing_is_fixed_once_it_exists() {
        let status = etcd_a_directory();
        let same = run(
            "apiVersion: v1alpha1\nkind: VolumeConfig\nname: ETCD\n",
            &status,
        )
        .unwrap();
        assert!(matches!(same[0].change, Change::Unchanged), "{same:?}");
        let moved = run(
            "apiVersion: v1alpha1\nkind: VolumeConfig\nname: ETCD\nprovisioning: {maxSize: 10GiB}\n",
            &status,
        );
        let Err(ApplyError::Refused(r)) = moved else {
            panic!("{moved:?}")
        };
        assert_eq!(
            r[0].to_string(),
            "the backing of the \"ETCD\" system volume cannot be changed after creation (current: directory, requested: partition); moving a system volume to or from a partition of its own is not supported"
        );
        // Before it exists, any backing may be asked for.
        let fresh = run(
            "apiVersion: v1alpha1\nkind: VolumeConfig\nname: ETCD\nprovisioning: {maxSize: 10GiB}\n",
            &BootStatus::default(),
        )
        .unwrap();
        assert!(matches!(fresh[0].change, Change::NextBoot(_)), "{fresh:?}");
    }
}
