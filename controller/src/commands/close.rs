//! `volctl close`: unmount and close what the last boot opened.

use crate::cli::output::outln;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::node::close;
use controller::node::status::BootStatus;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl close";

/// `volctl close` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Status file.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
}

/// Closes; exit 1 when some step failed.
pub fn exec(args: Args) -> Result<Exit> {
    let mut status = BootStatus::load(&args.status_file)
        .with_context(|| format!("reading {}", args.status_file.display()))?;
    let (done, errors) = close::close(&mut status);
    status
        .save(&args.status_file)
        .with_context(|| format!("writing {}", args.status_file.display()))?;
    for d in done {
        // A report of what was closed: a reader that went away must not stop
        // what follows (the status saved, the errors said, the reboot).
        let _ = outln!("{d}");
    }
    for e in &errors {
        eprintln!("error: {e}");
    }
    Ok(if errors.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}
