//! Maintenance mode, the boot's side: with no config, the boot drops the
//! marker, opens the maintenance API (when it may listen) and waits for a
//! delivery (the hand-off itself is `node::maintenance`).

use super::windows::{self, WindowError};
use super::{BootError, BootOptions};
use crate::node::atomic;
use crate::node::console;
use crate::node::maintenance::take_delivery;
use crate::node::paths::{run_dir, MAINTENANCE_CONFIG, MAINTENANCE_MARKER};
use api_types::Document;

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
        .map_err(BootError::file("writing the maintenance marker", &marker))?;
    eprintln!("maintenance mode: {reason}; waiting for `volctl apply-config --insecure -f CONFIG`");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    network_api(opts, reason, stopped);
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
fn network_api(opts: &BootOptions, reason: &str, stopped: tokio::sync::oneshot::Receiver<()>) {
    let Some(api) = &opts.api else {
        return;
    };
    let addr = api.addr;
    match api
        .windows
        .maintenance(addr, opts.node.clone(), reason, windows::on(stopped))
    {
        Ok(fp) => {
            let line = format!("maintenance mode: listening on {addr}; certificate SHA-256 fingerprint {fp}\n  volctl -n <this node> apply-config --insecure --fingerprint {fp} -f CONFIG\n");
            eprint!("{line}");
            console::write(&line);
        }
        Err(WindowError::Listen { source, .. }) => {
            eprintln!("maintenance mode: cannot listen on {addr} ({source}); only the local `volctl apply-config --insecure` reaches this boot");
        }
        Err(e) => eprintln!("maintenance mode: the network API did not start: {e}"),
    }
}
