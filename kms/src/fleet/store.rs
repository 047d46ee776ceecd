//! Where the records live: the [`NodeStore`] seam, an embedded file store
//! ([`FileStore`], one redb file, 0600, crash-safe transactions) and its
//! in-memory twin for unit tests ([`MemoryStore`]).
//!
//! Every change is a read-modify-write of one record (or of the meta
//! record) inside one transaction, so replicas over one store never lose
//! each other's updates.

use super::record::{Meta, NodeRecord};
use redb::ReadableTable;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store itself (I/O, a damaged file).
    #[error("the node store: {0}")]
    Backend(String),
    /// A record that does not read.
    #[error("the node store holds a record that does not read: {0}")]
    Record(String),
}

/// Why a change was refused (nothing written).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// A change to one record: the new record (`None`: write nothing), or why
/// it is refused.
pub type Change<'a> = &'a mut dyn FnMut(Option<NodeRecord>) -> Result<Option<NodeRecord>, Refusal>;

/// A change to the meta record and every node record, or why it is refused.
pub type ChangeAll<'a> = &'a mut dyn FnMut(&mut Meta, &mut Vec<NodeRecord>) -> Result<(), Refusal>;

/// What the KMS needs from a store.
pub trait NodeStore: Send + Sync {
    /// The record of `uuid`.
    fn node(&self, uuid: &str) -> Result<Option<NodeRecord>, StoreError>;
    /// Every record, by UUID.
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;
    /// Applies `change` to the record of `uuid` atomically: the record as
    /// written, or the change's refusal.
    fn change_node(
        &self,
        uuid: &str,
        change: Change<'_>,
    ) -> Result<Result<Option<NodeRecord>, Refusal>, StoreError>;
    /// The meta record.
    fn meta(&self) -> Result<Meta, StoreError>;
    /// Replaces the meta record and every node record with what
    /// `change` makes of them, atomically (rotation, retirement).
    fn change_all(&self, change: ChangeAll<'_>) -> Result<Result<(), Refusal>, StoreError>;
}

pub(super) fn encode(r: &impl serde::Serialize) -> Vec<u8> {
    serde_json::to_vec(r).expect("a record serialises")
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(raw: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(raw).map_err(|e| StoreError::Record(e.to_string()))
}

/// Records in memory: the simulated twin of [`FileStore`].
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<(Meta, BTreeMap<String, NodeRecord>)>,
}

impl NodeStore for MemoryStore {
    fn node(&self, uuid: &str) -> Result<Option<NodeRecord>, StoreError> {
        Ok(self.lock().1.get(uuid).cloned())
    }
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.lock().1.values().cloned().collect())
    }
    fn change_node(
        &self,
        uuid: &str,
        change: Change<'_>,
    ) -> Result<Result<Option<NodeRecord>, Refusal>, StoreError> {
        let mut state = self.lock();
        let new = match change(state.1.get(uuid).cloned()) {
            Ok(new) => new,
            Err(why) => return Ok(Err(why)),
        };
        if let Some(r) = &new {
            state.1.insert(uuid.to_string(), r.clone());
        }
        Ok(Ok(new))
    }
    fn meta(&self) -> Result<Meta, StoreError> {
        Ok(self.lock().0.clone())
    }
    fn change_all(&self, change: ChangeAll<'_>) -> Result<Result<(), Refusal>, StoreError> {
        let mut state = self.lock();
        let mut meta = state.0.clone();
        let mut nodes: Vec<NodeRecord> = state.1.values().cloned().collect();
        if let Err(why) = change(&mut meta, &mut nodes) {
            return Ok(Err(why));
        }
        state.0 = meta;
        state.1 = nodes.into_iter().map(|n| (n.uuid.clone(), n)).collect();
        Ok(Ok(()))
    }
}

impl MemoryStore {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Meta, BTreeMap<String, NodeRecord>)> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const NODES: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("nodes");
const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
const META_KEY: &str = "meta";

/// Records in one redb file (ACID transactions, so a power cut keeps the
/// last committed state), created 0600.
pub struct FileStore {
    db: redb::Database,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl FileStore {
    /// Opens the file at `path`, creating it (mode 0600) when missing;
    /// refuses one that group or others may read.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(|e| backend(format!("{}: {e}", path.display())))?;
        let mode = file.metadata().map_err(backend)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(backend(format!(
                "{}: mode {:o}; the node store must be readable by its owner only (chmod 600)",
                path.display(),
                mode & 0o777
            )));
        }
        drop(file);
        let db = redb::Database::create(path)
            .map_err(|e| backend(format!("{}: {e}", path.display())))?;
        let w = db.begin_write().map_err(backend)?;
        w.open_table(NODES).map_err(backend)?;
        w.open_table(META).map_err(backend)?;
        w.commit().map_err(backend)?;
        Ok(FileStore { db })
    }

    fn read_all(&self) -> Result<(Meta, Vec<NodeRecord>), StoreError> {
        let r = self.db.begin_read().map_err(backend)?;
        let meta = match r
            .open_table(META)
            .map_err(backend)?
            .get(META_KEY)
            .map_err(backend)?
        {
            Some(v) => decode(v.value())?,
            None => Meta::default(),
        };
        let nodes = r.open_table(NODES).map_err(backend)?;
        let mut out = Vec::new();
        for entry in nodes.iter().map_err(backend)? {
            let (_, v) = entry.map_err(backend)?;
            out.push(decode(v.value())?);
        }
        Ok((meta, out))
    }
}

impl NodeStore for FileStore {
    fn node(&self, uuid: &str) -> Result<Option<NodeRecord>, StoreError> {
        let r = self.db.begin_read().map_err(backend)?;
        let t = r.open_table(NODES).map_err(backend)?;
        let v = t.get(uuid).map_err(backend)?;
        v.map(|v| decode(v.value())).transpose()
    }
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        Ok(self.read_all()?.1)
    }
    fn change_node(
        &self,
        uuid: &str,
        change: Change<'_>,
    ) -> Result<Result<Option<NodeRecord>, Refusal>, StoreError> {
        let w = self.db.begin_write().map_err(backend)?;
        let new = {
            let mut t = w.open_table(NODES).map_err(backend)?;
            let old = t
                .get(uuid)
                .map_err(backend)?
                .map(|v| decode::<NodeRecord>(v.value()))
                .transpose()?;
            let new = match change(old) {
                Ok(new) => new,
                Err(why) => return Ok(Err(why)),
            };
            if let Some(r) = &new {
                t.insert(uuid, encode(r).as_slice()).map_err(backend)?;
            }
            new
        };
        w.commit().map_err(backend)?;
        Ok(Ok(new))
    }
    fn meta(&self) -> Result<Meta, StoreError> {
        Ok(self.read_all()?.0)
    }
    fn change_all(&self, change: ChangeAll<'_>) -> Result<Result<(), Refusal>, StoreError> {
        let w = self.db.begin_write().map_err(backend)?;
        {
            let (mut meta, mut nodes) = self.read_all()?;
            if let Err(why) = change(&mut meta, &mut nodes) {
                return Ok(Err(why));
            }
            let mut m = w.open_table(META).map_err(backend)?;
            m.insert(META_KEY, encode(&meta).as_slice())
                .map_err(backend)?;
            let mut t = w.open_table(NODES).map_err(backend)?;
            for n in &nodes {
                t.insert(n.uuid.as_str(), encode(n).as_slice())
                    .map_err(backend)?;
            }
        }
        w.commit().map_err(backend)?;
        Ok(Ok(()))
    }
}
