//! `volctl reset --system-labels-to-wipe`: close a volume if it is open and
//! destroy what is on its partition (LUKS2 header and keyslots, filesystem
//! signatures), so the next boot provisions it from the config. Wiping STATE
//! also drops STATE's encryption config from META: the node's config is
//! gone, and the next boot enters maintenance mode.

pub use crate::host::WipeMode;

use crate::host::{attach_labelled, update_meta, Host};
use crate::node::disks::{DiskError, Partition};
use crate::node::meta::{Meta, MetaError, TAG_PENDING_WIPE, TAG_STATE_ENCRYPTION};
use crate::node::snapshot::NodeSnapshot;
use crate::node::status::{BootStatus, Phase};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
    host: &dyn Host,
    labels: &[String],
    disks: &[PathBuf],
    status: Option<&mut BootStatus>,
    mode: WipeMode,
    busy: WhenBusy,
) -> Result<Vec<String>, ResetError> {
    let parts = host.snapshot(disks).by_label()?;
    wipe_labels(host, &parts, labels, status, (mode, busy))
}

/// [`reset`] on partitions already found.
fn wipe_labels(
    host: &dyn Host,
    parts: &BTreeMap<String, Partition>,
    labels: &[String],
    mut status: Option<&mut BootStatus>,
    (mode, busy): (WipeMode, WhenBusy),
) -> Result<Vec<String>, ResetError> {
    let mut done = Vec::new();
    let mut later = Vec::new();
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
        wipe_one(host, parts, part, mode, &mut done)?;
    }
    if !later.is_empty() {
        let mo = attach_labelled(host, parts, "META")?
            .ok_or_else(|| ResetError::NoMeta(later.join(", ")))?;
        let record = format!("{}:{}", mode.name(), later.join(","));
        update_meta(host, &mo.path, TAG_PENDING_WIPE, Some(record.into_bytes()))?;
    }
    Ok(done)
}

/// Wipes one partition; wiping STATE also drops its config from META.
fn wipe_one(
    host: &dyn Host,
    parts: &BTreeMap<String, Partition>,
    part: &Partition,
    mode: WipeMode,
    done: &mut Vec<String>,
) -> Result<(), ResetError> {
    let label = &part.label;
    let open = host.attach(part)?;
    let wiped = host
        .wipe(&open.path, part.size, mode)
        .map_err(|source| ResetError::Wipe {
            label: label.clone(),
            source,
        })?;
    done.push(format!(
        "wiped {label} ({}, {} MiB)",
        part.describe(),
        wiped / MIB
    ));
    if label == "STATE" {
        if let Some(mo) = attach_labelled(host, parts, "META")? {
            update_meta(host, &mo.path, TAG_STATE_ENCRYPTION, None)?;
            done.push("dropped STATE's encryption config from META: the next boot enters maintenance mode".into());
        }
    }
    Ok(())
}

/// Does the wipes a `reset --reboot` left for this boot (recorded on META),
/// before anything opens; returns one line per step.
pub fn pending_wipes(
    host: &dyn Host,
    snap: &NodeSnapshot,
    meta: &Meta,
) -> Result<Vec<String>, ResetError> {
    let Some(record) = meta.records.get(&TAG_PENDING_WIPE) else {
        return Ok(vec![]);
    };
    let parts = snap.by_label()?;
    let text = String::from_utf8_lossy(record).into_owned();
    let (mode, labels) = text.split_once(':').unwrap_or(("fast", text.as_str()));
    let labels: Vec<String> = labels
        .split(',')
        .filter(|l| parts.contains_key(*l))
        .map(String::from)
        .collect();
    let mode = WipeMode::from_name(mode).unwrap_or(WipeMode::Fast);
    let done = wipe_labels(host, &parts, &labels, None, (mode, WhenBusy::Fail))?;
    if let Some(mo) = attach_labelled(host, &parts, "META")? {
        update_meta(host, &mo.path, TAG_PENDING_WIPE, None)?;
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
