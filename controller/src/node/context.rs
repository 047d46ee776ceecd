//! The running node a day-2 operation acts on (`apply-config`, `reset`,
//! the node API): what the local verbs take as flags.

use std::path::PathBuf;

/// A booted node: its boot's status, disks, UUID, reboot command and key
/// sources.
#[derive(Debug, Clone)]
pub struct NodeContext {
    /// Disks (empty: every disk).
    pub disks: Vec<PathBuf>,
    /// The boot's status file.
    pub status_file: PathBuf,
    /// Node UUID for nodeID keys.
    pub node_uuid: providers::NodeUuid,
    /// The command that reboots the node.
    pub reboot_command: String,
    /// How to reach KMS servers.
    pub kms: providers::KmsClientOptions,
    /// Where the TPM is.
    pub tpm: providers::TpmOptions,
}
