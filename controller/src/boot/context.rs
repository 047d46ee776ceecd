//! What the phases of a boot share (as Talos's volume manager hands one
//! context to each transition): the options, the node's snapshot, the
//! config, the key sources and the status.

use super::state::StateChoice;
use super::{BootError, BootOptions};
use crate::host::{attach_labelled, HostHandle};
use crate::node::meta::Meta;
use crate::node::paths::run_dir;
use crate::node::snapshot::NodeSnapshot;
use crate::node::status::BootStatus;
use api_types::Document;
use providers::{ProviderEnv, RecoveryHandover};
use std::path::PathBuf;

/// One boot's state, from phase to phase.
pub(super) struct Boot<'a> {
    /// What the boot was asked to do.
    pub opts: &'a BootOptions,
    /// The machine (or its simulated twin).
    pub host: HostHandle,
    /// The disks as last read: taken at the start, taken again only after
    /// a phase changed a partition table.
    pub snap: NodeSnapshot,
    /// What the boot reports.
    pub status: BootStatus,
    /// The config given with `-f` (or delivered in maintenance mode) and its
    /// text, until STATE stores it.
    pub given: Option<(Vec<Document>, String)>,
    /// STATE's choice, between the phase that makes it and the one that
    /// brings STATE up.
    pub state: Option<StateChoice>,
    /// Where STATE is mounted first; moved to `state_target` last, so that a
    /// volume mounted above it (EPHEMERAL at /var) cannot hide it.
    pub staging: PathBuf,
    /// STATE's own mount point.
    pub state_target: PathBuf,
    /// The key sources (the salt once STATE is up).
    pub env: ProviderEnv,
    /// The config in force, once STATE gave it (`None`: no volume beyond
    /// STATE comes up).
    pub docs: Option<Vec<Document>>,
    /// META's records as last read or written (`None`: not read yet, or
    /// no META partition).
    meta: Option<Meta>,
}

impl<'a> Boot<'a> {
    /// The context before the first phase: the disks read once.
    pub fn new(opts: &'a BootOptions, host: HostHandle) -> Self {
        Boot {
            opts,
            snap: host.snapshot(&opts.node.disks),
            host,
            status: BootStatus::default(),
            given: None,
            state: None,
            staging: run_dir(&opts.node.status_file).join("staging-STATE"),
            state_target: opts.state_mount.clone(),
            env: ProviderEnv {
                recovery_handover: match opts.recovery_key_out {
                    Some(_) => RecoveryHandover::Person,
                    None => RecoveryHandover::Held,
                },
                asker: opts.asker.clone(),
                node_uuid: opts.node.node_uuid.clone(),
                state_salt: None,
                kms: opts.node.kms.clone(),
                tpm: opts.node.tpm.clone(),
                key_servers_until: Some(std::time::Instant::now() + opts.key_server_deadline),
            },
            docs: None,
            meta: None,
        }
    }

    /// META's records: read once a boot, when first asked for (`None`:
    /// the node has no META partition).
    pub fn meta(&mut self) -> Result<Option<&Meta>, BootError> {
        if self.meta.is_none() {
            let parts = self.snap.by_label()?;
            if let Some(open) = attach_labelled(&*self.host, &parts, "META")? {
                self.meta = Some(self.host.read_meta(&open.path)?);
            }
        }
        Ok(self.meta.as_ref())
    }

    /// Sets (or, with `None`, deletes) one META record, on META and in
    /// the boot's copy; does nothing when there is no META.
    pub fn set_meta(&mut self, tag: u32, value: Option<Vec<u8>>) -> Result<(), BootError> {
        let Some(mut m) = self.meta()?.cloned() else {
            return Ok(());
        };
        m.set(tag, value);
        let parts = self.snap.by_label()?;
        if let Some(open) = attach_labelled(&*self.host, &parts, "META")? {
            self.host.write_meta(&open.path, &m)?;
        }
        self.meta = Some(m);
        Ok(())
    }

    /// Forgets the boot's copy of META (something else wrote it).
    pub fn forget_meta(&mut self) {
        self.meta = None;
    }

    /// Reads the disks again (after a phase wrote a partition table).
    pub fn refresh(&mut self) {
        self.snap = self.host.snapshot(&self.opts.node.disks);
    }
}
