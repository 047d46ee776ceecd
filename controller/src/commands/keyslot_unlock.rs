//! `volctl keyslot-unlock` (hidden): a KDF worker (controller::device::
//! kdf_worker). Started by a volctl that opens several volumes at once;
//! the passphrase on stdin, the volume key on stdout, nothing else.

use crate::cli::Exit;
use anyhow::Result;
use api_types::{KeySize, KeyslotId};
use std::path::PathBuf;

/// `volctl keyslot-unlock` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The header copy (already checked by the caller).
    #[arg(long)]
    pub header: PathBuf,
    /// The keyslot.
    #[arg(long)]
    pub slot: KeyslotId,
    /// The volume key's size in bytes.
    #[arg(long)]
    pub key_size: u32,
}

/// Runs the one KDF; the exit status says how it went.
pub fn exec(args: Args) -> Result<Exit> {
    use controller::device::kdf_worker::{serve, Served};
    Ok(
        match serve(&args.header, args.slot, KeySize::from_bytes(args.key_size)) {
            Served::Key => Exit::Success,
            Served::WrongKey => Exit::WrongKey,
            Served::Failed => Exit::Failure,
        },
    )
}
