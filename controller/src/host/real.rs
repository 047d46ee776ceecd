//! The machine itself: sysfs and GPT reads, loop devices over image
//! files, libcryptsetup, staged GPT writes, META, mkfs and mount(2).

use super::{Host, WipeMode};
use crate::converge::Mode;
use crate::decrypt::{DecryptError, DecryptOutcome, Decryption, RunData};
use crate::device::{self, Access, DeviceError, LuksDevice};
use crate::luks2::header::{self, Probe};
use crate::node::disks::{DiskError, OpenPartition, Partition};
use crate::node::fs::{self, FsError, MountOptions};
use crate::node::meta::{self, Meta, MetaError};
use crate::node::snapshot::NodeSnapshot;
use crate::node::swap;
use crate::provision::{self, Action, TableError};
use crate::units::MIB;
use crate::volume::VolumeSpec;
use api_types::{Encryption, FilesystemType};
use futures_util::future::BoxFuture;
use providers::ProviderEnv;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The host volctl runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl Host for RealHost {
    fn snapshot(&self, given: &[PathBuf]) -> NodeSnapshot {
        NodeSnapshot::take(given)
    }

    fn attach(&self, part: &Partition) -> Result<OpenPartition, DiskError> {
        OpenPartition::open(part)
    }

    fn luks(
        &self,
        node: &Path,
        access: Access,
        expect: Option<Encryption>,
    ) -> Result<Arc<dyn LuksDevice>, DeviceError> {
        device::open(node, access, expect)
    }

    fn write_table(&self, action: &Action) -> Result<(), TableError> {
        provision::apply(action)
    }

    fn read_meta(&self, node: &Path) -> Result<Meta, MetaError> {
        meta::read(node)
    }

    fn write_meta(&self, node: &Path, m: &Meta) -> Result<(), MetaError> {
        meta::write(node, m)
    }

    fn wipe(&self, node: &Path, size: u64, mode: WipeMode) -> std::io::Result<u64> {
        wipe(node, size, mode)
    }

    fn probe_fs(&self, node: &Path) -> std::io::Result<Option<String>> {
        device::probe_filesystem(node)
    }

    fn mkfs(&self, node: &Path, fs: FilesystemType, label: &str) -> Result<(), FsError> {
        fs::mkfs(node, fs, label)
    }

    fn make_swap(&self, node: &Path, label: &str) -> Result<(), FsError> {
        swap::make(node, label)
    }

    fn swap_on(&self, node: &Path) -> Result<(), FsError> {
        swap::on(node)
    }

    fn mount(
        &self,
        node: &Path,
        target: &Path,
        fs: FilesystemType,
        options: MountOptions,
    ) -> Result<(), FsError> {
        fs::mount(node, target, fs, options)
    }

    fn grow(&self, node: &Path, target: &Path, fs: FilesystemType) -> Result<(u64, u64), FsError> {
        fs::grow(node, target, fs)
    }

    fn move_mount(&self, from: &Path, to: &Path) -> Result<(), FsError> {
        fs::move_mount(from, to)
    }

    fn unmount(&self, target: &Path) -> Result<(), FsError> {
        fs::umount(target)
    }

    fn mapping(&self, name: &str) -> Option<PathBuf> {
        mapped_device(name)
    }

    fn holds_files(&self, dir: &Path) -> bool {
        std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
    }

    fn decrypt_in_place<'a>(
        &'a self,
        spec: &'a VolumeSpec,
        node: &'a Path,
        dir: &'a Path,
        env: &'a ProviderEnv,
        data: RunData<'a>,
    ) -> BoxFuture<'a, Result<Option<DecryptOutcome>, DecryptError>> {
        Box::pin(async move {
            let job = Decryption::new(spec, node, dir, env);
            if !job.pending()? {
                return Ok(None);
            }
            job.run_data(Mode::Apply, data).await.map(Some)
        })
    }

    fn make_dir(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
    }
}

/// The device under `/dev/mapper/NAME`: the one entry of its `slaves` in
/// sysfs (`/dev/mapper/NAME` → `/dev/dm-3` → `/sys/block/dm-3/slaves/vda3`).
fn mapped_device(name: &str) -> Option<PathBuf> {
    let dm = std::fs::canonicalize(Path::new("/dev/mapper").join(name)).ok()?;
    let slaves = Path::new("/sys/block").join(dm.file_name()?).join("slaves");
    let slave = std::fs::read_dir(slaves).ok()?.flatten().next()?;
    Some(Path::new("/dev").join(slave.file_name()))
}

/// The byte ranges a wipe of a `size`-byte partition zeroes: everything,
/// or (fast) the LUKS2 metadata up to `data_offset` (at least 32 MiB) and
/// the last MiB.
pub(super) fn wipe_ranges(size: u64, data_offset: u64, mode: WipeMode) -> Vec<(u64, u64)> {
    let mut ranges = match mode {
        WipeMode::Full => vec![(0, size)],
        WipeMode::Fast => {
            let head = (32 * MIB).max(data_offset).min(size);
            vec![(0, head), (size.saturating_sub(MIB).max(head), size)]
        }
    };
    ranges.retain(|(a, b)| b > a);
    ranges
}

/// Zeroes the partition at `path` (of `size` bytes); returns bytes zeroed.
fn wipe(path: &Path, size: u64, mode: WipeMode) -> std::io::Result<u64> {
    // The LUKS2 data segment starts after the keyslot area: zero at least
    // up to it, so no keyslot survives.
    let data_offset = match header::read(path) {
        Ok(Probe::Luks2(h)) => h
            .json
            .segments
            .values()
            .filter_map(|s| s.offset.parse::<u64>().ok())
            .min()
            .unwrap_or(0),
        _ => 0,
    };
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 1 << 20]; // one MiB
    let mut total = 0;
    for (start, end) in wipe_ranges(size, data_offset, mode) {
        f.seek(SeekFrom::Start(start))?;
        let mut at = start;
        while at < end {
            let n = (end - at).min(MIB) as usize;
            f.write_all(&zeros[..n])?;
            at += n as u64;
        }
        total += end - start;
    }
    f.sync_all()?;
    Ok(total)
}
