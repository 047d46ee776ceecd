//! What several commands take, and its conversion into the library's
//! options, in one place: disks, the node UUID, key-source access (KMS and
//! TPM, apart), the config of one volume, the async runtime.

use anyhow::{bail, Context, Result};
use api_types::Document;
use clap::Args;
use providers::{KmsClientOptions, TpmOptions, SMBIOS_UUID_PATH};
use std::path::{Path, PathBuf};

/// Which disks to search.
#[derive(Debug, Args)]
pub struct DiskArgs {
    /// Disk (block device or GPT disk image) to search; repeatable. Default: every disk.
    #[arg(long = "disk")]
    pub disks: Vec<PathBuf>,
}

impl DiskArgs {
    /// The disks given, or every disk of the system.
    pub fn resolve(&self) -> Vec<PathBuf> {
        controller::node::disks::given_or_system(&self.disks)
    }
}

/// The node UUID that nodeID keys derive from.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// Node UUID for nodeID keys (default: the SMBIOS UUID).
    #[arg(long, env = "VOLCTL_NODE_UUID")]
    pub node_uuid: Option<String>,
}

impl NodeArgs {
    /// The node UUID, or why it is unknown.
    pub fn uuid(&self) -> providers::NodeUuid {
        providers::node_uuid(self.node_uuid.as_deref(), Path::new(SMBIOS_UUID_PATH))
    }
}

/// How to reach KMS servers (for `kms` keys).
#[derive(Debug, Args)]
pub struct KmsAccessArgs {
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

impl KmsAccessArgs {
    /// KMS client options.
    pub fn options(&self) -> Result<KmsClientOptions> {
        let read =
            |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let identity = match (&self.kms_client_cert, &self.kms_client_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            _ => None,
        };
        Ok(KmsClientOptions {
            ca_pem: self.kms_ca_file.as_ref().map(read).transpose()?,
            identity_pem: identity,
            ..Default::default()
        })
    }
}

/// Where the TPM is (for `tpm` keys).
#[derive(Debug, Args)]
pub struct TpmArgs {
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
}

impl TpmArgs {
    /// TPM options.
    pub fn options(&self) -> TpmOptions {
        let mut o = TpmOptions::default();
        if let Some(t) = &self.tpm_tcti {
            o.tcti = t.clone();
        }
        o.efivars_dir = self.efivars_dir.clone();
        o
    }
}

/// The booted node a day-2 command acts on (`apply-config`, `serve`).
#[derive(Debug, Args)]
pub struct RunningNodeArgs {
    /// Status file of the running boot.
    #[arg(long, default_value = controller::node::status::DEFAULT_STATUS_FILE)]
    pub status_file: PathBuf,
    /// Disks.
    #[command(flatten)]
    pub disks: DiskArgs,
    /// The node UUID.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Command that reboots the node.
    #[arg(long, env = "VOLCTL_REBOOT_COMMAND", default_value = "reboot")]
    pub reboot_command: String,
    /// KMS and TPM access.
    #[command(flatten)]
    pub keys: KeySourceArgs,
}

impl RunningNodeArgs {
    /// The node as the library sees it.
    pub fn context(&self) -> anyhow::Result<controller::node::context::NodeContext> {
        Ok(controller::node::context::NodeContext {
            disks: self.disks.disks.clone(),
            status_file: self.status_file.clone(),
            node_uuid: self.node.uuid(),
            reboot_command: self.reboot_command.clone(),
            kms: self.keys.kms.options()?,
            tpm: self.keys.tpm.options(),
        })
    }
}

/// Access to every key source.
#[derive(Debug, Args)]
pub struct KeySourceArgs {
    /// KMS access.
    #[command(flatten)]
    pub kms: KmsAccessArgs,
    /// TPM access.
    #[command(flatten)]
    pub tpm: TpmArgs,
}

/// Loads every document of `files` (one config); any error fails with all
/// diagnostics. Warnings about the document named `volume` are printed.
pub fn load_config(files: &[PathBuf], volume: &str) -> Result<Vec<Document>> {
    let (p, _) = api_types::parse_files(files);
    let mut errors = Vec::new();
    for d in &p.diagnostics {
        if d.is_error() {
            errors.push(d.to_string());
        } else if d.document.as_ref().and_then(|r| r.name.as_deref()) == Some(volume) {
            eprintln!("{d}");
        }
    }
    if !errors.is_empty() {
        bail!("the config is invalid:\n{}", errors.join("\n"));
    }
    Ok(p.documents)
}

/// The async runtime the commands run on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}
