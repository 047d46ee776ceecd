//! `volctl recovery-key rotate`: a new recovery key, handed over before it
//! is enrolled; the old one is removed only after the new one is in.

use super::converge::{replace, Target};
use crate::cli::Exit;
use anyhow::{Context, Result};
use api_types::{KeySource, KeyslotId};
use controller::node::recovery_out::RecoveryOut;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl recovery-key rotate --volume persistence --device /dev/sdb3 -f node.yaml --recovery-key-out /root/new-key.txt\n\nThe new key is shown (or written to the file) before it is enrolled, and the old one stops working once the new one is in.";

/// `volctl recovery-key` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Enrol a new recovery key in place of the old one.
    Rotate(RotateArgs),
}

/// `volctl recovery-key rotate` arguments.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// The recovery key's slot, when the volume has several.
    #[arg(long)]
    pub slot: Option<KeyslotId>,
    /// Write the new key to this new file (0600) instead of the terminal.
    #[arg(long)]
    pub recovery_key_out: Option<PathBuf>,
}

/// Rotates the recovery key.
pub fn exec(args: Args) -> Result<Exit> {
    let Args::Rotate(a) = args;
    let mut out = RecoveryOut::open(a.recovery_key_out.as_deref())
        .context("cannot create the recovery key file (it must not exist yet)")?;
    let volume = a.target.volume.clone();
    let done = replace(&a.target, KeySource::Recovery, a.slot, |k| {
        out.deliver(&volume, std::slice::from_ref(k))
            .map(|_| ())
            .map_err(|e| format!("cannot hand the new recovery key over: {e}; nothing was written"))
    });
    out.finish();
    done?;
    eprintln!("recovery key rotated; the old one no longer opens {volume}");
    Ok(Exit::Success)
}
