//! The docs run as written (issue 30): every YAML document on a page of
//! `docs/` or in `README.md` is a valid config (or is marked as a wrong
//! example and refused), and every command block marked to run runs on
//! image files in a scratch folder, its output compared with what the page
//! shows. Markers are HTML comments on the lines right before a block,
//! invisible on the rendered page:
//!
//! - `<!-- file: NAME -->`: the block is written to NAME in the page's folder;
//! - `<!-- setup: COMMAND -->`: runs before the block, not shown (`$EXAMPLES`
//!   is the repository's `examples/`);
//! - `<!-- run -->`: each line starting with `$ ` or `# ` is a command, the
//!   lines after it its output (stdout and stderr); `…` in a line stands for
//!   any text, a line of `…` alone for any number of lines;
//! - `<!-- vm: SCENARIO -->`: needs a node; the VM scenario runs it;
//! - `<!-- not-run: REASON -->`: not run, and why;
//! - `<!-- invalid -->`: a YAML block that shows a mistake: it must be refused.
//!
//! A page's files are written first; its blocks run in order in one folder.
//! Dates (`2027-12-05`) may differ from the page's. Command blocks without a
//! marker are listed as not checked.

mod common;

/// Fewer commands run would mean markers were lost.
const MIN_COMMANDS: usize = 43;

use std::path::{Path, PathBuf};
use std::process::Command;

/// One fenced block of a page.
struct Block {
    page: String,
    line: usize,
    info: String,
    text: String,
    markers: Vec<Marker>,
}

/// What the comments before a block say.
#[derive(Debug, Clone, PartialEq)]
enum Marker {
    File(String),
    Setup(String),
    Run,
    Vm(String),
    NotRun(String),
    Invalid,
}

impl Marker {
    fn parse(comment: &str) -> Option<Marker> {
        let inner = comment.strip_prefix("<!--")?.strip_suffix("-->")?.trim();
        let (word, rest) = inner.split_once(':').unwrap_or((inner, ""));
        let rest = rest.trim().to_string();
        Some(match word.trim() {
            "file" => Marker::File(rest),
            "setup" => Marker::Setup(rest),
            "run" => Marker::Run,
            "vm" => Marker::Vm(rest),
            "not-run" => Marker::NotRun(rest),
            "invalid" => Marker::Invalid,
            _ => return None,
        })
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The pages: README.md and docs/*.md.
fn pages() -> Vec<PathBuf> {
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    pages.sort();
    pages.insert(0, root().join("README.md"));
    pages
}

/// The fenced blocks of a page, with the markers right before each.
fn blocks(page: &Path) -> Vec<Block> {
    let name = page.strip_prefix(root()).unwrap().display().to_string();
    let text = std::fs::read_to_string(page).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(info) = lines[i].trim_start().strip_prefix("```") else {
            i += 1;
            continue;
        };
        let start = i;
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_start().starts_with("```"))
            .unwrap_or(lines.len());
        let markers = lines[..start]
            .iter()
            .rev()
            .map_while(|l| Marker::parse(l.trim()))
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        out.push(Block {
            page: name.clone(),
            line: start + 1,
            info: info.trim().to_string(),
            text: lines[start + 1..end].join("\n") + "\n",
            markers,
        });
        i = end + 1;
    }
    out
}

/// `text` with what varies from run to run made one: dates
/// (`2027-12-05` → `YYYY-MM-DD`).
fn steady(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let date = b.len() >= i + 10
            && b[i..i + 10].iter().enumerate().all(|(k, c)| match k {
                4 | 7 => *c == b'-',
                _ => c.is_ascii_digit(),
            });
        if date {
            out.push_str("YYYY-MM-DD");
            i += 10;
        } else {
            let c = text[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Whether `text` matches `pattern`, where `…` stands for any text.
fn line_matches(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (steady(pattern), steady(text));
    let (pattern, text) = (pattern.as_str(), text.as_str());
    let parts: Vec<&str> = pattern.split('…').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the output lines match the expected ones (a line `…` alone
/// stands for any number of lines).
fn output_matches(want: &[&str], got: &[&str]) -> bool {
    match want.split_first() {
        None => got.is_empty(),
        Some((&"…", rest)) => (0..=got.len()).any(|n| output_matches(rest, &got[n..])),
        Some((w, rest)) => {
            got.first().is_some_and(|g| line_matches(w, g)) && output_matches(rest, &got[1..])
        }
    }
}

/// A block's commands and the output each shows.
fn commands(block: &Block) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for line in block.text.lines() {
        let cmd = line.strip_prefix("$ ").or_else(|| line.strip_prefix("# "));
        match (cmd, out.last_mut()) {
            (Some(c), _) => out.push((c.to_string(), Vec::new())),
            (None, Some((_, shown))) => shown.push(line.trim_end().to_string()),
            (None, None) => {}
        }
    }
    out
}

/// Between two commands' outputs in one bash session.
const SEPARATOR: &str = "@@volctl-docs-next@@";

/// Runs a block's commands in one bash session in `dir` (so `$?`, `cd` and
/// variables carry from one to the next): each one's stdout and stderr, in
/// order, trailing blank lines dropped.
fn run_block(dir: &Path, cmds: &[String]) -> Vec<String> {
    let mut script = String::new();
    for c in cmds {
        script.push_str(&format!(
            "{c}\n__rc=$?; printf '\\n{SEPARATOR}\\n'; (exit $__rc)\n"
        ));
    }
    let out = run(dir, &script);
    out.split(&format!("\n{SEPARATOR}\n"))
        .take(cmds.len())
        .map(|chunk| chunk.trim_end_matches('\n').to_string())
        .collect()
}

/// Runs `cmd` with bash in `dir`: stdout and stderr, in order.
fn run(dir: &Path, cmd: &str) -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_volctl")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = Command::new("bash")
        .arg("-c")
        .arg(format!("exec 2>&1\n{cmd}"))
        .current_dir(dir)
        .env("PATH", path)
        .env("HOME", dir)
        .env("VOLCTL_NODE_UUID", common::UUID)
        .env("EXAMPLES", root().join("examples"))
        .env_remove("VOLCTLCONFIG")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// What checking the pages found.
#[derive(Default)]
struct Report {
    failures: Vec<String>,
    configs: usize,
    commands: usize,
    in_vm: Vec<String>,
    not_run: Vec<String>,
    unmarked: Vec<String>,
}

impl Report {
    fn config(&mut self, b: &Block) {
        if !b.text.contains("apiVersion: v1alpha1") {
            return;
        }
        self.configs += 1;
        let p = api_types::parse_str(&b.page, &b.text);
        let invalid = b.markers.contains(&Marker::Invalid);
        match (p.has_errors(), invalid) {
            (true, false) => self.failures.push(format!(
                "{}:{}: the config is invalid: {:?}",
                b.page, b.line, p.diagnostics
            )),
            (false, true) => self.failures.push(format!(
                "{}:{}: marked invalid, but volctl accepts it",
                b.page, b.line
            )),
            _ => {}
        }
    }

    fn commands(&mut self, dir: &Path, b: &Block) {
        let cmds = commands(b);
        let texts: Vec<String> = cmds.iter().map(|(c, _)| c.clone()).collect();
        let outputs = run_block(dir, &texts);
        for ((cmd, shown), got) in cmds.into_iter().zip(outputs) {
            self.commands += 1;
            let got: Vec<&str> = got.lines().map(str::trim_end).collect();
            let mut want: Vec<&str> = shown.iter().map(String::as_str).collect();
            while want.last() == Some(&"") {
                want.pop();
            }
            if !output_matches(&want, &got) {
                self.failures.push(format!(
                    "{}:{}: `{cmd}`\n--- the page shows\n{}\n--- it prints\n{}",
                    b.page,
                    b.line,
                    want.join("\n"),
                    got.join("\n")
                ));
            }
        }
    }

    fn not_checked(&mut self, b: &Block) {
        let shows_volctl = b.text.lines().any(|l| {
            ["$ volctl", "# volctl", "volctl "]
                .iter()
                .any(|p| l.trim_start().starts_with(p))
        });
        let command_block = matches!(b.info.as_str(), "" | "sh" | "console" | "text" | "shell");
        if shows_volctl && command_block {
            self.unmarked.push(format!("{}:{}", b.page, b.line));
        }
    }

    fn block(&mut self, dir: &Path, b: &Block) {
        self.config(b);
        let mut marked = false;
        for m in &b.markers {
            match m {
                Marker::File(_) | Marker::Invalid => {}
                Marker::Setup(cmd) => {
                    let out = run(dir, cmd);
                    if out.contains("error") {
                        self.failures
                            .push(format!("{}:{}: setup `{cmd}`: {out}", b.page, b.line));
                    }
                }
                Marker::Run => {
                    self.commands(dir, b);
                    marked = true;
                }
                Marker::Vm(s) => {
                    self.in_vm.push(format!("{}:{} ({s})", b.page, b.line));
                    marked = true;
                }
                Marker::NotRun(why) => {
                    self.not_run.push(format!("{}:{} ({why})", b.page, b.line));
                    marked = true;
                }
            }
        }
        if !marked {
            self.not_checked(b);
        }
    }
}

#[test]
fn the_docs_run_as_written() {
    let mut report = Report::default();
    for page in pages() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = blocks(&page);
        // A page's files first: a command may come before the file it reads.
        for b in &blocks {
            for m in &b.markers {
                if let Marker::File(name) = m {
                    std::fs::write(dir.path().join(name), &b.text).unwrap();
                }
            }
        }
        for b in &blocks {
            report.block(dir.path(), b);
        }
    }
    println!(
        "docs: {} configs validated, {} commands run on image files; {} blocks in the VM suite, {} not run, {} command blocks not checked",
        report.configs,
        report.commands,
        report.in_vm.len(),
        report.not_run.len(),
        report.unmarked.len()
    );
    for (what, list) in [
        ("in the VM suite", &report.in_vm),
        ("not run", &report.not_run),
        ("not checked", &report.unmarked),
    ] {
        for b in list {
            println!("  {what}: {b}");
        }
    }
    assert!(
        report.failures.is_empty(),
        "{}",
        report.failures.join("\n\n")
    );
    assert!(
        report.commands >= MIN_COMMANDS,
        "at least {MIN_COMMANDS} documented commands run"
    );
}

#[test]
fn wildcards_match_text_and_lines() {
    assert!(line_matches(
        "wrote to pki (valid until …):",
        "wrote to pki (valid until 2027-12-05):"
    ));
    assert!(!line_matches("wrote to pki", "wrote to pkx"));
    assert!(line_matches("a … c … e", "a b c d e"));
    assert!(!line_matches("a … c", "a b d"));
    assert!(output_matches(&["x", "…", "z"], &["x", "1", "2", "z"]));
    assert!(output_matches(&["x", "…"], &["x"]));
    assert!(!output_matches(&["x", "z"], &["x", "y", "z"]));
}

/// The text of every Rust source file of the crates (not the tests).
fn sources() -> String {
    fn walk(dir: &Path, out: &mut String) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.ends_with("tests") {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
            }
        }
    }
    let mut out = String::new();
    for e in std::fs::read_dir(root()).unwrap().flatten() {
        let src = e.path().join("src");
        if src.is_dir() {
            walk(&src, &mut out);
        }
    }
    out
}

/// The message a troubleshooting heading quotes: ``### `message` `` or
/// ``### `` message with `ticks` `` ``.
fn quoted(heading: &str) -> Option<&str> {
    let h = heading.strip_prefix("### ")?;
    h.strip_prefix("`` ")
        .and_then(|m| m.strip_suffix(" ``"))
        .or_else(|| h.strip_prefix('`').and_then(|m| m.strip_suffix('`')))
}

/// docs/troubleshooting.md is indexed by messages volctl prints: each one
/// is still in the source (`…` where the message has a value).
#[test]
fn every_troubleshooting_message_is_one_volctl_prints() {
    let page = std::fs::read_to_string(root().join("docs/troubleshooting.md")).unwrap();
    let code = sources();
    let mut checked = 0;
    for heading in page.lines().filter(|l| l.starts_with("### ")) {
        let msg = quoted(heading).unwrap_or_else(|| panic!("not a quoted message: {heading}"));
        for part in msg.split('…').map(str::trim).filter(|p| p.len() >= 8) {
            assert!(
                code.contains(part),
                "`{part}` (from {heading}) is in no source file"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "{checked} messages");
}
