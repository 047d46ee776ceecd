//! `volctl reboot`: reboot the node (with `-n`, a remote node).

use crate::cli::Exit;
use anyhow::Result;

/// `volctl reboot` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Command that reboots the node.
    #[arg(long, env = "VOLCTL_REBOOT_COMMAND", default_value = "reboot")]
    pub reboot_command: String,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Reboots.
pub fn exec(args: Args) -> Result<Exit> {
    controller::node::reboot::reboot(&args.reboot_command)?;
    Ok(Exit::Success)
}
