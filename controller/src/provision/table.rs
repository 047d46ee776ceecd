//! Writing partition tables so that a power cut at any point leaves a
//! valid one. The `gpt` crate computes the new table; its writes are staged
//! and then applied copy by copy: the backup array, then its header (at the
//! disk's end), synced; then the primary array, its header and the
//! protective MBR, synced. Each header's CRC covers its array, so a copy is
//! all-or-nothing, and while one copy is being written the other is
//! complete and on stable storage: cut during the backup, the old primary
//! is intact; cut during the primary, the new backup is, and a reader (the
//! kernel, libblkid, `gpt`, `sgdisk`) falls back to it. The sync between
//! the copies is what keeps a volatile write cache from putting both in
//! flight at once.

use super::layout::Action;
use crate::parttable::staged::Staged;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

/// A partition-table write that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} on {disk}: {source}")]
pub struct TableError {
    /// The step.
    pub what: &'static str,
    /// The disk.
    pub disk: String,
    /// Why.
    pub source: TableCause,
}

/// What failed under a [`TableError`].
#[derive(Debug, thiserror::Error)]
pub enum TableCause {
    /// The table on the disk is one volctl does not read.
    #[error(transparent)]
    Read(#[from] crate::parttable::read::GptReadError),
    /// The disk could not be opened or written.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The `gpt` crate refused the table or the change.
    #[error(transparent)]
    Gpt(#[from] gpt::GptError),
    /// The protective MBR could not be written.
    #[error(transparent)]
    Mbr(#[from] gpt::mbr::MBRError),
    /// The partition to grow is not in the table.
    #[error("no such partition")]
    NoSuchPartition,
    /// Every entry of the table is taken.
    #[error("the GPT has no free entry")]
    NoFreeEntry,
}

/// The GPT type of every partition volctl makes: Linux filesystem data.
const LINUX_DATA: gpt::partition_types::Type = gpt::partition_types::LINUX_FS;

/// Applies one action.
pub fn apply(action: &Action) -> Result<(), TableError> {
    apply_until(action, None)
}

/// Applies `action`, stopping after `cut` staged writes (a power cut, for
/// the tests; `None` in use).
pub(crate) fn apply_until(action: &Action, cut: Option<usize>) -> Result<(), TableError> {
    match action {
        Action::CreateTable { disk } | Action::RepairTable { disk } => {
            write_table(disk, cut, |_| Ok(()))
        }
        Action::Create {
            disk,
            label,
            offset,
            size,
        } => {
            let mut number = 0;
            write_table(disk, cut, |g| {
                number = add(g, label, *offset, *size)?;
                Ok(())
            })?;
            reread(disk, label, number, *offset, *size, BLKPG_ADD_PARTITION);
            Ok(())
        }
        Action::Grow {
            disk,
            label,
            number,
            offset,
            size,
        } => {
            write_table(disk, cut, |g| resize(g, *number, *size))?;
            reread(disk, label, *number, *offset, *size, BLKPG_RESIZE_PARTITION);
            Ok(())
        }
    }
}

/// Moves the end of partition `number` so that it is `size` bytes long.
fn resize(g: &mut gpt::GptDisk<Staged>, number: u32, size: u64) -> Result<(), TableCause> {
    let lb: u64 = (*g.logical_block_size()).into();
    let mut parts = g.take_partitions();
    let p = parts.get_mut(&number).ok_or(TableCause::NoSuchPartition)?;
    p.last_lba = p.first_lba + size / lb - 1;
    Ok(g.update_partitions(parts)?)
}

/// Adds the partition; returns its number.
fn add(
    g: &mut gpt::GptDisk<Staged>,
    label: &str,
    offset: u64,
    size: u64,
) -> Result<u32, TableCause> {
    let lb: u64 = (*g.logical_block_size()).into();
    let id = g.find_next_partition_id().ok_or(TableCause::NoFreeEntry)?;
    Ok(g.add_partition_at(label, id, offset / lb, size / lb, LINUX_DATA, 0)?)
}

/// Opens (or, for a blank disk, creates) the GPT of `disk`, lets `change`
/// edit it, and writes it in the safe order. A table whose primary copy a
/// power cut damaged is read from its backup and written whole again; a
/// GPT without an MBR in block 0 (a cut before the protective MBR landed)
/// gets its protective MBR, without which the kernel sees no table.
fn write_table(
    disk: &Path,
    cut: Option<usize>,
    change: impl FnOnce(&mut gpt::GptDisk<Staged>) -> Result<(), TableCause>,
) -> Result<(), TableError> {
    let err = |what: &'static str| {
        move |e: TableCause| TableError {
            what,
            disk: disk.display().to_string(),
            source: e,
        }
    };
    crate::parttable::read::check(disk).map_err(|e| err("read the GPT")(e.into()))?;
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(disk)
            .map(Staged::new)
            .map_err(|e| err("open")(e.into()))
    };
    let mut g = match crate::parttable::read::read(open()?, true) {
        Ok((g, _)) => g,
        Err(_) => gpt::GptConfig::new()
            .writable(true)
            .create_from_device(open()?, None)
            .map_err(|e| err("make a GPT")(e.into()))?,
    };
    change(&mut g).map_err(err("add the partition"))?;
    g.write_inplace()
        .map_err(|e| err("write the GPT")(e.into()))?;
    let mut staged = g.take_device();
    if !staged.has_mbr() {
        let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
            u32::try_from(staged.disk_bytes() / 512 - 1).unwrap_or(u32::MAX),
        );
        mbr.overwrite_lba0(&mut staged)
            .map_err(|e| err("write the protective MBR")(e.into()))?;
    }
    staged
        .commit(cut)
        .map_err(|e| err("write the GPT")(e.into()))
}

/// Tells the kernel about a new partition on a block device, with the
/// `BLKPG` ioctl, which works while other partitions of the disk are in use
/// (re-reading the whole table would not). Image files need nothing.
fn reread(disk: &Path, label: &str, number: u32, offset: u64, size: u64, op: libc::c_int) {
    use std::os::unix::fs::FileTypeExt;
    let is_block = std::fs::metadata(disk).is_ok_and(|m| m.file_type().is_block_device());
    if !is_block {
        return;
    }
    if let Err(e) = blkpg(disk, op, number, offset, size) {
        tracing::warn!(disk = %disk.display(), label, "the kernel did not take the new partition ({e}); it appears after a reboot");
    }
}

/// `struct blkpg_partition` of `<linux/blkpg.h>`.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg`.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

const BLKPG: libc::c_ulong = 0x1269;
const BLKPG_ADD_PARTITION: libc::c_int = 1;
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;

fn blkpg(disk: &Path, op: libc::c_int, number: u32, offset: u64, size: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let f = File::open(disk)?;
    let too_big = || io::Error::from(io::ErrorKind::InvalidInput);
    let mut part = BlkpgPartition {
        start: i64::try_from(offset).map_err(|_| too_big())?,
        length: i64::try_from(size).map_err(|_| too_big())?,
        pno: libc::c_int::try_from(number).map_err(|_| too_big())?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let mut arg = BlkpgIoctlArg {
        op,
        flags: 0,
        datalen: libc::c_int::try_from(std::mem::size_of::<BlkpgPartition>())
            .map_err(|_| too_big())?,
        data: std::ptr::addr_of_mut!(part).cast(),
    };
    // SAFETY: BLKPG with a valid blkpg_ioctl_arg pointing at a live
    // blkpg_partition, both laid out as the kernel's structs.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), BLKPG, std::ptr::addr_of_mut!(arg)) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::units::MIB;

    /// The partition names `sgdisk -p` lists (it falls back to the backup
    /// GPT when the primary is damaged, as the kernel does).
    fn labels(img: &Path) -> Vec<String> {
        let out = std::process::Command::new("sgdisk")
            .arg("-p")
            .arg(img)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip_while(|l| !l.starts_with("Number"))
            .skip(1)
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect()
    }

    fn image(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        File::create(&p).unwrap().set_len(64 * MIB).unwrap();
        p
    }

    fn create(disk: &Path, label: &str, offset: u64) -> Action {
        Action::Create {
            disk: disk.to_path_buf(),
            label: label.into(),
            offset,
            size: 8 * MIB,
        }
    }

    #[test]
    fn a_power_cut_at_every_write_leaves_the_old_or_the_new_table() {
        let dir = tempfile::tempdir().unwrap();
        let mut cuts_seen = 0;
        for cut in 0..16 {
            let img = image(dir.path(), &format!("d{cut}.img"));
            apply(&Action::CreateTable { disk: img.clone() }).unwrap();
            apply(&create(&img, "first", MIB)).unwrap();
            apply_until(&create(&img, "second", 9 * MIB), Some(cut)).unwrap();
            let got = labels(&img);
            assert!(
                got == ["first"] || got == ["first", "second"],
                "cut after {cut} writes: {got:?}"
            );
            if got == ["first", "second"] && cuts_seen == 0 {
                cuts_seen = cut;
            }
        }
        assert!(cuts_seen > 0, "some cut points must leave the old table");
    }

    #[test]
    fn a_new_table_is_one_sgdisk_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let img = image(dir.path(), "t.img");
        apply(&Action::CreateTable { disk: img.clone() }).unwrap();
        apply(&create(&img, "u-data", MIB)).unwrap();
        let v = std::process::Command::new("sgdisk")
            .arg("-v")
            .arg(&img)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&v.stdout).contains("No problems found"),
            "{}",
            String::from_utf8_lossy(&v.stdout)
        );
        assert_eq!(labels(&img), ["u-data"]);
    }
}
