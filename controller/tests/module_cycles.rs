//! The top-level modules of `controller/src` depend on each other in one
//! direction (docs/architecture.md, "Which module may use which"): a
//! `crate::X` path in module Y is an edge Y → X; no cycle is allowed except
//! between the binary's `cli` and `commands`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file of a module (a file or a folder).
fn files(path: &Path) -> Vec<PathBuf> {
    if path.is_file() {
        return vec![path.to_path_buf()];
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(path).unwrap() {
        out.extend(files(&e.unwrap().path()));
    }
    out
}

/// The names `crate::` is followed by in `text`, including the braces of
/// `use crate::{a, b::c}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let body = &group[..group.find(';').unwrap_or(group.len())];
            let mut depth = 0;
            let mut start = true;
            for (j, c) in body.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        names.insert(ident(&body[j..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names
}

fn graph() -> Graph {
    let mut modules = BTreeMap::new();
    for e in std::fs::read_dir(src()).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        if name != "lib" && name != "main" {
            modules.insert(name, path);
        }
    }
    let mut g = Graph::new();
    for (name, path) in &modules {
        let mut deps = BTreeSet::new();
        for f in files(path) {
            let text = std::fs::read_to_string(&f).unwrap();
            deps.extend(
                crate_paths(&text)
                    .into_iter()
                    .filter(|d| d != name && modules.contains_key(d)),
            );
        }
        g.insert(name.clone(), deps);
    }
    g
}

/// Every module `from` reaches.
fn reach(g: &Graph, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![from.to_string()];
    while let Some(m) = todo.pop() {
        for d in &g[&m] {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_reader_finds_paths_in_use_groups_and_inline() {
    let found =
        crate_paths("use crate::{a::B, c};\nlet x = crate::d::e();\nuse crate::{f::{g, h}, i};");
    let want: BTreeSet<String> = ["a", "c", "d", "f", "i"].map(String::from).into();
    assert_eq!(found, want);
}

#[test]
fn no_two_top_level_modules_depend_on_each_other_except_cli_and_commands() {
    let g = graph();
    assert!(g.len() > 10, "modules found: {:?}", g.keys());
    assert!(g["boot"].contains("node"), "the reader sees edges");
    let mut cycles = Vec::new();
    for m in g.keys() {
        for d in reach(&g, m) {
            let pair = (m.as_str(), d.as_str());
            let allowed = matches!(pair, ("cli", "commands") | ("commands", "cli"));
            if m < &d && reach(&g, &d).contains(m) && !allowed {
                cycles.push(format!("{m} ↔ {d}"));
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles: {cycles:?}\n{g:#?}");
}
