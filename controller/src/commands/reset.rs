//! `volctl reset`: wipe volumes so the next boot provisions them.

use crate::cli::output::outln;
use crate::cli::prelude::DiskArgs;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::node::status::BootStatus;
use controller::reset::{self, WipeMode};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl reset --system-labels-to-wipe EPHEMERAL\n  volctl reset --system-labels-to-wipe STATE,EPHEMERAL --reboot\n\nThe volume is closed if open; its LUKS2 header, keyslots and filesystem signatures are destroyed.\nWiping STATE drops the node's config: the next boot enters maintenance mode.";

/// `reset --wipe-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WipeArg {
    /// Metadata areas only.
    Fast,
    /// The whole partition.
    Full,
}

/// `volctl reset` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Partition labels to wipe, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub system_labels_to_wipe: Vec<String>,
    /// fast: the LUKS2 metadata area and the partition's start and end; full: everything.
    #[arg(long, value_enum, default_value_t = WipeArg::Fast)]
    pub wipe_mode: WipeArg,
    /// Reboot afterwards.
    #[arg(long)]
    pub reboot: bool,
    /// Disks.
    #[command(flatten)]
    pub disks: DiskArgs,
    /// Status file of the running boot.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// Command that reboots the node.
    #[arg(long, env = "VOLCTL_REBOOT_COMMAND", default_value = "reboot")]
    pub reboot_command: String,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Wipes, updates the status, reboots when asked.
pub fn exec(args: Args) -> Result<Exit> {
    let mut status = BootStatus::load(&args.status_file).ok();
    let mode = match args.wipe_mode {
        WipeArg::Fast => WipeMode::Fast,
        WipeArg::Full => WipeMode::Full,
    };
    let done = reset::reset(
        &controller::host::RealHost,
        &args.system_labels_to_wipe,
        &args.disks.resolve(),
        status.as_mut(),
        mode,
        reset::WhenBusy::for_reset(args.reboot),
    )?;
    for d in done {
        // A report of what was wiped: a reader that went away must not stop
        // what follows (the status saved, the errors said, the reboot).
        let _ = outln!("{d}");
    }
    if let Some(st) = status {
        st.save(&args.status_file)
            .with_context(|| format!("writing {}", args.status_file.display()))?;
    }
    if args.reboot {
        controller::node::reboot::reboot(&args.reboot_command).context("wiped")?;
    }
    Ok(Exit::Success)
}
