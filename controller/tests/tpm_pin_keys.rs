//! TPM + PIN end to end on the host: swtpm, a LUKS2 image file, the
//! `volctl` binary asking through the systemd ask-password protocol and a
//! real agent process answering (`tests/agents/ask_password_agent.py`), the
//! `cryptsetup` CLI checking the result. The appliance's shape: the TPM and
//! a PIN every day, the recovery key as the fallback.

mod common;

use common::agent::{volctl_answered as volctl, Agent};
use common::{image, json_ok, opens, sha256_file, text, PBKDF};
use providers::test_swtpm::Swtpm;
use std::path::{Path, PathBuf};
use std::process::Command;

fn write_config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      tpm: {{pin: true}}\n    - slot: 9\n      recovery: {{}}\n"),
    )
    .unwrap();
    p
}

/// A formatted volume: PIN 2468 chosen at enrolment, the recovery key
/// written to the returned file.
fn enrolled(img: &Path, cfg: &Path, tpm: &Swtpm, work: &Path) -> PathBuf {
    let agent = Agent::start(work, &["2468", "2468"]);
    let held = work.join("recovery.txt");
    let o = json_ok(&volctl(
        "converge",
        img,
        cfg,
        tpm,
        &agent,
        &["--recovery-key-out", &held.display().to_string()],
    ));
    assert_eq!(o["formatted"], true);
    assert_eq!(
        agent.questions(),
        [
            "New TPM PIN for persistence",
            "Repeat the TPM PIN for persistence"
        ]
    );
    held
}

#[test]
fn a_wrong_pin_costs_no_kdf_run_and_the_right_one_opens_at_one() {
    let tpm = Swtpm::start();
    let img = image(40);
    let cfg = write_config(img.dir.path());
    enrolled(&img.path, &cfg, &tpm, img.dir.path());
    let before = sha256_file(&img.path);

    let agent = Agent::start(img.dir.path(), &["1357", "2468"]);
    let o = json_ok(&volctl("plan", &img.path, &cfg, &tpm, &agent, &[]));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm+pin"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "the wrong PIN cost none: {o}");
    assert_eq!(
        agent.questions(),
        [
            "TPM PIN for persistence (empty: the passphrase)",
            "Not accepted, 2 tries left. TPM PIN for persistence (empty: the passphrase)"
        ]
    );
    assert_eq!(sha256_file(&img.path), before, "nothing written");
}

#[test]
fn an_empty_pin_moves_on_to_the_recovery_key() {
    let tpm = Swtpm::start();
    let img = image(40);
    let cfg = write_config(img.dir.path());
    let held = enrolled(&img.path, &cfg, &tpm, img.dir.path());
    let recovery = std::fs::read_to_string(&held).unwrap();
    let key = recovery
        .split_whitespace()
        .find(|w| w.matches('-').count() >= 3)
        .expect("a recovery key in the file")
        .to_string();
    assert!(
        opens(&img.path, 9, key.as_bytes()),
        "cryptsetup opens slot 9"
    );

    let answers: Vec<&str> = vec!["", &key];
    let agent = Agent::start(img.dir.path(), &answers);
    let o = json_ok(&volctl("plan", &img.path, &cfg, &tpm, &agent, &[]));
    assert_eq!(o["unlocked_by"], serde_json::json!([9, "recovery"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");
    assert_eq!(
        agent.questions(),
        [
            "TPM PIN for persistence (empty: the passphrase)",
            "Recovery key for persistence"
        ]
    );
}

/// The slot-0 keyslot as `cryptsetup luksDump` sees it (its salt changes
/// with any new passphrase).
fn keyslot_0(img: &Path) -> serde_json::Value {
    common::dump(img)["keyslots"]["0"].clone()
}

#[test]
fn pin_change_rewrites_the_token_only_and_the_old_pin_no_longer_opens() {
    let tpm = Swtpm::start();
    let img = image(40);
    let cfg = write_config(img.dir.path());
    enrolled(&img.path, &cfg, &tpm, img.dir.path());
    let slot_before = keyslot_0(&img.path);

    // Opened by the PIN: the new one is asked twice, nothing else.
    let agent = Agent::start(img.dir.path(), &["2468", "8642", "8642"]);
    let out = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args([
            "tpm",
            "pin",
            "change",
            "--volume",
            "persistence",
            "--device",
        ])
        .arg(&img.path)
        .arg("-f")
        .arg(&cfg)
        .args(["-o", "json", "--tpm-tcti", &tpm.tcti()])
        .env("VOLCTL_ASK_PASSWORD_DIR", &agent.dir)
        .output()
        .unwrap();
    let o = json_ok(&out);
    assert_eq!(o["kdf_runs"], 1, "the unlock only: {o}");
    let actions = o["plan"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 1, "{o}");
    assert_eq!(actions[0]["action"], "write-token");
    assert_eq!(actions[0]["slot"], 0);
    assert_eq!(
        agent.questions()[1..],
        [
            "New TPM PIN for persistence",
            "Repeat the TPM PIN for persistence"
        ]
    );
    assert!(!text(&out.stderr).contains("8642"), "no PIN in a log line");
    assert_eq!(
        keyslot_0(&img.path),
        slot_before,
        "the keyslot is untouched"
    );
    drop(agent);

    let agent = Agent::start(img.dir.path(), &["2468", "8642"]);
    let o = json_ok(&volctl("plan", &img.path, &cfg, &tpm, &agent, &[]));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "tpm+pin"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "the old PIN cost none: {o}");
    assert_eq!(agent.questions().len(), 2, "the old PIN was refused");
}
