//! Filesystems on opened volumes: detect, make, mount, unmount.

use api_types::FilesystemType;
use std::ffi::CString;
use std::path::Path;
use std::process::Command;

/// Why a filesystem step failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// mkfs failed.
    #[error("{tool} on {device} failed: {reason}")]
    Mkfs {
        /// The mkfs binary.
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
    }
}

/// The kernel's name for a filesystem type (for mount(2)).
pub fn fstype(fs: FilesystemType) -> &'static str {
    match fs {
        FilesystemType::Ext4 => "ext4",
        FilesystemType::Xfs => "xfs",
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
    let out = Command::new(tool)
        .args(flags)
        .args([label_flag, &label])
        .arg(device)
        .output();
    let err = |reason: String| FsError::Mkfs {
        tool: tool.into(),
        device: device.display().to_string(),
        reason,
    };
    match out {
        Err(e) => Err(err(e.to_string())),
        Ok(o) if !o.status.success() => {
            Err(err(String::from_utf8_lossy(&o.stderr).trim().to_string()))
        }
        Ok(_) => Ok(()),
    }
}

fn cstring(p: &Path) -> CString {
    CString::new(p.as_os_str().as_encoded_bytes()).unwrap_or_default()
}

/// Mounts `device` at `target` (created if missing).
pub fn mount(device: &Path, target: &Path, fs: FilesystemType) -> Result<(), FsError> {
    let err = |source| FsError::Mount {
        op: "mount",
        what: format!("{} at {}", device.display(), target.display()),
        source,
    };
    std::fs::create_dir_all(target).map_err(err)?;
    let (src, tgt, ty) = (
        cstring(device),
        cstring(target),
        CString::new(fstype(fs)).expect("no NUL"),
    );
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            tgt.as_ptr(),
            ty.as_ptr(),
            libc::MS_NOATIME,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Unmounts `target`.
pub fn umount(target: &Path) -> Result<(), FsError> {
    let t = cstring(target);
    // SAFETY: valid NUL-terminated string.
    if unsafe { libc::umount(t.as_ptr()) } != 0 {
        return Err(FsError::Mount {
            op: "umount",
            what: target.display().to_string(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Moves the mount at `from` to `to` (created if missing).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), FsError> {
    let err = |source| FsError::Mount {
        op: "move mount",
        what: format!("{} to {}", from.display(), to.display()),
        source,
    };
    std::fs::create_dir_all(to).map_err(err)?;
    let (f, t) = (cstring(from), cstring(to));
    // SAFETY: valid NUL-terminated strings; MS_MOVE takes no fstype or data.
    let rc = unsafe {
        libc::mount(
            f.as_ptr(),
            t.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    let _ = std::fs::remove_dir(from);
    Ok(())
}
