//! `UserVolumeConfig` with `volumeType: disk` (Talos 1.12): the whole disk
//! its selector picks holds the volume — LUKS2 or a filesystem from its
//! first byte, no partition table written. The selector must pick exactly
//! one disk, and that disk must hold no partition table: volctl never
//! guesses between disks, and never writes over a table.

use crate::node::disks::Partition;
use crate::node::snapshot::NodeSnapshot;
use api_types::cel::Selector;
use api_types::{Document, VolumeType};

/// Whether `doc` is a disk volume.
pub(crate) fn is_disk_volume(doc: &Document) -> bool {
    matches!(doc, Document::User(_)) && doc.volume_type() == VolumeType::Disk
}

/// Why no disk holds the volume.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoDisk {
    /// The document's selector does not compile (validation refuses it
    /// first; kept for a config read before the rule existed).
    #[error("its disk selector cannot be evaluated: {0}")]
    Selector(String),
    /// No disk matches.
    #[error("no disk matches its selector `{0}`")]
    NoMatch(String),
    /// Several disks match.
    #[error("{count} disks match its selector `{selector}` ({disks}); a disk volume takes exactly one: narrow the selector (e.g. disk.serial == \"…\")")]
    Several {
        /// The selector.
        selector: String,
        /// How many match.
        count: usize,
        /// Which.
        disks: String,
    },
    /// The one disk holds a partition table.
    #[error("{0} holds a partition table; a disk volume takes the whole disk, and volctl does not write over a partition table (wipe the disk first if its partitions are not needed)")]
    HasTable(String),
    /// The one disk is read-only.
    #[error("{0} is read-only")]
    ReadOnly(String),
}

/// The selector of disk volume `doc` (empty when it has none).
pub(super) fn selector_of(doc: &Document) -> String {
    doc.provisioning()
        .and_then(|p| p.disk_selector.as_ref())
        .map(|s| s.match_expr.clone())
        .unwrap_or_default()
}

/// The disk `expr` picks, as a [`Partition`] labelled `label` spanning it.
pub(super) fn pick(snap: &NodeSnapshot, expr: &str, label: &str) -> Result<Partition, NoDisk> {
    let expr = expr.to_string();
    let selector = Selector::disk(&expr).map_err(|e| NoDisk::Selector(e.to_string()))?;
    let matching: Vec<_> = snap
        .disks
        .iter()
        .filter(|d| selector.matches(&d.bindings()).unwrap_or(false))
        .collect();
    let disk = match matching.as_slice() {
        [] => return Err(NoDisk::NoMatch(expr)),
        [one] => one,
        several => {
            return Err(NoDisk::Several {
                selector: expr,
                count: several.len(),
                disks: several
                    .iter()
                    .map(|d| d.dev_path.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    };
    let name = disk.dev_path.display().to_string();
    if disk.table.is_some() {
        return Err(NoDisk::HasTable(name));
    }
    if disk.readonly {
        return Err(NoDisk::ReadOnly(name));
    }
    Ok(Partition::whole_disk(&disk.dev_path, disk.size, label))
}
