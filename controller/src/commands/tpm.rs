//! `volctl tpm allow`: let the TPM keys of a volume open it with PCR values
//! the machine will have after a planned update, beside today's values.

use super::converge::Target;
use crate::cli::output::outln;
use crate::cli::prelude::runtime;
use crate::cli::Exit;
use anyhow::{Context, Result};
use controller::converge::{allow_tpm_values, change_tpm_pin, open_device, Mode};
use providers::tpm::policy::{digest_from_hex, PcrValues, Sha256Digest};

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl tpm pin change --volume persistence --device /dev/sdb3 -f node.yaml\n  volctl tpm pcrs --pcr 7            # on a test machine, after the update: 7=<64 hex digits>\n  volctl -n 10.0.0.5 tpm allow --volume EPHEMERAL --pcr 7=3d45…   # on a node, with its config (admin)\n  volctl tpm allow --volume EPHEMERAL --device /dev/sda4 -f node.yaml --pcr 7=3d45…(64 hex digits) --dry-run\n  volctl tpm allow --volume EPHEMERAL --device /dev/sda4 -f node.yaml --pcr 7=3d45…\n\nEach TPM key of the volume is sealed again, the same key, to its PCRs' current values or those values with the PCRs given changed (TPM2_PolicyOR): the first boot after the update opens the volume unattended, and its converge narrows the key to the values it then finds. Only the tokens are written (no keyslot, one KDF run). How to learn the values an update will produce: docs/keys.md, \"TPM across updates\".";

/// `volctl tpm` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Args {
    /// Allow the values PCRs will have after a known update, beside today's.
    Allow(Box<AllowArgs>),
    /// Print the current SHA-256 values of PCRs as `N=HEX` lines, the form
    /// `allow --pcr` takes (run it on a test machine after the update).
    Pcrs(PcrsArgs),
    /// A TPM key's PIN (`tpm: {pin: true}`).
    #[command(subcommand)]
    Pin(PinArgs),
}

/// `volctl tpm pin` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PinArgs {
    /// Change the PIN of a TPM key: the same key sealed again with a new
    /// PIN, only its token written (no new keyslot, one KDF run).
    Change(PinChangeArgs),
}

/// `volctl tpm pin change` arguments.
#[derive(Debug, clap::Args)]
pub struct PinChangeArgs {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// The TPM key's slot, when the volume has several with a PIN.
    #[arg(long)]
    pub slot: Option<api_types::KeyslotId>,
}

/// `volctl tpm pcrs` arguments.
#[derive(Debug, clap::Args)]
pub struct PcrsArgs {
    /// A PCR number, 0–23 (repeat for several).
    #[arg(long = "pcr", value_name = "N", required = true, value_parser = clap::value_parser!(u32).range(0..=i64::from(api_types::encryption::MAX_PCR)))]
    pub pcrs: Vec<u32>,
    /// Where the TPM is.
    #[command(flatten)]
    pub tpm: crate::cli::prelude::TpmArgs,
}

/// `volctl tpm allow` arguments.
#[derive(Debug, clap::Args)]
pub struct AllowArgs {
    /// The volume.
    #[command(flatten)]
    pub target: Target,
    /// A PCR and the SHA-256 value it will have: `7=<64 hex digits>` (repeat for several PCRs).
    #[arg(long = "pcr", value_name = "N=HEX", required = true, value_parser = parse_pcr)]
    pub pcrs: Vec<(u32, Sha256Digest)>,
    /// Show what would be sealed only (one KDF run, nothing written).
    #[arg(long)]
    pub dry_run: bool,
    /// The node(s) to run it on, and the client's credentials.
    #[command(flatten)]
    pub client: crate::cli::remote::RemoteArgs,
}

/// A `--pcr` that is not `N=<64 hex digits>` with N in 0–23.
#[derive(Debug, thiserror::Error)]
pub enum BadPcr {
    /// No `=`.
    #[error("`{0}` is not N=HEX (e.g. 7=3d45…, 64 hex digits)")]
    Shape(String),
    /// Not a PCR number.
    #[error("`{0}` is not a PCR number (0–23)")]
    Number(String),
    /// Not a SHA-256 value.
    #[error("the value of PCR {0} is not a SHA-256 value (64 hex digits)")]
    Value(u32),
}

pub(crate) fn parse_pcr(s: &str) -> Result<(u32, Sha256Digest), BadPcr> {
    let (n, v) = s.split_once('=').ok_or_else(|| BadPcr::Shape(s.into()))?;
    let pcr: u32 = n
        .trim()
        .parse()
        .ok()
        .filter(|p| *p <= api_types::encryption::MAX_PCR)
        .ok_or_else(|| BadPcr::Number(n.into()))?;
    let value = digest_from_hex(v).ok_or(BadPcr::Value(pcr))?;
    Ok((pcr, value))
}

/// Runs a `volctl tpm` subcommand.
pub fn exec(args: Args) -> Result<Exit> {
    match args {
        Args::Allow(a) => allow(*a),
        Args::Pcrs(a) => pcrs(&a),
        Args::Pin(PinArgs::Change(a)) => pin_change(&a),
    }
}

fn pin_change(args: &PinChangeArgs) -> Result<Exit> {
    let t = &args.target;
    let (spec, env) = t.spec_and_env()?;
    let device = open_device(&spec, t.device()?, Mode::Apply)?;
    let outcome = runtime()?
        .block_on(change_tpm_pin(&spec, device, &env, args.slot))
        .with_context(|| format!("volume {}", spec.name))?;
    t.output
        .print(&outcome, || controller::render::outcome_text(&outcome))?;
    Ok(Exit::Success)
}

fn pcrs(args: &PcrsArgs) -> Result<Exit> {
    let options = args.tpm.options();
    let values = runtime()?.block_on(providers::tpm::read_pcrs(&options, &args.pcrs))?;
    for (pcr, value) in &values.0 {
        outln!("{pcr}={}", hex::encode(value))?;
    }
    Ok(Exit::Success)
}

fn allow(args: AllowArgs) -> Result<Exit> {
    let t = &args.target;
    let (spec, env) = t.spec_and_env()?;
    let mode = Mode::dry_run_if(args.dry_run);
    let changes = PcrValues(args.pcrs.iter().copied().collect());
    let device = open_device(&spec, t.device()?, mode)?;
    let outcome = runtime()?
        .block_on(allow_tpm_values(&spec, device, &env, mode, &changes))
        .with_context(|| format!("volume {}", spec.name))?;
    t.output
        .print(&outcome, || controller::render::outcome_text(&outcome))?;
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pcr_is_a_number_and_a_sha256_value() {
        let v = "ab".repeat(32);
        assert_eq!(parse_pcr(&format!("7={v}")).unwrap(), (7, [0xab; 32]));
        for (arg, err) in [
            ("7", "`7` is not N=HEX (e.g. 7=3d45…, 64 hex digits)"),
            ("24=00", "`24` is not a PCR number (0–23)"),
            (
                "7=abcd",
                "the value of PCR 7 is not a SHA-256 value (64 hex digits)",
            ),
        ] {
            assert_eq!(parse_pcr(arg).unwrap_err().to_string(), err);
        }
    }
}
