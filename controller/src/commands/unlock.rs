//! `volctl -n NODE unlock --volume V`: answer a boot that asks for a
//! volume's passphrase (or recovery key), from the admin's terminal, over
//! the node API (TLS; admin role).

use crate::cli::Exit;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, IsTerminal};
use zeroize::Zeroizing;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl -n 10.0.0.5 unlock --volume persistence          # asks on this terminal, without echo\n  printf '%s\\n' \"$PASS\" | volctl -n 10.0.0.5 unlock --volume persistence\n\nReaches a boot while the volume is waiting-for-key (see `volctl -n NODE status`).";

/// `volctl unlock` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume whose key the node asks for.
    #[arg(long)]
    pub volume: String,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// Without `-n` there is nothing to answer here.
pub fn exec(_args: Args) -> Result<Exit> {
    bail!("unlock answers a node over the network: give -n NODE (on the node itself, answer the console or an ask-password agent)")
}

/// The passphrase, from the terminal (no echo) or one line of stdin.
pub fn read_passphrase(volume: &str) -> Result<Zeroizing<Vec<u8>>> {
    if std::io::stdin().is_terminal() {
        use providers::ask::Asker;
        let q = providers::ask::Question {
            id: format!("volctl:{volume}"),
            message: format!("Passphrase (or recovery key) for {volume}"),
            timeout: None,
        };
        let asker = controller::node::ask::ConsoleAsker::stdin();
        let p = crate::cli::prelude::runtime()?
            .block_on(asker.ask(&q))
            .context("reading the passphrase")?;
        return Ok(Zeroizing::new(p.expose().to_vec()));
    }
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the passphrase from stdin")?;
    let trimmed = line.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        bail!("no passphrase on stdin");
    }
    Ok(Zeroizing::new(trimmed.as_bytes().to_vec()))
}
