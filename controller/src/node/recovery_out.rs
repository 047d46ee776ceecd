//! Handing over recovery keys: each is shown once (or written to a file the
//! user named, mode 0600) and then forgotten. The file is opened before
//! anything is enrolled, so a key is never made that cannot be handed over.

use crate::converge::NewRecoveryKey;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where recovery keys go.
#[derive(Debug)]
pub enum RecoveryOut {
    /// Printed on the terminal (stderr), once.
    Terminal,
    /// Appended to this file, created 0600 before enrolment.
    File(PathBuf, std::fs::File),
}

impl RecoveryOut {
    /// Opens `path` for the keys (must not exist: an older key in it is not
    /// overwritten), or the terminal when `None`.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let Some(path) = path else {
            return Ok(RecoveryOut::Terminal);
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        Ok(RecoveryOut::File(path.to_path_buf(), f))
    }

    /// Appends to a key file made earlier by [`RecoveryOut::open`] (boot
    /// opens it once, then each volume adds its keys).
    pub fn append(path: &Path) -> std::io::Result<Self> {
        let f = std::fs::OpenOptions::new().append(true).open(path)?;
        Ok(RecoveryOut::File(path.to_path_buf(), f))
    }

    /// Hands over `keys` of `volume`; says where they went (no secret).
    pub fn deliver(
        &mut self,
        volume: &str,
        keys: &[NewRecoveryKey],
    ) -> std::io::Result<Option<String>> {
        if keys.is_empty() {
            return Ok(None);
        }
        let mut text = String::new();
        for k in keys {
            text.push_str(&format!(
                "{volume} slot {}: {}\n",
                k.slot,
                String::from_utf8_lossy(k.key.expose())
            ));
        }
        let text = zeroize::Zeroizing::new(text);
        match self {
            RecoveryOut::Terminal => {
                eprint!(
                    "Recovery key(s), shown once and stored nowhere; write them down:\n{}",
                    text.as_str()
                );
                Ok(Some("shown on the terminal".into()))
            }
            RecoveryOut::File(path, f) => {
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
                Ok(Some(format!("written to {} (0600)", path.display())))
            }
        }
    }

    /// Removes the file again when no key went into it (it is still empty:
    /// whoever wrote keys, this process or the boot's volume tasks, appended).
    pub fn finish(self) {
        // Dropping it removes an empty file.
    }
}

impl Drop for RecoveryOut {
    /// A file no key went into is removed, on every path out of a run (an
    /// error too), so the next run can make it again.
    fn drop(&mut self) {
        if let RecoveryOut::File(path, f) = self {
            if f.metadata().is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}
