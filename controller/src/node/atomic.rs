//! Writing files that may hold secrets: mode 0600 from creation, written to
//! a temporary name, synced, then renamed over the target (and the directory
//! synced), so a crash leaves the old or the new file, never a torn one.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Atomically replaces `path` with `data`, mode 0600. The temporary file
/// has a random name of its own (`tempfile`, 0600 from creation), so two
/// writers never remove each other's.
pub fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("volctl");
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    tmp.write_all(data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_with_mode_0600_and_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("sub/config.yaml");
        write_private(&p, b"one").unwrap();
        write_private(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn writers_at_once_each_leave_a_whole_file_and_no_temporary() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("status.json");
        std::thread::scope(|s| {
            for i in 0..8u8 {
                let p = &p;
                s.spawn(move || {
                    for _ in 0..50 {
                        write_private(p, &[i; 4096]).unwrap();
                    }
                });
            }
        });
        let got = std::fs::read(&p).unwrap();
        assert!(got.len() == 4096 && got.iter().all(|&b| b == got[0]));
        let names: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "temporaries left: {names:?}");
    }
}
