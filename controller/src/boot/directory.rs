//! `UserVolumeConfig` with `volumeType: directory` (Talos 1.12): no
//! partition and no encryption of its own, a directory on EPHEMERAL at
//! `/var/mnt/<name>`, as Talos places it; made when missing, never emptied.
//! It needs EPHEMERAL mounted: when it is not, the volume says why.

use crate::host::Host;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use api_types::{Document, VolumeType};
use std::path::{Path, PathBuf};

/// Whether `doc` is a directory volume.
pub(super) fn is_directory(doc: &Document) -> bool {
    matches!(doc, Document::User(_)) && doc.volume_type() == VolumeType::Directory
}

/// Where a directory volume lives under EPHEMERAL's mount point.
pub(super) fn path_of(ephemeral: &Path, name: &str) -> PathBuf {
    ephemeral.join("mnt").join(name)
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
    let dir = path_of(Path::new(ephemeral), doc.name());
    match host.make_dir(&dir) {
        Ok(()) => {
            st.phase = Phase::Ready;
            st.partition = Some(format!("directory on EPHEMERAL ({ephemeral})"));
            st.mount_point = Some(dir.display().to_string());
        }
        Err(e) => {
            st.phase = Phase::Failed;
            st.error = Some(format!("cannot make {}: {e}", dir.display()));
        }
    }
    st
}
