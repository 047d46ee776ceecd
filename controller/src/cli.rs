//! Command-line definitions (clap). Each subcommand's handler is in main.rs.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// volctl: declarative LUKS2 volume controller.
#[derive(Debug, Parser)]
#[command(name = "volctl", version, about, long_about = None)]
pub struct Cli {
    /// Log more (repeat for debug); logs go to stderr. RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// JSON on stdout.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check config documents; exit 0 when valid, 1 when not.
    #[command(
        after_help = "Example:\n  volctl validate -f examples/node.yaml -f examples/appliance.yaml\n  volctl validate -f node.yaml -o json"
    )]
    Validate {
        /// Config files (repeatable).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Print the JSON Schema of the documents.
    #[command(
        after_help = "Example:\n  volctl schema > volctl.schema.json\n  volctl schema --kind UserVolumeConfig"
    )]
    Schema {
        /// Only this kind (default: one schema accepting any kind).
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Show what `converge` would change on a volume; change nothing.
    #[command(
        after_help = "Example:\n  volctl plan --volume EPHEMERAL --device /dev/sda5 -f node.yaml\n  volctl plan --volume EPHEMERAL --device disk.img -f node.yaml --detailed-exitcode\n\nWith --detailed-exitcode: 0 = nothing to change, 2 = changes planned, 1 = error.\nOn an existing volume this unlocks it once (one KDF run) to check every keyslot."
    )]
    Plan {
        /// The volume.
        #[command(flatten)]
        target: Target,
        /// Exit 2 when changes are planned, 0 when none.
        #[arg(long)]
        detailed_exitcode: bool,
    },
    /// Format the device if blank, then make its keyslots match the config.
    #[command(
        after_help = "Example:\n  volctl converge --volume EPHEMERAL --device /dev/sda5 -f node.yaml\n  VOLCTL_NODE_UUID=... volctl converge --volume data --device data.img -f node.yaml --state-salt-file salt\n\nA device holding a filesystem or anything else is refused, never formatted."
    )]
    Converge {
        /// The volume.
        #[command(flatten)]
        target: Target,
    },
}

/// Document kinds for `schema --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// VolumeConfig.
    #[value(name = "VolumeConfig")]
    VolumeConfig,
    /// UserVolumeConfig.
    #[value(name = "UserVolumeConfig")]
    UserVolumeConfig,
}

/// Which volume, on which device, with which config.
#[derive(Debug, Args)]
pub struct Target {
    /// Volume name (document name or partition label): STATE, EPHEMERAL, persistence, or a user volume.
    #[arg(long)]
    pub volume: String,
    /// Block device or image file holding the volume.
    #[arg(long)]
    pub device: PathBuf,
    /// Config file(s).
    #[arg(short = 'f', long = "file", required = true)]
    pub files: Vec<PathBuf>,
    /// Node UUID for nodeID keys (default: the SMBIOS UUID).
    #[arg(long, env = "VOLCTL_NODE_UUID")]
    pub node_uuid: Option<String>,
    /// File holding the STATE salt, for lockToSTATE keys (mode 0600).
    #[arg(long, env = "VOLCTL_STATE_SALT_FILE")]
    pub state_salt_file: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}
