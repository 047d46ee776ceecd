//! The pure decision: which partitions to create where. No I/O; every rule
//! of placement lives here and is unit-tested on made-up disks.
//!
//! - requests are placed in order (system volumes first, then user volumes
//!   by name), so the layout is reproducible;
//! - a volume whose label exists on any disk is not placed again;
//! - candidates are the disks in `dev_path` order whose selector is true
//!   (system volumes without a selector: the system disk), that have a GPT
//!   or are blank (a blank disk gets a new GPT), and a free aligned range of
//!   at least `minSize`;
//! - the size is `maxSize` resolved on that disk, at least `minSize`, at
//!   most the free range; a volume without `maxSize` takes the range but
//!   leaves room for the minimum of the later requests on the same disk;
//! - nothing existing is moved, shrunk or written over.

use crate::node::facts::{align_down, Disk, ALIGN};
use api_types::cel::Selector;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How large a volume may grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxSize {
    /// All of the free range.
    Fill,
    /// This many bytes.
    Bytes(u64),
    /// This percentage of the disk.
    Percent(u64),
    /// All but this many bytes at the end of the disk.
    LeaveBytes(u64),
    /// All but this percentage of the disk at its end.
    LeavePercent(u64),
}

/// One volume that needs a partition.
#[derive(Debug, Clone)]
pub struct Request {
    /// `UserVolumeConfig "data"`, for messages.
    pub document: String,
    /// GPT partition name.
    pub label: String,
    /// Which disks; `None` means the system disk.
    pub selector: Option<Selector>,
    /// Smallest acceptable size.
    pub min: u64,
    /// Largest size.
    pub max: MaxSize,
    /// Grow into free space that follows the partition (Talos `grow`).
    pub grow: bool,
}

/// One change to a partition table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "kebab-case")]
pub enum Action {
    /// Write an empty GPT on a blank disk.
    CreateTable {
        /// The disk.
        disk: PathBuf,
    },
    /// Write the GPT again, whole, from its backup copy: a power cut
    /// damaged the primary one.
    RepairTable {
        /// The disk.
        disk: PathBuf,
    },
    /// Grow a partition into the free space that follows it.
    Grow {
        /// The disk.
        disk: PathBuf,
        /// GPT name.
        label: String,
        /// Partition number.
        number: u32,
        /// Byte offset (unchanged).
        offset: u64,
        /// New size in bytes.
        size: u64,
    },
    /// Add a partition.
    Create {
        /// The disk.
        disk: PathBuf,
        /// GPT name.
        label: String,
        /// Byte offset (aligned).
        offset: u64,
        /// Bytes (aligned).
        size: u64,
    },
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::CreateTable { disk } => write!(f, "create a GPT on blank {}", disk.display()),
            Action::RepairTable { disk } => write!(
                f,
                "repair the GPT on {} from its backup copy (the primary one is damaged)",
                disk.display()
            ),
            Action::Grow {
                disk, label, size, ..
            } => write!(
                f,
                "grow partition {label} on {} to {} MiB",
                disk.display(),
                size / ALIGN
            ),
            Action::Create {
                disk,
                label,
                offset,
                size,
            } => write!(
                f,
                "create partition {label} on {} at {} MiB, {} MiB",
                disk.display(),
                offset / ALIGN,
                size / ALIGN
            ),
        }
    }
}

/// Why a volume could not be placed: each disk considered and why it was
/// skipped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{document}: no disk has room for partition {label}:{}", list(.considered))]
pub struct NoRoom {
    /// The document.
    pub document: String,
    /// The label.
    pub label: String,
    /// `(disk, why not)`.
    pub considered: Vec<(PathBuf, Unfit)>,
}

/// Why a disk does not take a partition.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unfit {
    /// The disk selector could not be evaluated.
    #[error("selector failed: {0}")]
    SelectorFailed(String),
    /// No selector, and this is not the system disk.
    #[error("not the system disk (it holds no META or STATE)")]
    NotSystemDisk,
    /// The selector is false for this disk.
    #[error("the disk selector is false")]
    SelectorFalse,
    /// The disk holds something volctl does not write over.
    #[error("{0}")]
    Refused(String),
    /// No free range at all.
    #[error("no free space")]
    NoFreeSpace,
    /// The largest free range is below `minSize`.
    #[error("its largest free range is {largest_mib} MiB, less than minSize {min_mib} MiB")]
    TooSmall {
        /// The largest free range.
        largest_mib: u64,
        /// The volume's minimum.
        min_mib: u64,
    },
}

fn list(c: &[(PathBuf, Unfit)]) -> String {
    if c.is_empty() {
        return " no disk was given".into();
    }
    c.iter()
        .map(|(d, why)| format!("\n  {}: {why}", d.display()))
        .collect()
}

/// A disk as planning sees it: free ranges left, and whether it needs a table.
struct Space<'a> {
    disk: &'a Disk,
    free: Vec<(u64, u64)>,
    /// A blank disk that gets its GPT with its first partition.
    needs_table: bool,
    /// Why volctl may not write here (no GPT and not blank, or read-only).
    refused: Option<String>,
}

/// Places every request; the actions in order, or the first request that
/// does not fit.
pub fn plan(requests: &[Request], disks: &[Disk]) -> Result<Vec<Action>, NoRoom> {
    let mut spaces: Vec<Space> = disks.iter().map(space).collect();
    let existing: Vec<&str> = disks
        .iter()
        .filter_map(|d| d.table.as_ref())
        .flat_map(|t| t.partitions.iter().map(|p| p.label.as_str()))
        .collect();
    let mut actions = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        if existing.contains(&r.label.as_str()) {
            actions.extend(r.grow.then(|| grow(r, disks)).flatten());
            continue;
        }
        let later: Vec<&Request> = requests[i + 1..]
            .iter()
            .filter(|l| !existing.contains(&l.label.as_str()))
            .collect();
        actions.extend(place(r, &later, &mut spaces)?);
    }
    Ok(repairs(requests, disks, &actions)
        .chain(actions.iter().cloned())
        .collect())
}

/// A table to write again whole: its primary copy is damaged, it holds a
/// requested partition (volctl's disk, not any disk plugged in), and no
/// other action writes it (each writes the table whole).
fn repairs<'a>(
    requests: &'a [Request],
    disks: &'a [Disk],
    actions: &'a [Action],
) -> impl Iterator<Item = Action> + 'a {
    disks
        .iter()
        .filter(|d| !d.readonly)
        .filter(|d| {
            d.table.as_ref().is_some_and(|t| {
                t.primary_damaged
                    && t.partitions
                        .iter()
                        .any(|p| requests.iter().any(|r| r.label == p.label))
            })
        })
        .filter(|d| !actions.iter().any(|a| a.disk() == d.dev_path))
        .map(|d| Action::RepairTable {
            disk: d.dev_path.clone(),
        })
}

impl Action {
    /// The disk it writes.
    pub fn disk(&self) -> &Path {
        match self {
            Action::CreateTable { disk }
            | Action::RepairTable { disk }
            | Action::Grow { disk, .. }
            | Action::Create { disk, .. } => disk,
        }
    }
}

/// Growing an existing partition into the free range right after it, up
/// to `maxSize`; `None` when there is nothing to gain.
fn grow(r: &Request, disks: &[Disk]) -> Option<Action> {
    disks.iter().find_map(|d| {
        let t = d.table.as_ref()?;
        let p = t.partitions.iter().find(|p| p.label == r.label)?;
        let end = p.offset + p.size;
        let &(start, len) = t.free.iter().find(|(start, _)| *start == end)?;
        let room = start + len - p.offset;
        let size = size_on(r, d, p.offset, room, 0);
        (size >= p.size + ALIGN).then(|| Action::Grow {
            disk: d.dev_path.clone(),
            label: r.label.clone(),
            number: p.number,
            offset: p.offset,
            size,
        })
    })
}

fn space(disk: &Disk) -> Space<'_> {
    let blank_range = vec![(ALIGN, align_down(disk.size.saturating_sub(2 * ALIGN)))];
    let (free, needs_table, refused) = match (&disk.table, &disk.contents) {
        _ if disk.readonly => (vec![], false, Some("the disk is read-only".to_string())),
        (Some(t), _) => (t.free.clone(), false, None),
        // A blank disk: a new GPT leaves the first and last MiB.
        (None, None) => (blank_range, true, None),
        (None, Some(what)) => (
            vec![],
            false,
            Some(format!(
                "no GPT volctl can use, and it is not blank ({what}); volctl does not write over it"
            )),
        ),
    };
    Space {
        disk,
        free,
        needs_table,
        refused,
    }
}

/// Places one request on the first disk that takes it.
fn place(r: &Request, later: &[&Request], spaces: &mut [Space]) -> Result<Vec<Action>, NoRoom> {
    let mut considered = Vec::new();
    for s in spaces.iter_mut() {
        match fit(r, later, s) {
            Ok((offset, size, range)) => {
                let mut out = Vec::new();
                if s.needs_table {
                    out.push(Action::CreateTable {
                        disk: s.disk.dev_path.clone(),
                    });
                    s.needs_table = false;
                }
                take(&mut s.free, range, offset, size);
                out.push(Action::Create {
                    disk: s.disk.dev_path.clone(),
                    label: r.label.clone(),
                    offset,
                    size,
                });
                return Ok(out);
            }
            Err(why) => considered.push((s.disk.dev_path.clone(), why)),
        }
    }
    Err(NoRoom {
        document: r.document.clone(),
        label: r.label.clone(),
        considered,
    })
}

/// Where `r` goes on this disk: (offset, size, index of the free range), or why not.
fn fit(r: &Request, later: &[&Request], s: &Space) -> Result<(u64, u64, usize), Unfit> {
    let d = s.disk;
    let selected = match &r.selector {
        None => d.system_disk,
        Some(sel) => sel.matches(&d.bindings()).map_err(Unfit::SelectorFailed)?,
    };
    if !selected {
        return Err(match r.selector {
            None => Unfit::NotSystemDisk,
            Some(_) => Unfit::SelectorFalse,
        });
    }
    if let Some(why) = &s.refused {
        return Err(Unfit::Refused(why.clone()));
    }
    let (idx, &(offset, len)) = s
        .free
        .iter()
        .enumerate()
        .max_by_key(|(_, (_, len))| *len)
        .ok_or(Unfit::NoFreeSpace)?;
    if len < r.min {
        return Err(Unfit::TooSmall {
            largest_mib: len / ALIGN,
            min_mib: r.min.div_ceil(ALIGN),
        });
    }
    let reserve: u64 = later
        .iter()
        .filter(|l| same_disk_wanted(l, d))
        .map(|l| l.min)
        .sum();
    Ok((offset, size_on(r, d, offset, len, reserve), idx))
}

/// Whether a later request would also want this disk (for reserving room).
fn same_disk_wanted(r: &Request, d: &Disk) -> bool {
    match &r.selector {
        None => d.system_disk,
        Some(s) => s.matches(&d.bindings()).unwrap_or(false),
    }
}

/// The size on this disk: `maxSize` resolved, within `[min, len]`, aligned.
fn size_on(r: &Request, d: &Disk, offset: u64, len: u64, reserve: u64) -> u64 {
    let end = offset + len;
    let want = match r.max {
        MaxSize::Fill => len.saturating_sub(reserve),
        MaxSize::Bytes(b) => b,
        MaxSize::Percent(p) => d.size / 100 * p,
        MaxSize::LeaveBytes(b) => end.saturating_sub(b).saturating_sub(offset),
        MaxSize::LeavePercent(p) => end.saturating_sub(d.size / 100 * p).saturating_sub(offset),
    };
    let size = want.clamp(r.min, len);
    align_down(size).max(ALIGN.min(len))
}

/// Removes `[offset, offset + size)` from the free range `idx`.
fn take(free: &mut Vec<(u64, u64)>, idx: usize, offset: u64, size: u64) {
    let (start, len) = free[idx];
    let rest = (offset + size, start + len - (offset + size));
    if rest.1 >= ALIGN {
        free[idx] = rest;
    } else {
        free.remove(idx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::disks::Partition;
    use crate::node::facts::Table;

    use crate::units::{GIB, MIB};

    fn disk(path: &str, size: u64, table: Option<Vec<(&str, u64, u64)>>) -> Disk {
        let table = table.map(|parts| {
            let mut used: Vec<(u64, u64)> = parts.iter().map(|(_, o, s)| (*o, o + s)).collect();
            used.sort_unstable();
            let mut free = Vec::new();
            let mut at = MIB;
            for (a, b) in used.iter().copied().chain([(size - MIB, size - MIB)]) {
                if a > at {
                    free.push((at, a - at));
                }
                at = at.max(b);
            }
            Table {
                partitions: parts
                    .iter()
                    .enumerate()
                    .map(|(i, (l, o, s))| Partition {
                        number: u32::try_from(i + 1).unwrap(),
                        label: (*l).to_string(),
                        offset: *o,
                        size: *s,
                        disk: path.into(),
                    })
                    .collect(),
                free,
                primary_damaged: false,
            }
        });
        let system_disk = table
            .as_ref()
            .is_some_and(|t| t.partitions.iter().any(|p| p.label == "META"));
        Disk {
            transport: "virtio".into(),
            system_disk,
            table,
            ..Disk::bare(std::path::Path::new(path), size)
        }
    }

    fn user(label: &str, sel: &str, min: u64, max: MaxSize) -> Request {
        Request {
            document: format!("UserVolumeConfig \"{label}\""),
            label: label.into(),
            selector: Some(Selector::disk(sel).unwrap()),
            min,
            max,
            grow: false,
        }
    }

    fn system(label: &str, min: u64, max: MaxSize) -> Request {
        Request {
            document: format!("VolumeConfig \"{label}\""),
            label: label.into(),
            selector: None,
            min,
            max,
            grow: false,
        }
    }

    #[test]
    fn a_selector_picks_the_larger_disk_and_a_blank_one_gets_a_table() {
        let disks = [disk("/dev/a", GIB, None), disk("/dev/b", 8 * GIB, None)];
        let r = [user(
            "u-data",
            "disk.size > 4u * GiB",
            GIB,
            MaxSize::Bytes(2 * GIB),
        )];
        let a = plan(&r, &disks).unwrap();
        assert_eq!(
            a,
            [
                Action::CreateTable {
                    disk: "/dev/b".into()
                },
                Action::Create {
                    disk: "/dev/b".into(),
                    label: "u-data".into(),
                    offset: MIB,
                    size: 2 * GIB
                },
            ]
        );
    }

    #[test]
    fn an_existing_label_is_not_placed_again() {
        let disks = [disk("/dev/b", 8 * GIB, Some(vec![("u-data", MIB, GIB)]))];
        let r = [user("u-data", "true", GIB, MaxSize::Fill)];
        assert_eq!(plan(&r, &disks).unwrap(), []);
    }

    #[test]
    fn a_damaged_primary_table_is_repaired_on_volctl_s_disks_only() {
        let damaged = |path, label| {
            let mut d = disk(path, 8 * GIB, Some(vec![(label, MIB, GIB)]));
            d.table.as_mut().unwrap().primary_damaged = true;
            d
        };
        let disks = [damaged("/dev/b", "u-data"), damaged("/dev/c", "other")];
        let r = [user("u-data", "true", GIB, MaxSize::Fill)];
        assert_eq!(
            plan(&r, &disks).unwrap(),
            [Action::RepairTable {
                disk: "/dev/b".into()
            }],
            "a disk that holds no requested partition is not written"
        );
        // A new partition on the damaged disk writes the table whole: no
        // repair of its own.
        let both = [
            r[0].clone(),
            user("u-logs", "true", GIB, MaxSize::Bytes(GIB)),
        ];
        let a = plan(&both, &disks[..1]).unwrap();
        assert!(
            matches!(a.as_slice(), [Action::Create { label, .. }] if label == "u-logs"),
            "{a:?}"
        );
    }

    #[test]
    fn no_room_names_every_disk_and_why() {
        let mut foreign = disk("/dev/c", 8 * GIB, None);
        foreign.contents = Some("ext2/3/4 filesystem".into());
        let disks = [
            disk("/dev/a", GIB, None),
            disk("/dev/b", 2 * GIB, None),
            foreign,
        ];
        let r = [user(
            "u-data",
            "disk.size > 1u * GiB",
            4 * GIB,
            MaxSize::Fill,
        )];
        let e = plan(&r, &disks).unwrap_err();
        assert_eq!(e.considered.len(), 3);
        let msg = e.to_string();
        assert!(msg.contains("/dev/a: the disk selector is false"), "{msg}");
        assert!(
            msg.contains("/dev/b: its largest free range is 2046 MiB, less than minSize 4096 MiB"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "/dev/c: no GPT volctl can use, and it is not blank (ext2/3/4 filesystem)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn system_volumes_go_on_the_system_disk_in_order_and_fill_leaves_room_for_later_ones() {
        let sys = disk("/dev/a", 4 * GIB, Some(vec![("META", MIB, MIB)]));
        let other = disk("/dev/b", 8 * GIB, None);
        let r = [
            system("STATE", 100 * MIB, MaxSize::Bytes(100 * MIB)),
            system("EPHEMERAL", 100 * MIB, MaxSize::Fill),
            system("persistence", 512 * MIB, MaxSize::Fill),
        ];
        let a = plan(&r, &[sys, other]).unwrap();
        let sizes: Vec<(String, u64, u64)> = a
            .iter()
            .map(|x| match x {
                Action::Create {
                    label,
                    offset,
                    size,
                    disk,
                } => {
                    assert_eq!(disk, &PathBuf::from("/dev/a"));
                    (label.clone(), *offset / MIB, *size / MIB)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        // Free: 2 MiB … 4095 MiB. STATE 100; EPHEMERAL all but persistence's 512.
        assert_eq!(
            sizes,
            [
                ("STATE".into(), 2, 100),
                ("EPHEMERAL".into(), 102, 4093 - 100 - 512),
                ("persistence".into(), 102 + 3481, 512),
            ]
        );
    }

    #[test]
    fn percentages_and_negative_sizes_resolve_on_the_chosen_disk() {
        let d = disk("/dev/b", 10 * GIB, Some(vec![]));
        let pct = [user("u-p", "true", MIB, MaxSize::Percent(50))];
        let a = plan(&pct, std::slice::from_ref(&d)).unwrap();
        assert!(
            matches!(&a[0], Action::Create { size, .. } if *size == align_down(10 * GIB / 100 * 50))
        );
        let leave = [user("u-l", "true", MIB, MaxSize::LeaveBytes(GIB))];
        let a = plan(&leave, std::slice::from_ref(&d)).unwrap();
        // Free range ends at 10 GiB - 1 MiB; leave 1 GiB after the partition.
        assert!(
            matches!(&a[0], Action::Create { offset, size, .. } if offset + size == 10 * GIB - MIB - GIB)
        );
    }

    #[test]
    fn grow_takes_the_free_space_right_after_the_partition_up_to_max() {
        let d = disk("/dev/b", 8 * GIB, Some(vec![("u-data", MIB, GIB)]));
        let mut r = user("u-data", "true", GIB, MaxSize::Fill);
        assert_eq!(
            plan(std::slice::from_ref(&r), std::slice::from_ref(&d)).unwrap(),
            []
        );
        r.grow = true;
        let a = plan(std::slice::from_ref(&r), std::slice::from_ref(&d)).unwrap();
        assert_eq!(
            a,
            [Action::Grow {
                disk: "/dev/b".into(),
                label: "u-data".into(),
                number: 1,
                offset: MIB,
                size: 8 * GIB - 2 * MIB
            }]
        );
        r.max = MaxSize::Bytes(4 * GIB);
        let a = plan(std::slice::from_ref(&r), std::slice::from_ref(&d)).unwrap();
        assert!(matches!(&a[0], Action::Grow { size, .. } if *size == 4 * GIB));
        let full = disk(
            "/dev/b",
            8 * GIB,
            Some(vec![("u-data", MIB, 8 * GIB - 2 * MIB)]),
        );
        assert_eq!(
            plan(&[r], &[full]).unwrap(),
            [],
            "nothing to gain: nothing to do"
        );
    }

    #[test]
    fn a_layout_is_reproducible() {
        let disks = [disk("/dev/a", 8 * GIB, None), disk("/dev/b", 8 * GIB, None)];
        let r = [
            user("u-a", "true", GIB, MaxSize::Bytes(GIB)),
            user("u-b", "true", GIB, MaxSize::Bytes(GIB)),
        ];
        assert_eq!(plan(&r, &disks).unwrap(), plan(&r, &disks).unwrap());
        let a = plan(&r, &disks).unwrap();
        // Both on the first disk that fits, one after the other.
        assert!(
            matches!(&a[2], Action::Create { disk, offset, .. } if disk == &PathBuf::from("/dev/a") && *offset == MIB + GIB),
            "{a:?}"
        );
    }
}
