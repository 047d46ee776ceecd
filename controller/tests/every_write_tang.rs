//! Tang slots under a power cut at every write (docs/architecture.md,
//! "Power cuts"): enrolling a `tang` slot beside a fallback static key,
//! and rebinding it after the server rotated its keys, each cut at every
//! write, the cut write landing whole and landing half. After each cut,
//! and again after the next `volctl converge`, checked outside volctl:
//! the fallback opens with `cryptsetup`, the volume key and the data area
//! are the ones from before, and every JWE the header holds (volctl's
//! token and clevis's) gives, through `clevis decrypt` and the real
//! `tangd`, a passphrase that opens slot 0.

mod common;

use common::cuts::{self, base_image, data_area, fill_data, Cut, Operation};
use common::{dump, opens, run_ok, slots, text, volume_key, PBKDF};
use providers::test_tang::Tangd;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const FALLBACK: &str = "fallback-pass";

/// EPHEMERAL with the fallback in slot 1, and with `tang` a Tang key in slot 0.
fn config(dir: &Path, tang: Option<&Tangd>) -> PathBuf {
    let p = dir.join(if tang.is_some() {
        "tang.yaml"
    } else {
        "fallback.yaml"
    });
    let slot0 = tang.map_or(String::new(), |t| {
        format!(
            "    - slot: 0\n      tang: {{url: '{}', thumbprint: {}}}\n",
            t.url(),
            t.thumbprint()
        )
    });
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n{slot0}    - slot: 1\n      static: {{passphrase: {FALLBACK}}}\n"),
    )
    .unwrap();
    p
}

fn converge(img: &Path, cfg: &Path) -> Command {
    cuts::converge_ephemeral(img, cfg)
}

fn converged(img: &Path, cfg: &Path) {
    let out = converge(img, cfg).output().unwrap();
    assert!(out.status.success(), "converge: {}", text(&out.stderr));
    let again = converge(img, cfg).output().unwrap();
    let j: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        j["plan"]["actions"],
        serde_json::json!([]),
        "converged: {j}"
    );
}

/// Every JWE in the header, compact: the clevis tokens' (and any a tang
/// volctl token holds itself: none should).
fn jwes(img: &Path) -> Vec<String> {
    let d = dump(img);
    let tokens = d["tokens"].as_object().cloned().unwrap_or_default();
    tokens
        .values()
        .filter_map(|t| match t["type"].as_str() {
            Some("clevis") => Some(t["jwe"].clone()),
            Some("volctl") if t["data"]["jwe"].is_object() => Some(t["data"]["jwe"].clone()),
            _ => None,
        })
        .map(|j| {
            ["protected", "encrypted_key", "iv", "ciphertext", "tag"]
                .map(|f| j[f].as_str().unwrap_or_default().to_string())
                .join(".")
        })
        .collect()
}

/// What `clevis decrypt` gives for `jwe`.
fn clevis_decrypt(jwe: &str) -> Vec<u8> {
    let mut child = Command::new("clevis")
        .arg("decrypt")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(jwe.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "clevis decrypt: {}",
        text(&out.stderr)
    );
    out.stdout
}

/// The fallback opens with the volume key and data of `before`, no slot
/// beyond 0 and 1, and every JWE the header holds opens slot 0; how many
/// JWEs there were.
fn after_a_cut(img: &Path, before: &(String, Vec<u8>)) -> usize {
    assert!(
        opens(img, 1, FALLBACK.as_bytes()),
        "the fallback slot opens"
    );
    assert_eq!(
        volume_key(img, 1, FALLBACK.as_bytes()),
        before.0,
        "the volume key changed"
    );
    assert_eq!(data_area(img), before.1, "the data area changed");
    assert!(slots(img).iter().all(|s| *s <= 1), "{:?}", slots(img));
    let all = jwes(img);
    for jwe in &all {
        assert!(
            opens(img, 0, &clevis_decrypt(jwe)),
            "a JWE in the header does not open slot 0"
        );
    }
    all.len()
}

/// After the next converge: one JWE, in clevis's token, bound to the
/// server's current exchange key; `clevis luks pass` opens slot 0, and
/// volctl's token names the tang key.
fn in_step(img: &Path, tang: &Tangd) {
    let all = jwes(img);
    assert_eq!(all.len(), 1, "one JWE, clevis's");
    let kinds: Vec<String> = dump(img)["tokens"]
        .as_object()
        .map(|t| {
            t.values()
                .map(|v| format!("{}:{}", v["type"], v["kind"]))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        kinds.contains(&r#""volctl":"tang""#.to_string()),
        "{kinds:?}"
    );
    let header: serde_json::Value = {
        use base64::Engine;
        let protected = all[0].split('.').next().unwrap();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(protected)
            .unwrap();
        serde_json::from_slice(&raw).unwrap()
    };
    assert_eq!(header["kid"], tang.exchange_thumbprint());
    let pass = run_ok(
        Command::new("clevis")
            .args(["luks", "pass", "-s", "0", "-d"])
            .arg(img),
    )
    .stdout;
    assert!(opens(img, 0, &pass));
}

fn sweep(name: &str, img: &Path, cfg: &Path, tang: &Tangd) {
    let before = (volume_key(img, 1, FALLBACK.as_bytes()), data_area(img));
    let command = |img: &Path| converge(img, cfg);
    let counts = std::sync::Mutex::new(Vec::new());
    let after_cut =
        |img: &Path, _: &Path, _: Cut| counts.lock().unwrap().push(after_a_cut(img, &before));
    let next = |img: &Path, _: &Path, _: Cut| {
        converged(img, cfg);
        after_a_cut(img, &before);
        in_step(img, tang);
    };
    let op = Operation::every_write(name, img, &command, &after_cut, &next);
    let report = cuts::sweep_alone(&op);
    let counts = counts.into_inner().unwrap();
    eprintln!("{report}; JWEs in the header after each cut: {counts:?}");
    assert!(report.writes >= 3, "{report:?}");
}

#[test]
fn enrolling_a_tang_slot_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let tang = Tangd::start();
    let img = base_image(dir.path());
    converged(&img, &config(dir.path(), None));
    fill_data(&img);
    sweep(
        "tang enrolment",
        &img,
        &config(dir.path(), Some(&tang)),
        &tang,
    );
}

#[test]
fn rebinding_after_the_server_rotated_its_keys_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let tang = Tangd::start();
    let img = base_image(dir.path());
    let cfg = config(dir.path(), Some(&tang));
    converged(&img, &cfg);
    fill_data(&img);
    tang.rotate();
    sweep("tang rebind", &img, &cfg, &tang);
}
