//! `volctl rotate-volume-key`: re-encrypt a volume's data to a new volume
//! key, offline, keeping every configured key (docs/rotation.md).

use super::converge::{provider_env, Target};
use crate::cli::prelude::{load_config, runtime};
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::converge::{open_device, rotate_volume_key, Mode};
use controller::volume::VolumeSpec;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl rotate-volume-key --volume persistence --device /dev/sdb3 -f node.yaml --dry-run\n  volctl rotate-volume-key --volume persistence --device /dev/sdb3 -f node.yaml\n\nThe volume must not be open, and converged; every configured key keeps working, before, during and after. A cut run resumes at the next converge or boot.";

/// `volctl rotate-volume-key` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// Show the rotation only (one KDF run, nothing written).
    #[arg(long)]
    pub dry_run: bool,
}

/// Rotates the volume key; prints the outcome.
pub fn exec(args: Args) -> Result<Exit> {
    let t = &args.target;
    let docs = load_config(t.files()?, &t.volume)?;
    let spec = VolumeSpec::from_documents(&docs, &t.volume)?;
    let env = provider_env(t)?;
    let mode = if args.dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    };
    let device = open_device(&spec, t.device()?, mode)?;
    let outcome = runtime()?
        .block_on(rotate_volume_key(&spec, device, &env, mode))
        .with_context(|| format!("volume {}", spec.name))?;
    t.output
        .print(&outcome, || controller::render::outcome_text(&outcome))?;
    Ok(Exit::Success)
}
