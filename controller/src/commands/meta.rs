//! `volctl meta`: read and write META's records.

use crate::cli::output::outln;
use crate::cli::prelude::DiskArgs;
use crate::cli::Exit;
use anyhow::{bail, Context, Result};
use controller::node::{disks, meta};
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl meta --disk /dev/sda list\n  volctl meta --disk disk.img get 9\n\nTag 9 holds STATE's encryption config (JSON).";

/// `volctl meta` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Disks.
    #[command(flatten)]
    pub disks: DiskArgs,
    /// The META partition itself (instead of searching disks).
    #[arg(long, conflicts_with = "disks")]
    pub device: Option<PathBuf>,
    /// Operation.
    #[command(subcommand)]
    pub op: MetaOp,
}

/// `volctl meta` operations.
#[derive(Debug, clap::Subcommand)]
pub enum MetaOp {
    /// List the tags and sizes of META's records.
    List,
    /// Print one record's value.
    Get {
        /// Tag number: decimal (192) or hex (0xc0).
        #[arg(value_parser = parse_tag)]
        tag: u32,
    },
    /// Set one record (value given as text).
    Set {
        /// Tag number: decimal (192) or hex (0xc0).
        #[arg(value_parser = parse_tag)]
        tag: u32,
        /// Value.
        value: String,
    },
    /// Delete one record.
    Delete {
        /// Tag number: decimal (192) or hex (0xc0).
        #[arg(value_parser = parse_tag)]
        tag: u32,
    },
}

/// A tag that is not a number.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a tag number (decimal like 192, or hex like 0xc0)")]
pub struct NotATag(String);

/// A tag as the docs write it: `0xc0`, or decimal `192`.
fn parse_tag(s: &str) -> Result<u32, NotATag> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|_| NotATag(s.to_string()))
}

/// Runs the operation on META.
pub fn exec(args: Args) -> Result<Exit> {
    let (path, _attached) = match args.device {
        Some(d) => (d, None),
        None => {
            let parts = disks::by_label(&args.disks.resolve())?;
            let open = disks::open_labelled(&parts, "META")?
                .context("no partition labelled META on the given disks")?;
            (open.path.clone(), Some(open))
        }
    };
    match args.op {
        MetaOp::List => {
            for (tag, v) in meta::read(&path)?.records {
                outln!("{tag}\t{} bytes", v.len())?;
            }
        }
        MetaOp::Get { tag } => match meta::read(&path)?.records.get(&tag) {
            Some(v) => outln!("{}", String::from_utf8_lossy(v))?,
            None => bail!("META has no record with tag {tag}"),
        },
        MetaOp::Set { tag, value } => meta::update(&path, tag, Some(value.into_bytes()))?,
        MetaOp::Delete { tag } => meta::update(&path, tag, None)?,
    }
    Ok(Exit::Success)
}
