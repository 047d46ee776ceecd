//! Provisioning: lay out the partitions a config asks for, as Talos does.
//!
//! - what a disk is (sysfs, GPT, free ranges, the CEL bindings a selector
//!   sees) is `node::facts`;
//! - `requests.rs`: which volumes need a partition, in a fixed order, with
//!   their sizes resolved from the documents;
//! - `layout.rs`: the pure placement decision;
//! - `table.rs`: GPT writes that survive a power cut;
//!
//! GPT reads and staged writes themselves are in [`crate::parttable`].

mod layout;
mod requests;
mod table;

pub use crate::node::facts::{discover, pretty, Disk, Table};
pub use layout::{plan, Action, MaxSize, NoRoom, Request, Unfit};
pub use requests::{requests, DEFAULT_MIN_SIZE, STATE_SIZE};
pub use table::{apply, TableCause, TableError};

use api_types::Document;
use std::path::PathBuf;

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A disk could not be read.
    #[error("cannot read disk {disk}: {source}")]
    Discover {
        /// Disk.
        disk: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A volume fits nowhere.
    #[error(transparent)]
    NoRoom(#[from] NoRoom),
    /// A table write failed.
    #[error(transparent)]
    Table(#[from] TableError),
}

/// The partition actions `docs` need on `disks` (nothing written).
pub fn plan_for(docs: &[Document], disks: &[PathBuf]) -> Result<Vec<Action>, ProvisionError> {
    let facts = discover(disks).map_err(|source| ProvisionError::Discover {
        disk: disks
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        source,
    })?;
    Ok(plan(&requests(docs), &facts)?)
}

fn apply_all(actions: &[Action]) -> Result<(), ProvisionError> {
    for a in actions {
        tracing::info!("{a}");
        apply(a)?;
    }
    Ok(())
}

/// Lays out what `docs` need on `disks`; returns what was done. A second
/// run finds every label and does nothing.
pub fn provision(docs: &[Document], disks: &[PathBuf]) -> Result<Vec<Action>, ProvisionError> {
    let actions = plan_for(docs, disks)?;
    apply_all(&actions)?;
    Ok(actions)
}
