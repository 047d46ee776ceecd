//! # volctl private files
//!
//! Reads a secret (the STATE salt, the KMS master keys) from a file the
//! safe way. The file is opened without blocking (a FIFO cannot hang the
//! reader), and the opened descriptor is checked (no race with the path): a
//! regular file, owned by the effective user or root, with no group or other
//! permission bits — except that a process not running as root also
//! accepts read permission for a group it is in (0440, 0640): Kubernetes'
//! `fsGroup` makes a mounted Secret group-readable, and a non-root
//! container cannot read it otherwise. A symlink is followed (Kubernetes mounts secrets as
//! symlinks), but what it points to must pass the same checks, so a link to
//! another user's file is refused. At most
//! `max_len` bytes are read (a device or a huge file cannot exhaust memory),
//! into memory that is zeroized when dropped.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use zeroize::Zeroizing;

/// Why a private file was refused. Never includes its content.
#[derive(Debug, thiserror::Error)]
pub enum PrivateFileError {
    /// It could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not a regular file (a FIFO, a device, a directory).
    #[error("{path} is not a regular file (it is a {kind}); refusing to read a secret from it")]
    NotRegular {
        /// Path.
        path: String,
        /// What it is.
        kind: &'static str,
    },
    /// Readable or writable by group or others.
    #[error("{path} has mode {mode:o}; it must not be readable by group or others (chmod 600; a server not running as root also accepts read by its own group, as Kubernetes' fsGroup sets)")]
    Permissions {
        /// Path.
        path: String,
        /// Mode bits.
        mode: u32,
    },
    /// Owned by another user.
    #[error("{path} is owned by uid {owner}; it must be owned by this user (uid {me}) or root")]
    Owner {
        /// Path.
        path: String,
        /// The file's owner.
        owner: u32,
        /// The effective uid.
        me: u32,
    },
    /// Larger than a secret of this kind can be.
    #[error("{path} is larger than {max} bytes; it cannot be this secret")]
    TooLarge {
        /// Path.
        path: String,
        /// The limit.
        max: u64,
    },
}

fn kind_of(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "FIFO",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFDIR => "directory",
        libc::S_IFSOCK => "socket",
        _ => "special file",
    }
}

/// Reads the secret file at `path` (at most `max_len` bytes).
pub fn read_private(path: &Path, max_len: u64) -> Result<Zeroizing<Vec<u8>>, PrivateFileError> {
    let p = path.display().to_string();
    let io = |source| PrivateFileError::Io {
        path: p.clone(),
        source,
    };
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = f.metadata().map_err(io)?;
    check(&p, &meta, max_len, &Reader::this_process())?;
    let mut buf = Zeroizing::new(Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0)));
    f.take(max_len + 1).read_to_end(&mut buf).map_err(io)?;
    if buf.len() as u64 > max_len {
        return Err(PrivateFileError::TooLarge {
            path: p,
            max: max_len,
        });
    }
    Ok(buf)
}

/// Who reads the secret: the effective user and its groups.
struct Reader {
    uid: u32,
    groups: Vec<u32>,
}

impl Reader {
    fn this_process() -> Reader {
        let mut groups: Vec<u32> = rustix::process::getgroups()
            .unwrap_or_default()
            .into_iter()
            .map(rustix::process::Gid::as_raw)
            .collect();
        groups.push(rustix::process::getegid().as_raw());
        Reader {
            uid: rustix::process::geteuid().as_raw(),
            groups,
        }
    }

    /// Whether `mode` (and the file's group `gid`) keeps the secret from
    /// everyone but this reader (and, for a reader not root, its own group).
    fn private_enough(&self, mode: u32, gid: u32) -> bool {
        let group_read_own = self.uid != 0 && mode & 0o070 == 0o040 && self.groups.contains(&gid);
        mode & 0o007 == 0 && (mode & 0o070 == 0 || group_read_own)
    }
}

fn check(
    p: &str,
    meta: &std::fs::Metadata,
    max_len: u64,
    reader: &Reader,
) -> Result<(), PrivateFileError> {
    if !meta.file_type().is_file() {
        return Err(PrivateFileError::NotRegular {
            path: p.to_string(),
            kind: kind_of(meta.mode()),
        });
    }
    let mode = meta.mode() & 0o777;
    if !reader.private_enough(mode, meta.gid()) {
        return Err(PrivateFileError::Permissions {
            path: p.to_string(),
            mode,
        });
    }
    let me = reader.uid;
    if meta.uid() != me && meta.uid() != 0 {
        return Err(PrivateFileError::Owner {
            path: p.to_string(),
            owner: meta.uid(),
            me,
        });
    }
    if meta.len() > max_len {
        return Err(PrivateFileError::TooLarge {
            path: p.to_string(),
            max: max_len,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_non_root_reader_accepts_read_by_its_own_group_and_nothing_looser() {
        use super::Reader;
        let nonroot = Reader {
            uid: 65532,
            groups: vec![65532],
        };
        let root = Reader {
            uid: 0,
            groups: vec![0, 65532],
        };
        assert!(nonroot.private_enough(0o400, 0) && nonroot.private_enough(0o600, 0));
        assert!(nonroot.private_enough(0o440, 65532), "Kubernetes fsGroup");
        assert!(nonroot.private_enough(0o640, 65532));
        assert!(!nonroot.private_enough(0o440, 1000), "another group");
        assert!(!nonroot.private_enough(0o460, 65532), "group-writable");
        assert!(!nonroot.private_enough(0o444, 65532), "world-readable");
        assert!(!root.private_enough(0o440, 65532), "root stays strict");
        assert!(!root.private_enough(0o640, 0));
    }

    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn private(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        p
    }

    #[test]
    fn a_private_regular_file_is_read() {
        let d = tempfile::tempdir().unwrap();
        let p = private(d.path(), "s", b"secret");
        assert_eq!(read_private(&p, 64).unwrap().as_slice(), b"secret");
    }

    #[test]
    fn a_fifo_is_refused_at_once_instead_of_hanging() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_private(&p, 64).unwrap_err();
        assert!(
            matches!(e, PrivateFileError::NotRegular { kind: "FIFO", .. }),
            "{e}"
        );
    }

    #[test]
    fn a_device_and_a_huge_file_are_refused() {
        let e = read_private(Path::new("/dev/zero"), 64).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let big = private(d.path(), "big", &[1u8; 4096]);
        let e = read_private(&big, 1024).unwrap_err();
        assert!(
            matches!(e, PrivateFileError::TooLarge { max: 1024, .. }),
            "{e}"
        );
    }

    #[test]
    fn a_loose_mode_or_a_foreign_owner_is_refused_also_behind_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let p = private(d.path(), "s", b"x");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert_eq!(read_private(&link, 64).unwrap().as_slice(), b"x");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_private(&p, 64),
            Err(PrivateFileError::Permissions { mode: 0o640, .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        // SAFETY: a valid path; we are root in the test environment, or the
        // chown fails and the check below is skipped.
        if unsafe { libc::chown(c.as_ptr(), 4242, 4242) } == 0 {
            for path in [&p, &link] {
                let e = read_private(path, 64).unwrap_err();
                assert!(
                    matches!(e, PrivateFileError::Owner { owner: 4242, .. }),
                    "{e}"
                );
            }
        }
    }
}
