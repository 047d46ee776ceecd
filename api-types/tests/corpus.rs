//! The bad-document corpus in `tests/corpus/bad` and the examples in
//! `examples/`: every bad file is rejected with the field path and reason its
//! first line names; every example is accepted and matches the JSON Schema.

use api_types::{parse_file, parse_str, schema, DocumentKind};
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(yaml_files(&p));
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn every_bad_document_is_rejected_with_path_and_reason() {
    let files = yaml_files(&repo().join("tests/corpus/bad"));
    assert!(files.len() >= 30, "corpus has only {} files", files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line must be `# expect: PATH :: REASON`",
                    f.display()
                )
            });
        let (path, reason) = expect.split_once(" :: ").unwrap();
        let parsed = parse_file(&f);
        assert!(parsed.has_errors(), "{} was accepted", f.display());
        let hit = parsed
            .errors()
            .find(|d| d.path == path.trim() && d.message.contains(reason.trim()));
        assert!(
            hit.is_some(),
            "{}: no error at `{}` containing `{}`; got:\n{}",
            f.display(),
            path,
            reason,
            parsed
                .errors()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("\n")
        );
        let d = hit.unwrap();
        assert!(
            d.document.is_some(),
            "{}: error names no document",
            f.display()
        );
        assert!(d.line.is_some(), "{}: error has no line: {d}", f.display());
        let shown = d.to_string();
        assert!(shown.contains(&f.display().to_string()), "{shown}");
    }
}

#[test]
fn every_example_is_valid_and_matches_the_schema() {
    let files = yaml_files(&repo().join("examples"));
    assert!(files.len() >= 4);
    let all = schema::for_all_kinds();
    let validator = jsonschema::validator_for(&all).expect("schema compiles");
    for f in files {
        let parsed = parse_file(&f);
        let errs: Vec<String> = parsed.errors().map(|d| d.to_string()).collect();
        assert!(errs.is_empty(), "{}: {errs:?}", f.display());
        assert!(!parsed.documents.is_empty());
        let text = std::fs::read_to_string(&f).unwrap();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: serde_json::Value = serde::Deserialize::deserialize(doc).unwrap();
            let msgs: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(msgs.is_empty(), "{}: schema rejects: {msgs:?}", f.display());
        }
    }
}

#[test]
fn schema_rejects_what_validation_rejects_structurally() {
    let v = schema::for_kind(DocumentKind::VolumeConfig);
    let validator = jsonschema::validator_for(&v).unwrap();
    let bad = serde_json::json!({"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "STATE", "encrytpion": {}});
    assert!(!validator.is_valid(&bad));
    let wrong_kind =
        serde_json::json!({"apiVersion": "v1alpha1", "kind": "UserVolumeConfig", "name": "STATE"});
    assert!(!validator.is_valid(&wrong_kind));
    let good = serde_json::json!({"apiVersion": "v1alpha1", "kind": "VolumeConfig", "name": "STATE",
        "encryption": {"keys": [{"slot": 0, "nodeID": {}}, {"slot": 1, "tpm": {"pcrs": [7]}, "lockToState": true}]}});
    assert!(
        validator.is_valid(&good),
        "{:?}",
        validator
            .iter_errors(&good)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
}

#[test]
fn all_errors_of_a_file_are_reported_not_just_the_first() {
    let text = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nbogus1: 1\nencryption:\n  provider: luks2\n  bogus2: 2\n  keys:\n    - slot: 40\n      nodeID: {}\n---\napiVersion: v1alpha1\nkind: UserVolumeConfig\nname: bad/name\n";
    let p = parse_str("multi.yaml", text);
    let paths: Vec<&str> = p.errors().map(|d| d.path.as_str()).collect();
    assert!(paths.contains(&"bogus1"), "{paths:?}");
    assert!(paths.contains(&"encryption.bogus2"), "{paths:?}");
    assert!(paths.contains(&"name"), "{paths:?}");
    let second = p.errors().find(|d| d.path == "name").unwrap();
    assert_eq!(second.document.as_ref().unwrap().index, 2);
    assert_eq!(second.line, Some(14));
    assert!(p.documents.is_empty());
}

#[test]
fn talos_spellings_are_accepted_and_resolved() {
    let text = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 3\n      tpm:\n        pcrs: [11, 7]\n      lockToState: true\n";
    let p = parse_str("t.yaml", text);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let keys = p.documents[0].encryption().unwrap().resolved_keys();
    assert_eq!(keys[0].slot, 3);
    assert!(keys[0].lock_to_state);
    assert_eq!(
        keys[0].kind,
        api_types::KeyKind::Tpm {
            pcrs: vec![7, 11],
            check_secureboot: false,
            auto_reseal: true,
            signed: None,
            pin: false
        }
    );
}

#[test]
fn weak_key_choice_is_a_warning_not_an_error() {
    let text = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      nodeID: {}\n";
    let p = parse_str("w.yaml", text);
    assert!(!p.has_errors());
    assert_eq!(p.documents.len(), 1);
    let w: Vec<_> = p.diagnostics.iter().filter(|d| !d.is_error()).collect();
    assert_eq!(w.len(), 1);
    assert!(w[0].message.contains("without lockToState"));
    // STATE cannot be locked to itself: nodeID alone is its recommended key.
    let state = text.replace("EPHEMERAL", "STATE");
    let p = parse_str("s.yaml", &state);
    assert!(p.diagnostics.is_empty(), "{:?}", p.diagnostics);
}

#[test]
fn passphrases_never_appear_in_diagnostics_or_debug_output() {
    let text = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      static: {passphrase: sup3r-s3cret}\n    - slot: 40\n      static: {passphrase: sup3r-s3cret}\n";
    let p = parse_str("s.yaml", text);
    assert!(p.has_errors());
    assert!(p
        .diagnostics
        .iter()
        .any(|d| !d.is_error() && d.message.contains("META")));
    let all = format!(
        "{:?} {}",
        p,
        p.diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<String>()
    );
    assert!(!all.contains("sup3r-s3cret"), "{all}");
}
