//! The system volumes a `VolumeConfig` names, and what each one is: where
//! it is mounted, where it is placed, and whether it may live as a
//! directory on EPHEMERAL (Talos's "promotable" system volumes).

/// A system volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemVolume {
    /// The node's config and secrets (mounted where `--state-mount` says).
    State,
    /// `/var`.
    Ephemeral,
    /// An appliance's data, `/persistence` (volctl's).
    Persistence,
    /// Talos's image cache (1.9+), `/system/imagecache/disk`.
    ImageCache,
    /// etcd's data, `/var/lib/etcd` (Talos 1.14).
    Etcd,
    /// containerd's data, `/var/lib/containerd` (Talos 1.14).
    Cri,
    /// the kubelet's data, `/var/lib/kubelet` (Talos 1.14).
    Kubelet,
    /// `/var/log` (Talos 1.14).
    Log,
}

impl SystemVolume {
    /// Every system volume, in the order volctl places their partitions:
    /// STATE, the promotable ones (they do not grow, so they go before the
    /// growing EPHEMERAL, as Talos places them), EPHEMERAL, persistence,
    /// the image cache.
    pub const ALL: [SystemVolume; 8] = [
        SystemVolume::State,
        SystemVolume::Cri,
        SystemVolume::Etcd,
        SystemVolume::Kubelet,
        SystemVolume::Log,
        SystemVolume::Ephemeral,
        SystemVolume::Persistence,
        SystemVolume::ImageCache,
    ];

    /// Its name, which is also its partition label.
    pub fn name(self) -> &'static str {
        match self {
            SystemVolume::State => "STATE",
            SystemVolume::Ephemeral => "EPHEMERAL",
            SystemVolume::Persistence => "persistence",
            SystemVolume::ImageCache => "IMAGECACHE",
            SystemVolume::Etcd => "ETCD",
            SystemVolume::Cri => "CRI",
            SystemVolume::Kubelet => "KUBELET",
            SystemVolume::Log => "LOG",
        }
    }

    /// The system volume named `name`.
    pub fn from_name(name: &str) -> Option<SystemVolume> {
        Self::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Where it lives under EPHEMERAL's mount point, for the promotable
    /// ones (`lib/etcd`).
    pub fn under_ephemeral(self) -> Option<&'static str> {
        match self {
            SystemVolume::Etcd => Some("lib/etcd"),
            SystemVolume::Cri => Some("lib/containerd"),
            SystemVolume::Kubelet => Some("lib/kubelet"),
            SystemVolume::Log => Some("log"),
            _ => None,
        }
    }

    /// Where it is mounted, as Talos mounts it (STATE: none, it goes where
    /// `--state-mount` says).
    pub fn mount_point(self) -> Option<String> {
        match self {
            SystemVolume::State => None,
            SystemVolume::Ephemeral => Some("/var".into()),
            SystemVolume::Persistence => Some("/persistence".into()),
            SystemVolume::ImageCache => Some("/system/imagecache/disk".into()),
            other => other.under_ephemeral().map(|p| format!("/var/{p}")),
        }
    }

    /// ETCD, CRI, KUBELET, LOG: a directory on EPHEMERAL, unless their
    /// provisioning asks for a partition of their own.
    pub fn promotable(self) -> bool {
        self.under_ephemeral().is_some()
    }

    /// Whether its document may have a `mount` block (Talos refuses one on
    /// STATE, the image cache and the promotable volumes; volctl takes
    /// `mount.path` on STATE).
    pub fn takes_mount(self) -> bool {
        matches!(self, SystemVolume::Ephemeral | SystemVolume::Persistence)
    }

    /// Its place in [`SystemVolume::ALL`] (placement order).
    pub fn rank(self) -> usize {
        Self::ALL
            .iter()
            .position(|v| *v == self)
            .unwrap_or(usize::MAX)
    }
}

impl std::fmt::Display for SystemVolume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_promotable_ones_live_under_var() {
        for v in SystemVolume::ALL {
            assert_eq!(SystemVolume::from_name(v.name()), Some(v));
        }
        assert_eq!(SystemVolume::from_name("etcd"), None, "names are exact");
        assert_eq!(
            SystemVolume::Etcd.mount_point().as_deref(),
            Some("/var/lib/etcd")
        );
        assert_eq!(SystemVolume::Log.mount_point().as_deref(), Some("/var/log"));
        assert!(SystemVolume::Cri.promotable() && !SystemVolume::ImageCache.promotable());
        assert!(SystemVolume::Kubelet.rank() < SystemVolume::Ephemeral.rank());
        assert!(SystemVolume::ImageCache.rank() > SystemVolume::Persistence.rank());
    }
}
