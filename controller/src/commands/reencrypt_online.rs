//! `volctl reencrypt-online` (hidden): the process an online reencryption
//! runs in, started by `volctl boot` (controller::node::online). The key
//! comes on stdin, never on the command line.

use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{Context, Result};
use api_types::KeyslotId;
use controller::converge::OnlineRun;
use controller::luks2::reencryption::Operation;
use controller::node::online::{HeaderFile, Job};
use providers::Passphrase;
use std::io::Read;
use std::path::PathBuf;

/// `volctl reencrypt-online` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume's name.
    #[arg(long)]
    pub volume: String,
    /// Its partition.
    #[arg(long)]
    pub device: PathBuf,
    /// Its dm-crypt device's name.
    #[arg(long)]
    pub active_name: String,
    /// The run-time directory (progress file).
    #[arg(long)]
    pub run_dir: PathBuf,
    /// A decryption's header file, where it is once STATE is in place;
    /// the process holds it open as fd 3.
    #[arg(long)]
    pub header: Option<PathBuf>,
    /// What runs (`encrypt`, `rotate-volume-key`, `decrypt`).
    #[arg(long)]
    pub operation: Operation,
    /// The old volume key's keyslot.
    #[arg(long)]
    pub old: Option<KeyslotId>,
    /// The new volume key's keyslot.
    #[arg(long)]
    pub new: Option<KeyslotId>,
    /// Print progress on the console too.
    #[arg(long)]
    pub console: bool,
}

/// Runs the reencryption to its end; its progress file says how it ended.
pub fn exec(args: Args) -> Result<Exit> {
    let mut key = zeroize::Zeroizing::new(Vec::new());
    std::io::stdin()
        .read_to_end(&mut key)
        .context("reading the key from stdin")?;
    controller::node::online::stop_on_signals();
    if args.console {
        controller::inplace::show_progress_on(controller::node::console::write);
    }
    let run = OnlineRun {
        operation: args.operation,
        old: args.old,
        new: args.new,
        passphrase: Passphrase::new(key.to_vec()),
    };
    let job = Job {
        volume: args.volume,
        device: args.device,
        active: args.active_name,
        run_dir: args.run_dir,
        header: args.header.map(HeaderFile::inherited),
    };
    runtime()?
        .block_on(job.run(run))
        .with_context(|| format!("volume {}", job.volume))?;
    Ok(Exit::Success)
}
