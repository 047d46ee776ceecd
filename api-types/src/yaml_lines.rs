//! Line numbers for field paths. serde_yaml's values carry no positions, so
//! a second, event-level pass (yaml-rust2) records the line of every key and
//! sequence item under the same path syntax serde_path_to_error prints
//! (`encryption.keys[0].slot`).

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Per document (0-based), a map from field path to 1-based line. The empty
/// path maps to the document's first line.
#[derive(Debug, Default)]
pub struct LineMap {
    docs: Vec<HashMap<String, usize>>,
}

impl LineMap {
    /// Builds the map; on a syntax error, whatever was read before it.
    pub fn build(text: &str) -> Self {
        let mut rx = Receiver::default();
        let _ = Parser::new_from_str(text).load(&mut rx, true);
        LineMap { docs: rx.docs }
    }

    /// The line of `path` in document `doc` (0-based), or of its nearest
    /// parent that has one.
    pub fn line(&self, doc: usize, path: &str) -> Option<usize> {
        let map = self.docs.get(doc)?;
        let mut p = path.to_string();
        loop {
            if let Some(l) = map.get(&p) {
                return Some(*l);
            }
            if p.is_empty() {
                return None;
            }
            let cut = p.rfind(['.', '[']).unwrap_or(0);
            p.truncate(cut);
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Receiver {
    docs: Vec<HashMap<String, usize>>,
    stack: Vec<Frame>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Receiver {
    /// Path of a value that starts now, advancing the parent frame.
    fn value_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Map { path, key }) => key.take().map(|k| join(path, &k)),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
        }
    }

    fn record(&mut self, path: &str, line: usize) {
        if let Some(m) = self.docs.last_mut() {
            m.entry(path.to_string()).or_insert(line);
        }
    }
}

impl MarkedEventReceiver for Receiver {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::DocumentStart => {
                self.docs.push(HashMap::new());
                self.stack.clear();
            }
            Event::Scalar(s, ..) => {
                // A scalar in key position is a key: remember it.
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    if key.is_none() {
                        *key = Some(s);
                        let Some(Frame::Map { path, key }) = self.stack.last() else {
                            return;
                        };
                        let p = join(path, key.as_deref().unwrap_or_default());
                        self.record(&p, line);
                        return;
                    }
                }
                if let Some(p) = self.value_path() {
                    self.record(&p, line);
                }
            }
            Event::Alias(_) => {
                let _ = self.value_path();
            }
            Event::MappingStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.record(&path, line);
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.value_path().unwrap_or_default();
                self.record(&path, line);
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_of_nested_fields() {
        let text = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  keys:\n    - slot: 0\n      nodeID: {}\n    - slot: 1\n      static:\n        passphrase: x\n---\nname: second\n";
        let m = LineMap::build(text);
        assert_eq!(m.line(0, "kind"), Some(2));
        assert_eq!(m.line(0, "encryption.keys[1].slot"), Some(8));
        assert_eq!(m.line(0, "encryption.keys[1].static.passphrase"), Some(10));
        assert_eq!(m.line(0, "encryption.keys[1].static.bogus"), Some(9));
        assert_eq!(m.line(1, "name"), Some(12));
    }
}
