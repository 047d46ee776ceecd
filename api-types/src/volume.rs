//! `VolumeConfig` (system volumes) and `UserVolumeConfig` (named data volumes).

use crate::encryption::Encryption;
use crate::size::SizeSpec;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Names a `VolumeConfig` may have.
pub const SYSTEM_VOLUME_NAMES: &[&str] = &["STATE", "EPHEMERAL", "persistence"];
/// Longest user volume name.
pub const MAX_USER_VOLUME_NAME: usize = 34;
/// Prefix of a user volume's partition label.
pub const USER_VOLUME_LABEL_PREFIX: &str = "u-";

/// A system volume: `STATE`, `EPHEMERAL` or `persistence`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct VolumeConfig {
    /// Always `v1alpha1`.
    pub api_version: String,
    /// Always `VolumeConfig`.
    pub kind: String,
    /// `STATE`, `EPHEMERAL` or `persistence`.
    pub name: String,
    /// Where the volume lives and how large it is (not allowed for STATE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Provisioning>,
    /// Encryption; omit for a plain volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Where the volume is mounted (defaults: STATE `/var/lib/volctl/state`,
    /// EPHEMERAL `/var`, persistence `/persistence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Mount>,
}

/// A named data volume, on partition `u-<name>`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UserVolumeConfig {
    /// Always `v1alpha1`.
    pub api_version: String,
    /// Always `UserVolumeConfig`.
    pub kind: String,
    /// 1–34 characters of `[a-z0-9-]`.
    pub name: String,
    /// Where the volume lives and how large it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning: Option<Provisioning>,
    /// The filesystem to make (default ext4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filesystem: Option<Filesystem>,
    /// Encryption; omit for a plain volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,
    /// Where the volume is mounted (default `/var/mnt/<name>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<Mount>,
}

/// `provisioning`: which disk, and how large.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
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

/// `provisioning.diskSelector`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskSelector {
    /// A CEL expression over disk facts, e.g. `disk.transport == "nvme"`.
    #[serde(rename = "match")]
    pub match_expr: String,
}

/// `filesystem`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Filesystem {
    /// `ext4` (default) or `xfs`.
    #[serde(rename = "type")]
    pub kind: FilesystemType,
}

/// A filesystem volctl can make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FilesystemType {
    /// ext4.
    #[default]
    Ext4,
    /// XFS.
    Xfs,
}

/// `mount`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Absolute mount point.
    pub path: String,
}
