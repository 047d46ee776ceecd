//! `tpm` keys with a signed PCR policy end to end on the host: swtpm, boot
//! images measured into PCR 11 as systemd-stub measures them, signatures
//! made by `systemd-measure sign`, LUKS2 image files converged by the
//! `volctl` binary, results checked with the cryptsetup CLI.

mod common;

use common::*;
use providers::test_swtpm::{PcrKeyPair, Swtpm};
use std::path::{Path, PathBuf};
use std::process::Output;

const KERNEL_1: &[(&str, &[u8])] = &[(".linux", b"kernel 6.1.0-1"), (".osrel", b"ID=debian\n")];
const KERNEL_2: &[(&str, &[u8])] = &[(".linux", b"kernel 6.1.0-2"), (".osrel", b"ID=debian\n")];
const STATIC: &str = "{slot: 1, static: {passphrase: fallback-pass}}";

/// EPHEMERAL with a TPM key (PCR 7 literal, PCR 11 signed by `public_key`,
/// signatures at `signature`) in slot 0 and a static fallback in slot 1
/// (`signed.yaml`), and the TPM key alone (`tpm-only.yaml`, returned second).
fn config(dir: &Path, public_key: &Path, signature: &Path) -> (PathBuf, PathBuf) {
    let tpm = format!(
        "{{slot: 0, tpm: {{options: {{pcrs: [7]}}, signedPolicy: {{publicKey: {}, signature: {}, pcrs: [11]}}}}}}",
        public_key.display(),
        signature.display()
    );
    let y = format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - {tpm}\n");
    let (both, alone) = (dir.join("signed.yaml"), dir.join("tpm-only.yaml"));
    std::fs::write(&both, format!("{y}    - {STATIC}\n")).unwrap();
    std::fs::write(&alone, y).unwrap();
    (both, alone)
}

/// A dry run with the TPM key alone: it opens the volume, at one KDF run.
fn opens_by_tpm(img: &Path, tpm_only: &Path, tpm: &Swtpm) {
    let o = json_ok(&plan_json(
        "EPHEMERAL",
        img,
        tpm_only,
        &["--tpm-tcti", &tpm.tcti()],
    ));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");
}

fn converge(img: &Path, cfg: &Path, tpm: &Swtpm) -> Output {
    converge_json("EPHEMERAL", img, cfg, &["--tpm-tcti", &tpm.tcti()])
}

/// The slot-0 note of a converge that the static key opened.
fn opened_by_static_with_slot_0(o: &serde_json::Value) -> String {
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "static"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "the TPM slot costs no KDF run: {o}");
    assert!(o["plan"]["actions"].as_array().unwrap().is_empty(), "{o}");
    let notes = o["plan"]["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{o}");
    assert_eq!(notes[0]["slot"], 0);
    notes[0]["reason"].as_str().unwrap().to_string()
}

#[test]
fn a_kernel_update_opens_by_its_new_signature_with_no_header_write() {
    let mut tpm = Swtpm::start();
    let (signer, other) = (PcrKeyPair::generate(), PcrKeyPair::generate());
    let img = image(40);
    let signature = img.dir.path().join("tpm2-pcr-signature.json");
    let (cfg, tpm_only) = config(img.dir.path(), &signer.public, &signature);
    tpm.boot_uki(KERNEL_1);
    std::fs::write(&signature, tpm.sign_uki(&signer, KERNEL_1)).unwrap();
    assert!(json_ok(&converge(&img.path, &cfg, &tpm))["formatted"]
        .as_bool()
        .unwrap());
    let token = first_token(&img.path);
    assert_eq!(
        token["data"]["signedPolicy"]["pcrs"],
        serde_json::json!([11])
    );
    opens_by_tpm(&img.path, &tpm_only, &tpm);

    // The next kernel, with the old signature: the static key opens; the
    // TPM slot is reported and kept, nothing is written.
    tpm.reboot();
    tpm.boot_uki(KERNEL_2);
    let before = sha256_file(&img.path);
    let reason = opened_by_static_with_slot_0(&json_ok(&converge(&img.path, &cfg, &tpm)));
    assert!(
        reason.contains("is of the values PCR 11 holds now"),
        "{reason}"
    );
    assert_eq!(sha256_file(&img.path), before);

    // Its own signature opens it: one KDF run, no header write.
    std::fs::write(&signature, tpm.sign_uki(&signer, KERNEL_2)).unwrap();
    opens_by_tpm(&img.path, &tpm_only, &tpm);
    let o = json_ok(&converge(&img.path, &cfg, &tpm));
    assert!(o["plan"]["notes"].as_array().unwrap().is_empty(), "{o}");
    assert!(o["plan"]["actions"].as_array().unwrap().is_empty(), "{o}");
    assert_eq!(sha256_file(&img.path), before, "no header write");

    // Another key's signature of the same values does not open it.
    std::fs::write(&signature, tpm.sign_uki(&other, KERNEL_2)).unwrap();
    let reason = opened_by_static_with_slot_0(&json_ok(&converge(&img.path, &cfg, &tpm)));
    assert!(
        reason.contains("no SHA-256 signature by the enrolled public key"),
        "{reason}"
    );
    assert_eq!(sha256_file(&img.path), before);
    assert!(opens(&img.path, 1, b"fallback-pass"));
}

#[test]
fn another_public_key_in_the_config_is_a_planned_replace() {
    let tpm = Swtpm::start();
    let (signer, other) = (PcrKeyPair::generate(), PcrKeyPair::generate());
    let img = image(40);
    let signature = img.dir.path().join("sig.json");
    tpm.boot_uki(KERNEL_1);
    std::fs::write(&signature, tpm.sign_uki(&signer, KERNEL_1)).unwrap();
    json_ok(&converge(
        &img.path,
        &config(img.dir.path(), &signer.public, &signature).0,
        &tpm,
    ));

    let moved = config(img.dir.path(), &other.public, &signature).0;
    let o = json_ok(&plan_json(
        "EPHEMERAL",
        &img.path,
        &moved,
        &["--tpm-tcti", &tpm.tcti()],
    ));
    let actions = o["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{o}");
    assert_eq!(actions[0]["action"], "replace", "{o}");
    assert_eq!(actions[0]["slot"], 0);
    // The plan names the key the new slot binds.
    let other_fp = providers::tpm::signed::PcrPublicKey::read(&other.public)
        .unwrap()
        .fingerprint();
    assert_eq!(
        actions[0]["binds"],
        format!("PCR 7; PCR 11 as signed by key {}", &other_fp[..16]),
        "{o}"
    );
}

/// An appliance's shape: the signed TPM key, and a recovery key a person
/// types. With a stale signature, nobody answering, the error says why the
/// TPM did not open it beside why the typed key was not given.
#[test]
fn waiting_for_a_typed_key_says_why_the_tpm_key_did_not_open() {
    let tpm = Swtpm::start();
    let signer = PcrKeyPair::generate();
    let img = image(40);
    let signature = img.dir.path().join("sig.json");
    let (_, tpm_only) = config(img.dir.path(), &signer.public, &signature);
    let with_recovery = img.dir.path().join("with-recovery.yaml");
    let text = std::fs::read_to_string(&tpm_only).unwrap() + "    - {slot: 1, recovery: {}}\n";
    std::fs::write(&with_recovery, text).unwrap();
    tpm.boot_uki(KERNEL_1);
    std::fs::write(&signature, tpm.sign_uki(&signer, KERNEL_2)).unwrap();
    let held = img.dir.path().join("recovery.txt");
    let held = held.display().to_string();
    json_ok(&converge_json(
        "EPHEMERAL",
        &img.path,
        &with_recovery,
        &["--tpm-tcti", &tpm.tcti(), "--recovery-key-out", &held],
    ));

    let nobody = img.dir.path().join("ask");
    std::fs::create_dir(&nobody).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["plan", "--volume", "EPHEMERAL", "--device"])
        .arg(&img.path)
        .arg("-f")
        .arg(&with_recovery)
        .args(["--tpm-tcti", &tpm.tcti(), "--ask-timeout", "1"])
        .env("VOLCTL_ASK_PASSWORD_DIR", &nobody)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nobody answered within 1 s; no unattended key opened it: slot 0 (tpm): ")
            && err.contains("is of the values PCR 11 holds now"),
        "{err}"
    );
}
