//! The command line: the top-level parser and the vocabulary the commands
//! share. Each subcommand's arguments and handler live in `commands/` (one
//! file a verb, the way cargo does it); what several commands take is in
//! [`prelude`]; how results are printed is in [`output`]; exit codes are
//! named once in [`Exit`].

pub mod kdf_ticker;
pub mod output;
pub mod prelude;
pub mod remote;

use crate::commands::{
    apply_config, boot, close, completion, converge, disable_encryption, disks, enable_encryption,
    gen, keyslot_unlock, kms_server, man_pages, meta, passphrase, plan, provision, reboot,
    recovery_key, reencrypt_online, reset, rotate_volume_key, schema, serve, status, tpm, unlock,
    validate, version,
};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// volctl: declarative LUKS2 volume controller.
#[derive(Debug, Parser)]
#[command(name = "volctl", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for debug); logs go to stderr. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Where the command runs (`-n NODE`: over the node API); the verbs
    /// that can run remotely take these flags after the verb too.
    #[command(flatten)]
    pub remote: remote::RemoteArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check config documents; exit 0 when valid, 1 when not.
    #[command(after_help = validate::HELP)]
    Validate(validate::Args),
    /// Print the JSON Schema of the documents.
    #[command(after_help = schema::HELP)]
    Schema(schema::Args),
    /// Show what `converge` would change on a volume; change nothing.
    #[command(after_help = plan::HELP)]
    Plan(plan::Args),
    /// Format the device if blank, then make its keyslots match the config.
    #[command(after_help = converge::HELP)]
    Converge(converge::Args),
    /// Change the passphrase of a prompt key (safe under a power cut).
    #[command(subcommand, after_help = passphrase::HELP)]
    Passphrase(passphrase::Args),
    /// Encrypt a plain volume with a passphrase (and a recovery key): formatted now if blank.
    #[command(after_help = enable_encryption::HELP)]
    EnableEncryption(enable_encryption::Args),
    /// Decrypt a volume in place (offline), its data kept: the reverse of encryption in place.
    #[command(after_help = disable_encryption::HELP)]
    DisableEncryption(disable_encryption::Args),
    /// Replace a recovery key with a new one, handed over before it is enrolled.
    #[command(subcommand, after_help = recovery_key::HELP)]
    RecoveryKey(recovery_key::Args),
    /// Re-encrypt a volume to a new volume key (offline), keeping every configured key.
    #[command(after_help = rotate_volume_key::HELP)]
    RotateVolumeKey(rotate_volume_key::Args),
    /// Let TPM keys open the volume with the PCR values a known update will bring.
    #[command(subcommand, after_help = tpm::HELP)]
    Tpm(tpm::Args),
    /// The process an online reencryption runs in (started by `volctl boot`).
    #[command(hide = true)]
    ReencryptOnline(reencrypt_online::Args),
    /// A KDF worker (started by a volctl that opens several volumes at once).
    #[command(hide = true)]
    KeyslotUnlock(keyslot_unlock::Args),
    /// Bring up every volume: find partitions by label, unlock or format, converge keyslots, open, mount.
    #[command(after_help = boot::HELP)]
    Boot(boot::Args),
    /// Apply a new config: validate, show what changes, then stage it, apply it now, or stage and reboot.
    #[command(after_help = apply_config::HELP)]
    ApplyConfig(apply_config::Args),
    /// Wipe volumes so the next boot provisions them from the config.
    #[command(after_help = reset::HELP)]
    Reset(reset::Args),
    /// Run a KMS server for a fleet (sidero.kms.KMSService, AES-256-GCM; stateless, or with node records), or make a master key.
    #[command(args_conflicts_with_subcommands = true, after_help = kms_server::HELP)]
    KmsServer(kms_server::Args),
    /// Administer a KMS server's node records: nodes, revoke, rotate, retire.
    #[command(subcommand, after_help = crate::commands::kms::HELP)]
    Kms(crate::commands::kms::Args),
    /// Print the status of every volume from the last boot.
    #[command(after_help = status::HELP)]
    Status(status::Args),
    /// Unmount and close every volume the last boot opened.
    #[command(after_help = close::HELP)]
    Close(close::Args),
    /// Read and write the META partition's records.
    #[command(after_help = meta::HELP)]
    Meta(meta::Args),
    /// List disks with the facts disk selectors see.
    #[command(after_help = disks::HELP)]
    Disks(disks::Args),
    /// Create the partitions the config asks for (only that).
    #[command(after_help = provision::HELP)]
    Provision(provision::Args),
    /// Serve the node API (mutual TLS or an API key) for `volctl -n`.
    #[command(after_help = serve::HELP)]
    Serve(serve::Args),
    /// Make a CA, the node's certificate, admin and reader certificates and client configs.
    #[command(after_help = gen::HELP)]
    Gen(gen::Args),
    /// Print the version (with -n, the node's).
    Version(version::Args),
    /// Reboot the node (with -n, a remote node).
    Reboot(reboot::Args),
    /// Answer a node's boot that asks for a volume's passphrase (with -n).
    #[command(after_help = unlock::HELP)]
    Unlock(unlock::Args),
    /// Print the shell completion script for bash, zsh, fish, elvish or PowerShell.
    #[command(after_help = completion::HELP)]
    Completion(completion::Args),
    /// Write the man pages (volctl.1 and one per verb) to a folder (the package build runs it).
    #[command(hide = true)]
    ManPages(man_pages::Args),
}

impl Command {
    /// The client flags given after the verb (taken out of it): only the
    /// verbs that can run on a node over the network have them.
    pub fn take_client_args(&mut self) -> remote::RemoteArgs {
        let client = match self {
            Command::Version(a) => &mut a.client,
            Command::Status(a) => &mut a.client,
            Command::Plan(a) => &mut a.client,
            Command::Reboot(a) => &mut a.client,
            Command::Unlock(a) => &mut a.client,
            Command::Reset(a) => &mut a.client,
            Command::ApplyConfig(a) => &mut a.client,
            Command::RecoveryKey(recovery_key::Args::Fetch(a)) => &mut a.client,
            Command::Tpm(tpm::Args::Allow(a)) => &mut a.client,
            _ => return remote::RemoteArgs::default(),
        };
        std::mem::take(client)
    }

    /// Whether a terminal may show a line while its KDFs run: not for
    /// the boot (its volumes ask questions while others' KDFs run), the
    /// servers, and the hidden worker processes.
    pub fn shows_kdf_progress(&self) -> bool {
        !matches!(
            self,
            Command::Boot(_)
                | Command::Serve(_)
                | Command::KmsServer(_)
                | Command::KeyslotUnlock(_)
                | Command::ReencryptOnline(_)
        )
    }

    /// Whether it is a server (`serve`, `kms-server`): it logs one line
    /// per request by default.
    pub fn is_server(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::KmsServer(_))
    }
}

/// How volctl exits, named once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done (0).
    Success,
    /// An error, or an invalid config (1).
    Failure,
    /// `plan --detailed-exitcode`: changes are planned (2).
    ChangesPlanned,
    /// `boot`: some volume is not ready; `status --volume`: it is not (3).
    NotReady,
    /// `keyslot-unlock` (a KDF worker): the passphrase opens no keyslot (3).
    WrongKey,
    /// `converge`: done, but some configured key could not be enrolled (or
    /// a removal waits for it): the volume is not in its configured state (4).
    Incomplete,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(match e {
            Exit::Success => 0,
            Exit::Failure => 1,
            Exit::ChangesPlanned => 2,
            Exit::NotReady | Exit::WrongKey => 3,
            Exit::Incomplete => 4,
        })
    }
}

/// The error and its causes, each once: a cause whose text the message
/// before it already holds (errors that print their source) is skipped.
pub fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
