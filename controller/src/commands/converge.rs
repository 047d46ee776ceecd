//! `volctl converge`: format a blank device, make its keyslots match the
//! config. Shares its target arguments with `plan`.

use crate::cli::output::Output;
use crate::cli::prelude::{load_config, runtime, KeySourceArgs, NodeArgs};
use crate::cli::Exit;
use anyhow::{Context, Result};
use api_types::{KeySource, KeyslotId};
use controller::converge::{converge, open_device, replace_key, Mode, NewRecoveryKey, Outcome};
use controller::node::recovery_held::HeldKeys;
use controller::node::recovery_out::RecoveryOut;
use controller::volume::VolumeSpec;
use providers::{ProviderEnv, RecoveryHandover};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl converge --volume EPHEMERAL --device /dev/sda5 -f node.yaml\n  VOLCTL_NODE_UUID=... volctl converge --volume data --device data.img -f node.yaml --state-salt-file salt\n\nA device holding a filesystem or anything else is refused, never formatted. A blank\ndevice is formatted only when a key it opens with (any kind but recovery) can be made.\n\nExit codes: 0 done, the volume as configured; 4 done, but a configured key could\nnot be enrolled (each named on stderr: its slot, kind and why; run again when its\nsource is back); 1 error, nothing or only whole steps written.";

/// Which volume, on which device, with which config.
#[derive(Debug, clap::Args)]
pub struct Target {
    /// Volume name (document name or partition label): STATE, EPHEMERAL, persistence, or a user volume.
    #[arg(long)]
    pub volume: String,
    /// Block device or image file holding the volume (with -n, the node's own).
    #[arg(long)]
    pub device: Option<PathBuf>,
    /// Config file(s) (with -n, the node's config on STATE).
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// The node UUID.
    #[command(flatten)]
    pub node: NodeArgs,
    /// File holding the STATE salt, for lockToSTATE keys (mode 0600).
    #[arg(long, env = "VOLCTL_STATE_SALT_FILE")]
    pub state_salt_file: Option<PathBuf>,
    /// KMS and TPM access.
    #[command(flatten)]
    pub keys: KeySourceArgs,
    /// Format a blank device even when, of its keys, only the recovery key
    /// can be made now (the run then exits 4 naming the keys left out).
    #[arg(long)]
    pub allow_incomplete: bool,
    /// Give up waiting for a typed key after this many seconds (the
    /// config's `timeout`, when shorter, still applies); default: no limit.
    #[arg(long, value_name = "SECONDS")]
    pub ask_timeout: Option<u64>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl Target {
    /// The device, which a local run needs.
    pub fn device(&self) -> Result<&std::path::Path> {
        self.device.as_deref().ok_or_else(|| {
            anyhow::anyhow!("--device is required (or -n NODE, to use the node's own)")
        })
    }

    /// The volume's spec from the config files, and the key sources.
    pub fn spec_and_env(&self) -> Result<(VolumeSpec, ProviderEnv)> {
        let docs = load_config(self.files()?, &self.volume)?;
        let spec = VolumeSpec::from_documents(&docs, &self.volume)?;
        Ok((spec, provider_env(self)?))
    }

    /// The config files, which a local run needs.
    pub fn files(&self) -> Result<&[PathBuf]> {
        if self.files.is_empty() {
            anyhow::bail!("-f CONFIG is required (or -n NODE, to use the node's own)");
        }
        Ok(&self.files)
    }
}

/// `volctl converge` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// Write recovery keys this run enrols to this new file (0600) instead
    /// of showing them on the terminal.
    #[arg(long)]
    pub recovery_key_out: Option<PathBuf>,
    /// Hold recovery keys this run enrols in RUN_DIR/recovery for one
    /// `volctl recovery-key fetch` (what a boot with nobody at the node
    /// does) instead of showing them; until fetched, the next run opened by
    /// another key replaces them.
    #[arg(long, value_name = "RUN_DIR", num_args = 0..=1, default_missing_value = "/run/volctl", conflicts_with = "recovery_key_out")]
    pub hold_recovery_key: Option<PathBuf>,
}

/// Converges the volume; hands over any recovery key it enrolled.
pub fn exec(args: Args) -> Result<Exit> {
    if let Some(run_dir) = &args.hold_recovery_key {
        let outcome = run_with(&args.target, Mode::Apply, RecoveryHandover::Held)?;
        if !outcome.recovery_keys.is_empty() {
            HeldKeys::in_run_dir(run_dir)
                .hold(
                    &outcome.volume,
                    args.target.device()?,
                    &outcome.recovery_keys,
                )
                .context("cannot hold the recovery key for a fetch")?;
            eprintln!(
                "recovery key(s) held for one `volctl recovery-key fetch --volume {}`",
                outcome.volume
            );
        }
        return Ok(complete_or_not(&outcome));
    }
    let mut out = RecoveryOut::open(args.recovery_key_out.as_deref()).with_context(|| {
        format!(
            "cannot create the recovery key file {} (it must not exist yet)",
            args.recovery_key_out
                .as_deref()
                .unwrap_or(std::path::Path::new(""))
                .display()
        )
    })?;
    let outcome = run(&args.target, Mode::Apply)?;
    let went = out.deliver(&outcome.volume, &outcome.recovery_keys)?;
    if let Some(where_) = &went {
        eprintln!("recovery key(s) {where_}");
    }
    out.finish();
    Ok(complete_or_not(&outcome))
}

/// Success when the volume is in its configured state; otherwise one line
/// per key that is not, on stderr, and [`Exit::Incomplete`].
fn complete_or_not(outcome: &Outcome) -> Exit {
    let missing = outcome.incomplete();
    for note in &missing {
        eprintln!("incomplete: {}: {note}", outcome.volume);
    }
    match missing.is_empty() {
        true => Exit::Success,
        false => Exit::Incomplete,
    }
}

/// Runs plan or converge on the target, prints the outcome.
pub fn run(target: &Target, mode: Mode) -> Result<Outcome> {
    run_with(target, mode, RecoveryHandover::Person)
}

/// The same, with new recovery keys going to `handover`.
fn run_with(target: &Target, mode: Mode, handover: RecoveryHandover) -> Result<Outcome> {
    let docs = load_config(target.files()?, &target.volume)?;
    let mut spec = VolumeSpec::from_documents(&docs, &target.volume)?;
    if target.allow_incomplete {
        spec.recovery_only = controller::volume::RecoveryOnly::Allowed;
    }
    let env = ProviderEnv {
        recovery_handover: handover,
        ..provider_env(target)?
    };
    let device = open_device(&spec, target.device()?, mode)?;
    let outcome = runtime()?
        .block_on(converge(&spec, device, &env, mode))
        .with_context(|| format!("volume {}", spec.name))?;
    target
        .output
        .print(&outcome, || controller::render::outcome_text(&outcome))?;
    Ok(outcome)
}

/// Replaces the `kind` key of the target's volume (passphrase change,
/// recovery-key rotate); `hand_over` gets a new recovery key first.
pub fn replace(
    target: &Target,
    kind: KeySource,
    slot: Option<KeyslotId>,
    hand_over: impl FnOnce(&NewRecoveryKey) -> std::io::Result<()>,
) -> Result<Outcome> {
    let docs = load_config(target.files()?, &target.volume)?;
    let spec = VolumeSpec::from_documents(&docs, &target.volume)?;
    let env = provider_env(target)?;
    let device = open_device(&spec, target.device()?, Mode::Apply)?;
    let outcome = runtime()?
        .block_on(replace_key(&spec, device, &env, kind, slot, hand_over))
        .with_context(|| format!("volume {}", spec.name))?;
    target
        .output
        .print(&outcome, || controller::render::outcome_text(&outcome))?;
    Ok(outcome)
}

/// The key sources of a run on `target`'s volume.
pub fn provider_env(target: &Target) -> Result<ProviderEnv> {
    let state_salt = match &target.state_salt_file {
        Some(p) => Some(controller::node::salt::read_salt_file(p)?),
        None => None,
    };
    Ok(ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Person,
        asker: controller::node::ask::bounded(
            controller::node::ask::asker(controller::node::ask::Caller::Person),
            target.ask_timeout.map(std::time::Duration::from_secs),
        ),
        node_uuid: target.node.uuid(),
        state_salt,
        kms: target.keys.kms.options()?,
        tpm: target.keys.tpm.options(),
        key_servers_until: None,
    })
}
