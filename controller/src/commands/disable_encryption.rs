//! `volctl disable-encryption`: decrypt a volume in place, offline, its
//! data kept (docs/migration.md, "Decryption in place").

use super::converge::Target;
use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::converge::Mode;
use controller::decrypt::{DecryptOutcome, Decryption, NODE_HEADER_DIR};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl disable-encryption --volume persistence --device /dev/sdb3 -f node.yaml --dry-run\n  volctl disable-encryption --volume persistence --device /dev/sdb3 -f node.yaml\n\nThe volume must be closed (not open, not mounted). Any configured key opens it; the keys are the config's, unchanged. Its header is copied to a file in --header-dir (on a node: STATE), the only copy of the keys while the data moves; a cut run goes on where it stopped when run again with the same arguments. Afterwards, remove the volume's `encryption` from the config.";

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
}

/// Decrypts the volume in place; prints what it did (or would do).
pub fn exec(args: Args) -> Result<Exit> {
    let t = &args.target;
    let (spec, env) = t.spec_and_env()?;
    let mode = Mode::dry_run_if(args.dry_run);
    let job = Decryption::new(&spec, t.device()?, &args.header_dir, &env);
    let outcome = runtime()?
        .block_on(job.run(mode))
        .with_context(|| format!("volume {}", spec.name))?;
    t.output.print(&outcome, || text(&outcome))?;
    Ok(Exit::Success)
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
