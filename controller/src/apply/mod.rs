//! `volctl apply-config`: validate a new config, show what it changes per
//! volume, refuse what would lose data or lock the node out, then stage it
//! (next boot), apply it now (keyslot changes on open volumes), or stage it
//! and reboot. In maintenance mode, `--insecure` hands the config to the
//! waiting boot.

mod analyse;
pub use analyse::Refusal;

use crate::converge::{converge_and_unlock, open_device, ConvergeError, Mode, RunAt};
use crate::node::meta;
use crate::node::paths::{CONFIG_FILE, PENDING_FILE, SALT_FILE};
use crate::node::status::{BootStatus, Phase};
use crate::node::{atomic, disks, salt};
use crate::volume::VolumeSpec;
use api_types::Document;
use providers::ProviderEnv;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// How a config takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyMode {
    /// No-reboot when everything can change now, else reboot.
    Auto,
    /// Stored on STATE; promoted at the next boot.
    Staged,
    /// Staged, then the node reboots.
    Reboot,
    /// Keyslot changes on open volumes now; anything else is refused.
    NoReboot,
}

impl std::fmt::Display for ApplyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ApplyMode::Auto => "auto",
            ApplyMode::Staged => "staged",
            ApplyMode::Reboot => "reboot",
            ApplyMode::NoReboot => "no-reboot",
        })
    }
}

/// What `apply-config` was asked to do.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Config files.
    pub files: Vec<PathBuf>,
    /// Mode.
    pub mode: ApplyMode,
    /// Show, store nothing.
    pub dry_run: bool,
    /// Deliver to a boot waiting in maintenance mode.
    pub insecure: bool,
    /// The node: its boot's status, disks, UUID, reboot command, key sources.
    pub node: crate::node::context::NodeContext,
}

/// What a config changes on one volume.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "change", content = "detail", rename_all = "kebab-case")]
pub enum Change {
    /// Nothing.
    Unchanged,
    /// Keyslot changes, possible on the open volume.
    Keys(Vec<String>),
    /// Only after a wipe (and a reboot).
    NeedsWipe(String),
    /// At the next boot.
    NextBoot(String),
}

/// A volume and its change.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeChange {
    /// Volume name.
    pub volume: String,
    /// The change.
    pub change: Change,
}

/// What `apply-config` did.
#[derive(Debug, Clone, Serialize)]
pub struct ApplyReport {
    /// The mode used (auto resolved).
    pub mode: ApplyMode,
    /// Per-volume changes.
    pub changes: Vec<VolumeChange>,
    /// Where the config was stored, if it was.
    pub stored: Option<String>,
    /// Whether keyslot changes were made now.
    pub applied_now: bool,
    /// Whether a reboot was requested.
    pub reboot_requested: bool,
}

/// Why nothing was applied. Nothing is stored in any of these cases.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The config is invalid.
    #[error("the config is invalid; nothing was stored:\n{0}")]
    Invalid(crate::node::config_files::InvalidConfig),
    /// A config for maintenance mode that does not say what STATE is.
    #[error("the config is invalid; nothing was stored:\n{0}")]
    Unstated(crate::node::maintenance::StateUnstated),
    /// No boot status.
    #[error("cannot read the boot status {path}: {reason} (has `volctl boot` run?)")]
    NoStatus {
        /// Path.
        path: String,
        /// Why.
        reason: String,
    },
    /// STATE is not mounted.
    #[error("STATE is not mounted, so there is nowhere to store the config")]
    StateNotMounted,
    /// The config would lock a volume out or lose data.
    #[error("refused; nothing was stored:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<Refusal>),
    /// no-reboot mode, but something needs a reboot.
    #[error("these changes need a reboot, so --mode no-reboot cannot apply them (use --mode staged or --mode reboot); nothing was stored:\n{}", .0.join("\n"))]
    NeedsReboot(Vec<String>),
    /// --insecure outside maintenance mode.
    #[error("--insecure only delivers a config to a boot waiting in maintenance mode, and none is waiting ({0} does not exist)")]
    NotInMaintenance(String),
    /// Converging failed while applying now.
    #[error("applying to {volume}: {source}")]
    Converge {
        /// Volume.
        volume: String,
        /// Cause.
        source: ConvergeError,
    },
    /// I/O.
    #[error("{0}")]
    Io(String),
}

fn read_config(files: &[PathBuf]) -> Result<(Vec<Document>, String), ApplyError> {
    crate::node::config_files::load(files).map_err(ApplyError::Invalid)
}

/// What providers need on a running node: its UUID, STATE's salt (from
/// STATE's mount), KMS and TPM access; nobody to ask.
pub fn node_env(
    state_mount: &Path,
    node_uuid: providers::NodeUuid,
    kms: providers::KmsClientOptions,
    tpm: providers::TpmOptions,
) -> ProviderEnv {
    ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid,
        state_salt: salt::read_salt_file(&state_mount.join(SALT_FILE)).ok(),
        kms,
        tpm,
        key_servers_until: None,
    }
}

/// Where a booted node's STATE is mounted, per its status.
pub fn state_mount(status: &BootStatus) -> Result<PathBuf, ApplyError> {
    status
        .volumes
        .iter()
        .find(|v| v.name == "STATE" && v.phase == Phase::Ready)
        .and_then(|v| v.mount_point.clone())
        .map(PathBuf::from)
        .ok_or(ApplyError::StateNotMounted)
}

/// Runs `apply-config`.
pub async fn apply(opts: &ApplyOptions) -> Result<ApplyReport, ApplyError> {
    let (docs, text) = read_config(&opts.files)?;
    if opts.insecure {
        return deliver_to_maintenance(opts, &docs, &text);
    }
    let status = BootStatus::load(&opts.node.status_file).map_err(|e| ApplyError::NoStatus {
        path: opts.node.status_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let state_mount = state_mount(&status)?;
    let env = node_env(
        &state_mount,
        opts.node.node_uuid.clone(),
        opts.node.kms.clone(),
        opts.node.tpm.clone(),
    );
    let changes = analyse::all(&docs, &status, &env).await?;
    let mut report = ApplyReport {
        mode: resolve_mode(opts.mode, &changes)?,
        changes,
        stored: None,
        applied_now: false,
        reboot_requested: false,
    };
    if opts.dry_run {
        return Ok(report);
    }
    let target = Target {
        docs: &docs,
        text: &text,
        status: &status,
        state_mount: &state_mount,
    };
    match report.mode {
        ApplyMode::NoReboot => apply_now(opts, &target, &env, &mut report).await?,
        ApplyMode::Staged | ApplyMode::Reboot => stage(opts, &target, &mut report)?,
        ApplyMode::Auto => unreachable!("auto is resolved by resolve_mode"),
    }
    Ok(report)
}

/// The config being applied and where it goes.
struct Target<'a> {
    docs: &'a [Document],
    text: &'a str,
    status: &'a BootStatus,
    state_mount: &'a Path,
}

impl Target<'_> {
    /// Stores the config's text on STATE as `name`.
    fn store(&self, name: &str) -> Result<String, ApplyError> {
        let p = self.state_mount.join(name);
        atomic::write_private(&p, self.text.as_bytes())
            .map_err(|e| ApplyError::Io(format!("{}: {e}", p.display())))?;
        Ok(p.display().to_string())
    }
}

/// Maintenance mode: hands the config to the boot that waits for one.
fn deliver_to_maintenance(
    opts: &ApplyOptions,
    docs: &[Document],
    text: &str,
) -> Result<ApplyReport, ApplyError> {
    use crate::node::maintenance::{deliver, DeliveryError};
    let stored =
        deliver(&opts.node.status_file, docs, text, opts.dry_run).map_err(|e| match e {
            DeliveryError::NotWaiting(marker) => ApplyError::NotInMaintenance(marker),
            DeliveryError::Unstated(why) => ApplyError::Unstated(why),
            e @ DeliveryError::Io { .. } => ApplyError::Io(e.to_string()),
        })?;
    Ok(ApplyReport {
        mode: ApplyMode::Staged,
        changes: vec![],
        stored,
        applied_now: false,
        reboot_requested: false,
    })
}

/// `auto` becomes no-reboot when every change can be made now, else
/// reboot; no-reboot is refused when a change needs a reboot.
fn resolve_mode(asked: ApplyMode, changes: &[VolumeChange]) -> Result<ApplyMode, ApplyError> {
    let needs_reboot: Vec<String> = changes
        .iter()
        .filter_map(|c| match &c.change {
            Change::NeedsWipe(r) | Change::NextBoot(r) => Some(format!("{}: {r}", c.volume)),
            _ => None,
        })
        .collect();
    match asked {
        ApplyMode::Auto if needs_reboot.is_empty() => Ok(ApplyMode::NoReboot),
        ApplyMode::Auto => Ok(ApplyMode::Reboot),
        ApplyMode::NoReboot if !needs_reboot.is_empty() => {
            Err(ApplyError::NeedsReboot(needs_reboot))
        }
        m => Ok(m),
    }
}

/// No-reboot: converges every open encrypted volume's keyslots now, then
/// stores the config as the one in force and mirrors STATE's to META.
async fn apply_now(
    opts: &ApplyOptions,
    t: &Target<'_>,
    env: &ProviderEnv,
    report: &mut ApplyReport,
) -> Result<(), ApplyError> {
    for doc in t.docs {
        let Some(row) = t.status.volumes.iter().find(|v| v.name == doc.name()) else {
            continue;
        };
        let (Some(enc), Some(dev)) = (doc.encryption(), &row.device) else {
            continue;
        };
        let spec = VolumeSpec::new(doc.name(), &doc.partition_label(), enc.clone());
        // The volumes are open: a reencryption on one runs online (its own
        // process), never here; the changes behind it wait for it.
        let converged = match open_device(&spec, Path::new(dev), Mode::Apply) {
            Ok(device) => converge_and_unlock(&spec, device, env, Mode::Apply, RunAt::Online)
                .await
                .map(|(o, _)| o),
            Err(e) => Err(e),
        };
        converged.map_err(|source| ApplyError::Converge {
            volume: doc.name().to_string(),
            source,
        })?;
    }
    report.applied_now = true;
    report.stored = Some(t.store(CONFIG_FILE)?);
    let _ = std::fs::remove_file(t.state_mount.join(PENDING_FILE));
    let state_enc = t
        .docs
        .iter()
        .find(|d| d.is_state())
        .and_then(|d| d.encryption().cloned());
    mirror_state_to_meta(&opts.node.disks, state_enc.as_ref())
}

/// Staged (and reboot): stores the config for the next boot; reboot runs
/// the reboot command.
fn stage(opts: &ApplyOptions, t: &Target<'_>, report: &mut ApplyReport) -> Result<(), ApplyError> {
    report.stored = Some(t.store(PENDING_FILE)?);
    if report.mode != ApplyMode::Reboot {
        return Ok(());
    }
    report.reboot_requested = true;
    crate::node::reboot::reboot(&opts.node.reboot_command)
        .map_err(|e| ApplyError::Io(format!("the config is staged, but {e}")))
}

/// Mirrors STATE's encryption config to META (when it differs).
fn mirror_state_to_meta(
    disks: &[PathBuf],
    want: Option<&api_types::Encryption>,
) -> Result<(), ApplyError> {
    let io = |e: String| ApplyError::Io(format!("mirroring STATE's config to META: {e}"));
    let parts = disks::by_label(&disks::given_or_system(disks)).map_err(|e| io(e.to_string()))?;
    let Some(open) = disks::open_labelled(&parts, "META").map_err(|e| io(e.to_string()))? else {
        return Ok(());
    };
    meta::mirror_state_encryption(&open.path, want).map_err(|e| io(e.to_string()))?;
    Ok(())
}

/// What `apply-config` says when done: the change report, or, for a
/// config handed to a boot in maintenance mode (`insecure`), where it went.
pub fn outcome_text(r: &ApplyReport, insecure: bool) -> String {
    match (insecure, r.stored.is_some()) {
        (true, true) => "config delivered to the boot waiting in maintenance mode\n".into(),
        (true, false) => "config valid (dry run): nothing delivered\n".into(),
        (false, _) => report_text(r),
    }
}

/// One line per volume change, for the CLI.
pub fn report_text(r: &ApplyReport) -> String {
    let mut s = String::new();
    for c in &r.changes {
        match &c.change {
            Change::Unchanged => s.push_str(&format!("{}: no change\n", c.volume)),
            Change::Keys(actions) => {
                s.push_str(&format!("{}: keyslot changes\n", c.volume));
                for a in actions {
                    s.push_str(&format!("  {a}\n"));
                }
            }
            Change::NeedsWipe(r) => s.push_str(&format!("{}: needs a wipe — {r}\n", c.volume)),
            Change::NextBoot(r) => s.push_str(&format!("{}: at next boot — {r}\n", c.volume)),
        }
    }
    let mode = r.mode;
    match (&r.stored, r.applied_now, r.reboot_requested) {
        (None, _, _) => s.push_str(&format!("dry run ({mode}): nothing stored\n")),
        (Some(p), true, _) => s.push_str(&format!("applied now; config stored as {p}\n")),
        (Some(p), false, true) => s.push_str(&format!("staged as {p}; reboot requested\n")),
        (Some(p), false, false) => {
            s.push_str(&format!("staged as {p}; takes effect at the next boot\n"))
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::ApplyMode;

    #[test]
    fn modes_display_as_they_serialise() {
        for m in [
            ApplyMode::Auto,
            ApplyMode::Staged,
            ApplyMode::Reboot,
            ApplyMode::NoReboot,
        ] {
            assert_eq!(serde_json::to_value(m).unwrap(), m.to_string());
        }
    }
}
