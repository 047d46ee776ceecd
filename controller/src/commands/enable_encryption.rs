//! `volctl enable-encryption`: turn on encryption for a plain volume of a
//! running node (an appliance's first boot), with a passphrase asked twice
//! and, if asked for, a recovery key (docs/appliance.md).

use crate::cli::output::{out, outln};
use crate::cli::prelude::{runtime, KeySourceArgs, NodeArgs};
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::enable::{self, EnableOptions, Enabled};
use controller::node::ask::{asker, Caller};
use controller::node::recovery_out::RecoveryOut;
use providers::ProviderEnv;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl enable-encryption --volume persistence --recovery-key\n  volctl enable-encryption --volume persistence --recovery-key --recovery-key-out /root/recovery.txt\n  volctl enable-encryption --volume persistence --recovery-key --in-place   # keeps an ext4's data\n\nA blank partition is formatted now; one that holds data is left alone and the config is staged: for the wipe flow, or with --in-place for encryption in place at the next boot.";

/// `volctl enable-encryption` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume (document name or partition label).
    #[arg(long)]
    pub volume: String,
    /// Also enrol a recovery key (slot 9), shown once.
    #[arg(long)]
    pub recovery_key: bool,
    /// A partition that holds ext4 is encrypted in place at the next boot,
    /// its data kept (`inPlace: true`), instead of waiting for a wipe.
    #[arg(long)]
    pub in_place: bool,
    /// Write the recovery key to this new file (0600) instead of the terminal.
    #[arg(long, requires = "recovery_key")]
    pub recovery_key_out: Option<PathBuf>,
    /// Status file of the running boot.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// The node UUID.
    #[command(flatten)]
    pub node: NodeArgs,
    /// KMS and TPM access.
    #[command(flatten)]
    pub keys: KeySourceArgs,
}

/// Enables encryption; hands the recovery key over.
pub fn exec(args: Args) -> Result<Exit> {
    let mut out = RecoveryOut::open(args.recovery_key_out.as_deref())
        .context("cannot create the recovery key file (it must not exist yet)")?;
    let env = ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Person,
        asker: asker(Caller::Person),
        node_uuid: args.node.uuid(),
        state_salt: None,
        kms: args.keys.kms.options()?,
        tpm: args.keys.tpm.options(),
        key_servers_until: None,
    };
    let opts = EnableOptions {
        volume: args.volume.clone(),
        recovery_key: args.recovery_key,
        in_place: args.in_place,
        status_file: args.status_file.clone(),
    };
    let done = runtime()?.block_on(enable::enable_encryption(&opts, &env));
    let result = match done {
        Ok(Enabled::Encrypted(outcome)) => {
            if let Some(to) = out.deliver(&outcome.volume, &outcome.recovery_keys)? {
                eprintln!("recovery key {to}");
            }
            out!("{}", controller::render::outcome_text(&outcome))?;
            outln!("{} is encrypted; the config is in force, and the next boot opens it with the passphrase", outcome.volume)?;
            Ok(Exit::Success)
        }
        Ok(Enabled::Staged { found }) if args.in_place => {
            outln!("{} holds {found}: nothing was written to it yet. The config (inPlace) is staged; the next boot asks for the new passphrase twice and encrypts it in place, its data kept (docs/migration.md)", args.volume)?;
            Ok(Exit::Success)
        }
        Ok(Enabled::Staged { found }) => {
            outln!("{} holds {found}: nothing was written to it. The config is staged; back up its data, then `volctl reset --system-labels-to-wipe {} --reboot` (the next boot formats it and asks for the new passphrase), or keep the data with --in-place (ext4)", args.volume, args.volume)?;
            Ok(Exit::Success)
        }
        Err(e) => Err(e.into()),
    };
    out.finish();
    result
}
