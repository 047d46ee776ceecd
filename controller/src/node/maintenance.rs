//! Maintenance mode's hand-off, both ends: a boot without a config drops
//! a marker next to its status file and polls [`take_delivery`];
//! `apply-config --insecure` (local, or through the maintenance API)
//! checks the marker and drops the config beside it ([`deliver`]).

use crate::node::atomic;
use crate::node::paths::{run_dir, MAINTENANCE_CONFIG, MAINTENANCE_MARKER};
use api_types::Document;
use std::path::Path;

/// Anyone who can reach a node in maintenance mode may deliver its config,
/// and the boot then formats STATE as that config says. So the config must
/// say it: STATE's own `VolumeConfig` (with `encryption`, or without it for
/// a plain STATE, stated by that document). A config without one (an empty
/// file, only user volumes) would format STATE plain by default and is
/// refused.
pub fn check_states_state(docs: &[Document]) -> Result<(), StateUnstated> {
    let stated = docs
        .iter()
        .any(|d| matches!(d, Document::Volume(v) if v.name == "STATE"));
    if stated {
        Ok(())
    } else {
        Err(StateUnstated)
    }
}

/// A config delivered in maintenance mode that does not say what STATE is.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("in maintenance mode a config must say what STATE is: it has no `VolumeConfig` named STATE (give its `encryption`, or a STATE document without one to keep STATE plain)")]
pub struct StateUnstated;

/// A delivered config, if one is there and valid (an invalid one is
/// reported and removed).
pub fn take_delivery(drop: &Path, marker: &Path) -> Option<(Vec<Document>, String)> {
    let text = std::fs::read_to_string(drop).ok()?;
    let _ = std::fs::remove_file(drop);
    let rejected = |e: &dyn std::error::Error| {
        eprintln!("maintenance mode: rejected a config: {e}");
    };
    let docs = crate::node::config_files::parse(&drop.display().to_string(), &text)
        .map_err(|e| rejected(&e))
        .ok()?;
    check_states_state(&docs).map_err(|e| rejected(&e)).ok()?;
    let _ = std::fs::remove_file(marker);
    eprintln!("maintenance mode: config received");
    Some((docs, text))
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No boot is waiting.
    #[error("the node is not in maintenance mode ({0} does not exist); apply without --insecure")]
    NotWaiting(String),
    /// The config does not say what STATE is ([`check_states_state`]).
    #[error(transparent)]
    Unstated(#[from] StateUnstated),
    /// The config could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The drop file.
        path: std::path::PathBuf,
        /// The write error.
        source: std::io::Error,
    },
}

/// The delivering end (`apply-config --insecure`): drops `text` (parsed:
/// `docs`) for the waiting boot, unless `dry_run`. Returns where it was
/// stored.
pub fn deliver(
    status_file: &Path,
    docs: &[Document],
    text: &str,
    dry_run: bool,
) -> Result<Option<String>, DeliveryError> {
    let dir = run_dir(status_file);
    let marker = dir.join(MAINTENANCE_MARKER);
    if !marker.exists() {
        return Err(DeliveryError::NotWaiting(marker.display().to_string()));
    }
    check_states_state(docs)?;
    if dry_run {
        return Ok(None);
    }
    let drop = dir.join(MAINTENANCE_CONFIG);
    atomic::write_private(&drop, text.as_bytes()).map_err(|source| DeliveryError::Io {
        path: drop.clone(),
        source,
    })?;
    Ok(Some(drop.display().to_string()))
}
