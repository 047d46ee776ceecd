//! Existing volumes (Talos `ExistingVolumeConfig`): a partition made
//! outside volctl, found by a CEL volume selector over each partition's
//! facts, mounted at `/var/mnt/<name>`. volctl never formats, encrypts or
//! resizes it.

use crate::host::Host;
use crate::node::disks::{OpenPartition, Partition};
use crate::node::facts::Disk;
use crate::node::fs::{self, MountOptions};
use crate::node::snapshot::NodeSnapshot;
use crate::node::status::{Phase, VolumeStatus};
use api_types::cel::{Bindings, Selector, Value};
use api_types::ExistingVolumeConfig;
use std::path::Path;

/// Finds and mounts one existing volume; its status.
pub(super) fn bring_up(
    host: &dyn Host,
    doc: &ExistingVolumeConfig,
    snap: &NodeSnapshot,
) -> VolumeStatus {
    let mut st = VolumeStatus::new(&doc.name, &doc.name, false);
    if let Err(why) = find_and_mount(host, doc, &snap.disks, &mut st) {
        if st.phase != Phase::Missing {
            st.phase = Phase::Failed;
        }
        st.error = Some(why.to_string());
    }
    st
}

fn find_and_mount(
    host: &dyn Host,
    doc: &ExistingVolumeConfig,
    disks: &[Disk],
    st: &mut VolumeStatus,
) -> Result<(), ExistingError> {
    let expr = doc
        .discovery
        .as_ref()
        .and_then(|d| d.volume_selector.as_ref())
        .map(|s| s.match_expr.as_str())
        .unwrap_or_default();
    let selector = Selector::volume(expr).map_err(ExistingError::Selector)?;
    let Some((part, open, fstype)) = first_match(host, &selector, disks)? else {
        st.phase = Phase::Missing;
        return Err(ExistingError::NoMatch(expr.to_string()));
    };
    st.partition = Some(part.describe());
    st.device = Some(open.path.display().to_string());
    st.phase = Phase::Located;
    let target = Path::new("/var/mnt").join(&doc.name);
    let m = doc.mount.clone().unwrap_or_default();
    let options = MountOptions {
        secure: m.secure.unwrap_or(true),
        noexec: false,
        noatime: m.disable_access_time.unwrap_or(false),
        project_quota: false,
        read_only: m.read_only.unwrap_or(false),
    };
    host.mount(&open.path, &target, fstype, options)?;
    // The mount holds the device; a loop device over an image file is
    // released when it is unmounted.
    std::mem::forget(open);
    st.mount_point = Some(target.display().to_string());
    st.phase = Phase::Ready;
    Ok(())
}

type Found = (Partition, OpenPartition, api_types::FilesystemType);

/// Why an existing volume is not up.
#[derive(Debug, thiserror::Error)]
enum ExistingError {
    /// The CEL volume selector does not compile or evaluate.
    #[error("{0}")]
    Selector(String),
    /// No partition matches.
    #[error("no partition matches the volume selector `{0}`")]
    NoMatch(String),
    /// A partition could not be opened (a loop device over an image).
    #[error(transparent)]
    Open(#[from] crate::node::disks::DiskError),
    /// The matching partition holds no filesystem volctl mounts.
    #[error("{partition} matches, but holds {found}: not a filesystem volctl mounts")]
    NotAFilesystem {
        /// The partition.
        partition: String,
        /// What it holds.
        found: String,
    },
    /// Mounting failed.
    #[error(transparent)]
    Mount(#[from] fs::FsError),
}

/// The first partition, in disk and partition order, the selector picks.
fn first_match(
    host: &dyn Host,
    selector: &Selector,
    disks: &[Disk],
) -> Result<Option<Found>, ExistingError> {
    for d in disks {
        let parts = d.table.iter().flat_map(|t| t.partitions.iter().cloned());
        for p in parts {
            let open = host.attach(&p)?;
            let found = host.probe_fs(&open.path).ok().flatten().unwrap_or_default();
            let fstype = fs::from_probe(&found);
            let vars = bindings(d, &p, &open.path, fstype);
            if selector.matches(&vars).map_err(ExistingError::Selector)? {
                let fstype = fstype.ok_or_else(|| ExistingError::NotAFilesystem {
                    partition: p.describe(),
                    found: if found.is_empty() {
                        "no known filesystem".into()
                    } else {
                        found.clone()
                    },
                })?;
                return Ok(Some((p, open, fstype)));
            }
        }
    }
    Ok(None)
}

/// `volume` (the partition's facts, as Talos's `DiscoveredVolumeSpec`) and
/// `disk` (its disk's).
fn bindings(
    d: &Disk,
    p: &Partition,
    node: &Path,
    fstype: Option<api_types::FilesystemType>,
) -> Bindings {
    let s = |v: &str| Value::String(v.to_string());
    let name = fstype.map_or("", fs::fstype);
    let volume = [
        ("partition_label", s(&p.label)),
        ("partition_index", Value::Uint(u64::from(p.number))),
        ("size", Value::Uint(p.size)),
        ("name", s(name)),
        ("type", s("partition")),
        ("dev_path", s(&node.display().to_string())),
        ("parent", s(&d.dev_path.display().to_string())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut b = d.bindings();
    b.insert("volume".into(), Value::Message(volume));
    b
}
