//! Volumes that are directories on EPHEMERAL, as Talos places them: a
//! `UserVolumeConfig` with `volumeType: directory` (Talos 1.12) at
//! `/var/mnt/<name>`, and the system volumes ETCD, CRI, KUBELET and LOG
//! when their provisioning does not ask for a partition (Talos 1.14) at
//! `/var/lib/etcd`, `/var/lib/containerd`, `/var/lib/kubelet`, `/var/log`.
//! No partition and no encryption of their own; made when missing, never
//! emptied. They need EPHEMERAL mounted: when it is not, the volume says
//! why.

use crate::host::Host;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use api_types::{Document, SystemVolume, VolumeType};
use std::path::{Path, PathBuf};

/// How a directory volume's status names where it is.
const ON_EPHEMERAL: &str = "directory on EPHEMERAL";

/// Whether a boot brought the volume of `st` up as a directory.
pub(crate) fn came_up_as_directory(st: &VolumeStatus) -> bool {
    st.partition
        .as_deref()
        .is_some_and(|p| p.starts_with(ON_EPHEMERAL))
}

/// Whether `doc` is a directory volume.
pub(crate) fn is_directory(doc: &Document) -> bool {
    matches!(doc, Document::User(_) | Document::Volume(_))
        && doc.volume_type() == VolumeType::Directory
}

/// Where a directory volume lives under EPHEMERAL's mount point.
pub(super) fn path_of(ephemeral: &Path, doc: &Document) -> PathBuf {
    let system = match doc {
        Document::Volume(v) => v.system().and_then(SystemVolume::under_ephemeral),
        _ => None,
    };
    match system {
        Some(place) => ephemeral.join(place),
        None => ephemeral.join("mnt").join(doc.name()),
    }
}

/// The status of directory volume `doc`, made on EPHEMERAL when it is up.
pub(super) fn bring_up(host: &dyn Host, doc: &Document, status: &BootStatus) -> VolumeStatus {
    let mut st = VolumeStatus::new(doc.name(), doc.name(), false);
    let ephemeral = status
        .volumes
        .iter()
        .find(|v| v.name == "EPHEMERAL" && v.phase == Phase::Ready)
        .and_then(|v| v.mount_point.as_deref());
    let Some(ephemeral) = ephemeral else {
        st.phase = Phase::Failed;
        st.error = Some("a directory volume lives on EPHEMERAL, which is not mounted".into());
        return st;
    };
    let dir = path_of(Path::new(ephemeral), doc);
    match host.make_dir(&dir) {
        Ok(()) => {
            st.phase = Phase::Ready;
            st.partition = Some(format!("{ON_EPHEMERAL} ({ephemeral})"));
            st.mount_point = Some(dir.display().to_string());
        }
        Err(e) => {
            st.phase = Phase::Failed;
            st.error = Some(format!("cannot make {}: {e}", dir.display()));
        }
    }
    st
}
