//! `volctl provision`: lay out the partitions a config asks for, and
//! nothing else (usable on image files when building an appliance image).

use crate::cli::output::Output;
use crate::cli::prelude::{load_config, DiskArgs};
use crate::cli::Exit;
use anyhow::Result;
use controller::provision::{plan_for, provision};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl provision --disk /dev/vdb -f node.yaml --dry-run [--detailed-exitcode]\n  volctl provision --disk os.img --disk data.img -f node.yaml\n\nEach volume without a partition is created on the first disk (in device order) whose selector is true and that has room for minSize; a second run changes nothing. Partitions that exist are never moved, shrunk or written over.";

/// `volctl provision` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Disks.
    #[command(flatten)]
    pub disks: DiskArgs,
    /// Config files (repeatable; together one config).
    #[arg(short = 'f', long = "file", required = true)]
    pub files: Vec<PathBuf>,
    /// Show the partition actions; write nothing (the partition plan).
    #[arg(long)]
    pub dry_run: bool,
    /// With --dry-run: exit 2 when partitions would be created or grown, 0 when none.
    #[arg(long, requires = "dry_run")]
    pub detailed_exitcode: bool,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Plans, then (unless `--dry-run`) creates the partitions.
pub fn exec(args: Args) -> Result<Exit> {
    let docs = load_config(&args.files, "")?;
    let disks = args.disks.resolve();
    let actions = if args.dry_run {
        plan_for(&docs, &disks)?
    } else {
        provision(&docs, &disks)?
    };
    args.output.print(&actions, || {
        if actions.is_empty() {
            return "nothing to do: every volume has its partition\n".into();
        }
        let verb = if args.dry_run { "would" } else { "did" };
        actions.iter().map(|a| format!("{verb} {a}\n")).collect()
    })?;
    Ok(if args.detailed_exitcode && !actions.is_empty() {
        Exit::ChangesPlanned
    } else {
        Exit::Success
    })
}
