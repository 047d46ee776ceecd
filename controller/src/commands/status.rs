//! `volctl status`: what the last boot found and did.

use crate::cli::output::Output;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::node::status::BootStatus;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl status\n  volctl status -o json";

/// `volctl status` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Status file.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Prints the status.
pub fn exec(args: Args) -> Result<Exit> {
    let status = BootStatus::load(&args.status_file)
        .with_context(|| format!("reading {}", args.status_file.display()))?;
    args.output.print(&status, || status.table())?;
    Ok(Exit::Success)
}
