//! The shape of `controller/src`, as docs/architecture.md states it:
//! - the top-level modules depend on each other in one direction ("Which
//!   module may use which"): a `crate::X` path in module Y is an edge
//!   Y → X; no cycle except between the binary's `cli` and `commands`;
//! - no function over 60 lines outside tests (a long one is a missing name);
//! - fewer than 10 `unsafe` blocks; `clap` only in the binary (`main.rs`,
//!   `cli/`, `commands/`); errors typed, not `Result<_, String>`;
//! - at least 15 unit tests of the whole boot on the simulated host.

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

/// Every non-test source file under `src`, with its text.
fn sources() -> Vec<(PathBuf, String)> {
    files(&src())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .filter(|p| p.file_name().is_none_or(|n| n != "tests.rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]\nmod ") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            (p, code)
        })
        .collect()
}

/// The name of the function a line starts, if it starts one.
fn starts_fn(line: &str) -> Option<&str> {
    let l = line.trim_start();
    let l = l
        .strip_prefix("pub(crate) ")
        .or(l.strip_prefix("pub(super) "))
        .unwrap_or(l);
    let l = l.strip_prefix("pub ").unwrap_or(l);
    let l = l.strip_prefix("async ").unwrap_or(l);
    let l = l.strip_prefix("unsafe ").unwrap_or(l);
    let l = l.strip_prefix("extern \"C\" ").unwrap_or(l);
    let rest = l.strip_prefix("fn ")?;
    let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    Some(&rest[..end])
}

/// `(name, lines)` of every function in `code` with a body.
fn function_lengths(code: &str) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = starts_fn(lines[i]) else {
            i += 1;
            continue;
        };
        let (mut depth, mut opened, mut j) = (0i32, false, i);
        while j < lines.len() {
            if !opened && lines[j].trim_end().ends_with(';') {
                break; // a declaration without a body
            }
            for c in lines[j].chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                out.push((name.to_string(), j - i + 1));
                break;
            }
            j += 1;
        }
        i = j.max(i) + 1;
    }
    out
}

#[test]
fn the_length_reader_counts_a_function_from_its_line_to_its_closing_brace() {
    let code = "fn a() {\n    x();\n}\npub async fn b(\n    y: u8,\n) -> u8 {\n    y\n}\nfn c();\n";
    let got = function_lengths(code);
    assert_eq!(got, vec![("a".to_string(), 3), ("b".to_string(), 5)]);
}

#[test]
fn no_function_outside_tests_is_over_60_lines() {
    let mut long = Vec::new();
    let mut seen = 0;
    for (path, code) in sources() {
        for (name, n) in function_lengths(&code) {
            seen += 1;
            if n > 60 {
                long.push(format!("{} {name}: {n} lines", path.display()));
            }
        }
    }
    assert!(seen > 500, "functions read: {seen}");
    assert!(long.is_empty(), "{long:#?}");
}

#[test]
fn fewer_than_10_unsafe_blocks_and_clap_only_in_the_binary() {
    let (mut unsafe_blocks, mut clap_outside) = (0, Vec::new());
    for (path, code) in sources() {
        unsafe_blocks += code.matches("unsafe {").count();
        let rel = path.strip_prefix(src()).unwrap();
        let binary =
            rel == Path::new("main.rs") || rel.starts_with("cli") || rel.starts_with("commands");
        if !binary && code.contains("clap::") {
            clap_outside.push(rel.display().to_string());
        }
    }
    assert!(unsafe_blocks < 10, "{unsafe_blocks} unsafe blocks");
    assert!(
        clap_outside.is_empty(),
        "clap in the library: {clap_outside:?}"
    );
}

#[test]
fn errors_are_typed_not_strings() {
    let mut stringly = Vec::new();
    for (path, code) in sources() {
        for line in code.lines() {
            let l = line.replace(' ', "");
            if l.contains("Result<") && l.contains(",String>") && !l.trim_start().starts_with("//")
            {
                stringly.push(format!("{}: {}", path.display(), line.trim()));
            }
        }
    }
    // The planner's note of why a key is unavailable (pure, serialised).
    assert!(stringly.len() <= 1, "{stringly:#?}");
}

#[test]
fn the_docs_phase_table_is_the_boots_phase_table() {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md"),
    )
    .unwrap();
    let section: Vec<&str> = doc
        .lines()
        .skip_while(|l| !l.starts_with("## The boot's phases"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    let rows: Vec<&str> = section
        .iter()
        .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
        .map(|l| l.split(" | ").nth(1).unwrap_or_default())
        .collect();
    let code: Vec<&str> = controller::boot::phase_names().collect();
    assert!(code.len() >= 9, "{code:?}");
    assert_eq!(
        rows[..code.len().min(rows.len())],
        code[..],
        "docs/architecture.md, \"The boot's phases\""
    );
}

#[test]
fn at_least_15_unit_tests_drive_the_whole_boot_on_the_simulated_host() {
    let whole: usize = files(&src().join("boot/tests"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .filter(|text| text.contains("SimNode"))
        .map(|text| text.matches("#[test]").count())
        .sum();
    assert!(whole >= 15, "{whole} whole-boot tests in boot/tests");
}
