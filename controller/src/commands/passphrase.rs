//! `volctl passphrase change`: a new passphrase for a `prompt` key, safe
//! under a power cut (docs/appliance.md).

use super::converge::{replace, Target};
use crate::cli::Exit;
use anyhow::Result;
use api_types::{KeySource, KeyslotId};

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl passphrase change --volume persistence --device /dev/sdb3 -f node.yaml\n\nAsks for the current passphrase (unless another configured key opens the volume), then the new one twice. The new passphrase is enrolled in a spare slot first, so a power cut at any point leaves the old or the new one working.";

/// `volctl passphrase` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Change the passphrase of a prompt key.
    Change(ChangeArgs),
}

/// `volctl passphrase change` arguments.
#[derive(Debug, clap::Args)]
pub struct ChangeArgs {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// The prompt key's slot, when the volume has several.
    #[arg(long)]
    pub slot: Option<KeyslotId>,
}

/// Changes the passphrase.
pub fn exec(args: Args) -> Result<Exit> {
    let Args::Change(a) = args;
    replace(&a.target, KeySource::Prompt, a.slot, |_| Ok(()))?;
    eprintln!("passphrase changed");
    Ok(Exit::Success)
}
