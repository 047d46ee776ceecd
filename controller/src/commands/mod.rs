//! One module per `volctl` verb: its arguments and its `exec`. The domain
//! lives in the library; these only convert arguments and print results.

pub mod apply_config;
pub mod boot;
pub mod close;
pub mod completion;
pub mod converge;
pub mod disable_encryption;
pub mod disks;
pub mod enable_encryption;
pub mod gen;
pub mod keyslot_unlock;
pub mod kms;
pub mod kms_server;
pub mod man_pages;
pub mod meta;
pub mod passphrase;
pub mod plan;
pub mod provision;
pub mod reboot;
pub mod recovery_key;
pub mod reencrypt_online;
pub mod remote;
pub mod reset;
pub mod rotate_volume_key;
pub mod schema;
pub mod serve;
pub mod status;
pub mod tpm;
pub mod unlock;
pub mod validate;
pub mod version;

use crate::cli::remote::RemoteArgs;
use crate::cli::{Command, Exit};
use anyhow::{bail, Result};

/// Runs one command, here or (with `-n`, before or after a remote verb)
/// on the nodes named.
pub fn exec(mut command: Command, before_verb: RemoteArgs) -> Result<Exit> {
    let client = before_verb.merged(command.take_client_args());
    if !client.nodes.is_empty() {
        return remote::exec(command, &client);
    }
    if let Some(flag) = client.first_given() {
        bail!("{flag} is a client flag, for `volctl -n NODE …`; without -n, `{}` runs on this machine", remote::verb_name(&command));
    }
    match command {
        Command::Serve(a) => serve::exec(a),
        Command::Gen(a) => gen::exec(a),
        Command::Version(a) => version::exec(a),
        Command::Completion(a) => completion::exec(a),
        Command::ManPages(a) => man_pages::exec(a),
        Command::Reboot(a) => reboot::exec(a),
        Command::Unlock(a) => unlock::exec(a),
        Command::Validate(a) => validate::exec(a),
        Command::Schema(a) => schema::exec(a),
        Command::Plan(a) => plan::exec(a),
        Command::Converge(a) => converge::exec(a),
        Command::Passphrase(a) => passphrase::exec(a),
        Command::EnableEncryption(a) => enable_encryption::exec(a),
        Command::DisableEncryption(a) => disable_encryption::exec(a),
        Command::RecoveryKey(a) => recovery_key::exec(a),
        Command::RotateVolumeKey(a) => rotate_volume_key::exec(a),
        Command::Tpm(a) => tpm::exec(a),
        Command::ReencryptOnline(a) => reencrypt_online::exec(a),
        Command::KeyslotUnlock(a) => keyslot_unlock::exec(a),
        Command::Boot(a) => boot::exec(a),
        Command::ApplyConfig(a) => apply_config::exec(a),
        Command::Reset(a) => reset::exec(a),
        Command::KmsServer(a) => kms_server::exec(a),
        Command::Kms(a) => kms::exec(a),
        Command::Status(a) => status::exec(a),
        Command::Close(a) => close::exec(a),
        Command::Meta(a) => meta::exec(a),
        Command::Disks(a) => disks::exec(a),
        Command::Provision(a) => provision::exec(a),
    }
}
