//! Maintenance mode, both ends of its protocol: a boot without a config
//! drops a marker next to its status file and waits; `apply-config
//! --insecure` checks the marker and drops the config beside it; the boot
//! validates it and goes on.

use super::{source, BootError, BootOptions};
use crate::node::atomic;
use crate::node::console;
use crate::node::paths::{MAINTENANCE_CONFIG, MAINTENANCE_MARKER};
use api_types::Document;
use std::path::{Path, PathBuf};

/// The directory of the status file: runtime state (`/run/volctl`).
pub fn run_dir(status_file: &Path) -> PathBuf {
    status_file
        .parent()
        .unwrap_or(Path::new("/run/volctl"))
        .to_path_buf()
}

/// The waiting end: waits until a valid config is delivered (or the
/// timeout passes); returns the documents and their text.
pub(super) async fn wait_for_config(
    opts: &BootOptions,
    reason: &str,
) -> Result<(Vec<Document>, String), BootError> {
    let dir = run_dir(&opts.node.status_file);
    let marker = dir.join(MAINTENANCE_MARKER);
    let drop = dir.join(MAINTENANCE_CONFIG);
    atomic::write_private(&marker, reason.as_bytes())
        .map_err(|e| BootError::Io(format!("{}: {e}", marker.display())))?;
    eprintln!("maintenance mode: {reason}; waiting for `volctl apply-config --insecure -f CONFIG`");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    network_api(opts, reason, stopped).await;
    // Dropped when this function returns: the network API stops with it.
    let _stop_api = stop;
    let started = std::time::Instant::now();
    loop {
        if let Some(got) = take_delivery(&drop, &marker) {
            return Ok(got);
        }
        if opts
            .maintenance_timeout
            .is_some_and(|t| started.elapsed() > t)
        {
            let _ = std::fs::remove_file(&marker);
            return Err(BootError::NoConfig);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Serves the maintenance API while the boot waits (until `stopped`
/// fires or its sender is dropped), and prints where and with which
/// certificate fingerprint, on stderr and the console. A port that cannot
/// be bound is reported; the local drop still works.
async fn network_api(
    opts: &BootOptions,
    reason: &str,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let Some(addr) = opts.api_listen else {
        return;
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("maintenance mode: cannot listen on {addr} ({e}); only the local `volctl apply-config --insecure` reaches this boot");
            return;
        }
    };
    let node = opts.node_context();
    let shutdown = async move {
        let _ = stopped.await;
    };
    match crate::serve::serve_maintenance(listener, node, reason, shutdown).await {
        Ok(fp) => {
            let line = format!("maintenance mode: listening on {addr}; certificate SHA-256 fingerprint {fp}\n  volctl -n <this node> apply-config --insecure --fingerprint {fp} -f CONFIG\n");
            eprint!("{line}");
            console::write(&line);
        }
        Err(e) => eprintln!("maintenance mode: the network API did not start: {e}"),
    }
}

/// Anyone who can reach a node in maintenance mode may deliver its config,
/// and the boot then formats STATE as that config says. So the config must
/// say it: STATE's own `VolumeConfig` (with `encryption`, or without it for
/// a plain STATE, stated by that document). A config without one (an empty
/// file, only user volumes) would format STATE plain by default and is
/// refused.
pub fn check_states_state(docs: &[Document]) -> Result<(), String> {
    let stated = docs
        .iter()
        .any(|d| matches!(d, Document::Volume(v) if v.name == "STATE"));
    if stated {
        Ok(())
    } else {
        Err("in maintenance mode a config must say what STATE is: it has no `VolumeConfig` named STATE (give its `encryption`, or a STATE document without one to keep STATE plain)".into())
    }
}

/// A delivered config, if one is there and valid (an invalid one is
/// reported and removed).
fn take_delivery(drop: &Path, marker: &Path) -> Option<(Vec<Document>, String)> {
    let text = std::fs::read_to_string(drop).ok()?;
    let _ = std::fs::remove_file(drop);
    let parsed = source::parse_config(&drop.display().to_string(), &text)
        .map_err(|e| e.to_string())
        .and_then(|docs| check_states_state(&docs).map(|()| docs));
    match parsed {
        Ok(docs) => {
            let _ = std::fs::remove_file(marker);
            eprintln!("maintenance mode: config received");
            Some((docs, text))
        }
        Err(e) => {
            eprintln!("maintenance mode: rejected a config: {e}");
            None
        }
    }
}

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// No boot is waiting.
    #[error("the node is not in maintenance mode ({0} does not exist); apply without --insecure")]
    NotWaiting(String),
    /// The config does not say what STATE is ([`check_states_state`]).
    #[error("{0}")]
    Unstated(String),
    /// The config could not be written.
    #[error("{0}")]
    Io(String),
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
    check_states_state(docs).map_err(DeliveryError::Unstated)?;
    if dry_run {
        return Ok(None);
    }
    let drop = dir.join(MAINTENANCE_CONFIG);
    atomic::write_private(&drop, text.as_bytes())
        .map_err(|e| DeliveryError::Io(format!("{}: {e}", drop.display())))?;
    Ok(Some(drop.display().to_string()))
}
