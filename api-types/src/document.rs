//! A parsed document of either kind, and what every document shares.

use crate::encryption::Encryption;
use crate::volume::{
    Filesystem, FilesystemType, Mount, Provisioning, UserVolumeConfig, VolumeConfig, VolumeType,
    USER_VOLUME_LABEL_PREFIX,
};

/// The only apiVersion volctl reads.
pub const API_VERSION: &str = "v1alpha1";

/// The kinds of document volctl reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocumentKind {
    /// `VolumeConfig`.
    VolumeConfig,
    /// `UserVolumeConfig`.
    UserVolumeConfig,
}

impl DocumentKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [DocumentKind; 2] = [DocumentKind::VolumeConfig, DocumentKind::UserVolumeConfig];

    /// The `kind:` string.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::VolumeConfig => "VolumeConfig",
            DocumentKind::UserVolumeConfig => "UserVolumeConfig",
        }
    }

    /// Parses a `kind:` string.
    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One valid document.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// A system volume.
    Volume(VolumeConfig),
    /// A user volume.
    User(UserVolumeConfig),
}

impl Document {
    /// The document's kind.
    pub fn kind(&self) -> DocumentKind {
        match self {
            Document::Volume(_) => DocumentKind::VolumeConfig,
            Document::User(_) => DocumentKind::UserVolumeConfig,
        }
    }

    /// The document's `name`.
    pub fn name(&self) -> &str {
        match self {
            Document::Volume(v) => &v.name,
            Document::User(u) => &u.name,
        }
    }

    /// The GPT partition label of the volume: the name for system volumes,
    /// `u-<name>` for user volumes.
    pub fn partition_label(&self) -> String {
        match self {
            Document::Volume(v) => v.name.clone(),
            Document::User(u) => format!("{USER_VOLUME_LABEL_PREFIX}{}", u.name),
        }
    }

    /// The encryption block as written, even one without a provider.
    pub fn encryption_block(&self) -> Option<&Encryption> {
        match self {
            Document::Volume(v) => v.encryption.as_ref(),
            Document::User(u) => u.encryption.as_ref(),
        }
    }

    /// The encryption block, if the volume is encrypted: as in Talos, a
    /// block without a provider is no encryption.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption_block().filter(|e| e.provider.is_some())
    }

    /// `volumeType`, `partition` when absent.
    pub fn volume_type(&self) -> VolumeType {
        match self {
            Document::Volume(v) => v.volume_type,
            Document::User(u) => u.volume_type,
        }
        .unwrap_or_default()
    }

    /// The filesystem volctl makes: ext4 for system volumes (ext4 can
    /// shrink, which in-place encryption needs), `filesystem.type` or xfs
    /// (Talos's default) for user volumes.
    pub fn filesystem_type(&self) -> FilesystemType {
        match self {
            Document::Volume(_) => FilesystemType::Ext4,
            Document::User(u) => u
                .filesystem
                .as_ref()
                .map_or(FilesystemType::Xfs, Filesystem::kind),
        }
    }

    /// The provisioning block, if any.
    pub fn provisioning(&self) -> Option<&Provisioning> {
        match self {
            Document::Volume(v) => v.provisioning.as_ref(),
            Document::User(u) => u.provisioning.as_ref(),
        }
    }

    /// The filesystem block (user volumes only).
    pub fn filesystem(&self) -> Option<&Filesystem> {
        match self {
            Document::Volume(_) => None,
            Document::User(u) => u.filesystem.as_ref(),
        }
    }

    /// The mount block, if any.
    pub fn mount(&self) -> Option<&Mount> {
        match self {
            Document::Volume(v) => v.mount.as_ref(),
            Document::User(u) => u.mount.as_ref(),
        }
    }

    /// Where the volume is mounted: `mount.path`, else its default
    /// (EPHEMERAL at `/var`, persistence at `/persistence`, a user volume at
    /// `/var/mnt/<name>`). `None` for STATE, whose mount point is a boot
    /// option (`--state-mount`) unless `mount.path` sets it.
    pub fn mount_point(&self) -> Option<String> {
        if let Some(path) = self.mount().and_then(|m| m.path.clone()) {
            return Some(path);
        }
        match self {
            Document::Volume(v) if v.name == "STATE" => None,
            Document::Volume(v) if v.name == "EPHEMERAL" => Some("/var".into()),
            Document::Volume(_) => Some("/persistence".into()),
            Document::User(u) => Some(format!("/var/mnt/{}", u.name)),
        }
    }

    /// Whether this is the STATE volume.
    pub fn is_state(&self) -> bool {
        matches!(self, Document::Volume(v) if v.name == "STATE")
    }
}
