//! Reading config files for `boot` and `apply-config`: several files are one
//! config (joined as YAML documents); the joined text is what gets stored on
//! STATE, and every error of every file is reported at once.

use api_types::{parse_str, Document};
use std::path::PathBuf;

/// Parses `text` (named `name` in errors); `Err` holds every error, one per line.
pub fn parse(name: &str, text: &str) -> Result<Vec<Document>, String> {
    let p = parse_str(name, text);
    if p.has_errors() {
        return Err(p
            .errors()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"));
    }
    Ok(p.documents)
}

/// Reads and parses `files` as one config; returns its documents and text.
pub fn load(files: &[PathBuf]) -> Result<(Vec<Document>, String), String> {
    let mut text = String::new();
    for f in files {
        let t = std::fs::read_to_string(f).map_err(|e| format!("{}: {e}", f.display()))?;
        if !text.is_empty() {
            text.push_str("\n---\n");
        }
        text.push_str(&t);
    }
    let name = files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Ok((parse(&name, &text)?, text))
}
