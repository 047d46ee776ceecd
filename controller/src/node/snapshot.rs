//! The node's disks as one run sees them: each disk's facts (sysfs, GPT
//! partitions, free ranges) read once, and the partitions by label derived
//! from them. A boot takes it at its start and again only after it changed
//! a partition table; provisioning, pending wipes and existing volumes read
//! it instead of the disks.

use crate::node::disks::{self, DiskError, Partition};
use crate::node::facts::{self, Disk};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What the node's disks hold, read once.
#[derive(Debug, Clone)]
pub struct NodeSnapshot {
    /// The disks looked at: the ones given, or every disk of the system.
    pub paths: Vec<PathBuf>,
    /// Their facts, in path order; a disk whose facts could not be read is
    /// in `unreadable` instead.
    pub disks: Vec<Disk>,
    /// Disks that could not be read, and why (they hold no volume here).
    pub unreadable: Vec<(PathBuf, String)>,
}

impl NodeSnapshot {
    /// Reads the facts of `given` (every disk of the system when empty).
    pub fn take(given: &[PathBuf]) -> Self {
        let paths = disks::given_or_system(given);
        let mut snap = NodeSnapshot {
            paths: paths.clone(),
            disks: Vec::new(),
            unreadable: Vec::new(),
        };
        for p in paths {
            match facts::disk(&p) {
                Ok(d) => snap.disks.push(d),
                Err(e) => snap.unreadable.push((p, e.to_string())),
            }
        }
        snap.disks.sort_by(|a, b| a.dev_path.cmp(&b.dev_path));
        snap
    }

    /// The partitions of every disk with a GPT, by label
    /// ([`disks::index_by_label`]: a label on two partitions is an error).
    pub fn by_label(&self) -> Result<BTreeMap<String, Partition>, DiskError> {
        let tables = self.disks.iter().filter_map(|d| d.table.as_ref());
        disks::index_by_label(tables.flat_map(|t| t.partitions.iter().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image file with a GPT holding `labels` (1 MiB each).
    fn image(dir: &std::path::Path, name: &str, labels: &[&str]) -> PathBuf {
        let path = dir.join(name);
        std::fs::File::create(&path)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        let mut args = Vec::new();
        for (i, l) in labels.iter().enumerate() {
            args.push(format!("-n{}:0:+1M", i + 1));
            args.push(format!("-c{}:{l}", i + 1));
        }
        let ok = std::process::Command::new("sgdisk")
            .args(&args)
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "sgdisk on {}", path.display());
        path
    }

    #[test]
    fn a_snapshot_reads_each_gpt_once_and_finds_partitions_by_label() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(dir.path(), "a.img", &["META", "STATE"]);
        let b = image(dir.path(), "b.img", &["u-data"]);
        let before = crate::parttable::read::opened();
        let snap = NodeSnapshot::take(&[b.clone(), a.clone()]);
        let reads = crate::parttable::read::opened() - before;
        assert_eq!(reads, 2, "one GPT read per disk");
        assert_eq!(snap.disks.len(), 2);
        assert_eq!(snap.disks[0].dev_path, a, "in path order");
        assert!(snap.disks[0].system_disk && !snap.disks[1].system_disk);
        let parts = snap.by_label().unwrap();
        let labels: Vec<&str> = parts.keys().map(String::as_str).collect();
        assert_eq!(labels, ["META", "STATE", "u-data"]);
        assert_eq!(parts["u-data"].disk, b);
    }

    #[test]
    fn a_label_on_two_disks_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(dir.path(), "a.img", &["STATE"]);
        let b = image(dir.path(), "b.img", &["STATE"]);
        let snap = NodeSnapshot::take(&[a, b]);
        let e = snap.by_label().unwrap_err().to_string();
        assert!(e.contains("a.img") && e.contains("b.img"), "{e}");
    }

    #[test]
    fn a_disk_that_cannot_be_read_is_set_aside_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let a = image(dir.path(), "a.img", &["STATE"]);
        let gone = dir.path().join("gone.img");
        let snap = NodeSnapshot::take(&[a, gone.clone()]);
        assert_eq!(snap.disks.len(), 1);
        assert_eq!(snap.unreadable.len(), 1);
        assert_eq!(snap.unreadable[0].0, gone);
        assert!(snap.by_label().unwrap().contains_key("STATE"));
    }
}
