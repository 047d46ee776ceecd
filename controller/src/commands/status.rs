//! `volctl status`: what the last boot found and did.

use crate::cli::output::Output;
use crate::cli::Exit;
use anyhow::{bail, Context, Result};
use controller::node::status::{BootStatus, Phase};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "\
Examples:
  volctl status
  volctl status -o json
  volctl status --volume persistence    # exits 3 unless it is ready

With --volume, only that volume is shown, and the exit code says whether it
is ready (0) or not (3): the check `volctl-volume@NAME.service` runs, so a
service ordered after it starts only when the volume is mounted.";

/// `volctl status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Status file.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Show only this volume; exit 3 unless it is ready.
    #[arg(long)]
    pub volume: Option<String>,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Prints the status.
pub fn exec(args: Args) -> Result<Exit> {
    let mut status = BootStatus::load(&args.status_file)
        .with_context(|| format!("reading {}", args.status_file.display()))?;
    let Some(name) = &args.volume else {
        args.output.print(&status, || status.table())?;
        return Ok(Exit::Success);
    };
    status.volumes.retain(|v| &v.name == name);
    if status.volumes.is_empty() {
        bail!(
            "the last boot has no volume `{name}` ({})",
            args.status_file.display()
        );
    }
    args.output.print(&status, || status.table())?;
    let ready = status.volumes.iter().all(|v| v.phase == Phase::Ready);
    Ok(match ready {
        true => Exit::Success,
        false => Exit::NotReady,
    })
}
