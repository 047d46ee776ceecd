//! `VolumeConfig` (system volumes) and `UserVolumeConfig` (named data volumes).

use crate::encryption::Encryption;
use crate::size::SizeSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest user volume name.
pub const MAX_USER_VOLUME_NAME: usize = 34;
/// Prefix of a user volume's partition label.
pub const USER_VOLUME_LABEL_PREFIX: &str = "u-";

/// A system volume ([`crate::SystemVolume`]: `STATE`, `EPHEMERAL`,
/// `persistence`, and Talos's `IMAGECACHE`, `ETCD`, `CRI`, `KUBELET`, `LOG`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeConfig {
    /// Always `v1alpha1`.
    pub api_version: String,
    /// Always `VolumeConfig`.
    pub kind: String,
    /// A [`crate::SystemVolume`]'s name.
    pub name: String,
    /// `partition` (default) or `memory` (Talos: a tmpfs of `minSize`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<VolumeType>,
    /// Where the volume lives and how large it is (not allowed for STATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Provisioning>,
    /// Filesystem tunables (system volumes are always ext4 in volctl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<SystemFilesystem>,
    /// Encryption; omit for a plain volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Where and how the volume is mounted (defaults: STATE
    /// `/var/lib/volctl/state`, EPHEMERAL `/var`, persistence `/persistence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Mount>,
    /// Periodic fstrim (Talos; accepted, not acted on by volctl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<Trim>,
    /// Periodic filesystem scrub (Talos; accepted, not acted on by volctl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<Scrub>,
}

impl VolumeConfig {
    /// The system volume it names (`None`: a name validation refuses).
    pub fn system(&self) -> Option<crate::SystemVolume> {
        crate::SystemVolume::from_name(&self.name)
    }
}

/// A named data volume, on partition `u-<name>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserVolumeConfig {
    /// Always `v1alpha1`.
    pub api_version: String,
    /// Always `UserVolumeConfig`.
    pub kind: String,
    /// 1–34 characters of `[a-zA-Z0-9-]`.
    #[serde(default)]
    pub name: String,
    /// `partition` (default), `disk` or `directory`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_type: Option<VolumeType>,
    /// Where the volume lives and how large it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Provisioning>,
    /// The filesystem to make (default xfs, as in Talos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
    /// Encryption; omit for a plain volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Where and how the volume is mounted (default `/var/mnt/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Mount>,
    /// Periodic fstrim (Talos; accepted, not acted on by volctl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trim: Option<Trim>,
    /// Periodic filesystem scrub (Talos; accepted, not acted on by volctl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrub: Option<Scrub>,
}

/// `volumeType`: what backs the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum VolumeType {
    /// A GPT partition (the default).
    #[default]
    Partition,
    /// A whole disk (user volumes).
    Disk,
    /// A directory under `/var/mnt` (user volumes).
    Directory,
    /// A tmpfs of `provisioning.minSize` (system volumes).
    Memory,
}

impl VolumeType {
    /// The document spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            VolumeType::Partition => "partition",
            VolumeType::Disk => "disk",
            VolumeType::Directory => "directory",
            VolumeType::Memory => "memory",
        }
    }
}

/// `trim` (Talos `TrimConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Trim {
    /// Trim this volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How often, as a Go duration (`24h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Range trimmed at once (0, or at least 1MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_size: Option<SizeSpec>,
    /// Pause between chunks, as a Go duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunk_delay: Option<String>,
    /// Smallest free range discarded (at most 128MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<SizeSpec>,
}

/// `scrub` (Talos `ScrubConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Scrub {
    /// Scrub this volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How often, as a Go duration (at least 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
}

/// `filesystem` of a system volume: tunables only.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SystemFilesystem {
    /// XFS options (Talos formats EPHEMERAL as xfs; volctl uses ext4 and
    /// warns that they do not apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfs: Option<XfsOptions>,
}

/// `filesystem.xfs`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct XfsOptions {
    /// Lower bound of the XFS allocation group size at format time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_allocation_group_size: Option<SizeSpec>,
}

/// `provisioning`: which disk, and how large.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Provisioning {
    /// Which disk the partition goes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_selector: Option<DiskSelector>,
    /// Smallest acceptable size: bytes, `2.5GiB` or `10%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_size: Option<SizeSpec>,
    /// Largest size: bytes, `50GiB` or `80%`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<SizeSpec>,
    /// Grow the partition into free space after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grow: Option<bool>,
}

impl Provisioning {
    /// Whether nothing is set (Talos treats `provisioning: {}` as absent).
    pub fn is_empty(&self) -> bool {
        self.disk_selector.is_none()
            && self.min_size.is_none()
            && self.max_size.is_none()
            && self.grow.is_none()
    }
}

/// `provisioning.diskSelector`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSelector {
    /// A CEL expression over disk facts, e.g. `disk.transport == "nvme"`.
    #[serde(rename = "match")]
    pub match_expr: String,
}

/// `filesystem` of a user volume.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Filesystem {
    /// `xfs` (default), `ext4` or `btrfs`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<FilesystemType>,
    /// Mount with project quotas (`prjquota`); xfs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_quota_support: Option<bool>,
    /// XFS options; xfs only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xfs: Option<XfsOptions>,
}

impl Filesystem {
    /// The filesystem in effect: xfs unless `type` says otherwise.
    pub fn kind(&self) -> FilesystemType {
        self.kind.unwrap_or(FilesystemType::Xfs)
    }
}

/// A filesystem volctl can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FilesystemType {
    /// ext4 (system volumes: it can shrink, which in-place encryption needs).
    Ext4,
    /// XFS (the default for user volumes, as in Talos).
    Xfs,
    /// Btrfs.
    Btrfs,
}

/// `mount`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Mount {
    /// Absolute mount point (volctl only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Mount with nosuid and nodev (and noexec for user volumes); default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
    /// Mount with noatime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_access_time: Option<bool>,
}

impl Mount {
    /// Whether a Talos mount option (not `path`) is set.
    pub fn has_options(&self) -> bool {
        self.secure.is_some() || self.disable_access_time.is_some()
    }
}

/// A raw (unformatted) volume on partition `r-<name>` (Talos
/// `RawVolumeConfig`) or a swap volume on `s-<name>` (Talos
/// `SwapVolumeConfig`): the two kinds have the same fields and rules.
/// Parsed and validated; acting on them belongs with provisioning.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawOrSwapVolumeConfig {
    /// Always `v1alpha1`.
    pub api_version: String,
    /// `RawVolumeConfig` or `SwapVolumeConfig`.
    pub kind: String,
    /// 1–34 characters of `[a-zA-Z0-9-]`.
    #[serde(default)]
    pub name: String,
    /// Which disk, and how large (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Provisioning>,
    /// Encryption; omit for a plain volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
}

/// A volume made outside Talos, found by a CEL volume selector and mounted
/// at `/var/mnt/<name>` (Talos `ExistingVolumeConfig`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExistingVolumeConfig {
    /// Always `v1alpha1`.
    pub api_version: String,
    /// Always `ExistingVolumeConfig`.
    pub kind: String,
    /// Characters of `[a-zA-Z0-9-]`.
    #[serde(default)]
    pub name: String,
    /// How the volume is found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovery: Option<VolumeDiscovery>,
    /// How it is mounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<ExistingMount>,
}

/// `discovery` of an existing volume.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeDiscovery {
    /// Which volume (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_selector: Option<VolumeSelector>,
}

/// `discovery.volumeSelector`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSelector {
    /// A CEL expression over the volume's facts, e.g.
    /// `volume.partition_label == "MY-DATA"`.
    #[serde(rename = "match")]
    pub match_expr: String,
}

/// `mount` of an existing volume.
#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExistingMount {
    /// Mount read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
    /// Mount with noatime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_access_time: Option<bool>,
    /// Mount with nosuid and nodev (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secure: Option<bool>,
}
