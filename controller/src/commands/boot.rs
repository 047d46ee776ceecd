//! `volctl boot`: bring up every volume.

use crate::cli::output::Output;
use crate::cli::prelude::{runtime, DiskArgs, KeySourceArgs, NodeArgs};
use crate::cli::Exit;
use anyhow::Result;
use controller::boot::windows::ApiListen;
use controller::boot::{self, BootOptions, Until};
use controller::node::context::NodeContext;
use controller::node::recovery_out::RecoveryOut;
use controller::node::status::Phase;
use controller::serve::BootWindows;
use std::path::PathBuf;
use std::sync::Arc;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl boot -f /etc/volctl/config.yaml            # first boot: config given\n  volctl boot                                       # later boots: STATE's config (STATE's own from META)\n  volctl boot --disk disk.img -f node.yaml --state-mount /tmp/state\n  volctl boot --open-only --no-api -f /etc/volctl/config.yaml   # in an initramfs\n\nExit status: 0 every volume ready (with --open-only: opened), 3 some volume not ready (see `volctl status`), 1 fatal error.";

/// Volumes unlocked at once when `--parallel` does not say (each argon2
/// run may take up to 1 GiB).
pub const VOLUMES_AT_ONCE: usize = 2;

/// `volctl boot` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Disks.
    #[command(flatten)]
    pub disks: DiskArgs,
    /// Write recovery keys this boot enrols to this new file (0600); without
    /// it, a configured recovery key is not enrolled at boot.
    #[arg(long)]
    pub recovery_key_out: Option<PathBuf>,
    /// Config file(s) given at boot; they win over META's and STATE's copies.
    #[arg(short = 'f', long = "file")]
    pub files: Vec<PathBuf>,
    /// Where STATE is mounted.
    #[arg(long, default_value = controller::node::paths::DEFAULT_STATE_MOUNT)]
    pub state_mount: PathBuf,
    /// Status file to write.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// The node UUID.
    #[command(flatten)]
    pub node: NodeArgs,
    /// In maintenance mode, give up after this many seconds (default: wait for ever).
    #[arg(long)]
    pub maintenance_timeout: Option<u64>,
    /// While the boot waits for a person, serve the node API here: in
    /// maintenance mode `apply-config --insecure`; for typed keys `unlock`.
    #[arg(long, default_value = "0.0.0.0:50000")]
    pub api_listen: std::net::SocketAddr,
    /// Take answers only on this machine (console, ask-password agents, `volctl apply-config --insecure` without -n).
    #[arg(long)]
    pub no_api: bool,
    /// Unlock, converge and open the volumes, but mount none (STATE is
    /// unmounted again): for an initramfs, before `switch_root`. The boot of
    /// the real root then finds them open and mounts them, no KDF run.
    #[arg(long)]
    pub open_only: bool,
    /// Stop waiting for key servers (KMS) this many seconds after the boot
    /// starts; within it each key's own `timeout` applies. A volume whose
    /// servers did not answer by then waits for a typed key or is reported.
    #[arg(long, value_name = "SECONDS", default_value_t = boot::KEY_SERVER_DEADLINE.as_secs())]
    pub key_server_deadline: u64,
    /// Volumes unlocked at once (default 2: each argon2 run may take up to 1 GiB).
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// KMS and TPM access.
    #[command(flatten)]
    pub keys: KeySourceArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Boots; exit 3 when some volume is not ready.
pub fn exec(args: Args) -> Result<Exit> {
    let parallel = args.parallel.unwrap_or(VOLUMES_AT_ONCE);
    if parallel > 1 {
        // Volumes unlocked at once: their KDFs in worker processes, so
        // that they overlap (libcryptsetup calls of one process do not).
        if let Ok(exe) = std::env::current_exe() {
            controller::device::kdf_worker::use_workers(exe);
        }
    }
    let opts = BootOptions {
        node: NodeContext {
            disks: args.disks.disks,
            status_file: args.status_file,
            node_uuid: args.node.uuid(),
            reboot_command: "false".into(),
            kms: args.keys.kms.options()?,
            tpm: args.keys.tpm.options(),
        },
        config_files: args.files,
        state_mount: args.state_mount,
        parallel,
        maintenance_timeout: args.maintenance_timeout.map(std::time::Duration::from_secs),
        api: (!args.no_api).then(|| ApiListen {
            addr: args.api_listen,
            windows: Arc::new(BootWindows),
        }),
        recovery_key_out: args.recovery_key_out.clone(),
        asker: controller::node::ask::asker(controller::node::ask::Caller::Boot),
        until: if args.open_only {
            Until::Opened
        } else {
            Until::Mounted
        },
        key_server_deadline: std::time::Duration::from_secs(args.key_server_deadline),
    };
    // Made now (0600, must not exist), so a key is never enrolled that
    // cannot be handed over; removed again when no key went into it.
    let out = RecoveryOut::open(args.recovery_key_out.as_deref()).map_err(|e| {
        anyhow::anyhow!("cannot create the recovery key file: {e} (it must not exist yet)")
    })?;
    let booted = runtime()?.block_on(boot::boot(&opts));
    out.finish();
    let status = booted?;
    args.output.print(&status, || status.table())?;
    let reached = match opts.until {
        Until::Mounted => Phase::Ready,
        Until::Opened => Phase::Opened,
    };
    Ok(if status.all_reached(reached) {
        Exit::Success
    } else {
        Exit::NotReady
    })
}
