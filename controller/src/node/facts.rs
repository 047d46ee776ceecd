//! What volctl knows about a disk: sysfs facts (as Talos's `Disk`
//! resource names them, so selectors read the same), its GPT partitions and
//! free ranges.

use crate::node::disks::{self, Partition};
use crate::parttable::read::{GptReadError, TableCopy};
use api_types::cel::{Bindings, Value};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Partitions are aligned to this, as every modern partitioner does.
pub const ALIGN: u64 = crate::units::MIB;

/// One disk: block device or image file.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// `/dev/vdb`, or the image file.
    pub dev_path: PathBuf,
    /// Bytes.
    pub size: u64,
    /// Logical sector size.
    pub sector_size: u64,
    /// Optimal I/O size (0 when unknown).
    pub io_size: u64,
    /// Read-only device.
    pub readonly: bool,
    /// An optical drive.
    pub cdrom: bool,
    /// Spinning.
    pub rotational: bool,
    /// Removable media (a USB stick, an SD card). Shown by `volctl disks`;
    /// not a selector field (Talos's `disk` has none).
    pub removable: bool,
    /// Model, serial, modalias, WWID as sysfs reports them.
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Kernel modalias.
    pub modalias: String,
    /// World-wide ID.
    pub wwid: String,
    /// `nvme`, `sata`, `scsi`, `usb`, `virtio`, `mmc`, or empty.
    pub transport: String,
    /// sysfs bus path.
    pub bus_path: String,
    /// `/dev/disk/by-*` links to it.
    pub symlinks: Vec<String>,
    /// Whether it holds META or STATE (the disk the node booted from).
    pub system_disk: bool,
    /// The GPT, when it has one.
    pub table: Option<Table>,
    /// Without a GPT: what the disk holds (`None` when blank: its first and
    /// last MiB are zeros and no signature is found).
    pub contents: Option<String>,
}

/// A disk's GPT: partitions and free ranges.
#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// Partitions in number order.
    pub partitions: Vec<Partition>,
    /// Free aligned ranges `(offset, length)` in bytes, in disk order.
    pub free: Vec<(u64, u64)>,
    /// The primary copy is damaged (a power cut while it was written):
    /// the table was read from its backup, and provisioning writes it
    /// whole again.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub primary_damaged: bool,
}

impl Disk {
    /// The CEL bindings a disk selector sees: `disk` and `system_disk`.
    pub fn bindings(&self) -> Bindings {
        let s = |v: &str| Value::String(v.to_string());
        let fields: BTreeMap<String, Value> = [
            ("dev_path", s(&self.dev_path.display().to_string())),
            ("size", Value::Uint(self.size)),
            ("pretty_size", s(&pretty(self.size))),
            ("io_size", Value::Uint(self.io_size)),
            ("sector_size", Value::Uint(self.sector_size)),
            ("readonly", Value::Bool(self.readonly)),
            ("cdrom", Value::Bool(self.cdrom)),
            ("rotational", Value::Bool(self.rotational)),
            ("model", s(&self.model)),
            ("serial", s(&self.serial)),
            ("modalias", s(&self.modalias)),
            ("wwid", s(&self.wwid)),
            ("uuid", s("")),
            ("bus_path", s(&self.bus_path)),
            ("sub_system", s("/sys/class/block")),
            ("transport", s(&self.transport)),
            (
                "symlinks",
                Value::List(self.symlinks.iter().map(|l| s(l)).collect()),
            ),
            ("secondary_disks", Value::List(vec![])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Bindings::from([
            ("disk".to_string(), Value::Message(fields)),
            ("system_disk".to_string(), Value::Bool(self.system_disk)),
        ])
    }
}

/// `10 GB`, as Talos prints sizes (powers of 1000).
pub fn pretty(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes;
    let mut i = 0;
    while v >= 1000 && i < UNITS.len() - 1 {
        v /= 1000;
        i += 1;
    }
    format!("{v} {}", UNITS[i])
}

/// Reads the facts of each disk, in `dev_path` order.
pub fn discover(paths: &[PathBuf]) -> std::io::Result<Vec<Disk>> {
    let mut out = paths
        .iter()
        .map(|p| disk(p))
        .collect::<std::io::Result<Vec<_>>>()?;
    out.sort_by(|a, b| a.dev_path.cmp(&b.dev_path));
    Ok(out)
}

/// Reads the facts of one disk (its GPT opened once).
pub fn disk(path: &Path) -> std::io::Result<Disk> {
    // One read of the GPT gives both the partitions and the usable range.
    let read = crate::parttable::read::open(path);
    // A GPT volctl does not read: named as such, never written over.
    let unreadable = match &read {
        Err(e @ (GptReadError::EntrySize(_) | GptReadError::TooManyEntries(_))) => {
            Some(format!("a GPT volctl does not read: {e}"))
        }
        _ => None,
    };
    let table = read.ok().map(|(g, copy)| {
        let parts = disks::partitions_in(path, &g);
        table(&parts, usable_range(path, &g, copy))
    });
    let system_disk = table.as_ref().is_some_and(Table::holds_system_volumes);
    let mut d = match sysfs_dir(path) {
        Some(sys) => from_sysfs(path, &sys),
        None => from_file(path)?,
    };
    d.system_disk = system_disk;
    if table.is_none() {
        d.contents = match unreadable {
            Some(why) => Some(why),
            None => crate::device::probe_foreign(path)?,
        };
    }
    d.table = table;
    Ok(d)
}

/// An image file: only its size is known.
fn from_file(path: &Path) -> std::io::Result<Disk> {
    Ok(Disk::bare(path, std::fs::metadata(path)?.len()))
}

impl Disk {
    /// A disk of which only the path and size are known (an image file),
    /// no table read yet.
    pub(crate) fn bare(path: &Path, size: u64) -> Disk {
        Disk {
            dev_path: path.to_path_buf(),
            size,
            sector_size: 512,
            io_size: 0,
            readonly: false,
            cdrom: false,
            rotational: false,
            removable: false,
            model: String::new(),
            serial: String::new(),
            modalias: String::new(),
            wwid: String::new(),
            transport: String::new(),
            bus_path: String::new(),
            symlinks: vec![],
            system_disk: false,
            table: None,
            contents: None,
        }
    }
}

/// `/sys/class/block/<name>` of a block device node.
fn sysfs_dir(path: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.file_type().is_block_device() {
        return None;
    }
    let name = std::fs::canonicalize(path).ok()?.file_name()?.to_owned();
    let dir = Path::new("/sys/class/block").join(name);
    dir.exists().then_some(dir)
}

fn from_sysfs(path: &Path, sys: &Path) -> Disk {
    let read = |rel: &str| {
        std::fs::read_to_string(sys.join(rel))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let num = |rel: &str| read(rel).parse::<u64>().unwrap_or(0);
    let real = std::fs::canonicalize(sys).unwrap_or_default();
    let name = sys
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    Disk {
        dev_path: path.to_path_buf(),
        size: num("size") * 512,
        sector_size: num("queue/logical_block_size").max(512),
        io_size: num("queue/optimal_io_size"),
        readonly: read("ro") == "1",
        cdrom: name.starts_with("sr"),
        rotational: read("queue/rotational") == "1",
        removable: read("removable") == "1",
        model: read("device/model"),
        serial: read("device/serial"),
        modalias: read("device/modalias"),
        wwid: if read("wwid").is_empty() {
            read("device/wwid")
        } else {
            read("wwid")
        },
        transport: transport(&name, &real.display().to_string()),
        bus_path: real.display().to_string(),
        symlinks: symlinks(path),
        system_disk: false,
        table: None,
        contents: None,
    }
}

/// The transport, from the device name and its sysfs path.
fn transport(name: &str, sys_path: &str) -> String {
    let t = if name.starts_with("nvme") {
        "nvme"
    } else if name.starts_with("vd") || sys_path.contains("/virtio") {
        "virtio"
    } else if name.starts_with("mmcblk") {
        "mmc"
    } else if sys_path.contains("/usb") {
        "usb"
    } else if sys_path.contains("/ata") {
        "sata"
    } else if name.starts_with("sd") {
        "scsi"
    } else {
        ""
    };
    t.to_string()
}

/// Every `/dev/disk/by-*/…` link that resolves to `path`.
fn symlinks(path: &Path) -> Vec<String> {
    let Ok(target) = std::fs::canonicalize(path) else {
        return vec![];
    };
    let mut out = Vec::new();
    for kind in ["by-id", "by-path", "by-diskseq", "by-uuid", "by-label"] {
        let Ok(rd) = std::fs::read_dir(Path::new("/dev/disk").join(kind)) else {
            continue;
        };
        for e in rd.flatten() {
            if std::fs::canonicalize(e.path()).is_ok_and(|t| t == target) {
                out.push(e.path().display().to_string());
            }
        }
    }
    out.sort();
    out
}

impl Table {
    /// A table whose usable bytes are `[first, last)`, read from its
    /// primary copy (what the simulated host keeps).
    #[cfg(any(test, feature = "sim"))]
    pub(crate) fn of(parts: &[Partition], first: u64, last: u64) -> Table {
        table(parts, Some((first, last, TableCopy::Primary)))
    }

    /// Whether it holds META or STATE: the disk the node booted from.
    pub(crate) fn holds_system_volumes(&self) -> bool {
        self.partitions
            .iter()
            .any(|p| p.label == "META" || p.label == "STATE")
    }
}

/// The partitions of a disk and the aligned free ranges between them.
fn table(parts: &[Partition], usable: Option<(u64, u64, TableCopy)>) -> Table {
    let (first, last, copy) = usable.unwrap_or((ALIGN, 0, TableCopy::Primary));
    let mut used: Vec<(u64, u64)> = parts
        .iter()
        .map(|p| (p.offset, p.offset + p.size))
        .collect();
    used.sort_unstable();
    let mut free = Vec::new();
    let mut at = first;
    for (start, end) in used.into_iter().chain([(last, last)]) {
        let (a, b) = (align_up(at), align_down(start.min(last)));
        if b > a {
            free.push((a, b - a));
        }
        at = at.max(end);
    }
    Table {
        partitions: parts.to_vec(),
        free,
        primary_damaged: copy == TableCopy::Backup,
    }
}

/// First and one-past-last usable byte of a GPT disk, as the table will be
/// once its backup sits at the device's end (a grown disk gains the space),
/// and the copy of the table read.
fn usable_range<D: gpt::DiskDevice>(
    path: &Path,
    g: &gpt::GptDisk<D>,
    copy: TableCopy,
) -> Option<(u64, u64, TableCopy)> {
    let lb: u64 = (*g.logical_block_size()).into();
    let h = g.header();
    let len = std::fs::File::open(path)
        .and_then(|mut f| std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)))
        .ok()?;
    // Backup header (1 LBA) and its partition array, as the primary's.
    let array = (u64::from(h.num_parts) * u64::from(h.part_size)).div_ceil(lb);
    let last = (len / lb).saturating_sub(1 + array);
    // `last` follows the device: beyond a table made for a smaller disk,
    // and short of one that claims sectors past the device's end.
    Some((h.first_usable * lb, last * lb, copy))
}

/// Rounds up to the alignment.
pub fn align_up(v: u64) -> u64 {
    v.div_ceil(ALIGN) * ALIGN
}

/// Rounds down to the alignment.
pub fn align_down(v: u64) -> u64 {
    v / ALIGN * ALIGN
}
