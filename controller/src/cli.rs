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
    /// Bring up every volume: find partitions by label, unlock or format, converge keyslots, open, mount.
    #[command(
        after_help = "Example:\n  volctl boot -f /etc/volctl/config.yaml            # first boot: config given\n  volctl boot                                       # later boots: STATE's config (STATE's own from META)\n  volctl boot --disk disk.img -f node.yaml --state-mount /tmp/state\n\nExit status: 0 every volume ready, 3 some volume not ready (see `volctl status`), 1 fatal error."
    )]
    Boot {
        /// Disks.
        #[command(flatten)]
        disks: DiskArgs,
        /// Config file(s) given at boot; they win over META's and STATE's copies.
        #[arg(short = 'f', long = "file")]
        files: Vec<PathBuf>,
        /// Where STATE is mounted.
        #[arg(long, default_value = controller::boot::DEFAULT_STATE_MOUNT)]
        state_mount: PathBuf,
        /// Status file to write.
        #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
        /// Node UUID for nodeID keys (default: the SMBIOS UUID).
        #[arg(long, env = "VOLCTL_NODE_UUID")]
        node_uuid: Option<String>,
        /// Volumes unlocked at once (each argon2 run may take up to 1 GiB).
        #[arg(long, default_value_t = 2)]
        parallel: usize,
        /// In maintenance mode, give up after this many seconds (default: wait for ever).
        #[arg(long)]
        maintenance_timeout: Option<u64>,
        /// KMS and TPM access.
        #[command(flatten)]
        kms: KmsArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Apply a new config: validate, show what changes, then stage it, apply it now, or stage and reboot.
    #[command(
        after_help = "Example:\n  volctl apply-config -f node.yaml --mode staged        # next boot\n  volctl apply-config -f node.yaml --mode no-reboot     # keyslot changes now\n  volctl apply-config -f node.yaml --dry-run            # show, store nothing\n  volctl apply-config --insecure -f node.yaml           # to a boot waiting in maintenance mode\n\nRefused, with nothing stored: an invalid config; a config none of whose keys opens a volume\n(add the new key first, reboot, then remove the old one)."
    )]
    ApplyConfig {
        /// Config file(s).
        #[arg(short = 'f', long = "file", required = true)]
        files: Vec<PathBuf>,
        /// How the config takes effect.
        #[arg(long, value_enum, default_value_t = ModeArg::Auto)]
        mode: ModeArg,
        /// Show what would change; store nothing.
        #[arg(long)]
        dry_run: bool,
        /// Deliver the config to a boot waiting in maintenance mode (no authentication, local only).
        #[arg(long)]
        insecure: bool,
        /// Status file of the running boot.
        #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
        /// Disks.
        #[command(flatten)]
        disks: DiskArgs,
        /// Node UUID for nodeID keys (default: the SMBIOS UUID).
        #[arg(long, env = "VOLCTL_NODE_UUID")]
        node_uuid: Option<String>,
        /// Command that reboots the node (for --mode reboot).
        #[arg(long, env = "VOLCTL_REBOOT_COMMAND", default_value = "reboot")]
        reboot_command: String,
        /// KMS and TPM access.
        #[command(flatten)]
        kms: KmsArgs,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Wipe volumes so the next boot provisions them from the config.
    #[command(
        after_help = "Example:\n  volctl reset --system-labels-to-wipe EPHEMERAL\n  volctl reset --system-labels-to-wipe STATE,EPHEMERAL --reboot\n\nThe volume is closed if open; its LUKS2 header, keyslots and filesystem signatures are destroyed.\nWiping STATE drops the node's config: the next boot enters maintenance mode."
    )]
    Reset {
        /// Partition labels to wipe, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        system_labels_to_wipe: Vec<String>,
        /// fast: the LUKS2 metadata area and the partition's start and end; full: everything.
        #[arg(long, value_enum, default_value_t = WipeArg::Fast)]
        wipe_mode: WipeArg,
        /// Reboot afterwards.
        #[arg(long)]
        reboot: bool,
        /// Disks.
        #[command(flatten)]
        disks: DiskArgs,
        /// Status file of the running boot.
        #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
        /// Command that reboots the node.
        #[arg(long, env = "VOLCTL_REBOOT_COMMAND", default_value = "reboot")]
        reboot_command: String,
    },
    /// Run a KMS server for a fleet (sidero.kms.KMSService, AES-256-GCM, stateless), or make a master key.
    #[command(
        args_conflicts_with_subcommands = true,
        after_help = "Example:\n  volctl kms-server genkey >> /etc/volctl-kms/keys && chmod 600 /etc/volctl-kms/keys\n  volctl kms-server --listen 0.0.0.0:4050 --master-key-file /etc/volctl-kms/keys \\\n      --tls-cert tls.crt --tls-key tls.key [--client-ca clients-ca.crt]\n\nThe last key in the file seals; every key unseals (append a key to rotate). SIGTERM stops it gracefully."
    )]
    KmsServer {
        /// `genkey`: print a new master-key line to append to the key file.
        #[command(subcommand)]
        command: Option<KmsServerCommand>,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:4050")]
        listen: String,
        /// Master key file (mode 0600): lines of KEY_ID:BASE64.
        #[arg(long, required = false)]
        master_key_file: Option<PathBuf>,
        /// TLS certificate chain (PEM).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS private key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Require client certificates signed by this CA (PEM).
        #[arg(long, requires = "tls_cert")]
        client_ca: Option<PathBuf>,
        /// Serve without TLS (tests only: sealed keys cross the network in clear).
        #[arg(long, conflicts_with = "tls_cert")]
        plaintext: bool,
        /// Open connections at most (default: 512, or the file-descriptor
        /// limit less 32 when that is lower).
        #[arg(long)]
        max_connections: Option<usize>,
        /// Seconds a client has to finish the TLS handshake.
        #[arg(long, default_value_t = 10)]
        handshake_timeout: u64,
        /// Seconds a connection may stay silent before it is closed.
        #[arg(long, default_value_t = 60)]
        idle_timeout: u64,
    },
    /// Print the status of every volume from the last boot.
    #[command(after_help = "Example:\n  volctl status\n  volctl status -o json")]
    Status {
        /// Status file.
        #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Unmount and close every volume the last boot opened.
    #[command(after_help = "Example:\n  volctl close")]
    Close {
        /// Status file.
        #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
        status_file: PathBuf,
    },
    /// Read and write the META partition's records.
    #[command(
        after_help = "Example:\n  volctl meta --disk /dev/sda list\n  volctl meta --disk disk.img get 9\n\nTag 9 holds STATE's encryption config (JSON)."
    )]
    Meta {
        /// Disks.
        #[command(flatten)]
        disks: DiskArgs,
        /// The META partition itself (instead of searching disks).
        #[arg(long, conflicts_with = "disks")]
        device: Option<PathBuf>,
        /// Operation.
        #[command(subcommand)]
        op: MetaOp,
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

/// How to reach key sources: KMS servers (for `kms` keys) and the TPM (for `tpm` keys).
#[derive(Debug, Args)]
pub struct KmsArgs {
    /// TPM TCTI, e.g. `device:/dev/tpmrm0` (default) or `swtpm:host=127.0.0.1,port=2321`.
    #[arg(long, env = "TPM2TOOLS_TCTI")]
    pub tpm_tcti: Option<String>,
    /// efivarfs directory, for `checkSecurebootStatusOnEnroll`.
    #[arg(
        long,
        env = "VOLCTL_EFIVARS_DIR",
        default_value = "/sys/firmware/efi/efivars"
    )]
    pub efivars_dir: PathBuf,
    /// CA certificate(s) (PEM) to trust for KMS endpoints, instead of the system roots.
    #[arg(long, env = "VOLCTL_KMS_CA_FILE")]
    pub kms_ca_file: Option<PathBuf>,
    /// Client certificate (PEM) for KMS servers that require one.
    #[arg(long, env = "VOLCTL_KMS_CLIENT_CERT", requires = "kms_client_key")]
    pub kms_client_cert: Option<PathBuf>,
    /// Client key (PEM) for --kms-client-cert.
    #[arg(long, env = "VOLCTL_KMS_CLIENT_KEY", requires = "kms_client_cert")]
    pub kms_client_key: Option<PathBuf>,
}

/// Which disks to search.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Disk (block device or GPT disk image) to search; repeatable. Default: every disk.
    #[arg(long = "disk")]
    pub disks: Vec<PathBuf>,
}

/// `volctl meta` operations.
#[derive(Debug, Subcommand)]
pub enum MetaOp {
    /// List the tags and sizes of META's records.
    List,
    /// Print one record's value.
    Get {
        /// Tag number.
        tag: u32,
    },
    /// Set one record (value given as text).
    Set {
        /// Tag number.
        tag: u32,
        /// Value.
        value: String,
    },
    /// Delete one record.
    Delete {
        /// Tag number.
        tag: u32,
    },
}

/// `volctl kms-server` subcommands.
#[derive(Debug, Subcommand)]
pub enum KmsServerCommand {
    /// Print a new master-key line (KEY_ID:BASE64) to append to the key file.
    Genkey,
}

/// `apply-config --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    /// no-reboot when everything can change now, else reboot.
    Auto,
    /// Takes effect at the next boot.
    Staged,
    /// Staged, then reboot.
    Reboot,
    /// Keyslot changes on open volumes now.
    NoReboot,
}

/// `reset --wipe-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WipeArg {
    /// Metadata areas only.
    Fast,
    /// The whole partition.
    Full,
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
    /// KMS access.
    #[command(flatten)]
    pub kms: KmsArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}
