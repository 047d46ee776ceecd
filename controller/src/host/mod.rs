//! The host seam: what the boot asks of the machine besides a LUKS2
//! header — reading the disks, attaching partitions, writing partition
//! tables and META, wiping, making, mounting, growing and moving
//! filesystems, making and enabling swap. [`RealHost`] does it (sysfs,
//! GPT, loop devices, mkfs, mkswap,
//! mount(2)); [`SimHost`] is its simulated twin for unit tests of the whole
//! boot: disks in memory, a [`crate::device::SimDevice`] per partition, and
//! a count of everything it was asked to do (built for tests, or with the
//! `sim` feature, as the simulated device is).
//!
//! The device seam ([`crate::device::LuksDevice`]) stays the one way to a
//! LUKS2 header: [`Host::luks`] hands out the host's device for a node.

mod real;
#[cfg(any(test, feature = "sim"))]
mod sim;

pub use real::RealHost;
#[cfg(any(test, feature = "sim"))]
pub use sim::{HostCounts, SimHost, SimPartition};

use crate::decrypt::{DecryptError, DecryptOutcome, RunData};
use crate::device::{Access, DeviceError, LuksDevice};
use crate::node::disks::{DiskError, OpenPartition, Partition};
use crate::node::fs::{FsError, MountOptions};
use crate::node::meta::{Meta, MetaError};
use crate::node::snapshot::NodeSnapshot;
use crate::provision::{Action, TableError};
use crate::volume::VolumeSpec;
use api_types::{Encryption, FilesystemType};
use futures_util::future::BoxFuture;
use providers::ProviderEnv;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How much of a partition a wipe zeroes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeMode {
    /// The LUKS2 metadata area (at least the first 32 MiB) and the last MiB.
    Fast,
    /// The whole partition.
    Full,
}

impl WipeMode {
    /// Its name in META's pending-wipe record.
    pub fn name(self) -> &'static str {
        match self {
            WipeMode::Fast => "fast",
            WipeMode::Full => "full",
        }
    }

    /// The mode a pending-wipe record names.
    pub fn from_name(name: &str) -> Option<Self> {
        [WipeMode::Fast, WipeMode::Full]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// The machine, as the boot and the day-2 operations use it.
pub trait Host: Send + Sync {
    /// Reads the facts of `given` disks (every disk of the system when
    /// empty): sysfs, each GPT once.
    fn snapshot(&self, given: &[PathBuf]) -> NodeSnapshot;

    /// Attaches a partition: its device node, held while the handle lives.
    fn attach(&self, part: &Partition) -> Result<OpenPartition, DiskError>;

    /// The LUKS2 device at `node` (checked against `expect` on every write).
    fn luks(
        &self,
        node: &Path,
        access: Access,
        expect: Option<Encryption>,
    ) -> Result<Arc<dyn LuksDevice>, DeviceError>;

    /// Makes one partition-table change.
    fn write_table(&self, action: &Action) -> Result<(), TableError>;

    /// Reads META from the partition at `node`.
    fn read_meta(&self, node: &Path) -> Result<Meta, MetaError>;

    /// Writes META (both copies) to the partition at `node`.
    fn write_meta(&self, node: &Path, m: &Meta) -> Result<(), MetaError>;

    /// Zeroes the partition at `node` (`size` bytes) as `mode` says;
    /// returns the bytes zeroed.
    fn wipe(&self, node: &Path, size: u64, mode: WipeMode) -> std::io::Result<u64>;

    /// The filesystem signature at `node`, if any (`ext4`, `xfs`, …).
    fn probe_fs(&self, node: &Path) -> std::io::Result<Option<String>>;

    /// Makes a filesystem on `node`, labelled `label`.
    fn mkfs(&self, node: &Path, fs: FilesystemType, label: &str) -> Result<(), FsError>;

    /// Makes swap on `node` (`mkswap`), labelled `label`.
    fn make_swap(&self, node: &Path, label: &str) -> Result<(), FsError>;

    /// Enables swap on `node` (`swapon`).
    fn swap_on(&self, node: &Path) -> Result<(), FsError>;

    /// Mounts `node` at `target` (made if missing).
    fn mount(
        &self,
        node: &Path,
        target: &Path,
        fs: FilesystemType,
        options: MountOptions,
    ) -> Result<(), FsError>;

    /// Grows the filesystem mounted at `target` to its device; its size in
    /// bytes before and after.
    fn grow(&self, node: &Path, target: &Path, fs: FilesystemType) -> Result<(u64, u64), FsError>;

    /// Moves the mount at `from` to `to`.
    fn move_mount(&self, from: &Path, to: &Path) -> Result<(), FsError>;

    /// Unmounts `target`.
    fn unmount(&self, target: &Path) -> Result<(), FsError>;

    /// Whether the directory `dir` exists and holds anything: a mount there
    /// would hide it.
    fn holds_files(&self, dir: &Path) -> bool;

    /// Makes the directory `path` (and its parents) when missing (0755).
    fn make_dir(&self, path: &Path) -> std::io::Result<()>;

    /// The device the active dm-crypt mapping `name` maps (`/dev/vda3`),
    /// when there is one: a volume opened before this boot (by the
    /// initramfs).
    fn mapping(&self, name: &str) -> Option<PathBuf>;

    /// Decrypts the volume `spec` on `node` in place, its header file in
    /// `dir` (`crate::decrypt`): every step left, resumed where a cut
    /// stopped. `None` when there is nothing to decrypt (no LUKS2 header,
    /// no header file).
    fn decrypt_in_place<'a>(
        &'a self,
        spec: &'a VolumeSpec,
        node: &'a Path,
        dir: &'a Path,
        env: &'a ProviderEnv,
        data: RunData<'a>,
    ) -> BoxFuture<'a, Result<Option<DecryptOutcome>, DecryptError>>;
}

pub use crate::node::disks::same_device;

/// A host shared by the boot's tasks.
pub type HostHandle = Arc<dyn Host>;

/// Sets (or, with `None`, deletes) one META record; the others are kept.
pub fn update_meta(
    host: &dyn Host,
    node: &Path,
    tag: u32,
    value: Option<Vec<u8>>,
) -> Result<(), MetaError> {
    let mut m = host.read_meta(node)?;
    m.set(tag, value);
    host.write_meta(node, &m)
}

/// Attaches the partition labelled `label`, if there is one.
pub fn attach_labelled(
    host: &dyn Host,
    parts: &std::collections::BTreeMap<String, Partition>,
    label: &str,
) -> Result<Option<OpenPartition>, DiskError> {
    parts.get(label).map(|p| host.attach(p)).transpose()
}
