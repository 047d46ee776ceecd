//! `volctl schema`: the JSON Schema of the documents.

use crate::cli::output::outln;
use crate::cli::Exit;
use anyhow::Result;
use api_types::{schema, DocumentKind};

/// Examples shown by `--help`.
pub const HELP: &str =
    "Example:\n  volctl schema > volctl.schema.json\n  volctl schema --kind UserVolumeConfig";

/// Document kinds for `schema --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// VolumeConfig.
    #[value(name = "VolumeConfig")]
    Volume,
    /// UserVolumeConfig.
    #[value(name = "UserVolumeConfig")]
    User,
    /// RawVolumeConfig (Talos).
    #[value(name = "RawVolumeConfig")]
    Raw,
    /// ExistingVolumeConfig (Talos).
    #[value(name = "ExistingVolumeConfig")]
    Existing,
    /// SwapVolumeConfig (Talos).
    #[value(name = "SwapVolumeConfig")]
    Swap,
}

impl From<KindArg> for DocumentKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Volume => DocumentKind::VolumeConfig,
            KindArg::User => DocumentKind::UserVolumeConfig,
            KindArg::Raw => DocumentKind::RawVolumeConfig,
            KindArg::Existing => DocumentKind::ExistingVolumeConfig,
            KindArg::Swap => DocumentKind::SwapVolumeConfig,
        }
    }
}

/// `volctl schema` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only this kind (default: one schema accepting any kind).
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
}

/// Prints the schema.
pub fn exec(args: Args) -> Result<Exit> {
    let s = match args.kind {
        None => schema::for_all_kinds(),
        Some(k) => schema::for_kind(k.into()),
    };
    outln!("{}", serde_json::to_string_pretty(&s)?)?;
    Ok(Exit::Success)
}
