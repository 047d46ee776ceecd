//! `tpm` keys end to end on the host: swtpm on loopback, volumes in LUKS2
//! image files converged by the `volctl` binary (a fresh process each run),
//! results checked with the cryptsetup CLI.

mod common;

use common::*;
use providers::test_swtpm::Swtpm;
use std::path::{Path, PathBuf};
use std::process::Output;

fn config(dir: &Path, name: &str, keys: &[&str]) -> PathBuf {
    let mut y = format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n");
    for k in keys {
        y.push_str(&format!("    - {k}\n"));
    }
    let p = dir.join(name);
    std::fs::write(&p, y).unwrap();
    p
}

fn converge(img: &Path, cfg: &Path, tpm: &Swtpm) -> Output {
    converge_json("EPHEMERAL", img, cfg, &["--tpm-tcti", &tpm.tcti()])
}

const TPM: &str = "{slot: 0, tpm: {options: {pcrs: [7]}}}";
const STATIC: &str = "{slot: 1, static: {passphrase: fallback-pass}}";

#[test]
fn tpm_key_opens_in_a_fresh_process_and_a_changed_pcr_is_reported() {
    let tpm = Swtpm::start();
    let img = image(40);
    let only_tpm = config(img.dir.path(), "tpm.yaml", &[TPM]);
    let o = json_ok(&converge(&img.path, &only_tpm, &tpm));
    assert!(o["formatted"].as_bool().unwrap());
    let token = first_token(&img.path);
    assert_eq!(token["kind"], "tpm");
    assert_eq!(token["data"]["pcrs"], serde_json::json!([7]));
    assert!(token["data"]["public"].is_string() && token["data"]["private"].is_string());

    // A new process opens it through the TPM: one KDF run.
    let o = json_ok(&converge(&img.path, &only_tpm, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm"]));
    assert_eq!(o["kdf_runs"], 1);

    // After PCR 7 changes, the TPM refuses; with no other key, a clear error.
    tpm.extend_pcr(7);
    let before = sha256_file(&img.path);
    let o = converge(&img.path, &only_tpm, &tpm);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no configured key opens") && err.contains("PCR values changed"),
        "{err}"
    );
    assert_eq!(sha256_file(&img.path), before);
}

/// A TPM key that is never re-sealed.
const TPM_NO_RESEAL: &str = "{slot: 0, tpm: {options: {pcrs: [7]}, autoReseal: false}}";

#[test]
fn with_auto_reseal_off_the_static_fallback_opens_and_the_tpm_slot_is_kept() {
    let tpm = Swtpm::start();
    let img = image(40);
    let both = config(img.dir.path(), "both.yaml", &[TPM_NO_RESEAL, STATIC]);
    json_ok(&converge(&img.path, &both, &tpm));
    assert_eq!(slots(&img.path), vec![0, 1]);
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert_eq!(
        o["plan"]["notes"].as_array().unwrap().len(),
        0,
        "the TPM slot is usable: {o}"
    );

    tpm.extend_pcr(7);
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "static"]));
    let notes = o["plan"]["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 1, "{o}");
    assert_eq!(notes[0]["note"], "unusable");
    assert_eq!(notes[0]["slot"], 0);
    assert!(notes[0]["reason"]
        .as_str()
        .unwrap()
        .contains("PCR values changed"));
    assert!(
        o["plan"]["actions"].as_array().unwrap().is_empty(),
        "the TPM slot is not removed"
    );
    assert_eq!(slots(&img.path), vec![0, 1]);
    assert!(opens(&img.path, 1, b"fallback-pass"));
}

#[test]
fn a_tpm_slot_whose_pcrs_changed_is_resealed_and_the_next_run_unlocks_by_tpm() {
    let (tpm, img, both) = tpm_and_static();
    let sealed_before = dump(&img.path)["tokens"].to_string();

    // A firmware update changes PCR 7: the static key opens, and the TPM
    // slot is re-sealed to the new value in the same run.
    tpm.extend_pcr(7);
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "static"]));
    let actions = o["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{o}");
    assert_eq!(actions[0]["action"], "reseal");
    assert_eq!(actions[0]["slot"], 0);
    assert!(o["plan"]["notes"].as_array().unwrap().is_empty(), "{o}");
    assert_eq!(o["kdf_runs"], 2, "one unlock, one enrolment");
    assert_ne!(
        dump(&img.path)["tokens"].to_string(),
        sealed_before,
        "a new sealed object"
    );
    assert_eq!(slots(&img.path), vec![0, 1]);
    assert!(opens(&img.path, 1, b"fallback-pass"));

    // The next run finds the TPM slot usable and changes nothing; on its
    // own, the TPM key opens the volume again with one KDF run (a dry run,
    // so the static slot this config does not list stays).
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert!(o["plan"]["actions"].as_array().unwrap().is_empty(), "{o}");
    assert!(o["plan"]["notes"].as_array().unwrap().is_empty(), "{o}");
    let only_tpm = config(img.dir.path(), "tpm.yaml", &[TPM]);
    let o = json_ok(&plan(&img.path, &only_tpm, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm"]));
    assert_eq!(o["kdf_runs"], 1);
}

/// Two of (tpm, nodeID, static) on swtpm: the TPM member's share is sealed
/// to PCR 7 and opens in a fresh process (one KDF run). After PCR 7
/// changes, the other two still open it and the plan names the TPM member
/// and what it met; with one of those two wrong as well, nothing opens and
/// the error names the TPM member's PCR change.
#[test]
fn a_threshold_with_a_tpm_member_opens_without_it_after_a_pcr_change() {
    let tpm = Swtpm::start();
    let img = image(40);
    let member = |third: &str| {
        format!("{{slot: 0, threshold: {{required: 2, keys: [{{tpm: {{options: {{pcrs: [7]}}}}}}, {{nodeID: {{}}}}, {{static: {{passphrase: {third}}}}}]}}}}")
    };
    let cfg = config(img.dir.path(), "t.yaml", &[&member("member-pass")]);
    json_ok(&converge(&img.path, &cfg, &tpm));
    let token = first_token(&img.path);
    assert_eq!(token["data"]["members"][0]["kind"], "tpm", "{token}");
    assert!(
        token["data"]["members"][0]["data"]["private"].is_string(),
        "{token}"
    );
    let o = json_ok(&converge(&img.path, &cfg, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "threshold"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");

    tpm.extend_pcr(7);
    let o = json_ok(&converge(&img.path, &cfg, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "threshold"]), "{o}");
    let report = o["plan"]["notes"][0]["report"].as_str().unwrap_or_default();
    assert!(
        report.contains("member 0 (tpm)") && report.contains("PCR values changed"),
        "{o}"
    );

    let wrong = config(img.dir.path(), "w.yaml", &[&member("other-pass")]);
    let before = sha256_file(&img.path);
    let o = converge(&img.path, &wrong, &tpm);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("member 0 (tpm)") && err.contains("PCR values changed"),
        "{err}"
    );
    assert_eq!(sha256_file(&img.path), before, "nothing written");
}

/// PCR 7's value after `Swtpm::extend_pcr(7)`, read and computed ahead.
fn pcr7_after_one_extension(tpm: &Swtpm) -> String {
    let opts = providers::TpmOptions {
        tcti: tpm.tcti(),
        efivars_dir: "/nonexistent".into(),
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = rt.block_on(providers::tpm::read_pcrs(&opts, &[7])).unwrap();
    let future = providers::tpm::policy::extended(&now.0[&7], &providers::test_swtpm::MEASUREMENT);
    hex::encode(future)
}

fn plan(img: &Path, cfg: &Path, tpm: &Swtpm) -> Output {
    plan_json("EPHEMERAL", img, cfg, &["--tpm-tcti", &tpm.tcti()])
}

/// A swtpm and EPHEMERAL formatted with the TPM key (slot 0) and the
/// static fallback (slot 1); the config's path.
fn tpm_and_static() -> (Swtpm, Image, PathBuf) {
    let tpm = Swtpm::start();
    let img = image(40);
    let both = config(img.dir.path(), "both.yaml", &[TPM, STATIC]);
    json_ok(&converge(&img.path, &both, &tpm));
    (tpm, img, both)
}

fn tpm_allow(img: &Path, cfg: &Path, tpm: &Swtpm, pcr: &str, extra: &[&str]) -> Output {
    let (img, cfg) = (img.display().to_string(), cfg.display().to_string());
    let mut args = vec![
        "tpm",
        "allow",
        "--volume",
        "EPHEMERAL",
        "--device",
        &img,
        "-f",
        &cfg,
        "--pcr",
        pcr,
        "-o",
        "json",
    ];
    let tcti = tpm.tcti();
    args.extend_from_slice(&["--tpm-tcti", &tcti]);
    args.extend_from_slice(extra);
    volctl(&args)
}

/// `volctl tpm allow` ahead of a known update: only the TPM slot's token is
/// written (keyslots untouched, one KDF run); after the update the TPM key
/// opens the volume unattended in a fresh process, and that converge
/// narrows it back to the new values (a token rewrite, no KDF run beyond
/// the unlock); the value allowed is the only new one that opens.
#[test]
fn a_known_update_allowed_ahead_opens_by_tpm_and_the_next_converge_narrows_the_key() {
    let (tpm, img, both) = tpm_and_static();
    let keyslots = dump(&img.path)["keyslots"].to_string();
    let pcr = format!("7={}", pcr7_after_one_extension(&tpm));

    let before = sha256_file(&img.path);
    let o = json_ok(&tpm_allow(&img.path, &both, &tpm, &pcr, &["--dry-run"]));
    let actions = o["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{o}");
    assert_eq!(actions[0]["action"], "write-token", "{o}");
    assert_eq!(actions[0]["slot"], 0, "{o}");
    assert!(
        actions[0]["reason"].as_str().unwrap().contains("PCR 7 = "),
        "{o}"
    );
    assert_eq!(sha256_file(&img.path), before, "a dry run writes nothing");

    let o = json_ok(&tpm_allow(&img.path, &both, &tpm, &pcr, &[]));
    assert_eq!(o["kdf_runs"], 1, "{o}");
    assert_eq!(
        dump(&img.path)["keyslots"].to_string(),
        keyslots,
        "keyslots untouched"
    );
    let token = first_token(&img.path);
    assert_eq!(
        token["data"]["allowed"].as_array().unwrap().len(),
        2,
        "{token}"
    );

    // Before the update, converging keeps the allowance.
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert!(o["plan"]["actions"].as_array().unwrap().is_empty(), "{o}");

    // After it, the TPM key alone opens the volume (a fresh process, one
    // KDF run), and the plan narrows it.
    tpm.extend_pcr(7);
    let only_tpm = config(img.dir.path(), "tpm.yaml", &[TPM]);
    let o = json_ok(&plan(&img.path, &only_tpm, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert_eq!(o["kdf_runs"], 1, "{o}");
    let actions = o["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{o}");
    assert_eq!(actions[0]["action"], "write-token", "{o}");
    assert_eq!(actions[0]["slot"], 0, "{o}");
    assert!(
        actions[0]["reason"]
            .as_str()
            .unwrap()
            .contains("volctl tpm allow"),
        "{o}"
    );
    assert!(first_token(&img.path)["data"].get("allowed").is_none());
    assert_eq!(
        dump(&img.path)["keyslots"].to_string(),
        keyslots,
        "keyslots untouched"
    );
    assert!(opens(&img.path, 1, b"fallback-pass"));
    let o = json_ok(&plan(&img.path, &only_tpm, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm"]), "{o}");
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert!(o["plan"]["actions"].as_array().unwrap().is_empty(), "{o}");

    // A value nobody allowed: the static key opens and the slot is resealed.
    tpm.extend_pcr(7);
    let o = json_ok(&converge(&img.path, &both, &tpm));
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "static"]), "{o}");
    assert_eq!(o["plan"]["actions"][0]["action"], "reseal", "{o}");
}

#[test]
fn allowing_values_for_a_pcr_the_key_is_not_sealed_to_is_refused_and_writes_nothing() {
    let (tpm, img, both) = tpm_and_static();
    let before = sha256_file(&img.path);
    let o = tpm_allow(
        &img.path,
        &both,
        &tpm,
        &format!("4={}", "00".repeat(32)),
        &[],
    );
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("slot 0: tpm key: PCR 4 is not one it is sealed to (PCR 7)"),
        "{err}"
    );
    assert_eq!(sha256_file(&img.path), before);
    let only_static = config(img.dir.path(), "static.yaml", &[STATIC]);
    let o = tpm_allow(
        &img.path,
        &only_static,
        &tpm,
        &format!("7={}", "00".repeat(32)),
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("none of its slots holds a tpm key of this config"),
        "{err}"
    );
    assert_eq!(sha256_file(&img.path), before);
}
