//! Per-volume status: what `volctl boot` found and did, kept in a status
//! file that `volctl status` prints and `volctl close` uses.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// Default status file.
pub const DEFAULT_STATUS_FILE: &str = "/run/volctl/status.json";

/// Where a volume is in its life this boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// No partition carries the volume's label.
    Missing,
    /// The partition was found.
    Located,
    /// The config asks for encryption but the partition holds data; run `volctl reset`.
    WaitingForWipe,
    /// Only a typed key (prompt, recovery) opens it: being asked for, or
    /// not given (see `error`); nothing was written.
    WaitingForKey,
    /// LUKS2 header present and keyslots converged.
    Provisioned,
    /// dm-crypt device active.
    Opened,
    /// Filesystem mounted.
    Ready,
    /// Something failed; see `error`.
    Failed,
    /// A valid document of a `volumeType` volctl does not act on (Talos's
    /// `memory`, `disk`, `directory`); see `error` and the config reference.
    NotManaged,
}

impl Phase {
    /// The name status files and `volctl status` use (`waiting-for-wipe`).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Missing => "missing",
            Phase::Located => "located",
            Phase::WaitingForWipe => "waiting-for-wipe",
            Phase::WaitingForKey => "waiting-for-key",
            Phase::Provisioned => "provisioned",
            Phase::Opened => "opened",
            Phase::Ready => "ready",
            Phase::Failed => "failed",
            Phase::NotManaged => "not-managed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One volume's status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VolumeStatus {
    /// Document name.
    pub name: String,
    /// Partition label.
    pub label: String,
    /// Where the partition is (`disk#N`).
    pub partition: Option<String>,
    /// The partition's device node this boot (`/dev/vda3`, `/dev/loop2`).
    #[serde(default)]
    pub device: Option<String>,
    /// The phase reached.
    pub phase: Phase,
    /// Whether the config encrypts it.
    pub encrypted: bool,
    /// The slot and kind that unlocked it.
    pub unlocked_by: Option<(api_types::KeyslotId, api_types::KeySource)>,
    /// Keyslots present after converging.
    pub keyslots: Vec<api_types::KeyslotId>,
    /// KDF runs spent on it this boot.
    pub kdf_runs: u64,
    /// What converging changed (one line per action).
    pub changes: Vec<String>,
    /// What converging left alone, and why (one line per note of its plan:
    /// a key source down, a change waiting for a reencryption).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// TPM slots re-sealed to the current PCR values this boot.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resealed: Vec<api_types::KeyslotId>,
    /// What an in-place encryption this boot did (`inPlace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_in_place: Option<crate::converge::Encrypted>,
    /// A reencryption running online (or that ran this boot): read from
    /// its progress file each time the status is read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reencryption: Option<crate::node::online::Progress>,
    /// Found open when this boot began (the initramfs opened it): no
    /// unlock, no KDF run, no keyslot change this boot.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub opened_before: bool,
    /// dm-crypt device, when opened.
    pub mapped_device: Option<String>,
    /// Whether volctl formatted or made a filesystem this boot.
    pub created: bool,
    /// Mount point, when mounted.
    pub mount_point: Option<String>,
    /// Enabled as swap (on its dm-crypt device, or its partition when plain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swap: bool,
    /// Last error or reason for the phase.
    pub error: Option<String>,
}

impl VolumeStatus {
    /// The table's MOUNT: where it is mounted, `[SWAP]` (as `lsblk` shows
    /// swap), or `-`.
    fn mount_column(&self) -> &str {
        if self.swap {
            return crate::node::swap::SHOWN_AS;
        }
        self.mount_point.as_deref().unwrap_or("-")
    }

    /// The table's UNLOCKED BY: the slot and kind, or how it came open.
    fn unlocked_column(&self) -> String {
        let formatted = self.encrypted && self.created && self.phase != Phase::Failed;
        match (&self.unlocked_by, formatted) {
            (Some((s, k)), _) => format!("slot {s} ({k})"),
            (None, _) if self.opened_before => "(already open)".into(),
            (None, true) => "(formatted)".into(),
            (None, false) => "-".into(),
        }
    }

    /// The table's KEYSLOTS: `0,9`, or `-`.
    fn keyslots_column(&self) -> String {
        if self.keyslots.is_empty() {
            return "-".into();
        }
        self.keyslots
            .iter()
            .map(api_types::KeyslotId::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// A fresh status for a volume.
    pub fn new(name: &str, label: &str, encrypted: bool) -> Self {
        VolumeStatus {
            name: name.into(),
            label: label.into(),
            partition: None,
            device: None,
            phase: Phase::Missing,
            encrypted,
            unlocked_by: None,
            keyslots: vec![],
            kdf_runs: 0,
            changes: vec![],
            notes: vec![],
            resealed: vec![],
            encrypted_in_place: None,
            reencryption: None,
            opened_before: false,
            mapped_device: None,
            created: false,
            mount_point: None,
            swap: false,
            error: None,
        }
    }
}

/// The whole boot's status.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BootStatus {
    /// Where the config came from.
    pub config_source: String,
    /// Volumes in the order they were brought up.
    pub volumes: Vec<VolumeStatus>,
    /// Problems that concern the boot as a whole (e.g. no config on STATE).
    #[serde(default)]
    pub problems: Vec<String>,
    /// Partition-table changes this boot made (provisioning).
    #[serde(default)]
    pub partitions_created: Vec<String>,
    /// Wipes this boot did first, left by a `reset --reboot` whose volume
    /// was in use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub wiped: Vec<String>,
}

impl BootStatus {
    /// Whether every configured volume is ready.
    pub fn all_ready(&self) -> bool {
        self.all_reached(Phase::Ready)
    }

    /// No problem, and every volume reached `phase` (`Opened`: opened or
    /// mounted) or is not managed.
    pub fn all_reached(&self, phase: Phase) -> bool {
        let reached = |p: Phase| match phase {
            Phase::Opened => matches!(p, Phase::Opened | Phase::Ready),
            _ => p == phase,
        };
        self.problems.is_empty()
            && !self.volumes.is_empty()
            && self
                .volumes
                .iter()
                .all(|v| reached(v.phase) || v.phase == Phase::NotManaged)
    }

    /// Writes the status file (0600, atomically).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        crate::node::atomic::write_private(path, &text)
    }

    /// Reads the status file, with the progress of online reencryptions
    /// (their files beside it) as they are now.
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read(path)?;
        let mut status: Self = serde_json::from_slice(&text).map_err(std::io::Error::other)?;
        let dir = path.parent().unwrap_or(Path::new("."));
        for v in &mut status.volumes {
            if let Some(p) = crate::node::online::progress_of(dir, &v.name) {
                v.reencryption = Some(p);
            }
        }
        Ok(status)
    }

    /// One line per volume.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<12} {:<12} {:<17} {:<9} {:<16} {:<10} {:<24} {}\n",
            "VOLUME",
            "PARTITION",
            "PHASE",
            "ENCRYPTED",
            "UNLOCKED BY",
            "KEYSLOTS",
            "MOUNT",
            "ERROR"
        );
        for v in &self.volumes {
            let phase = v.phase.to_string();
            let (unlocked, slots) = (v.unlocked_column(), v.keyslots_column());
            s.push_str(&format!(
                "{:<12} {:<12} {:<17} {:<9} {:<16} {:<10} {:<24} {}\n",
                v.name,
                v.partition
                    .as_deref()
                    .map(|p| p.rsplit('/').next().unwrap_or(p))
                    .unwrap_or("-"),
                phase,
                if v.encrypted { "yes" } else { "no" },
                unlocked,
                slots,
                v.mount_column(),
                v.error.as_deref().unwrap_or("")
            ));
        }
        for v in &self.volumes {
            for n in &v.notes {
                s.push_str(&format!("{}: ! {n}\n", v.name));
            }
            if let Some(r) = &v.reencryption {
                s.push_str(&r.line(&v.name));
                s.push('\n');
            }
        }
        for p in &self.problems {
            s.push_str(&format!("problem: {p}\n"));
        }
        s
    }
}

#[cfg(test)]
mod phase_tests {
    use super::Phase;

    #[test]
    fn phase_names_are_the_serialised_names() {
        for p in [
            Phase::Missing,
            Phase::Located,
            Phase::WaitingForWipe,
            Phase::WaitingForKey,
            Phase::Provisioned,
            Phase::Opened,
            Phase::Ready,
            Phase::Failed,
        ] {
            assert_eq!(serde_json::to_value(p).unwrap(), p.name());
        }
    }
}

#[cfg(test)]
mod reencryption_tests {
    use super::*;

    #[test]
    fn reading_the_status_adds_the_progress_of_online_runs() {
        let d = tempfile::tempdir().unwrap();
        let file = d.path().join("status.json");
        let mut st = VolumeStatus::new("persistence", "persistence", true);
        st.phase = Phase::Ready;
        let status = BootStatus {
            volumes: vec![st, VolumeStatus::new("EPHEMERAL", "EPHEMERAL", true)],
            ..BootStatus::default()
        };
        status.save(&file).unwrap();
        assert_eq!(
            BootStatus::load(&file).unwrap().volumes[0].reencryption,
            None
        );
        // What a run's process writes (its pid gone by now: stopped).
        let progress = r#"{"operation": "encrypt", "state": "running", "done_bytes": 524288000,
            "total_bytes": 1048576000, "rate": 250.0, "eta_seconds": 2, "pid": 8388608}"#;
        std::fs::create_dir_all(d.path().join("reencrypt")).unwrap();
        std::fs::write(d.path().join("reencrypt/persistence.json"), progress).unwrap();
        let read = BootStatus::load(&file).unwrap();
        let p = read.volumes[0].reencryption.as_ref().unwrap();
        assert_eq!(p.state, crate::node::online::RunState::Stopped);
        assert_eq!(read.volumes[1].reencryption, None);
        assert!(
            read.table()
                .contains("persistence: encrypting in place 50% (500/1000 MiB) (stopped; the next boot resumes it)"),
            "{}",
            read.table()
        );
    }
}
