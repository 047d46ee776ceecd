//! Filesystems on opened volumes: detect, make, mount, unmount.

use api_types::{Document, FilesystemType};
use rustix::mount::MountFlags;
use std::ffi::CStr;
use std::path::Path;
use std::process::Command;

/// Why a filesystem step failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// A tool (mkfs, a grow tool, mkswap, swapon, swapoff) failed.
    #[error("{tool} on {device} failed: {reason}")]
    Tool {
        /// The binary.
        tool: String,
        /// Device.
        device: String,
        /// Its stderr or the spawn error.
        reason: String,
    },
    /// mount/umount failed.
    #[error("{op} {what} failed: {source}")]
    Mount {
        /// `mount` or `umount`.
        op: &'static str,
        /// What.
        what: String,
        /// Cause.
        source: std::io::Error,
    },
}

/// The mkfs binary and its quiet/force flags for a filesystem type.
fn mkfs_command(fs: FilesystemType) -> (&'static str, &'static [&'static str]) {
    match fs {
        FilesystemType::Ext4 => ("mkfs.ext4", &["-q", "-F"]),
        FilesystemType::Xfs => ("mkfs.xfs", &["-q", "-f"]),
        FilesystemType::Btrfs => ("mkfs.btrfs", &["-q", "-f"]),
    }
}

/// The kernel's name for a filesystem type (for mount(2)).
pub fn fstype(fs: FilesystemType) -> &'static str {
    match fs {
        FilesystemType::Ext4 => "ext4",
        FilesystemType::Xfs => "xfs",
        FilesystemType::Btrfs => "btrfs",
    }
}

/// The filesystem type a probe result names, if volctl can mount it.
pub fn from_probe(found: &str) -> Option<FilesystemType> {
    [
        FilesystemType::Ext4,
        FilesystemType::Xfs,
        FilesystemType::Btrfs,
    ]
    .into_iter()
    .find(|fs| found.starts_with(probe_name(*fs)))
}

/// How the signature probe names a filesystem type.
pub fn probe_name(fs: FilesystemType) -> &'static str {
    match fs {
        FilesystemType::Ext4 => "ext2/3/4",
        FilesystemType::Xfs => "XFS",
        FilesystemType::Btrfs => "btrfs",
    }
}

/// How a volume is mounted: Talos's `mount.secure` (nosuid and nodev, and
/// noexec on user volumes; on by default), `mount.disableAccessTime`
/// (noatime) and `filesystem.projectQuotaSupport` (prjquota, xfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MountOptions {
    /// nosuid, nodev.
    pub secure: bool,
    /// noexec (with `secure`, on user volumes).
    pub noexec: bool,
    /// noatime.
    pub noatime: bool,
    /// prjquota.
    pub project_quota: bool,
    /// Read-only (an existing volume's `mount.readOnly`).
    pub read_only: bool,
}

impl Default for MountOptions {
    /// Secure, as Talos mounts a volume whose document says nothing.
    fn default() -> Self {
        MountOptions {
            secure: true,
            noexec: false,
            noatime: false,
            project_quota: false,
            read_only: false,
        }
    }
}

impl MountOptions {
    /// The options a document asks for.
    pub fn for_document(doc: &Document) -> Self {
        let mount = doc.mount();
        let secure = mount.and_then(|m| m.secure).unwrap_or(true);
        let user = matches!(doc, Document::User(_));
        MountOptions {
            secure,
            noexec: secure && user,
            noatime: mount.and_then(|m| m.disable_access_time).unwrap_or(false),
            project_quota: doc
                .filesystem()
                .and_then(|f| f.project_quota_support)
                .unwrap_or(false),
            read_only: false,
        }
    }

    /// mount(2) flags.
    pub fn flags(&self) -> MountFlags {
        let mut flags = MountFlags::empty();
        if self.secure {
            flags |= MountFlags::NOSUID | MountFlags::NODEV;
        }
        if self.noexec {
            flags |= MountFlags::NOEXEC;
        }
        if self.noatime {
            flags |= MountFlags::NOATIME;
        }
        if self.read_only {
            flags |= MountFlags::RDONLY;
        }
        flags
    }

    /// mount(2) data (filesystem options).
    pub fn data(&self) -> Option<&'static CStr> {
        self.project_quota.then_some(c"prjquota")
    }
}

/// Makes a filesystem on `device`, labelled `label`.
pub fn mkfs(device: &Path, fs: FilesystemType, label: &str) -> Result<(), FsError> {
    let (tool, flags) = mkfs_command(fs);
    let label_flag = "-L";
    // xfs labels are at most 12 characters.
    let label: String = if fs == FilesystemType::Xfs {
        label.chars().take(12).collect()
    } else {
        label.to_string()
    };
    let mut cmd = Command::new(tool);
    cmd.args(flags).args([label_flag, &label]).arg(device);
    run_tool(cmd, device)
}

/// Runs a filesystem tool (`mkfs.ext4`, `resize2fs`, `mkswap`, …) on
/// `device`; its stderr is the error.
pub(crate) fn run_tool(mut cmd: Command, device: &Path) -> Result<(), FsError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let err = |reason: String| FsError::Tool {
        tool,
        device: device.display().to_string(),
        reason,
    };
    match cmd.output() {
        Err(e) => Err(err(e.to_string())),
        Ok(o) if !o.status.success() => {
            Err(err(String::from_utf8_lossy(&o.stderr).trim().to_string()))
        }
        Ok(_) => Ok(()),
    }
}

/// Mounts `device` at `target` (created if missing).
pub fn mount(
    device: &Path,
    target: &Path,
    fs: FilesystemType,
    options: MountOptions,
) -> Result<(), FsError> {
    let err = |source| FsError::Mount {
        op: "mount",
        what: format!("{} at {}", device.display(), target.display()),
        source,
    };
    std::fs::create_dir_all(target).map_err(err)?;
    rustix::mount::mount(device, target, fstype(fs), options.flags(), options.data())
        .map_err(|e| err(e.into()))
}

/// Grows the mounted filesystem at `target` (device `device`) to fill its
/// device; returns its size in bytes before and after.
pub fn grow(device: &Path, target: &Path, fs: FilesystemType) -> Result<(u64, u64), FsError> {
    let before = size_of_mounted(target);
    let (tool, args): (&str, Vec<&std::ffi::OsStr>) = match fs {
        FilesystemType::Ext4 => ("resize2fs", vec![device.as_os_str()]),
        FilesystemType::Xfs => ("xfs_growfs", vec![target.as_os_str()]),
        FilesystemType::Btrfs => (
            "btrfs",
            vec![
                "filesystem".as_ref(),
                "resize".as_ref(),
                "max".as_ref(),
                target.as_os_str(),
            ],
        ),
    };
    let mut cmd = Command::new(tool);
    cmd.args(&args);
    run_tool(cmd, device)?;
    Ok((before, size_of_mounted(target)))
}

/// The size of the filesystem mounted at `target` (statvfs), 0 if unknown.
fn size_of_mounted(target: &Path) -> u64 {
    rustix::fs::statvfs(target).map_or(0, |st| st.f_blocks.saturating_mul(st.f_frsize))
}

/// Unmounts `target`.
pub fn umount(target: &Path) -> Result<(), FsError> {
    rustix::mount::unmount(target, rustix::mount::UnmountFlags::empty()).map_err(|e| {
        FsError::Mount {
            op: "umount",
            what: target.display().to_string(),
            source: e.into(),
        }
    })
}

/// Moves the mount at `from` to `to` (created if missing).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), FsError> {
    let err = |source| FsError::Mount {
        op: "move mount",
        what: format!("{} to {}", from.display(), to.display()),
        source,
    };
    std::fs::create_dir_all(to).map_err(err)?;
    match rustix::mount::mount_move(from, to) {
        Ok(()) => {}
        // A mount under a shared mount cannot be moved (systemd makes
        // every mount shared, /run too): bound at `to` with its flags, then
        // unmounted at `from`.
        Err(rustix::io::Errno::INVAL) => move_by_binding(from, to).map_err(|e| err(e.into()))?,
        Err(e) => return Err(err(e.into())),
    }
    let _ = std::fs::remove_dir(from);
    Ok(())
}

/// Moves the mount at `from` to `to` as a bind mount with the same flags
/// (`nosuid`, `nodev`, `noexec`, `ro`, `noatime`), then unmounts `from`.
fn move_by_binding(from: &Path, to: &Path) -> rustix::io::Result<()> {
    let kept = rustix::fs::statvfs(from)?.f_flag;
    let mut flags = MountFlags::BIND;
    for (statvfs, mount) in [
        (rustix::fs::StatVfsMountFlags::NOSUID, MountFlags::NOSUID),
        (rustix::fs::StatVfsMountFlags::NODEV, MountFlags::NODEV),
        (rustix::fs::StatVfsMountFlags::NOEXEC, MountFlags::NOEXEC),
        (rustix::fs::StatVfsMountFlags::RDONLY, MountFlags::RDONLY),
        (rustix::fs::StatVfsMountFlags::NOATIME, MountFlags::NOATIME),
    ] {
        if kept.contains(statvfs) {
            flags |= mount;
        }
    }
    rustix::mount::mount_bind(from, to)?;
    rustix::mount::mount_remount(to, flags, "")?;
    rustix::mount::unmount(from, rustix::mount::UnmountFlags::empty())
}

#[cfg(test)]
mod tests {
    use super::{MountFlags, MountOptions};
    use api_types::parse_str;

    fn options(yaml: &str) -> MountOptions {
        let p = parse_str("t.yaml", yaml);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        MountOptions::for_document(&p.documents[0])
    }

    const USER: &str = "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {diskSelector: {match: system_disk}, maxSize: 1GiB}\n";

    #[test]
    fn mount_flags_follow_talos_defaults_and_fields() {
        let sys = options("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\n");
        assert_eq!(sys.flags(), MountFlags::NOSUID | MountFlags::NODEV);
        assert_eq!(sys.data(), None);
        let user = options(USER);
        assert_eq!(
            user.flags(),
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC
        );
        let relaxed = options(&format!(
            "{USER}mount: {{secure: false, disableAccessTime: true}}\nfilesystem: {{projectQuotaSupport: true}}\n"
        ));
        assert_eq!(relaxed.flags(), MountFlags::NOATIME);
        assert_eq!(relaxed.data(), Some(c"prjquota"));
    }
}
