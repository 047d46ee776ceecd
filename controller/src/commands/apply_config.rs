//! `volctl apply-config`: validate a new config, show what it changes, then
//! stage it, apply it now, or stage it and reboot.

use crate::cli::output::Output;
use crate::cli::prelude::{runtime, RunningNodeArgs};
use crate::cli::Exit;
use anyhow::Result;
use controller::apply::{self, ApplyMode, ApplyOptions};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl apply-config -f node.yaml --mode staged        # next boot\n  volctl apply-config -f node.yaml --mode no-reboot     # keyslot changes now\n  volctl apply-config -f node.yaml --dry-run            # show, store nothing\n  volctl apply-config --insecure -f node.yaml           # to a boot waiting in maintenance mode\n\nRefused, with nothing stored: an invalid config; a config none of whose keys opens a volume\n(add the new key first, reboot, then remove the old one).";

/// `apply-config --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// no-reboot when everything can change now, else reboot.
    Auto,
    /// Takes effect at the next boot.
    Staged,
    /// Staged, then reboot.
    Reboot,
    /// Keyslot changes on open volumes now.
    NoReboot,
}

impl From<ModeArg> for ApplyMode {
    fn from(m: ModeArg) -> ApplyMode {
        match m {
            ModeArg::Auto => ApplyMode::Auto,
            ModeArg::Staged => ApplyMode::Staged,
            ModeArg::Reboot => ApplyMode::Reboot,
            ModeArg::NoReboot => ApplyMode::NoReboot,
        }
    }
}

/// `volctl apply-config` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config file(s).
    #[arg(short = 'f', long = "file", required = true)]
    pub files: Vec<PathBuf>,
    /// How the config takes effect.
    #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
    pub mode: ModeArg,
    /// Show what would change; store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Deliver the config to a boot waiting in maintenance mode (no authentication, local only).
    #[arg(long)]
    pub insecure: bool,
    /// With -n and --insecure: the SHA-256 fingerprint the node printed on its console.
    #[arg(long, requires = "insecure")]
    pub fingerprint: Option<String>,
    /// The node (status file, disks, UUID, reboot command, key sources).
    #[command(flatten)]
    pub running: RunningNodeArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Applies the config; prints the report.
pub fn exec(args: Args) -> Result<Exit> {
    let opts = ApplyOptions {
        files: args.files,
        mode: args.mode.into(),
        dry_run: args.dry_run,
        insecure: args.insecure,
        node: args.running.context()?,
    };
    let report = runtime()?.block_on(apply::apply(&opts))?;
    args.output
        .print(&report, || apply::outcome_text(&report, args.insecure))?;
    Ok(Exit::Success)
}
