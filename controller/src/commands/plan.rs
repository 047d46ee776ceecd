//! `volctl plan`: what `converge` would change; nothing is written.

use super::converge::{self, Target};
use crate::cli::Exit;
use anyhow::Result;
use controller::converge::Mode;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl plan --volume EPHEMERAL --device /dev/sda5 -f node.yaml\n  volctl plan --volume EPHEMERAL --device disk.img -f node.yaml --detailed-exitcode\n\nWith --detailed-exitcode: 0 = nothing to change, 2 = changes planned, 1 = error.\nOn an existing volume this unlocks it once (one KDF run) to check every keyslot.\nThe device is opened read-only and stays byte-identical.";

/// `volctl plan` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// Exit 2 when changes are planned, 0 when none.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Plans the volume.
pub fn exec(args: Args) -> Result<Exit> {
    let outcome = converge::run(&args.target, Mode::DryRun)?;
    Ok(if args.detailed_exitcode && !outcome.plan.is_empty() {
        Exit::ChangesPlanned
    } else {
        Exit::Success
    })
}
