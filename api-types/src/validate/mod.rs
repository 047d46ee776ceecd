//! Semantic rules that types alone cannot express, Talos's first (so a
//! document gets the verdict Talos gives it), then volctl's own. Each rule
//! reports the field path and a reason; all problems of a document are
//! reported at once.
//!
//! - `volume.rs`: names, `volumeType`, provisioning and sizes, filesystem,
//!   mount, trim and scrub;
//! - `encryption.rs`: the `encryption` block.

mod encryption;
mod volume;

use crate::diagnostic::Severity;
use crate::document::Document;
use crate::volume::VolumeType;

/// A problem found by validation, relative to its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Field path, e.g. `encryption.keys[1].slot`.
    pub path: String,
    /// The reason.
    pub message: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Error, path.into(), message.into());
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.push(Severity::Warning, path.into(), message.into());
    }
    fn push(&mut self, severity: Severity, path: String, message: String) {
        self.0.push(Finding {
            severity,
            path,
            message,
        });
    }
}

/// Checks one document; returns every error and warning.
pub fn validate_document(doc: &Document) -> Vec<Finding> {
    let mut f = Findings::default();
    match doc {
        Document::Volume(v) => volume::check_system_volume(v, &mut f),
        Document::User(u) => volume::check_user_volume(u, &mut f),
        Document::Raw(r) => volume::check_raw_volume(&r.name, r.provisioning.as_ref(), &mut f),
        Document::Swap(s) => volume::check_raw_volume(&s.name, s.provisioning.as_ref(), &mut f),
        Document::Existing(e) => volume::check_existing_volume(e, &mut f),
    }
    let on_a_device = matches!(doc.volume_type(), VolumeType::Partition | VolumeType::Disk);
    if let Some(e) = doc.encryption_block().filter(|_| on_a_device) {
        encryption::check_encryption(e, doc.is_state(), &doc.partition_label(), &mut f);
    }
    f.0
}
