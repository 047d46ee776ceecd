//! `volctl reset --system-labels-to-wipe`: close a volume if it is open and
//! destroy what is on its partition (LUKS2 header and keyslots, filesystem
//! signatures), so the next boot provisions it from the config. Wiping STATE
//! also drops STATE's encryption config from META: the node's config is
//! gone, and the next boot enters maintenance mode.

use crate::luks2::header::{self, Probe};
use crate::node::disks::{self, DiskError, OpenPartition};
use crate::node::meta::{self, MetaError, TAG_PENDING_WIPE, TAG_STATE_ENCRYPTION};
use crate::node::snapshot::NodeSnapshot;
use crate::node::status::{BootStatus, Phase};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// How much to wipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WipeMode {
    /// The LUKS2 metadata area (at least the first 32 MiB) and the last MiB.
    Fast,
    /// The whole partition.
    Full,
}

/// What to do with a volume that is in use and cannot be closed (e.g.
/// EPHEMERAL at `/var`, with STATE mounted below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenBusy {
    /// Fail, wiping nothing more.
    Fail,
    /// Record the wipe on META; the next boot does it before anything
    /// opens (for `reset --reboot`).
    WipeAtNextBoot,
}

impl WhenBusy {
    /// A reset followed by a reboot can leave a busy volume's wipe to the
    /// next boot; one without cannot.
    pub fn for_reset(reboot: bool) -> Self {
        if reboot {
            WhenBusy::WipeAtNextBoot
        } else {
            WhenBusy::Fail
        }
    }
}

impl WipeMode {
    fn name(self) -> &'static str {
        match self {
            WipeMode::Fast => "fast",
            WipeMode::Full => "full",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        [WipeMode::Fast, WipeMode::Full]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// Why a reset failed.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Disks could not be read.
    #[error(transparent)]
    Disks(#[from] DiskError),
    /// No partition has the label.
    #[error("no partition labelled `{0}`")]
    NotFound(String),
    /// The volume could not be closed.
    #[error("cannot close {label} before wiping it: {source}")]
    Close {
        /// Label.
        label: String,
        /// Why.
        source: crate::node::close::CloseError,
    },
    /// Writing failed.
    #[error("wiping {label}: {source}")]
    Wipe {
        /// Label.
        label: String,
        /// Cause.
        source: std::io::Error,
    },
    /// META could not be updated.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A wipe was to wait for the next boot, but there is no META to record it.
    #[error("{0} is in use and there is no META partition to record its wipe for the next boot")]
    NoMeta(String),
}

use crate::units::MIB;

/// Wipes each label; returns one line per step. `status` (if any) is
/// updated for volumes that were open. A volume in use is handled as
/// `busy` says.
pub fn reset(
    labels: &[String],
    disks: &[PathBuf],
    status: Option<&mut BootStatus>,
    mode: WipeMode,
    busy: WhenBusy,
) -> Result<Vec<String>, ResetError> {
    let parts = disks::by_label(disks)?;
    let mut done = Vec::new();
    let mut later = Vec::new();
    let mut status = status;
    for label in labels {
        let part = parts
            .get(label)
            .ok_or_else(|| ResetError::NotFound(label.clone()))?;
        if let Some(st) = status.as_deref_mut() {
            match close_one(st, label, &mut done) {
                Err(ResetError::Close { source, .. }) if busy == WhenBusy::WipeAtNextBoot => {
                    done.push(format!("{label} is in use ({source}): it is wiped at the next boot, before anything opens it"));
                    later.push(label.clone());
                    continue;
                }
                other => other?,
            }
        }
        let open = OpenPartition::open(part)?;
        let wiped = wipe(&open.path, part.size, mode).map_err(|source| ResetError::Wipe {
            label: label.clone(),
            source,
        })?;
        done.push(format!(
            "wiped {label} ({}, {} MiB)",
            part.describe(),
            wiped / MIB
        ));
        if label == "STATE" {
            if let Some(mo) = disks::open_labelled(&parts, "META")? {
                meta::update(&mo.path, TAG_STATE_ENCRYPTION, None)?;
                done.push("dropped STATE's encryption config from META: the next boot enters maintenance mode".into());
            }
        }
    }
    if !later.is_empty() {
        let mo = disks::open_labelled(&parts, "META")?
            .ok_or_else(|| ResetError::NoMeta(later.join(", ")))?;
        let record = format!("{}:{}", mode.name(), later.join(","));
        meta::update(&mo.path, TAG_PENDING_WIPE, Some(record.into_bytes()))?;
    }
    Ok(done)
}

/// Does the wipes a `reset --reboot` left for this boot (recorded on META),
/// before anything opens; returns one line per step.
pub fn pending_wipes(snap: &NodeSnapshot) -> Result<Vec<String>, ResetError> {
    let parts = snap.by_label()?;
    let Some(mo) = disks::open_labelled(&parts, "META")? else {
        return Ok(vec![]);
    };
    let Some(record) = meta::read(&mo.path)?.records.remove(&TAG_PENDING_WIPE) else {
        return Ok(vec![]);
    };
    let text = String::from_utf8_lossy(&record).into_owned();
    let (mode, labels) = text.split_once(':').unwrap_or(("fast", text.as_str()));
    let labels: Vec<String> = labels
        .split(',')
        .filter(|l| parts.contains_key(*l))
        .map(String::from)
        .collect();
    drop(mo);
    let done = reset(
        &labels,
        &snap.paths,
        None,
        WipeMode::from_name(mode).unwrap_or(WipeMode::Fast),
        WhenBusy::Fail,
    )?;
    if let Some(mo) = disks::open_labelled(&parts, "META")? {
        meta::update(&mo.path, TAG_PENDING_WIPE, None)?;
    }
    Ok(done)
}

/// Unmounts and closes `label` if the last boot opened it.
fn close_one(st: &mut BootStatus, label: &str, done: &mut Vec<String>) -> Result<(), ResetError> {
    let Some(v) = st.volumes.iter_mut().find(|v| v.label == label) else {
        return Ok(());
    };
    crate::node::close::close_volume(v, done).map_err(|source| ResetError::Close {
        label: label.to_string(),
        source,
    })?;
    v.phase = Phase::Located;
    v.keyslots.clear();
    v.unlocked_by = None;
    Ok(())
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
    let mut ranges = match mode {
        WipeMode::Full => vec![(0, size)],
        WipeMode::Fast => {
            let head = (32 * MIB).max(data_offset).min(size);
            vec![(0, head), (size.saturating_sub(MIB).max(head), size)]
        }
    };
    ranges.retain(|(a, b)| b > a);
    let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
    let zeros = vec![0u8; 1 << 20]; // one MiB
    let mut total = 0;
    for (start, end) in ranges {
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
