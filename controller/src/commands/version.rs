//! `volctl version`: this volctl's version (with `-n`, the node's).

use crate::cli::output::Output;
use crate::cli::Exit;
use anyhow::Result;

/// `volctl version` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Prints the version.
pub fn exec(args: Args) -> Result<Exit> {
    let v = env!("CARGO_PKG_VERSION");
    args.output.print(
        &serde_json::json!({"version": v, "maintenance": false}),
        || format!("volctl {v}\n"),
    )?;
    Ok(Exit::Success)
}
