//! Reading config files for every command: several files are one config
//! (one loader, one rule: a document defined twice is an error naming both
//! places, each error names its own file and line); the joined text is what
//! gets stored on STATE, and every error of every file is reported at once.

use api_types::{parse_files, parse_str, Document, ParsedFile};
use std::path::PathBuf;

/// Parses `text` (named `name` in errors); `Err` holds every error, one per line.
pub fn parse(name: &str, text: &str) -> Result<Vec<Document>, String> {
    documents(parse_str(name, text))
}

/// Reads and parses `files` as one config; returns its documents and text.
pub fn load(files: &[PathBuf]) -> Result<(Vec<Document>, String), String> {
    let (parsed, text) = parse_files(files);
    Ok((documents(parsed)?, text))
}

fn documents(p: ParsedFile) -> Result<Vec<Document>, String> {
    if p.has_errors() {
        return Err(p
            .errors()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"));
    }
    Ok(p.documents)
}
