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
    /// Each use of a volctl extension in a valid document (a field or value
    /// Talos does not read), for `volctl validate --talos`.
    pub extensions: Vec<Diagnostic>,
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
            diagnostics: vec![unreadable(&name, &e)],
            ..ParsedFile::default()
        },
    }
}

fn unreadable(file: &str, e: &std::io::Error) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        file: file.to_string(),
        document: None,
        path: String::new(),
        line: None,
        message: format!("cannot read the file: {e}"),
    }
}

/// Parses `text` (one or more documents separated by `---`); `file` names it
/// in diagnostics.
pub fn parse_str(file: &str, text: &str) -> ParsedFile {
    let mut out = ParsedFile::default();
    parse_into(file, text, &mut Seen::default(), &mut out);
    out
}

/// Reads and parses several files as one config: each file's diagnostics
/// carry its own name and lines, and a document defined twice (in one file
/// or across files) is an error that names both places. Returns the
/// result and the files' texts joined as one YAML stream (what is stored).
pub fn parse_files(paths: &[std::path::PathBuf]) -> (ParsedFile, String) {
    let mut out = ParsedFile::default();
    let mut seen = Seen::default();
    let mut joined = String::new();
    for path in paths {
        let name = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                parse_into(&name, &text, &mut seen, &mut out);
                if !joined.is_empty() {
                    joined.push_str("\n---\n");
                }
                joined.push_str(&text);
            }
            Err(e) => out.diagnostics.push(unreadable(&name, &e)),
        }
    }
    (out, joined)
}

/// What earlier documents (of any file of the config) took: each
/// (kind, name), and each mount point, with the file and document number.
#[derive(Default)]
struct Seen {
    names: HashMap<(DocumentKind, String), (String, usize)>,
    mounts: HashMap<String, (String, usize, String)>,
}

impl Seen {
    /// Takes `doc`'s name and mount point for it, or says (field, reason)
    /// which earlier document holds one of them.
    fn admit(
        &mut self,
        doc: &Document,
        file: &str,
        index: usize,
    ) -> Result<(), (&'static str, String)> {
        let key = (doc.kind(), doc.name().to_string());
        if let Some((first_file, first)) = self.names.get(&key) {
            let place = if first_file == file {
                format!("document {first}")
            } else {
                format!("document {first} of {first_file}")
            };
            let why = format!("{} \"{}\" is already defined by {place}", key.0, key.1);
            return Err(("name", why));
        }
        if let Some(clash) = self.take_mount(doc, file, index) {
            return Err((
                "mount.path",
                format!("{clash}; give each volume its own mount point"),
            ));
        }
        self.names.insert(key, (file.to_string(), index));
        Ok(())
    }

    /// Records `doc`'s mount point; the place that took it first, if any.
    fn take_mount(&mut self, doc: &Document, file: &str, index: usize) -> Option<String> {
        let path = doc.mount_point()?.trim_end_matches('/').to_string();
        let me = format!("{} \"{}\"", doc.kind(), doc.name());
        match self.mounts.get(&path) {
            Some((f, i, who)) => Some(format!(
                "{path} is already the mount point of {who} (document {i}{})",
                if f == file {
                    String::new()
                } else {
                    format!(" of {f}")
                }
            )),
            None => {
                self.mounts.insert(path, (file.to_string(), index, me));
                None
            }
        }
    }
}

fn parse_into(file: &str, text: &str, seen: &mut Seen, out: &mut ParsedFile) {
    if let Err((message, line)) = crate::prescan::check(text) {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            file: file.to_string(),
            document: None,
            path: String::new(),
            line: Some(line),
            message,
        });
        return;
    }
    let lines = LineMap::build(text);
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
        let value = match serde_path_to_error::deserialize::<_, Value>(de) {
            Ok(v) => v,
            Err(e) => {
                let line = e.inner().location().map(|l| l.line());
                let msg = e.inner().to_string();
                if let Some((path, what)) = value_error(&msg) {
                    // A well-formed document with a value YAML cannot hold
                    // (an integer beyond 64 bits): report it, go on.
                    let what = redact(path, what);
                    ctx.push(
                        Severity::Error,
                        path,
                        line,
                        format!("{what}: the value is out of range"),
                    );
                    continue;
                }
                ctx.push(
                    Severity::Error,
                    "",
                    line,
                    format!("YAML syntax error: {msg}"),
                );
                break; // the stream cannot be resumed after a syntax error
            }
        };
        if value.is_null() {
            continue; // an empty document, e.g. a trailing `---`
        }
        if let Some(doc) = ctx.document(value) {
            if let Err((path, message)) = seen.admit(&doc, file, i + 1) {
                ctx.error(path, message);
                continue;
            }
            let doc_ref = ctx.doc.clone();
            for (path, message) in crate::talos::extensions(&doc) {
                out.extensions.push(Diagnostic {
                    severity: Severity::Extension,
                    file: file.to_string(),
                    document: Some(doc_ref.clone()),
                    line: lines.line(i, &path),
                    path,
                    message,
                });
            }
            out.documents.push(doc);
        }
    }
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
                    format!("missing `kind`; use one of {}", kind_names()),
                );
                None
            }
            Some(k) => {
                let kind = DocumentKind::from_name(k);
                if kind.is_none() {
                    self.error(
                        "kind",
                        format!("unknown kind `{k}`; use one of {}", kind_names()),
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
        let mut value = value;
        let unknown = unknown_fields::strip(&schema, &mut value);
        let mut failed = !unknown.is_empty();
        for u in unknown {
            self.error(&u.path, u.message);
        }
        // The rest is still decoded and validated, so every error shows.
        let (doc, type_errors) = match kind {
            DocumentKind::VolumeConfig => self.decode(value, Document::Volume),
            DocumentKind::UserVolumeConfig => self.decode(value, Document::User),
            DocumentKind::RawVolumeConfig => self.decode(value, Document::Raw),
            DocumentKind::ExistingVolumeConfig => self.decode(value, Document::Existing),
            DocumentKind::SwapVolumeConfig => self.decode(value, Document::Swap),
        };
        let doc = doc?;
        failed |= type_errors;
        for f in validate_document(&doc) {
            failed |= f.severity == Severity::Error;
            self.push(f.severity, &f.path, None, f.message);
        }
        (!failed).then_some(doc)
    }

    /// Decodes `value` as one kind and wraps it in its [`Document`] variant;
    /// also says whether a type error was reported.
    fn decode<T: DeserializeOwned>(
        &mut self,
        value: Value,
        wrap: fn(T) -> Document,
    ) -> (Option<Document>, bool) {
        self.typed(value)
            .map_or((None, true), |(d, e)| (Some(wrap(d)), e))
    }

    /// Decodes `value`, reporting every type error: a field that does not
    /// decode is reported and taken out, and decoding goes on. Returns the
    /// decoded rest and whether anything was taken out; `None` when a field
    /// that must be there could not be decoded.
    fn typed<T: DeserializeOwned>(&mut self, mut value: Value) -> Option<(T, bool)> {
        let mut removed: Vec<String> = Vec::new();
        for _ in 0..MAX_TYPE_ERRORS {
            let e = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
                Ok(v) => return Some((v, !removed.is_empty())),
                Err(e) => e,
            };
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let msg = e.inner().to_string();
            let ours =
                msg.starts_with("missing field") && removed.iter().any(|r| r.starts_with(&path));
            // A required field we took out (reported already): take out
            // what holds it too, silently.
            if !ours {
                self.error(&path, redact(&path, &msg));
            }
            if path.is_empty() || !remove_at(&mut value, e.path()) {
                return None;
            }
            removed.push(path);
        }
        None
    }
}

/// Type errors reported per document at most.
const MAX_TYPE_ERRORS: usize = 32;

/// serde_yaml's error about a value (not the YAML syntax), as its path
/// and what is wrong: `path: invalid type: … at line L column C`.
fn value_error(msg: &str) -> Option<(&str, &str)> {
    let at = msg
        .find("invalid type: ")
        .or_else(|| msg.find("invalid value: "))?;
    let path = msg[..at].trim_end_matches(": ");
    let what = msg[at..].split(" at line ").next().unwrap_or(&msg[at..]);
    Some((path, what))
}

/// Removes the value at `path` from `value`; false when there is none.
fn remove_at(value: &mut Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut v = value;
    for s in parents {
        let next = match s {
            Segment::Seq { index } => v.as_sequence_mut().and_then(|q| q.get_mut(*index)),
            Segment::Map { key } => v.as_mapping_mut().and_then(|m| m.get_mut(key.as_str())),
            _ => None,
        };
        let Some(n) = next else { return false };
        v = n;
    }
    match last {
        Segment::Seq { index } => v
            .as_sequence_mut()
            .filter(|q| *index < q.len())
            .map(|q| q.remove(*index))
            .is_some(),
        Segment::Map { key } => v
            .as_mapping_mut()
            .and_then(|m| m.remove(key.as_str()))
            .is_some(),
        _ => false,
    }
}

/// A message about a value under a secret path (a static key's
/// passphrase) with every quoted value taken out: serde quotes the value
/// it could not use, and that value may be the secret.
pub(crate) fn redact(path: &str, msg: &str) -> String {
    let secret = path
        .split(['.', '['])
        .any(|s| s == "static" || s == "passphrase");
    if !secret {
        return msg.to_string();
    }
    let mut out = String::new();
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match (open, c) {
            (None, '`' | '"') => {
                open = Some(c);
                out.push(c);
                out.push_str("<redacted>");
            }
            (Some(o), c) if c == o => {
                open = None;
                out.push(c);
            }
            (Some(_), _) => {}
            (None, c) => out.push(c),
        }
    }
    out
}

/// The kinds volctl reads, for error messages.
fn kind_names() -> String {
    DocumentKind::ALL.map(DocumentKind::as_str).join(", ")
}

#[cfg(test)]
mod redaction_tests {
    use super::redact;

    #[test]
    fn values_under_secret_paths_are_redacted() {
        let m = "invalid type: string \"MySecret\", expected struct StaticKey";
        assert_eq!(
            redact("encryption.keys[0].static", m),
            "invalid type: string \"<redacted>\", expected struct StaticKey"
        );
        let m = "invalid type: integer `12345678`, expected a string";
        assert!(!redact("encryption.keys[1].static.passphrase", m).contains("1234"));
        assert_eq!(redact("encryption.keySize", m), m);
    }
}
