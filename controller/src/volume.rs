//! The volume a command works on: its label and encryption config, picked
//! out of the parsed documents by name.

use api_types::{Document, Encryption};

/// One encrypted volume from the config.
#[derive(Debug, Clone)]
pub struct VolumeSpec {
    /// Document name (`EPHEMERAL`, `data`).
    pub name: String,
    /// Partition label, also the nodeID volume ID (`EPHEMERAL`, `u-data`).
    pub label: String,
    /// Its encryption block.
    pub encryption: Encryption,
    /// Whether a blank device may be formatted with only its recovery key.
    pub recovery_only: RecoveryOnly,
}

/// Whether a blank device may be formatted when, of the keys it is meant
/// to open with, only its recovery key can be made now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecoveryOnly {
    /// No (the default): it would open at no later unattended boot.
    #[default]
    Refused,
    /// Yes (`converge --allow-incomplete`): the run exits 4, naming the
    /// keys left out, for an admin who will enrol them later.
    Allowed,
}

/// Why a volume could not be picked from the config.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// No document has that name.
    #[error("no document in the config is named `{name}` (found: {found})")]
    NotFound {
        /// Asked-for name.
        name: String,
        /// Names present.
        found: String,
    },
    /// The volume is not encrypted.
    #[error("volume `{0}` has no `encryption` block; there are no keyslots to converge")]
    NotEncrypted(String),
}

impl VolumeSpec {
    /// A volume `name` on the partition labelled `label`, encrypted as
    /// `encryption` says; a blank device is formatted only with a key it
    /// opens with every day.
    pub fn new(name: &str, label: &str, encryption: Encryption) -> Self {
        VolumeSpec {
            name: name.to_string(),
            label: label.to_string(),
            encryption,
            recovery_only: RecoveryOnly::default(),
        }
    }

    /// Finds the document named `name` (document name or partition label).
    pub fn from_documents(docs: &[Document], name: &str) -> Result<Self, SpecError> {
        let doc = docs
            .iter()
            .find(|d| d.name() == name || d.partition_label() == name)
            .ok_or_else(|| SpecError::NotFound {
                name: name.to_string(),
                found: docs
                    .iter()
                    .map(|d| d.name().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let encryption = doc
            .encryption()
            .cloned()
            .ok_or_else(|| SpecError::NotEncrypted(name.to_string()))?;
        Ok(VolumeSpec::new(
            doc.name(),
            &doc.partition_label(),
            encryption,
        ))
    }
}

/// Why volctl leaves a valid document's volume alone.
pub fn not_managed_reason(doc: &Document) -> String {
    format!(
        "volumeType {} is valid (Talos) but volctl does not bring it up (volume types other than partition, directory and disk); this volume is left alone",
        doc.volume_type().as_str()
    )
}
