//! The simulated host: disks and their GPTs in memory, a
//! [`SimDevice`] per partition (its LUKS2 header model), the filesystem
//! each holds, META's records, and a mount table. It counts every request,
//! so tests of the whole boot can say "each GPT read once".
//!
//! Files the boot writes on a mounted filesystem (STATE's config, its
//! salt) are real files: a mount whose target lies under the host's
//! scratch folder makes the target a link to that filesystem's own folder,
//! so they stay with the filesystem across reboots and moves. Mounts
//! elsewhere (`/var`, `/var/mnt/…`) are only recorded.

use super::real::wipe_ranges;
use super::{Host, WipeMode};
use crate::decrypt::{DecryptError, DecryptOutcome, RunData};
use crate::device::{Access, DeviceError, LuksDevice, SimDevice};
use crate::node::disks::{DiskError, OpenPartition, Partition};
use crate::node::facts::{Disk, Table};
use crate::node::fs::{self, FsError, MountOptions};
use crate::node::meta::{Meta, MetaError};
use crate::node::snapshot::NodeSnapshot;
use crate::node::swap;
use crate::provision::{Action, TableCause, TableError};
use crate::volume::VolumeSpec;
use api_types::{Encryption, FilesystemType};
use futures_util::future::BoxFuture;
use providers::ProviderEnv;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What the boot asked of the host, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostCounts {
    /// Snapshots taken.
    pub snapshots: u32,
    /// GPTs read (one per disk with a table, per snapshot).
    pub gpt_reads: u32,
    /// Partition-table changes.
    pub table_writes: u32,
    /// Partitions attached.
    pub attaches: u32,
    /// META reads.
    pub meta_reads: u32,
    /// META writes.
    pub meta_writes: u32,
    /// Partitions wiped.
    pub wipes: u32,
    /// Filesystems made.
    pub mkfs: u32,
    /// Swap made (mkswap).
    pub mkswap: u32,
    /// Swap enabled (swapon).
    pub swapons: u32,
    /// Mounts.
    pub mounts: u32,
    /// Mounts moved.
    pub moves: u32,
    /// Volumes decrypted in place.
    pub decryptions: u32,
}

/// One partition of a simulated disk.
#[derive(Clone)]
pub struct SimPartition {
    /// Its table entry.
    pub part: Partition,
    /// Its LUKS2 side (blank, a header, foreign contents).
    pub device: Arc<SimDevice>,
    /// The filesystem on its data: inside dm-crypt when it is encrypted.
    pub fs: Option<FilesystemType>,
    /// Swap on its data (inside dm-crypt when it is encrypted) instead.
    pub swap: bool,
    /// Its META records, when it is META.
    pub meta: Option<Meta>,
}

impl SimPartition {
    /// Its device node: `/dev/vda` partition 2 is `/dev/vda2`.
    pub fn node(&self) -> PathBuf {
        node_of(&self.part.disk, self.part.number)
    }
}

fn node_of(disk: &Path, number: u32) -> PathBuf {
    if number == crate::node::disks::WHOLE_DISK {
        return disk.to_path_buf();
    }
    PathBuf::from(format!("{}{number}", disk.display()))
}

/// One disk: its size and, when it has one, its table.
#[derive(Clone)]
struct SimDisk {
    size: u64,
    table: Option<Vec<SimPartition>>,
    /// The whole disk as a volume (`volumeType: disk`), while it has no
    /// table.
    whole: SimPartition,
}

impl SimDisk {
    fn blank(path: &Path, size: u64) -> Self {
        SimDisk {
            size,
            table: None,
            whole: SimPartition {
                part: Partition::whole_disk(path, size, ""),
                device: Arc::new(SimDevice::blank(size).at(path.to_path_buf())),
                fs: None,
                swap: false,
                meta: None,
            },
        }
    }

    /// Its partitions, or the whole disk when it has no table.
    fn volumes(&self) -> Box<dyn Iterator<Item = &SimPartition> + '_> {
        match &self.table {
            Some(t) => Box::new(t.iter()),
            None => Box::new(std::iter::once(&self.whole)),
        }
    }

    fn volumes_mut(&mut self) -> Box<dyn Iterator<Item = &mut SimPartition> + '_> {
        match &mut self.table {
            Some(t) => Box::new(t.iter_mut()),
            None => Box::new(std::iter::once(&mut self.whole)),
        }
    }
}

/// The node: disks and the mount table (target → device node).
#[derive(Clone, Default)]
struct SimNode {
    disks: BTreeMap<PathBuf, SimDisk>,
    mounts: BTreeMap<PathBuf, PathBuf>,
    /// Directories made (directory volumes).
    dirs: std::collections::BTreeSet<PathBuf>,
    /// Devices swap is enabled on.
    swaps: std::collections::BTreeSet<PathBuf>,
    /// Directories that hold files (tests put them there).
    full: std::collections::BTreeSet<PathBuf>,
}

/// A simulated host (see the module's text).
pub struct SimHost {
    scratch: PathBuf,
    node: Mutex<SimNode>,
    counts: Mutex<HostCounts>,
}

/// First usable byte of a GPT disk (LBA 34).
const FIRST_USABLE: u64 = 34 * 512;
/// Bytes at a GPT disk's end taken by the backup table.
const BACKUP_TABLE: u64 = 33 * 512;

impl SimHost {
    /// A host with no disks; mounts under `scratch` keep their files.
    pub fn new(scratch: &Path) -> Self {
        SimHost {
            scratch: scratch.to_path_buf(),
            node: Mutex::new(SimNode::default()),
            counts: Mutex::new(HostCounts::default()),
        }
    }

    /// Adds a blank disk of `size` bytes at `path` (`/dev/vda`).
    pub fn with_disk(self, path: &str, size: u64) -> Self {
        let disk = SimDisk::blank(Path::new(path), size);
        self.node().disks.insert(PathBuf::from(path), disk);
        self
    }

    /// Adds an empty GPT to `disk`, then one partition per `(label, size)`.
    pub fn with_partitions(self, disk: &str, parts: &[(&str, u64)]) -> Self {
        let disk = PathBuf::from(disk);
        self.write_table(&Action::CreateTable { disk: disk.clone() })
            .expect("the disk exists");
        for (label, size) in parts {
            let offset = self.node().free_at(&disk, *size).expect("room");
            let create = Action::Create {
                disk: disk.clone(),
                label: label.to_string(),
                offset,
                size: *size,
            };
            self.write_table(&create).expect("the disk exists");
        }
        *self.counts.lock().expect("lock") = HostCounts::default();
        self
    }

    /// The node after a power cut or a reboot: the same disks and what
    /// they hold, nothing mounted or mapped, counts at zero.
    pub fn reboot(&self) -> SimHost {
        let mut node = self.node().clone();
        for target in std::mem::take(&mut node.mounts).keys() {
            self.unlink_mount(target);
        }
        node.swaps.clear();
        for p in node.partitions_mut() {
            p.device = Arc::new(p.device.reboot(Access::ReadWrite));
        }
        SimHost {
            scratch: self.scratch.clone(),
            node: Mutex::new(node),
            counts: Mutex::new(HostCounts::default()),
        }
    }

    /// Whether the boot made the directory `path`.
    pub fn has_dir(&self, path: &Path) -> bool {
        self.node().dirs.contains(path)
    }

    /// What the host was asked to do so far.
    pub fn counts(&self) -> HostCounts {
        *self.counts.lock().expect("lock")
    }

    /// The partition labelled `label`.
    pub fn partition(&self, label: &str) -> Option<SimPartition> {
        self.node()
            .partitions()
            .find(|p| p.part.label == label)
            .cloned()
    }

    /// Changes the partition labelled `label` (tests forge contents).
    pub fn edit(&self, label: &str, f: impl FnOnce(&mut SimPartition)) {
        let mut node = self.node();
        let p = node
            .partitions_mut()
            .find(|p| p.part.label == label)
            .expect("a partition with that label");
        f(p);
    }

    /// The device node mounted at `target`, if any.
    pub fn mounted_at(&self, target: &Path) -> Option<PathBuf> {
        self.node().mounts.get(target).cloned()
    }

    /// Puts files in the directory `dir` (a directory volume's data).
    pub fn put_files(&self, dir: &Path) {
        self.node().full.insert(dir.to_path_buf());
    }

    /// Whether swap is enabled on `node`.
    pub fn swap_is_on(&self, node: &Path) -> bool {
        self.node().swaps.contains(node)
    }

    fn node(&self) -> MutexGuard<'_, SimNode> {
        self.node.lock().expect("lock")
    }

    fn count(&self, f: impl FnOnce(&mut HostCounts)) {
        f(&mut self.counts.lock().expect("lock"));
    }

    /// The folder a filesystem keeps its files in (by its partition node).
    fn backing(&self, node: &Path) -> PathBuf {
        let name = node.display().to_string().replace('/', "_");
        self.scratch.join(".sim-filesystems").join(name)
    }

    /// Makes `target` show the files of the filesystem on `node`, when it
    /// lies under the scratch folder.
    fn link_mount(&self, node: &Path, target: &Path) -> std::io::Result<()> {
        if !target.starts_with(&self.scratch) {
            return Ok(());
        }
        let backing = self.backing(node);
        std::fs::create_dir_all(&backing)?;
        if target.is_dir() {
            std::fs::remove_dir(target)?;
        }
        std::fs::create_dir_all(target.parent().expect("under scratch"))?;
        std::os::unix::fs::symlink(backing, target)
    }

    fn unlink_mount(&self, target: &Path) {
        if target.starts_with(&self.scratch) {
            let _ = std::fs::remove_file(target);
        }
    }
}

impl SimNode {
    fn partitions(&self) -> impl Iterator<Item = &SimPartition> {
        self.disks.values().flat_map(SimDisk::volumes)
    }

    fn partitions_mut(&mut self) -> impl Iterator<Item = &mut SimPartition> {
        self.disks.values_mut().flat_map(SimDisk::volumes_mut)
    }

    /// The partition whose node is `node`, or whose dm-crypt mapping is
    /// `node` (`/dev/mapper/luks2-STATE`).
    fn by_node(&mut self, node: &Path) -> Option<&mut SimPartition> {
        let mapped = node
            .strip_prefix("/dev/mapper")
            .ok()
            .map(|m| m.display().to_string());
        self.partitions_mut().find(|p| match &mapped {
            Some(name) => p.device.state().active.as_ref() == Some(name),
            None => p.node() == node,
        })
    }

    /// The first aligned offset on `disk` with `size` bytes free.
    fn free_at(&self, disk: &Path, size: u64) -> Option<u64> {
        let d = self.disks.get(disk)?;
        let table = Table::of(&table_entries(d), FIRST_USABLE, d.size - BACKUP_TABLE);
        table.free.iter().find(|(_, len)| *len >= size).map(|f| f.0)
    }
}

fn table_entries(d: &SimDisk) -> Vec<Partition> {
    d.table.iter().flatten().map(|p| p.part.clone()).collect()
}

/// A filesystem error as mount(2) or mkfs would give it.
fn fs_error(op: &'static str, what: String, kind: std::io::ErrorKind) -> FsError {
    FsError::Mount {
        op,
        what,
        source: std::io::Error::from(kind),
    }
}

fn table_error(what: &'static str, disk: &Path, source: TableCause) -> TableError {
    TableError {
        what,
        disk: disk.display().to_string(),
        source,
    }
}

impl Host for SimHost {
    fn snapshot(&self, given: &[PathBuf]) -> NodeSnapshot {
        let node = self.node();
        let paths: Vec<PathBuf> = match given {
            [] => node.disks.keys().cloned().collect(),
            some => some.to_vec(),
        };
        let mut snap = NodeSnapshot {
            paths: paths.clone(),
            disks: Vec::new(),
            unreadable: Vec::new(),
        };
        let mut reads = 0;
        for path in paths {
            let Some(d) = node.disks.get(&path) else {
                snap.unreadable.push((path, "no such disk".into()));
                continue;
            };
            let mut disk = Disk::bare(&path, d.size);
            if d.table.is_some() {
                reads += 1;
                let table = Table::of(&table_entries(d), FIRST_USABLE, d.size - BACKUP_TABLE);
                disk.system_disk = table.holds_system_volumes();
                disk.table = Some(table);
            }
            snap.disks.push(disk);
        }
        self.count(|c| {
            c.snapshots += 1;
            c.gpt_reads += reads;
        });
        snap
    }

    fn attach(&self, part: &Partition) -> Result<OpenPartition, DiskError> {
        self.count(|c| c.attaches += 1);
        let node = node_of(&part.disk, part.number);
        let found = self.node().partitions().any(|p| p.node() == node);
        match found {
            true => Ok(OpenPartition::at(node)),
            false => Err(DiskError::Attach {
                label: part.label.clone(),
                partition: part.describe(),
                reason: "no such partition".into(),
            }),
        }
    }

    fn luks(
        &self,
        node: &Path,
        _access: Access,
        _expect: Option<Encryption>,
    ) -> Result<Arc<dyn LuksDevice>, DeviceError> {
        match self.node().by_node(node) {
            Some(p) => Ok(p.device.clone() as Arc<dyn LuksDevice>),
            None => Err(DeviceError::Open {
                path: node.display().to_string(),
                write: false,
                source: std::io::ErrorKind::NotFound.into(),
            }),
        }
    }

    fn write_table(&self, action: &Action) -> Result<(), TableError> {
        self.count(|c| c.table_writes += 1);
        let disk = action.disk().to_path_buf();
        let mut node = self.node();
        let d = node.disks.get_mut(&disk).ok_or_else(|| {
            table_error(
                "open",
                &disk,
                std::io::Error::from(std::io::ErrorKind::NotFound).into(),
            )
        })?;
        match action {
            Action::CreateTable { .. } => d.table = Some(Vec::new()),
            Action::RepairTable { .. } => {}
            Action::Create {
                label,
                offset,
                size,
                ..
            } => {
                let table = d.table.get_or_insert_with(Vec::new);
                let number = table.iter().map(|p| p.part.number).max().unwrap_or(0) + 1;
                let node = node_of(&disk, number);
                table.push(SimPartition {
                    part: Partition {
                        number,
                        label: label.clone(),
                        offset: *offset,
                        size: *size,
                        disk: disk.clone(),
                    },
                    device: Arc::new(SimDevice::blank(*size).at(node)),
                    fs: None,
                    swap: false,
                    meta: None,
                });
            }
            Action::Grow { number, size, .. } => {
                let p = d
                    .table
                    .iter_mut()
                    .flatten()
                    .find(|p| p.part.number == *number)
                    .ok_or_else(|| table_error("grow", &disk, TableCause::NoSuchPartition))?;
                p.part.size = *size;
            }
        }
        Ok(())
    }

    fn read_meta(&self, node: &Path) -> Result<Meta, MetaError> {
        self.count(|c| c.meta_reads += 1);
        Ok(self
            .node()
            .by_node(node)
            .and_then(|p| p.meta.clone())
            .unwrap_or_default())
    }

    fn write_meta(&self, node: &Path, m: &Meta) -> Result<(), MetaError> {
        self.count(|c| c.meta_writes += 1);
        if let Some(p) = self.node().by_node(node) {
            p.meta = Some(m.clone());
        }
        Ok(())
    }

    fn wipe(&self, node: &Path, size: u64, mode: WipeMode) -> std::io::Result<u64> {
        self.count(|c| c.wipes += 1);
        let mut n = self.node();
        let p = n.by_node(node).ok_or(std::io::ErrorKind::NotFound)?;
        p.device = Arc::new(SimDevice::blank(p.part.size).at(p.node()));
        p.fs = None;
        p.swap = false;
        p.meta = None;
        let _ = std::fs::remove_dir_all(self.backing(node));
        Ok(wipe_ranges(size, 0, mode).iter().map(|(a, b)| b - a).sum())
    }

    fn probe_fs(&self, node: &Path) -> std::io::Result<Option<String>> {
        let mut n = self.node();
        let p = n.by_node(node).ok_or(std::io::ErrorKind::NotFound)?;
        let encrypted = p.device.state().header.is_some();
        let on_data = encrypted == node.starts_with("/dev/mapper");
        if p.swap {
            return Ok(on_data.then(|| swap::SIGNATURE.to_string()));
        }
        Ok(p.fs
            .filter(|_| on_data)
            .map(|fs| format!("{} filesystem", fs::probe_name(fs))))
    }

    fn mkfs(&self, node: &Path, fs: FilesystemType, _label: &str) -> Result<(), FsError> {
        self.count(|c| c.mkfs += 1);
        let mut n = self.node();
        let p = n.by_node(node).ok_or_else(|| {
            tool_failed(&format!("mkfs.{}", fs::fstype(fs)), node, "no such device")
        })?;
        p.fs = Some(fs);
        p.swap = false;
        if !node.starts_with("/dev/mapper") {
            let found = format!("{} filesystem", fs::probe_name(fs));
            p.device.edit(|s| s.foreign = Some(found));
        }
        Ok(())
    }

    fn make_swap(&self, node: &Path, _label: &str) -> Result<(), FsError> {
        self.count(|c| c.mkswap += 1);
        let mut n = self.node();
        let p = n
            .by_node(node)
            .ok_or_else(|| tool_failed("mkswap", node, "no such device"))?;
        p.fs = None;
        p.swap = true;
        if !node.starts_with("/dev/mapper") {
            p.device.edit(|s| s.foreign = Some(swap::SIGNATURE.into()));
        }
        Ok(())
    }

    fn swap_on(&self, node: &Path) -> Result<(), FsError> {
        self.count(|c| c.swapons += 1);
        let mut n = self.node();
        if !n.by_node(node).is_some_and(|p| p.swap) {
            return Err(tool_failed("swapon", node, "read swap header failed"));
        }
        n.swaps.insert(node.to_path_buf());
        Ok(())
    }

    fn mount(
        &self,
        node: &Path,
        target: &Path,
        fs: FilesystemType,
        _options: MountOptions,
    ) -> Result<(), FsError> {
        self.count(|c| c.mounts += 1);
        let what = format!("{} at {}", node.display(), target.display());
        let mut n = self.node();
        if n.mounts.contains_key(target) {
            return Err(fs_error("mount", what, std::io::ErrorKind::ResourceBusy));
        }
        let Some(backing_node) = n
            .by_node(node)
            .filter(|p| p.fs == Some(fs))
            .map(|p| p.node())
        else {
            return Err(fs_error("mount", what, std::io::ErrorKind::InvalidInput));
        };
        self.link_mount(&backing_node, target)
            .map_err(|source| FsError::Mount {
                op: "mount",
                what,
                source,
            })?;
        n.mounts.insert(target.to_path_buf(), node.to_path_buf());
        Ok(())
    }

    fn grow(
        &self,
        node: &Path,
        _target: &Path,
        _fs: FilesystemType,
    ) -> Result<(u64, u64), FsError> {
        let size = self.node().by_node(node).map_or(0, |p| p.part.size);
        Ok((size, size))
    }

    fn move_mount(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        self.count(|c| c.moves += 1);
        let what = format!("{} to {}", from.display(), to.display());
        let mut n = self.node();
        let node = n.mounts.remove(from).ok_or_else(|| {
            fs_error("move mount", what.clone(), std::io::ErrorKind::InvalidInput)
        })?;
        let backing_node = n.by_node(&node).map(|p| p.node()).unwrap_or(node.clone());
        self.unlink_mount(from);
        self.link_mount(&backing_node, to)
            .map_err(|source| FsError::Mount {
                op: "move mount",
                what,
                source,
            })?;
        n.mounts.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn unmount(&self, target: &Path) -> Result<(), FsError> {
        let what = target.display().to_string();
        self.node()
            .mounts
            .remove(target)
            .ok_or_else(|| fs_error("umount", what, std::io::ErrorKind::InvalidInput))?;
        self.unlink_mount(target);
        Ok(())
    }

    fn holds_files(&self, dir: &Path) -> bool {
        self.node().full.contains(dir)
    }

    fn make_dir(&self, path: &Path) -> std::io::Result<()> {
        self.node().dirs.insert(path.to_path_buf());
        Ok(())
    }

    fn mapping(&self, name: &str) -> Option<PathBuf> {
        self.node()
            .partitions()
            .find(|p| p.device.state().active.as_deref() == Some(name))
            .map(|p| p.node())
    }

    /// Its filesystem, inside dm-crypt until now, is on the partition
    /// itself afterwards (no header file is modelled). Asked to leave the
    /// data to an online run, it decrypts it all the same: a simulated
    /// boot starts no process (the VM scenario `decrypt-in-place` runs the
    /// online way with real parts).
    fn decrypt_in_place<'a>(
        &'a self,
        spec: &'a VolumeSpec,
        node: &'a Path,
        dir: &'a Path,
        env: &'a ProviderEnv,
        _data: RunData<'a>,
    ) -> BoxFuture<'a, Result<Option<DecryptOutcome>, DecryptError>> {
        Box::pin(async move {
            let Some(device) = self.node().by_node(node).map(|p| p.device.clone()) else {
                return Ok(None);
            };
            let crate::device::Contents::Luks2(h) = device.contents()? else {
                return Ok(None);
            };
            // As the real one: a key of the config must open it first.
            let kdf_before = device.kdf_runs();
            let handle: Arc<dyn LuksDevice> = device.clone();
            crate::converge::opener(spec, &h, &handle, env).await?;
            let kdf_runs = device.kdf_runs() - kdf_before;
            let mut n = self.node();
            let Some(p) = n.by_node(node) else {
                return Ok(None);
            };
            let fs = p.fs.map(|fs| format!("{} filesystem", fs::probe_name(fs)));
            let data = p
                .part
                .size
                .saturating_sub(crate::luks2::consts::DEFAULT_DATA_OFFSET);
            p.device.edit(|s| {
                s.header = None;
                s.foreign = fs;
                s.log.push("decrypted in place".into());
            });
            drop(n);
            self.count(|c| c.decryptions += 1);
            Ok(Some(DecryptOutcome {
                volume: spec.name.clone(),
                device: node.display().to_string(),
                header_file: crate::decrypt::header_file(dir, &spec.name)
                    .display()
                    .to_string(),
                steps: crate::decrypt::Step::ALL.to_vec(),
                applied: true,
                data_mib: data >> 20,
                eta_seconds: None,
                rate: None,
                kdf_runs: kdf_runs + 1,
                online: None,
            }))
        })
    }
}

/// A tool's failure on `node`, as the real tool would report it.
fn tool_failed(tool: &str, node: &Path, reason: &str) -> FsError {
    FsError::Tool {
        tool: tool.into(),
        device: node.display().to_string(),
        reason: reason.into(),
    }
}
