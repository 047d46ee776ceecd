//! A simulated node for whole-boot tests: a [`SimHost`] with one disk as
//! an installer leaves it (META only), a scratch folder for the status,
//! STATE's mount point and `-f` files, and the boot run on it.

use crate::boot::context::Boot;
use crate::boot::{boot_on, BootError, BootOptions, PHASES};
use crate::host::{HostHandle, SimHost};
use crate::node::context::NodeContext;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The node's one disk.
pub const DISK: &str = "/dev/vda";
/// Its size.
pub const DISK_SIZE: u64 = 4 << 30;
/// The node UUID `nodeID` keys derive from.
pub const NODE_UUID: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";

/// STATE and EPHEMERAL encrypted with a static passphrase and the node ID.
pub const ENCRYPTED: &str = "apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  provider: luks2
  keys:
    - {slot: 0, nodeID: {}}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
provisioning:
  maxSize: 1GiB
encryption:
  provider: luks2
  keys:
    - {slot: 0, static: {passphrase: ephemeral-pw}}
    - {slot: 1, nodeID: {}}
";

/// The disk as a first boot of [`ENCRYPTED`] lays it out, nothing on it.
pub const LAID_OUT: &[(&str, u64)] = &[
    ("META", 1 << 20),
    ("STATE", 100 << 20),
    ("EPHEMERAL", 1 << 30),
];

/// A user volume added to [`ENCRYPTED`].
pub const USER_VOLUME: &str = "---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning:
  diskSelector: {match: system_disk}
  maxSize: 500MiB
encryption:
  provider: luks2
  keys:
    - {slot: 0, nodeID: {}}
";

/// A simulated node and its scratch folder.
pub struct SimNode {
    pub dir: tempfile::TempDir,
    pub host: Arc<SimHost>,
}

impl SimNode {
    /// One 4 GiB disk holding an empty META, as an installer leaves it.
    pub fn new() -> Self {
        Self::laid_out(&[("META", 1 << 20)])
    }

    /// The same node with its disk already laid out (`labels`, each
    /// `size` bytes), nothing on the partitions.
    pub fn laid_out(labels: &[(&str, u64)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let host = SimHost::new(dir.path())
            .with_disk(DISK, DISK_SIZE)
            .with_partitions(DISK, labels);
        SimNode {
            dir,
            host: Arc::new(host),
        }
    }

    /// Writes a `-f` file holding `yaml`.
    pub fn config(&self, yaml: &str) -> PathBuf {
        let n = std::fs::read_dir(self.dir.path()).unwrap().count();
        let p = self.dir.path().join(format!("config-{n}.yaml"));
        std::fs::write(&p, yaml).unwrap();
        p
    }

    /// STATE's mount point.
    pub fn state_mount(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The boot's options: this node's disk, status and STATE, no API,
    /// nobody to ask, no wait in maintenance mode.
    pub fn opts(&self, files: &[PathBuf]) -> BootOptions {
        BootOptions {
            node: NodeContext {
                disks: vec![],
                status_file: self.dir.path().join("run/status.json"),
                node_uuid: providers::node_uuid(Some(NODE_UUID), Path::new("/nonexistent")),
                reboot_command: "false".into(),
                kms: Default::default(),
                tpm: Default::default(),
            },
            config_files: files.to_vec(),
            state_mount: self.state_mount(),
            parallel: 2,
            maintenance_timeout: Some(std::time::Duration::ZERO),
            api: None,
            recovery_key_out: None,
            asker: None,
            until: Default::default(),
            key_server_deadline: crate::boot::KEY_SERVER_DEADLINE,
        }
    }

    /// Boots with `files` given.
    pub fn boot(&self, files: &[PathBuf]) -> Result<BootStatus, BootError> {
        self.boot_with(&self.opts(files))
    }

    /// Boots with `opts`.
    pub fn boot_with(&self, opts: &BootOptions) -> Result<BootStatus, BootError> {
        let host: HostHandle = self.host.clone();
        runtime().block_on(boot_on(opts, host))
    }

    /// Runs the first `n` phases only: the power is cut after them.
    pub fn boot_cut_after(&self, files: &[PathBuf], n: usize) -> Result<(), BootError> {
        let opts = self.opts(files);
        let host: HostHandle = self.host.clone();
        runtime().block_on(async {
            let mut b = Boot::new(&opts, host);
            for phase in &PHASES[..n] {
                (phase.run)(&mut b).await?;
            }
            Ok(())
        })
    }

    /// The node after a reboot (or a power cut): what the disks hold stays.
    pub fn reboot(&mut self) {
        self.host = Arc::new(self.host.reboot());
    }
}

/// A runtime for one boot (volumes open on its worker threads).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The status of volume `name`.
pub fn volume<'a>(status: &'a BootStatus, name: &str) -> &'a VolumeStatus {
    status
        .volumes
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no status for {name}: {status:#?}"))
}

/// Asserts every volume of `status` is ready.
pub fn all_ready(status: &BootStatus) {
    for v in &status.volumes {
        assert_eq!(v.phase, Phase::Ready, "{}: {:?}", v.name, v.error);
    }
    assert!(status.problems.is_empty(), "{:?}", status.problems);
}

/// Asserts the boot wrote nothing: no partition table, filesystem, META
/// record or wipe.
pub fn nothing_written(node: &SimNode) {
    let c = node.host.counts();
    assert_eq!(
        (c.table_writes, c.mkfs, c.meta_writes, c.wipes),
        (0, 0, 0, 0),
        "{c:#?}"
    );
}
