//! A KMS that knows its nodes: each node has its own key-encryption key
//! (KEK), random, wrapped by a master key and kept in its record in a
//! [`store::NodeStore`]; a node's blobs are sealed by its KEK. So:
//!
//! - **revoking** a node destroys its KEKs: nothing it sealed opens again,
//!   from any copy of its disk (crypto-shredding);
//! - **rotating** makes another master-key version current: a node's next
//!   unseal is told its blob is old, and its next converge re-seals
//!   (rewraps) under a KEK the new version wraps;
//! - **retiring** a version drops every KEK it wraps, refused while an
//!   active node's newest blob still uses it.
//!
//! Master keys stay in the key file ([`crate::keyring`]), never in the
//! store. Blobs of the stateless format (version 1) still unseal and are
//! reported old, so nodes move to their own keys on their next converge.

mod attested;
pub mod etcd;
pub mod record;
pub mod store;

use crate::keyring::{self, Keyring, KeyringError, NODE_BLOB_VERSION};
pub use attested::Evidence;
use rand::RngCore;
use record::{now, Meta, NodeRecord, NodeState};
use std::sync::Arc;
use store::{NodeStore, Refusal, StoreError};
use zeroize::Zeroizing;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The node was revoked.
    #[error("node {0} was revoked: its keys are destroyed")]
    Revoked(String),
    /// The blob or key does not open.
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An admin request refused, and why.
    #[error("{0}")]
    Refused(String),
    /// The node's attestation was refused, and why.
    #[error("attestation refused: {0}")]
    Attestation(String),
}

/// What an unseal gives back.
#[derive(Debug)]
pub struct Unsealed {
    /// The node's secret.
    pub data: Zeroizing<Vec<u8>>,
    /// The master-key version its blob uses.
    pub key_version: String,
    /// Whether the blob uses another version than the current one (or the
    /// stateless format): the node should seal again (rewrap).
    pub stale: bool,
}

/// Which nodes a first seal enrols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Enrolment {
    /// Any node the server lets in (its client certificate, if required).
    #[default]
    Open,
    /// Only nodes an admin registered first (`volctl kms register`).
    Registered,
}

/// The KMS's node records over a store.
pub struct Fleet {
    keyring: Arc<Keyring>,
    store: Arc<dyn NodeStore>,
    enrolment: Enrolment,
}

impl Fleet {
    /// Records in `store`, keys wrapped by `keyring`'s master keys; any
    /// node enrols.
    pub fn new(keyring: Arc<Keyring>, store: Arc<dyn NodeStore>) -> Self {
        Fleet {
            keyring,
            store,
            enrolment: Enrolment::Open,
        }
    }

    /// The same, enrolling the nodes `enrolment` says.
    pub fn with_enrolment(self, enrolment: Enrolment) -> Self {
        Fleet { enrolment, ..self }
    }

    /// Records `uuid` so that it may enrol (a KMS with
    /// [`Enrolment::Registered`]); a node already recorded is left as it
    /// is, a revoked one is refused.
    pub fn register(&self, uuid: &str) -> Result<NodeRecord, FleetError> {
        self.change(uuid, &mut |old| match old {
            Some(r) if r.state == NodeState::Revoked => {
                Err(Refusal(FleetError::Revoked(uuid.into()).to_string()))
            }
            Some(r) => Ok(Some(r)),
            None => Ok(Some(fresh(uuid))),
        })
    }

    /// The master-key version new KEKs are wrapped by: the store's, or,
    /// on a store that has none yet, the key file's newest, recorded then
    /// (so a key appended later waits for `volctl kms rotate`).
    pub fn current(&self) -> Result<String, FleetError> {
        if let Some(current) = self.store.meta()?.current {
            return Ok(current);
        }
        let newest = self.keyring.current_id().to_string();
        let mut chosen = newest.clone();
        self.change_all(&mut |meta, _| {
            chosen = meta.current.get_or_insert_with(|| newest.clone()).clone();
            Ok(())
        })?;
        Ok(chosen)
    }

    /// Seals `data` for `uuid` under its KEK for the current version
    /// (made, and the node's record with it, when missing).
    pub fn seal(&self, uuid: &str, data: &[u8]) -> Result<Vec<u8>, FleetError> {
        self.seal_attested(uuid, data, None)
    }

    /// [`Self::seal`] with the node's quote (a key with `attest: true`):
    /// checked against, or recorded in, its record before anything is
    /// sealed for it.
    pub fn seal_attested(
        &self,
        uuid: &str,
        data: &[u8],
        evidence: Option<&Evidence>,
    ) -> Result<Vec<u8>, FleetError> {
        let version = self.current()?;
        let checked = self.check_evidence(uuid, evidence)?;
        let t = now();
        let mut kek_made = None;
        let record = self.change(uuid, &mut |old| {
            if old.is_none() && self.enrolment == Enrolment::Registered {
                return Err(Refusal(format!(
                    "node {uuid} is not registered: this KMS enrols registered nodes only (volctl kms register --node {uuid})"
                )));
            }
            let mut r = old.unwrap_or_else(|| fresh(uuid));
            if r.state == NodeState::Revoked {
                return Err(Refusal(FleetError::Revoked(uuid.into()).to_string()));
            }
            attested::admit(&mut r, checked.as_ref(), t)?;
            if !r.keks.contains_key(&version) {
                let kek = random_kek();
                let wrapped = self
                    .keyring
                    .wrap_kek(&version, uuid, &kek)
                    .map_err(|e| Refusal(e.to_string()))?;
                r.keks.insert(version.clone(), wrapped);
            }
            r.key_version = Some(version.clone());
            r.last_seen = t;
            kek_made = Some(r.keks[&version].clone());
            Ok(Some(r))
        })?;
        let wrapped = kek_made
            .or_else(|| record.keks.get(&version).cloned())
            .unwrap_or_default();
        let kek = self.keyring.unwrap_kek(&version, uuid, &wrapped)?;
        Ok(keyring::seal_for_node(&kek, &version, uuid, data))
    }

    /// Opens `blob` for `uuid`: by its KEK (version 2), or by the master
    /// key itself (the stateless format, reported stale).
    pub fn unseal(&self, uuid: &str, blob: &[u8]) -> Result<Unsealed, FleetError> {
        self.unseal_attested(uuid, blob, None)
    }

    /// [`Self::unseal`] with the node's quote: a node whose record holds
    /// an attestation key gets nothing without a quote that verifies
    /// under it, over a fresh nonce, of PCR values its policy allows.
    pub fn unseal_attested(
        &self,
        uuid: &str,
        blob: &[u8],
        evidence: Option<&Evidence>,
    ) -> Result<Unsealed, FleetError> {
        let (format, version) = keyring::blob_header(blob)?;
        let version = version.to_string();
        let current = self.current()?;
        let record = self.store.node(uuid)?;
        if record
            .as_ref()
            .is_some_and(|r| r.state == NodeState::Revoked)
        {
            return Err(FleetError::Revoked(uuid.into()));
        }
        let checked = self.check_evidence(uuid, evidence)?;
        let data = if format == NODE_BLOB_VERSION {
            let wrapped = record
                .as_ref()
                .and_then(|r| r.keks.get(&version))
                .ok_or_else(|| {
                    FleetError::Refused(format!(
                        "node {uuid} has no key for master-key version `{version}` (retired, or never sealed here)"
                    ))
                })?;
            let kek = self.keyring.unwrap_kek(&version, uuid, wrapped)?;
            keyring::open_for_node(&kek, uuid, blob)?
        } else {
            self.keyring.unseal(uuid, blob)?
        };
        // Nothing is answered unless this change, which admits the quote
        // (or its absence), is written.
        self.seen(uuid, checked.as_ref())?;
        Ok(Unsealed {
            data,
            stale: format != NODE_BLOB_VERSION || version != current,
            key_version: version,
        })
    }

    /// Destroys `uuid`'s KEKs and marks it revoked (a node never seen is
    /// recorded revoked, so it cannot enrol later).
    pub fn revoke(&self, uuid: &str) -> Result<NodeRecord, FleetError> {
        self.change(uuid, &mut |old| {
            let mut r = old.unwrap_or_else(|| fresh(uuid));
            r.state = NodeState::Revoked;
            r.keks.clear();
            Ok(Some(r))
        })
    }

    /// Makes master-key version `to` (default: the key file's newest)
    /// current; the previous one.
    pub fn rotate(&self, to: Option<&str>) -> Result<String, FleetError> {
        let to = to.unwrap_or(self.keyring.current_id()).to_string();
        if !self.keyring.has(&to) {
            return Err(FleetError::Refused(format!(
                "this server's key file has no master key `{to}`"
            )));
        }
        let current = self.current()?;
        if to == current {
            return Err(FleetError::Refused(format!(
                "`{to}` is current already: append a new key to the key file on every replica first (volctl kms-server genkey), then rotate"
            )));
        }
        self.change_all(&mut |meta, _| {
            if meta.retired.contains(&to) {
                return Err(Refusal(format!("`{to}` was retired")));
            }
            meta.current = Some(to.clone());
            Ok(())
        })?;
        Ok(current)
    }

    /// Drops every KEK master-key `version` wraps; refused while it is
    /// current or an active node's newest blob uses it (named).
    pub fn retire(&self, version: &str) -> Result<(), FleetError> {
        let current = self.current()?;
        self.change_all(&mut |meta: &mut Meta, nodes: &mut Vec<NodeRecord>| {
            if version == current {
                return Err(Refusal(format!(
                    "`{version}` is the current version: rotate first"
                )));
            }
            let users: Vec<&str> = nodes
                .iter()
                .filter(|n| {
                    n.state == NodeState::Active && n.key_version.as_deref() == Some(version)
                })
                .map(|n| n.uuid.as_str())
                .collect();
            if !users.is_empty() {
                return Err(Refusal(format!(
                    "{} active node(s) still use `{version}` (their next converge rewraps): {}",
                    users.len(),
                    users.join(", ")
                )));
            }
            for n in nodes.iter_mut() {
                n.keks.remove(version);
            }
            if !meta.retired.iter().any(|v| v == version) {
                meta.retired.push(version.to_string());
            }
            Ok(())
        })
    }

    /// Every node's record.
    pub fn nodes(&self) -> Result<Vec<NodeRecord>, FleetError> {
        Ok(self.store.nodes()?)
    }

    /// Admits the request's quote (or its absence) and records when the
    /// node was seen, in one change of its record (none for a node without
    /// one: a blob of the stateless format).
    fn seen(&self, uuid: &str, checked: Option<&attested::Checked>) -> Result<(), FleetError> {
        let t = now();
        let outcome = self.store.change_node(uuid, &mut |old| {
            let Some(mut r) = old else {
                return Ok(None);
            };
            attested::admit(&mut r, checked, t)?;
            r.last_seen = t;
            Ok(Some(r))
        })?;
        outcome
            .map(|_| ())
            .map_err(|Refusal(why)| FleetError::Refused(why))
    }

    fn change(&self, uuid: &str, change: store::Change<'_>) -> Result<NodeRecord, FleetError> {
        match self.store.change_node(uuid, change)? {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(FleetError::Refused(format!("node {uuid} has no record"))),
            Err(Refusal(why)) => Err(FleetError::Refused(why)),
        }
    }

    fn change_all(&self, change: store::ChangeAll<'_>) -> Result<(), FleetError> {
        self.store
            .change_all(change)?
            .map_err(|Refusal(why)| FleetError::Refused(why))
    }
}

/// A record for a node seen for the first time.
fn fresh(uuid: &str) -> NodeRecord {
    let t = now();
    NodeRecord {
        uuid: uuid.to_string(),
        state: NodeState::Active,
        keks: Default::default(),
        key_version: None,
        first_seen: t,
        last_seen: t,
        attestation: None,
    }
}

fn random_kek() -> Zeroizing<[u8; 32]> {
    let mut k = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(k.as_mut());
    k
}

#[cfg(test)]
mod tests;
