//! `volctl serve`: the node agent, started by the init system after
//! `volctl boot` (docs/remote.md has the unit).

use crate::cli::prelude::{runtime, RunningNodeArgs};
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::serve::{self, ServerIdentity};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl serve                                   # key, certificate and client CA from STATE's api/ folder\n  volctl serve --listen 0.0.0.0:50000 --tls-cert server.crt --tls-key server.key --client-ca ca.crt\n  volctl serve --tls-cert server.crt --tls-key server.key --api-key-file api.key\n\nCallers: client certificates from --client-ca (Organization admin or reader), or the API key (admin).";

/// `volctl serve` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0:50000")]
    pub listen: SocketAddr,
    /// Server certificate (default: STATE's api/server.crt).
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    /// Server private key, 0600 (default: STATE's api/server.key).
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
    /// CA of the accepted client certificates (default: STATE's api/ca.crt when it exists).
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Where STATE is mounted (its api/ folder holds the defaults above).
    #[arg(long, default_value = controller::node::paths::DEFAULT_STATE_MOUNT)]
    pub state_mount: PathBuf,
    /// The node (status file, disks, UUID, reboot command, key sources).
    #[command(flatten)]
    pub running: RunningNodeArgs,
    /// API key file (0600): callers presenting this key are admins.
    #[arg(long)]
    pub api_key_file: Option<PathBuf>,
    /// Open connections at most (default: 512, or fewer under a low file limit).
    #[arg(long)]
    pub max_connections: Option<usize>,
}

/// Serves until SIGTERM or Ctrl-C.
pub fn exec(args: Args) -> Result<Exit> {
    let api = args.state_mount.join(serve::API_DIR);
    let cert = args
        .tls_cert
        .clone()
        .unwrap_or_else(|| api.join("server.crt"));
    let key = args
        .tls_key
        .clone()
        .unwrap_or_else(|| api.join("server.key"));
    let client_ca = args
        .client_ca
        .clone()
        .or_else(|| Some(api.join("ca.crt")).filter(|p| p.exists()));
    let id = ServerIdentity::load(
        &cert,
        &key,
        client_ca.as_deref(),
        args.api_key_file.as_deref(),
    )?;
    let node = args.running.context()?;
    let mut limits = tls::listener::Limits::default();
    if let Some(n) = args.max_connections {
        limits.max_connections = n;
    }
    runtime()?.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        eprintln!("volctl serve: listening on {}", listener.local_addr()?);
        serve::serve(listener, id, node, limits, shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(Exit::Success)
}

/// SIGTERM (the init system) or Ctrl-C.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
