//! `volctl schema`: the JSON Schema of the documents.

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
    VolumeConfig,
    /// UserVolumeConfig.
    #[value(name = "UserVolumeConfig")]
    UserVolumeConfig,
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
        Some(KindArg::VolumeConfig) => schema::for_kind(DocumentKind::VolumeConfig),
        Some(KindArg::UserVolumeConfig) => schema::for_kind(DocumentKind::UserVolumeConfig),
    };
    println!("{}", serde_json::to_string_pretty(&s)?);
    Ok(Exit::Success)
}
