//! Talos's own verdicts: every case of Talos's `*_test.go` tables and
//! golden files for the block documents (transcribed to YAML in
//! `tests/talos/<Kind>/`, each naming its origin), plus cases written from
//! the rules of Talos's `Validate` functions. volctl must give the same
//! verdict, and when Talos refuses, an error at the field its header names
//! carrying the words it names.

use api_types::parse_str;
use std::path::{Path, PathBuf};

struct Case {
    file: PathBuf,
    text: String,
    valid: bool,
    field: Option<String>,
    message: Option<String>,
}

fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| l.starts_with('#'))
        .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
}

fn cases(kind: &str) -> Vec<Case> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/talos")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).unwrap();
            let verdict = header(&text, "verdict").expect("a `# verdict:` line");
            Case {
                valid: verdict == "valid",
                field: header(&text, "field").map(str::to_string),
                message: header(&text, "message").map(str::to_string),
                file,
                text,
            }
        })
        .collect()
}

/// Checks every case of a kind; returns the disagreements.
fn disagreements(kind: &str, at_least: usize) -> Vec<String> {
    let all = cases(kind);
    assert!(all.len() >= at_least, "{kind}: only {} cases", all.len());
    let mut bad = Vec::new();
    for c in &all {
        let p = parse_str(&c.file.display().to_string(), &c.text);
        let errors: Vec<String> = p
            .errors()
            .map(|d| format!("{}: {}", d.path, d.message))
            .collect();
        let name = c.file.file_name().unwrap().to_string_lossy();
        if c.valid != errors.is_empty() {
            bad.push(format!(
                "{kind}/{name}: Talos says {}, volctl: {errors:?}",
                if c.valid { "valid" } else { "invalid" }
            ));
            continue;
        }
        if let Some(field) = &c.field {
            let hit = p.errors().any(|d| {
                d.path == *field
                    && c.message
                        .as_ref()
                        .is_none_or(|m| d.message.contains(m.as_str()))
            });
            if !hit {
                bad.push(format!(
                    "{kind}/{name}: no error at `{field}` saying {:?}; got {errors:?}",
                    c.message
                ));
            }
        }
    }
    println!(
        "{kind}: {}/{} cases agree with Talos",
        all.len() - bad.len(),
        all.len()
    );
    bad
}

#[test]
fn volume_config_verdicts_match_talos() {
    let bad = disagreements("VolumeConfig", 20);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn user_volume_config_verdicts_match_talos() {
    let bad = disagreements("UserVolumeConfig", 27);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn raw_swap_and_existing_volume_config_verdicts_match_talos() {
    let mut bad = disagreements("RawVolumeConfig", 12);
    bad.extend(disagreements("SwapVolumeConfig", 12));
    bad.extend(disagreements("ExistingVolumeConfig", 5));
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn examples_run_on_talos_except_the_appliance_s_own_volume_and_keys() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for f in [
        "node.yaml",
        "rotation/step-1.yaml",
        "rotation/step-2.yaml",
        "appliance.yaml",
    ] {
        let p = api_types::parse_file(&dir.join(f));
        assert!(!p.has_errors(), "{f}: {:?}", p.diagnostics);
        let ext: Vec<&str> = p.extensions.iter().map(|d| d.path.as_str()).collect();
        let expected: &[&str] = if f == "appliance.yaml" {
            // `persistence` is volctl's own volume, with keys a person holds.
            &[
                "name",
                "mount.path",
                "encryption.keys[0].prompt",
                "encryption.keys[1].recovery",
            ]
        } else {
            &[]
        };
        assert_eq!(ext, expected, "{f}");
    }
}
