//! Recovery keys held for one fetch: a boot that enrols a recovery key with
//! nobody to show it to keeps it in the node's run-time directory (a tmpfs,
//! gone at power-off) as `<run dir>/recovery/<volume>.json`, 0600 in a 0700
//! folder, until an admin runs `volctl -n NODE recovery-key fetch`. The
//! keyslot's token says `"held": true` until then; a fetch (or the key
//! typed to open the volume) removes that mark, and a volume unlocked by
//! another key while it is still there gets a fresh recovery key instead
//! (the planner's rule), so a key nobody knows never stays enrolled.

use crate::converge::{mark_seen, NewRecoveryKey};
use crate::device::{self, Access, DeviceError};
use api_types::KeyslotId;
use providers::Passphrase;
use serde::{Deserialize, Serialize};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Why a held key could not be handed out.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The name is no volume's (it could reach outside the folder).
    #[error("`{0}` is not a volume name (letters, digits, `-` and `_`, at most 64)")]
    BadName(String),
    /// Nothing is held for the volume.
    #[error("no recovery key is held for `{0}`: it was fetched already, shown when it was enrolled, or enrolled by an earlier boot (the next boot that opens the volume by another key enrols a fresh one to fetch)")]
    NothingHeld(String),
    /// The record or the run-time folder could not be read or written.
    #[error("held recovery key of `{volume}`: {source}")]
    Io {
        /// The volume.
        volume: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The header could not be marked.
    #[error("cannot mark the recovery key of `{volume}` as seen on {device}: {source}")]
    Mark {
        /// The volume.
        volume: String,
        /// Its device.
        device: String,
        /// Why.
        #[source]
        source: Box<DeviceError>,
    },
}

/// One volume's held keys, as stored.
#[derive(Serialize, Deserialize)]
struct Record {
    device: PathBuf,
    keys: Vec<HeldKey>,
}

#[derive(Serialize, Deserialize)]
struct HeldKey {
    slot: KeyslotId,
    key: String,
}

impl Drop for HeldKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// A key handed out by [`HeldKeys::fetch`].
#[derive(Debug)]
pub struct FetchedKey {
    /// Its keyslot.
    pub slot: KeyslotId,
    /// The key, as a person types it.
    pub key: Passphrase,
}

/// The held keys of a node.
#[derive(Debug, Clone)]
pub struct HeldKeys {
    dir: PathBuf,
}

impl HeldKeys {
    /// The keys held under the run-time directory `run_dir` (`/run/volctl`).
    pub fn in_run_dir(run_dir: &Path) -> Self {
        HeldKeys {
            dir: run_dir.join("recovery"),
        }
    }

    /// The record's path; only for a name that stays inside the folder
    /// (a caller over the node API names the volume).
    fn record(&self, volume: &str) -> Result<PathBuf, FetchError> {
        let ok = !volume.is_empty()
            && volume.len() <= 64
            && volume
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !ok {
            return Err(FetchError::BadName(volume.escape_debug().to_string()));
        }
        Ok(self.dir.join(format!("{volume}.json")))
    }

    /// Holds `keys` of `volume` on `device` (replacing what was held for it).
    pub fn hold(
        &self,
        volume: &str,
        device: &Path,
        keys: &[NewRecoveryKey],
    ) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let record = Record {
            device: device.to_path_buf(),
            keys: keys
                .iter()
                .map(|k| HeldKey {
                    slot: k.slot,
                    key: String::from_utf8_lossy(k.key.expose()).into_owned(),
                })
                .collect(),
        };
        let text = Zeroizing::new(serde_json::to_vec(&record)?);
        let path = self
            .record(volume)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        crate::node::atomic::write_private(&path, &text)
    }

    /// Hands out the keys held for `volume`, once: marks each slot seen on
    /// the header first (so a key handed out is never replaced), then
    /// forgets them.
    pub fn fetch(&self, volume: &str) -> Result<Vec<FetchedKey>, FetchError> {
        let keys = self.peek(volume)?;
        self.forget(volume)?;
        Ok(keys)
    }

    /// The keys held for `volume`, each slot marked seen on the header,
    /// still held: a caller that could not hand them on (its output went
    /// away) gets them again; one that did calls [`HeldKeys::forget`].
    pub fn peek(&self, volume: &str) -> Result<Vec<FetchedKey>, FetchError> {
        let io = |source| FetchError::Io {
            volume: volume.to_string(),
            source,
        };
        let path = self.record(volume)?;
        let text = match std::fs::read(&path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(FetchError::NothingHeld(volume.to_string()))
            }
            Err(e) => return Err(io(e)),
        };
        let record: Record = serde_json::from_slice(&text).map_err(|e| io(e.into()))?;
        let mark = |source| FetchError::Mark {
            volume: volume.to_string(),
            device: record.device.display().to_string(),
            source: Box::new(source),
        };
        let dev = device::open(&record.device, Access::ReadWrite, None).map_err(mark)?;
        for k in &record.keys {
            mark_seen(dev.as_ref(), k.slot).map_err(mark)?;
        }
        Ok(record
            .keys
            .iter()
            .map(|k| FetchedKey {
                slot: k.slot,
                key: Passphrase::new(k.key.as_bytes().to_vec()),
            })
            .collect())
    }

    /// Forgets the keys held for `volume` (they were handed on).
    pub fn forget(&self, volume: &str) -> Result<(), FetchError> {
        std::fs::remove_file(self.record(volume)?).map_err(|source| FetchError::Io {
            volume: volume.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_leaves_the_folder_is_refused_and_nothing_outside_is_touched() {
        let run = tempfile::tempdir().unwrap();
        let held = HeldKeys::in_run_dir(&run.path().join("run"));
        // A record-shaped file outside the folder, as `../x` would reach.
        let outside = run.path().join("run").join("x.json");
        std::fs::create_dir_all(outside.parent().unwrap()).unwrap();
        std::fs::write(&outside, br#"{"device":"/nonexistent","keys":[]}"#).unwrap();
        for name in ["../x", "/etc/x", "a/b", "..", "", "x\n", &"a".repeat(65)] {
            let Err(e) = held.fetch(name) else {
                panic!("{name:?} was fetched")
            };
            assert!(matches!(e, FetchError::BadName(_)), "{name:?}: {e}");
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        assert!(outside.exists(), "nothing outside the folder was removed");
        assert!(matches!(
            held.fetch("persistence"),
            Err(FetchError::NothingHeld(_))
        ));
    }
}
