//! A parsed document of either kind, and what every document shares.

use crate::encryption::Encryption;
use crate::system_volume::SystemVolume;
use crate::volume::{
    ExistingVolumeConfig, Filesystem, FilesystemType, Mount, Provisioning, RawOrSwapVolumeConfig,
    UserVolumeConfig, VolumeConfig, VolumeType, USER_VOLUME_LABEL_PREFIX,
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
    /// `RawVolumeConfig` (Talos; validated, not acted on).
    RawVolumeConfig,
    /// `ExistingVolumeConfig` (Talos; validated, not acted on).
    ExistingVolumeConfig,
    /// `SwapVolumeConfig` (Talos): swap on `s-<name>`.
    SwapVolumeConfig,
}

impl DocumentKind {
    /// Every kind, in the order they are documented.
    pub const ALL: [DocumentKind; 5] = [
        DocumentKind::VolumeConfig,
        DocumentKind::UserVolumeConfig,
        DocumentKind::RawVolumeConfig,
        DocumentKind::ExistingVolumeConfig,
        DocumentKind::SwapVolumeConfig,
    ];

    /// The `kind:` string.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::VolumeConfig => "VolumeConfig",
            DocumentKind::UserVolumeConfig => "UserVolumeConfig",
            DocumentKind::RawVolumeConfig => "RawVolumeConfig",
            DocumentKind::ExistingVolumeConfig => "ExistingVolumeConfig",
            DocumentKind::SwapVolumeConfig => "SwapVolumeConfig",
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
    /// A raw volume (Talos).
    Raw(RawOrSwapVolumeConfig),
    /// An existing volume (Talos).
    Existing(ExistingVolumeConfig),
    /// A swap volume (Talos).
    Swap(RawOrSwapVolumeConfig),
}

impl Document {
    /// The document's kind.
    pub fn kind(&self) -> DocumentKind {
        match self {
            Document::Volume(_) => DocumentKind::VolumeConfig,
            Document::User(_) => DocumentKind::UserVolumeConfig,
            Document::Raw(_) => DocumentKind::RawVolumeConfig,
            Document::Existing(_) => DocumentKind::ExistingVolumeConfig,
            Document::Swap(_) => DocumentKind::SwapVolumeConfig,
        }
    }

    /// The document's `name`.
    pub fn name(&self) -> &str {
        match self {
            Document::Volume(v) => &v.name,
            Document::User(u) => &u.name,
            Document::Raw(r) => &r.name,
            Document::Existing(e) => &e.name,
            Document::Swap(s) => &s.name,
        }
    }

    /// The GPT partition label of the volume: the name for system volumes,
    /// `u-<name>` for user volumes, `r-`/`s-` for raw and swap volumes; an
    /// existing volume's own name (its label is whatever it was made with).
    pub fn partition_label(&self) -> String {
        match self {
            Document::Volume(v) => v.name.clone(),
            Document::User(u) => format!("{USER_VOLUME_LABEL_PREFIX}{}", u.name),
            Document::Raw(r) => format!("r-{}", r.name),
            Document::Existing(e) => e.name.clone(),
            Document::Swap(s) => format!("s-{}", s.name),
        }
    }

    /// Whether volctl brings this volume up on a partition: a system,
    /// user, raw or swap volume on a partition, or an existing volume.
    /// The other volume types are valid Talos documents volctl brings up
    /// otherwise (directory, disk) or leaves alone (memory).
    pub fn managed(&self) -> bool {
        self.volume_type() == VolumeType::Partition
    }

    /// The encryption block as written, even one without a provider.
    pub fn encryption_block(&self) -> Option<&Encryption> {
        match self {
            Document::Volume(v) => v.encryption.as_ref(),
            Document::User(u) => u.encryption.as_ref(),
            Document::Raw(r) => r.encryption.as_ref(),
            Document::Swap(s) => s.encryption.as_ref(),
            Document::Existing(_) => None,
        }
    }

    /// The encryption block, if the volume is encrypted: as in Talos, a
    /// block without a provider is no encryption.
    pub fn encryption(&self) -> Option<&Encryption> {
        self.encryption_block().filter(|e| e.provider.is_some())
    }

    /// `volumeType`, `partition` when absent (and for the kinds without one).
    pub fn volume_type(&self) -> VolumeType {
        match self {
            // ETCD, CRI, KUBELET, LOG: a directory on EPHEMERAL unless
            // their provisioning asks for a partition (Talos).
            Document::Volume(v)
                if v.system().is_some_and(SystemVolume::promotable)
                    && v.provisioning.as_ref().is_none_or(Provisioning::is_empty) =>
            {
                Some(VolumeType::Directory)
            }
            Document::Volume(v) => v.volume_type,
            Document::User(u) => u.volume_type,
            _ => None,
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
            _ => FilesystemType::Xfs,
        }
    }

    /// The provisioning block, if any.
    pub fn provisioning(&self) -> Option<&Provisioning> {
        match self {
            Document::Volume(v) => v.provisioning.as_ref(),
            Document::User(u) => u.provisioning.as_ref(),
            Document::Raw(r) => r.provisioning.as_ref(),
            Document::Swap(s) => s.provisioning.as_ref(),
            Document::Existing(_) => None,
        }
    }

    /// The filesystem block (user volumes only).
    pub fn filesystem(&self) -> Option<&Filesystem> {
        match self {
            Document::User(u) => u.filesystem.as_ref(),
            _ => None,
        }
    }

    /// The mount block, if any.
    pub fn mount(&self) -> Option<&Mount> {
        match self {
            Document::Volume(v) => v.mount.as_ref(),
            Document::User(u) => u.mount.as_ref(),
            _ => None,
        }
    }

    /// Where the volume is mounted: `mount.path`, else its default
    /// (EPHEMERAL at `/var`, persistence at `/persistence`, a user volume at
    /// `/var/mnt/<name>`, as is an existing volume). `None` for STATE, whose
    /// mount point is a boot option (`--state-mount`) unless `mount.path`
    /// sets it, and for raw and swap volumes, which are not mounted.
    pub fn mount_point(&self) -> Option<String> {
        if let Some(path) = self.mount().and_then(|m| m.path.clone()) {
            return Some(path);
        }
        match self {
            Document::Volume(v) => v.system().and_then(SystemVolume::mount_point),
            Document::User(u) => Some(format!("/var/mnt/{}", u.name)),
            Document::Existing(e) => Some(format!("/var/mnt/{}", e.name)),
            Document::Raw(_) | Document::Swap(_) => None,
        }
    }

    /// Whether this is the STATE volume.
    pub fn is_state(&self) -> bool {
        matches!(self, Document::Volume(v) if v.name == "STATE")
    }
}
