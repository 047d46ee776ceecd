//! `volctl rotate-volume-key`: re-encrypt a volume's data to a new volume
//! key, offline or (`--online`) while it is open and mounted, keeping every
//! configured key (docs/rotation.md).

use super::converge::Target;
use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::converge::{open_device, rotate_volume_key, Mode, RunAt};
use controller::node::online::Job;
use controller::node::status::BootStatus;
use controller::volume::VolumeSpec;
use std::path::{Path, PathBuf};

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl rotate-volume-key --volume persistence --device /dev/sdb3 -f node.yaml --dry-run\n  volctl rotate-volume-key --volume persistence --device /dev/sdb3 -f node.yaml\n  volctl rotate-volume-key --volume persistence -f node.yaml --online   # on the node, the volume mounted\n\nThe volume must be converged; every configured key keeps working, before, during and after. Offline, it must not be open; --online, it stays open and in use (the device and its dm-crypt name come from the boot's status) and `volctl status` shows the progress. A cut run resumes at the next converge or boot.";

/// `volctl rotate-volume-key` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// Show the rotation only (one KDF run, nothing written).
    #[arg(long)]
    pub dry_run: bool,
    /// Rotate the open volume of this node, in use meanwhile.
    #[arg(long)]
    pub online: bool,
    /// The boot's status file (with --online: where the volume is open).
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
}

/// Rotates the volume key; prints the outcome.
pub fn exec(args: Args) -> Result<Exit> {
    let t = &args.target;
    let (spec, env) = t.spec_and_env()?;
    let mode = Mode::dry_run_if(args.dry_run);
    let job = args
        .online
        .then(|| online_job(&args.status_file, &spec, "rotate it offline with --device"))
        .transpose()?;
    let path = match &job {
        Some(j) => j.device.clone(),
        None => t.device()?.to_path_buf(),
    };
    let run_at = if job.is_some() {
        RunAt::Online
    } else {
        RunAt::Here
    };
    let device = open_device(&spec, &path, mode)?;
    let rt = runtime()?;
    let mut outcome = rt
        .block_on(rotate_volume_key(&spec, device, &env, mode, run_at))
        .with_context(|| format!("volume {}", spec.name))?;
    if let (Some(job), Some(run)) = (job, outcome.online.take()) {
        controller::node::online::stop_on_signals();
        outcome.encrypted = Some(
            rt.block_on(job.run(run))
                .with_context(|| format!("volume {}", spec.name))?,
        );
    }
    t.output
        .print(&outcome, || controller::render::outcome_text(&outcome))?;
    Ok(Exit::Success)
}

/// Where the volume is open this boot, from the status file (`offline`:
/// what to do when it is not open).
pub(crate) fn online_job(status_file: &Path, spec: &VolumeSpec, offline: &str) -> Result<Job> {
    let status = BootStatus::load(status_file)
        .with_context(|| format!("reading {} (has `volctl boot` run?)", status_file.display()))?;
    let v = status
        .volumes
        .iter()
        .find(|v| v.name == spec.name || v.label == spec.label)
        .with_context(|| format!("the boot status has no volume {}", spec.name))?;
    let (Some(device), Some(mapped)) = (&v.device, &v.mapped_device) else {
        anyhow::bail!("volume {} is not open ({offline})", spec.name);
    };
    let active = mapped.rsplit('/').next().unwrap_or(mapped).to_string();
    Ok(Job {
        volume: spec.name.clone(),
        device: PathBuf::from(device),
        active,
        run_dir: controller::node::paths::run_dir(status_file),
        header: None,
    })
}
