//! The one place that reads YAML. Everything else sees typed documents.
//!
//! serde_yaml is kept behind [`parse_str`] so the YAML library can be
//! swapped in one place.

use crate::diagnostic::{Diagnostic, DocumentRef, Severity};
use crate::document::{Document, DocumentKind, API_VERSION};
use crate::validate::validate_document;
use crate::yaml_lines::LineMap;
use crate::{schema, unknown_fields};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml::Value;
use std::collections::HashMap;
use std::path::Path;

/// The result of parsing one file: its valid documents and all diagnostics.
#[derive(Debug, Default)]
pub struct ParsedFile {
    /// Documents that passed validation, in file order.
    pub documents: Vec<Document>,
    /// Every error and warning, in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl ParsedFile {
    /// Whether the file has any error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }

    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.is_error())
    }
}

/// Reads and parses a file. An unreadable file yields one error diagnostic.
pub fn parse_file(path: &Path) -> ParsedFile {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&name, &text),
        Err(e) => ParsedFile {
            documents: vec![],
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                file: name,
                document: None,
                path: String::new(),
                line: None,
                message: format!("cannot read the file: {e}"),
            }],
        },
    }
}

/// Parses `text` (one or more documents separated by `---`); `file` names it
/// in diagnostics.
pub fn parse_str(file: &str, text: &str) -> ParsedFile {
    let lines = LineMap::build(text);
    let mut out = ParsedFile::default();
    let mut seen: HashMap<(DocumentKind, String), usize> = HashMap::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let mut ctx = DocContext {
            file,
            index: i,
            lines: &lines,
            doc: DocumentRef {
                index: i + 1,
                kind: None,
                name: None,
            },
            out: &mut out.diagnostics,
        };
        let value = match Value::deserialize(de) {
            Ok(v) => v,
            Err(e) => {
                let line = e.location().map(|l| l.line());
                ctx.push(Severity::Error, "", line, format!("YAML syntax error: {e}"));
                break; // the stream cannot be resumed after a syntax error
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        if let Some(doc) = ctx.document(value) {
            let key = (doc.kind(), doc.name().to_string());
            if let Some(first) = seen.get(&key) {
                ctx.error(
                    "name",
                    format!(
                        "{} \"{}\" is already defined by document {first}",
                        key.0, key.1
                    ),
                );
            } else {
                seen.insert(key, i + 1);
                out.documents.push(doc);
            }
        }
    }
    out
}

struct DocContext<'a> {
    file: &'a str,
    index: usize,
    lines: &'a LineMap,
    doc: DocumentRef,
    out: &'a mut Vec<Diagnostic>,
}

impl DocContext<'_> {
    fn push(&mut self, severity: Severity, path: &str, line: Option<usize>, message: String) {
        self.out.push(Diagnostic {
            severity,
            file: self.file.to_string(),
            document: Some(self.doc.clone()),
            path: path.to_string(),
            line: line.or_else(|| self.lines.line(self.index, path)),
            message,
        });
    }

    fn error(&mut self, path: &str, message: String) {
        self.push(Severity::Error, path, None, message);
    }

    /// Turns one YAML value into a valid document, reporting every problem.
    fn document(&mut self, value: Value) -> Option<Document> {
        let Some(map) = value.as_mapping() else {
            self.error(
                "",
                "a document must be a mapping with apiVersion, kind and name".into(),
            );
            return None;
        };
        let field = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
        self.doc.kind = field("kind");
        self.doc.name = field("name");
        let kind = match &self.doc.kind {
            None => {
                self.error(
                    "kind",
                    "missing `kind`; use VolumeConfig or UserVolumeConfig".into(),
                );
                None
            }
            Some(k) => {
                let kind = DocumentKind::from_name(k);
                if kind.is_none() {
                    self.error(
                        "kind",
                        format!("unknown kind `{k}`; use VolumeConfig or UserVolumeConfig"),
                    );
                }
                kind
            }
        };
        match field("apiVersion") {
            Some(v) if v == API_VERSION => {}
            Some(v) => self.error(
                "apiVersion",
                format!("unknown apiVersion `{v}`; use {API_VERSION}"),
            ),
            None => self.error(
                "apiVersion",
                format!("missing `apiVersion`; use {API_VERSION}"),
            ),
        }
        let kind = kind?;
        let schema = schema::for_kind(kind);
        let unknown = unknown_fields::find(&schema, &value);
        let had_unknown = !unknown.is_empty();
        for u in unknown {
            self.error(&u.path, u.message);
        }
        let doc = match kind {
            DocumentKind::VolumeConfig => self.typed(value, had_unknown).map(Document::Volume),
            DocumentKind::UserVolumeConfig => self.typed(value, had_unknown).map(Document::User),
        }?;
        let mut failed = had_unknown;
        for f in validate_document(&doc) {
            failed |= f.severity == Severity::Error;
            self.push(f.severity, &f.path, None, f.message);
        }
        (!failed).then_some(doc)
    }

    fn typed<T: DeserializeOwned>(&mut self, value: Value, had_unknown: bool) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                let msg = e.inner().to_string();
                // Unknown fields were all reported already by the schema walk.
                if !(had_unknown && msg.starts_with("unknown field")) {
                    self.error(&path, msg);
                }
                None
            }
        }
    }
}
