//! `volctl disable-encryption`: decrypt a volume in place, offline or
//! (`--online`) while it is open and mounted, its data kept
//! (docs/migration.md, "Back to plain: decryption in place").

use super::converge::Target;
use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::converge::Mode;
use controller::decrypt::{DecryptOutcome, Decryption, RunData, Step, NODE_HEADER_DIR};
use controller::device::ActivationOptions;
use controller::node::online::{HeaderFile, Job};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl disable-encryption --volume persistence --device /dev/sdb3 -f node.yaml --dry-run\n  volctl disable-encryption --volume persistence --device /dev/sdb3 -f node.yaml\n  volctl disable-encryption --volume persistence -f node.yaml --online   # on the node, the volume mounted\n\nOffline, the volume must be closed (not open, not mounted); --online, it stays open and in use (the device and its dm-crypt name come from the boot's status), and is mapped to its plaintext at the end until it is closed. Any configured key opens it; the keys are the config's, unchanged. Its header is copied to a file in --header-dir (on a node: STATE), the only copy of the keys while the data moves; a cut run goes on where it stopped when run again with the same arguments. Afterwards, remove the volume's `encryption` from the config.";

/// `volctl disable-encryption` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// Show the steps left only (one KDF run, nothing written).
    #[arg(long)]
    pub dry_run: bool,
    /// Where the header file is kept while the data moves (persistent and
    /// private: on a node, STATE).
    #[arg(long, default_value = NODE_HEADER_DIR)]
    pub header_dir: PathBuf,
    /// Decrypt the open volume of this node, in use meanwhile.
    #[arg(long, conflicts_with = "activate")]
    pub online: bool,
    /// Activate the closed volume as /dev/mapper/NAME once the decryption
    /// is recorded, and decrypt through it (usable meanwhile; the boot's
    /// way with `decryptInPlace`).
    #[arg(long, value_name = "NAME")]
    pub activate: Option<String>,
    /// The boot's status file (with --online: where the volume is open;
    /// with either, beside it the run's progress for `volctl status`).
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
}

/// Decrypts the volume in place; prints what it did (or would do).
pub fn exec(args: Args) -> Result<Exit> {
    let t = &args.target;
    let (spec, env) = t.spec_and_env()?;
    let mode = Mode::dry_run_if(args.dry_run);
    let open = args
        .online
        .then(|| {
            super::rotate_volume_key::online_job(
                &args.status_file,
                &spec,
                "decrypt it offline with --device",
            )
        })
        .transpose()?;
    let options = ActivationOptions::of(&spec.encryption);
    let (device, data) = match (&open, &args.activate) {
        (Some(j), _) => (j.device.as_path(), RunData::Active { name: &j.active }),
        (None, Some(name)) => (
            t.device()?,
            RunData::Online {
                name,
                options: &options,
            },
        ),
        (None, None) => (t.device()?, RunData::Here),
    };
    let job = Decryption::new(&spec, device, &args.header_dir, &env);
    let rt = runtime()?;
    let mut outcome = rt
        .block_on(job.run_data(mode, data))
        .with_context(|| format!("volume {}", spec.name))?;
    if let (Some(name), Some(run)) = (&args.activate, outcome.online.take()) {
        let ran = rt
            .block_on(activated_run(&args, &outcome, name).run(run))
            .with_context(|| format!("volume {}", spec.name))?;
        outcome.rate = Some(ran.rate);
        outcome.steps.push(Step::Finish);
    }
    t.output.print(&outcome, || text(&outcome))?;
    Ok(Exit::Success)
}

/// The run through the device activated as `name`, here, its progress in
/// the run-time directory of `--status-file` as a boot's would be.
fn activated_run(args: &Args, o: &DecryptOutcome, name: &str) -> Job {
    let header = PathBuf::from(&o.header_file);
    controller::node::online::stop_on_signals();
    Job {
        volume: o.volume.clone(),
        device: PathBuf::from(&o.device),
        active: name.to_string(),
        run_dir: controller::node::paths::run_dir(&args.status_file),
        header: Some(HeaderFile {
            open_at: header.clone(),
            placed: header,
        }),
    }
}

/// The outcome in words.
fn text(o: &DecryptOutcome) -> String {
    let mut s = if o.applied {
        format!("decrypted volume {} in place on {}\n", o.volume, o.device)
    } else {
        format!(
            "would decrypt volume {} in place on {} (header file {})\n",
            o.volume, o.device, o.header_file
        )
    };
    for step in &o.steps {
        s.push_str(&format!("  - {}\n", step.describe()));
    }
    s.push_str(&format!("  data: {} MiB", o.data_mib));
    if let Some(eta) = o.eta_seconds {
        s.push_str(&format!(", about {eta} s at this machine's cipher speed"));
    }
    if let Some(rate) = o.rate {
        s.push_str(&format!(", decrypted at {:.0} MiB/s", rate.0));
    }
    s.push_str(&format!("\n  KDF runs: {}\n", o.kdf_runs));
    if o.applied {
        s.push_str(&format!(
            "{} holds its plaintext from its first byte; remove its `encryption` from the config\n",
            o.device
        ));
    }
    s
}
