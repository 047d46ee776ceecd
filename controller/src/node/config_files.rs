//! Reading config files for every command: several files are one config
//! (one loader, one rule: a document defined twice is an error naming both
//! places, each error names its own file and line); the joined text is what
//! gets stored on STATE, and every error of every file is reported at once.

use api_types::{parse_files, parse_str, Diagnostic, Document, ParsedFile};
use std::path::PathBuf;

/// A config with errors: every error of every file, each naming its file,
/// line and field; shown one per line.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct InvalidConfig {
    /// The errors (warnings are left out).
    pub errors: Vec<Diagnostic>,
}

/// Parses `text` (named `name` in errors).
pub fn parse(name: &str, text: &str) -> Result<Vec<Document>, InvalidConfig> {
    documents(parse_str(name, text))
}

/// Reads and parses `files` as one config; returns its documents and text.
pub fn load(files: &[PathBuf]) -> Result<(Vec<Document>, String), InvalidConfig> {
    let (parsed, text) = parse_files(files);
    Ok((documents(parsed)?, text))
}

fn documents(p: ParsedFile) -> Result<Vec<Document>, InvalidConfig> {
    if p.has_errors() {
        return Err(InvalidConfig {
            errors: p.errors().cloned().collect(),
        });
    }
    Ok(p.documents)
}
