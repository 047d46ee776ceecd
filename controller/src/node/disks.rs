//! Finding volumes: read the GPT of each disk (block device or image file)
//! and index partitions by their label (`META`, `STATE`, `EPHEMERAL`,
//! `persistence`, `u-<name>`).

use crate::node::loopdev::LoopDevice;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why disks could not be read or volumes found.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The GPT could not be read.
    #[error("cannot read the GPT of {disk}: {source}")]
    Gpt {
        /// Disk.
        disk: String,
        /// Why.
        #[source]
        source: crate::parttable::read::GptReadError,
    },
    /// Two partitions carry the same label.
    #[error("two partitions are labelled `{label}`: {first} and {second}; volctl cannot tell which one is the volume (relabel or wipe one)")]
    DuplicateLabel {
        /// Label.
        label: String,
        /// First partition.
        first: String,
        /// Second partition.
        second: String,
    },
    /// A partition device could not be opened or attached.
    #[error("cannot open partition {label} ({partition}): {reason}")]
    Attach {
        /// Label.
        label: String,
        /// Where.
        partition: String,
        /// Why.
        reason: String,
    },
}

/// One GPT partition (as `volctl disks` shows it, under its disk).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Partition {
    /// 1-based partition number.
    pub number: u32,
    /// GPT partition name (label).
    pub label: String,
    /// Byte offset on the disk.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// The disk (device or image file).
    #[serde(skip)]
    pub disk: PathBuf,
}

impl Partition {
    /// The whole of `disk` (`size` bytes), for a volume that takes it all
    /// (`volumeType: disk`): number 0, no table entry.
    pub fn whole_disk(disk: &Path, size: u64, label: &str) -> Partition {
        Partition {
            number: WHOLE_DISK,
            label: label.to_string(),
            offset: 0,
            size,
            disk: disk.to_path_buf(),
        }
    }

    /// Whether it is a whole disk.
    pub fn is_whole_disk(&self) -> bool {
        self.number == WHOLE_DISK
    }

    /// Where it is, as the OS names it: `/dev/vda3`, `/dev/nvme0n1p3`; on
    /// a disk image, `disk.img partition 3`; a whole disk by its path.
    pub fn describe(&self) -> String {
        if self.is_whole_disk() {
            return self.disk.display().to_string();
        }
        match node_name(&self.disk, self.number) {
            Some(node) if self.disk.starts_with("/dev") => node.display().to_string(),
            _ => format!("{} partition {}", self.disk.display(), self.number),
        }
    }
}

/// Whether two device nodes are one device (one path, or one device number).
pub fn same_device(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    a == b
        || matches!(
            (std::fs::metadata(a), std::fs::metadata(b)),
            (Ok(x), Ok(y)) if x.rdev() != 0 && x.rdev() == y.rdev()
        )
}

/// The number of a [`Partition`] that is a whole disk.
pub const WHOLE_DISK: u32 = 0;

/// A partition opened for use: its device node, and the loop device that
/// backs it when the disk is an image file.
#[derive(Debug)]
pub struct OpenPartition {
    /// Device node to hand to libcryptsetup, mkfs, mount.
    pub path: PathBuf,
    _loop: Option<LoopDevice>,
}

impl OpenPartition {
    /// A partition whose device node is `path` and nothing holds open (a
    /// block device's partition node, or the simulated host's).
    pub fn at(path: PathBuf) -> Self {
        OpenPartition { path, _loop: None }
    }

    /// Opens `p`: the kernel's partition node for a block device, a loop
    /// device over the byte range for an image file.
    pub fn open(p: &Partition) -> Result<Self, DiskError> {
        let err = |reason: String| DiskError::Attach {
            label: p.label.clone(),
            partition: p.describe(),
            reason,
        };
        let meta = std::fs::metadata(&p.disk).map_err(|e| err(e.to_string()))?;
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_block_device() && p.is_whole_disk() {
            Ok(OpenPartition::at(p.disk.clone()))
        } else if meta.file_type().is_block_device() {
            let node = partition_node(&p.disk, p.number)
                .ok_or_else(|| err("no partition device node found".into()))?;
            Ok(OpenPartition::at(node))
        } else {
            let l = LoopDevice::attach(&p.disk, p.offset, p.size)
                .map_err(|e| err(format!("loop attach: {e}")))?;
            Ok(OpenPartition {
                path: l.path().to_path_buf(),
                _loop: Some(l),
            })
        }
    }
}

/// The device node of partition `number` of `disk`, when it exists.
fn partition_node(disk: &Path, number: u32) -> Option<PathBuf> {
    node_name(disk, number).filter(|node| node.exists())
}

/// The kernel's name for partition `number` of `disk`: `/dev/vda` + 3 →
/// `/dev/vda3`; `/dev/nvme0n1` + 3 → `/dev/nvme0n1p3`.
fn node_name(disk: &Path, number: u32) -> Option<PathBuf> {
    let name = disk.file_name()?.to_str()?;
    let sep = if name.chars().last()?.is_ascii_digit() {
        "p"
    } else {
        ""
    };
    Some(disk.with_file_name(format!("{name}{sep}{number}")))
}

/// Reads the GPT partitions of one disk.
pub fn partitions(disk: &Path) -> Result<Vec<Partition>, DiskError> {
    let (g, _) = crate::parttable::read::open(disk).map_err(|source| DiskError::Gpt {
        disk: disk.display().to_string(),
        source,
    })?;
    Ok(partitions_in(disk, &g))
}

/// The used partitions of `g`, the table read from `disk`.
pub fn partitions_in<D: gpt::DiskDevice>(disk: &Path, g: &gpt::GptDisk<D>) -> Vec<Partition> {
    let lb: u64 = (*g.logical_block_size()).into();
    g.partitions()
        .iter()
        .filter(|(_, p)| p.is_used())
        .map(|(n, p)| Partition {
            label: p.name.clone(),
            disk: disk.to_path_buf(),
            number: *n,
            offset: p.first_lba * lb,
            size: (p.last_lba + 1 - p.first_lba) * lb,
        })
        .collect()
}

/// The disks given, or every disk of the system when none is.
pub fn given_or_system(disks: &[PathBuf]) -> Vec<PathBuf> {
    if disks.is_empty() {
        system_disks()
    } else {
        disks.to_vec()
    }
}

/// The partition labelled `label` among `parts`, attached (a loop device
/// for an image file); `None` when no partition has that label.
pub fn open_labelled(
    parts: &BTreeMap<String, Partition>,
    label: &str,
) -> Result<Option<OpenPartition>, DiskError> {
    parts.get(label).map(OpenPartition::open).transpose()
}

/// Every whole disk the kernel knows (`/sys/class/block` entries that are
/// not partitions, loop, ram or device-mapper devices).
pub fn system_disks() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/class/block") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if e.path().join("partition").exists()
                || ["loop", "ram", "dm-", "sr", "zram"]
                    .iter()
                    .any(|p| name.starts_with(p))
            {
                continue;
            }
            out.push(PathBuf::from("/dev").join(name));
        }
    }
    out.sort();
    out
}

/// Partitions of all `disks` by label; a label found twice is an error.
/// Disks without a readable GPT hold no volumes and are skipped (logged at
/// info level); a volume whose label is found nowhere is reported missing.
pub fn by_label(disks: &[PathBuf]) -> Result<BTreeMap<String, Partition>, DiskError> {
    let parts = disks.iter().flat_map(|d| match partitions(d) {
        Ok(p) => p,
        // A disk without a GPT holds no volumes: skip it, say so.
        Err(e) => {
            tracing::info!("{e}; skipping this disk");
            Vec::new()
        }
    });
    index_by_label(parts)
}

/// `parts` by label; a label on two partitions is an error naming both
/// (which one holds the volume cannot be told).
pub fn index_by_label(
    parts: impl IntoIterator<Item = Partition>,
) -> Result<BTreeMap<String, Partition>, DiskError> {
    let mut map: BTreeMap<String, Partition> = BTreeMap::new();
    for p in parts {
        if let Some(first) = map.get(&p.label) {
            return Err(DiskError::DuplicateLabel {
                label: p.label.clone(),
                first: first.describe(),
                second: p.describe(),
            });
        }
        map.insert(p.label.clone(), p);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(disk: &str, number: u32) -> Partition {
        Partition {
            label: "STATE".into(),
            disk: PathBuf::from(disk),
            number,
            offset: 0,
            size: 0,
        }
    }

    #[test]
    fn a_partition_is_named_as_the_os_names_it() {
        assert_eq!(part("/dev/vda", 2).describe(), "/dev/vda2");
        assert_eq!(part("/dev/nvme0n1", 3).describe(), "/dev/nvme0n1p3");
        assert_eq!(part("/dev/mmcblk0", 1).describe(), "/dev/mmcblk0p1");
        assert_eq!(
            part("/tmp/disk.img", 4).describe(),
            "/tmp/disk.img partition 4"
        );
    }
}
