//! Errors and warnings about a config file, each naming the file, the
//! document, the field path and the line.

use serde::Serialize;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The file is rejected.
    Error,
    /// Accepted, but a weak or risky choice.
    Warning,
    /// Accepted by volctl, but a volctl extension Talos does not read
    /// (reported by `volctl validate --talos`).
    #[serde(rename = "volctl-only")]
    Extension,
}

/// Which document of a file a diagnostic is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DocumentRef {
    /// 1-based position of the document in its file.
    pub index: usize,
    /// Its `kind`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its `name`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl std::fmt::Display for DocumentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "document {}", self.index)?;
        match (&self.kind, &self.name) {
            (Some(k), Some(n)) => write!(f, " ({k} \"{n}\")"),
            (Some(k), None) => write!(f, " ({k})"),
            (None, Some(n)) => write!(f, " (\"{n}\")"),
            (None, None) => Ok(()),
        }
    }
}

/// One error or warning.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file, as given by the caller.
    pub file: String,
    /// The document, unless the problem is with the file as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<DocumentRef>,
    /// Field path inside the document, e.g. `encryption.keys[0].slot`; empty for the document itself.
    pub path: String,
    /// 1-based line in the file, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
}

impl Diagnostic {
    /// Whether this diagnostic rejects the file.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Extension => "volctl-only",
        };
        write!(f, ": {sev}: ")?;
        if let Some(d) = &self.document {
            write!(f, "{d}: ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}
