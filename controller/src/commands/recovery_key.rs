//! `volctl recovery-key rotate`: a new recovery key, handed over before it
//! is enrolled; the old one is removed only after the new one is in.

use super::converge::{replace, Target};
use crate::cli::output::out;
use crate::cli::Exit;
use anyhow::{Context, Result};
use api_types::{KeySource, KeyslotId};
use controller::node::recovery_held::HeldKeys;
use controller::node::recovery_out::RecoveryOut;
use std::path::PathBuf;
use zeroize::Zeroizing;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl -n 10.0.0.5 recovery-key fetch --volume persistence\n  volctl recovery-key rotate --volume persistence --device /dev/sdb3 -f node.yaml --recovery-key-out /root/new-key.txt\n\nThe new key is shown (or written to the file) before it is enrolled, and the old one stops working once the new one is in.";

/// `volctl recovery-key` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Enrol a new recovery key in place of the old one.
    Rotate(Box<RotateArgs>),
    /// Print, once, the recovery key a boot enrolled with nobody to show it
    /// to (usually `volctl -n NODE recovery-key fetch --volume V`).
    Fetch(Box<FetchArgs>),
}

/// `volctl recovery-key fetch` arguments.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// The volume (document name).
    #[arg(long)]
    pub volume: String,
    /// The node's run-time directory, where boot holds the key.
    #[arg(long, default_value = "/run/volctl")]
    pub run_dir: PathBuf,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
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

/// Rotates or fetches the recovery key.
pub fn exec(args: Args) -> Result<Exit> {
    match args {
        Args::Rotate(a) => rotate(*a),
        Args::Fetch(a) => fetch(*a),
    }
}

/// Prints the keys held for the volume and forgets them.
fn fetch(a: FetchArgs) -> Result<Exit> {
    let held = HeldKeys::in_run_dir(&a.run_dir);
    let keys = held.peek(&a.volume)?;
    let text = fetched_text(
        &a.volume,
        keys.iter().map(|k| (k.slot.get(), k.key.expose())),
    );
    // Forgotten only once shown: a reader that went away gets them again.
    out!("{}", text.as_str()).context("the keys were not shown; they are still held")?;
    held.forget(&a.volume)?;
    Ok(Exit::Success)
}

/// What `fetch` prints: one `VOLUME slot N: KEY` line a key, and the
/// warning that it is shown once.
pub fn fetched_text<'a>(
    volume: &str,
    keys: impl Iterator<Item = (u32, &'a [u8])>,
) -> Zeroizing<String> {
    let mut text = Zeroizing::new(String::new());
    for (slot, key) in keys {
        text.push_str(&format!(
            "{volume} slot {slot}: {}\n",
            String::from_utf8_lossy(key)
        ));
    }
    eprintln!("shown once: the node no longer holds it; write it down");
    text
}

fn rotate(a: RotateArgs) -> Result<Exit> {
    let mut out = RecoveryOut::open(a.recovery_key_out.as_deref())
        .context("cannot create the recovery key file (it must not exist yet)")?;
    let volume = a.target.volume.clone();
    let done = replace(&a.target, KeySource::Recovery, a.slot, |k| {
        out.deliver(&volume, std::slice::from_ref(k)).map(|_| ())
    });
    out.finish();
    done?;
    eprintln!("recovery key rotated; the old one no longer opens {volume}");
    Ok(Exit::Success)
}
