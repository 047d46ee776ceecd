//! "The TPM and a passphrase": a threshold of a `tpm` member (swtpm) and a
//! `prompt` member, end to end on the host: the `volctl` binary asking
//! through the systemd ask-password protocol, a real agent process
//! answering, the `cryptsetup` CLI checking the result; a recovery key as
//! the fallback, as an appliance has it.

mod common;

use common::agent::{volctl_answered as volctl, Agent};
use common::{image, json_ok, opens, sha256_file, PBKDF};
use providers::test_swtpm::Swtpm;
use std::path::{Path, PathBuf};

const PASSPHRASE: &str = "correct horse battery";

fn write_config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      threshold:\n        required: 2\n        keys:\n          - tpm: {{options: {{pcrs: [7]}}}}\n          - prompt: {{}}\n    - slot: 9\n      recovery: {{}}\n"),
    )
    .unwrap();
    p
}

#[test]
fn the_tpm_and_a_passphrase_open_together_a_mistyped_one_costs_no_kdf_run_and_the_recovery_key_is_the_fallback(
) {
    let tpm = Swtpm::start();
    let img = image(40);
    let work = img.dir.path();
    let cfg = write_config(work);

    // Enrolment asks the passphrase twice; the TPM member seals its own key.
    let agent = Agent::start(work, &[PASSPHRASE, PASSPHRASE]);
    let held = work.join("recovery.txt");
    let o = json_ok(&volctl(
        "converge",
        &img.path,
        &cfg,
        &tpm,
        &agent,
        &["--recovery-key-out", &held.display().to_string()],
    ));
    assert_eq!(o["formatted"], true, "{o}");
    assert_eq!(o["plan"]["actions"][1]["kind"], "threshold+prompt", "{o}");
    assert_eq!(
        agent.questions(),
        [
            "New passphrase for persistence",
            "Repeat the passphrase for persistence"
        ]
    );
    let dump = common::dump(&img.path).to_string();
    assert!(
        !dump.contains(PASSPHRASE),
        "the passphrase is nowhere in the header"
    );
    assert!(
        !opens(&img.path, 0, PASSPHRASE.as_bytes()),
        "the passphrase alone is not the slot's"
    );

    // A mistyped passphrase costs no KDF run; the right one opens at one.
    let before = sha256_file(&img.path);
    let agent = Agent::start(work, &["correct horse batery", PASSPHRASE]);
    let o = json_ok(&volctl("plan", &img.path, &cfg, &tpm, &agent, &[]));
    assert_eq!(
        o["unlocked_by"],
        serde_json::json!([0, "threshold+prompt"]),
        "{o}"
    );
    assert_eq!(o["kdf_runs"], 1, "the mistyped answer cost none: {o}");
    assert_eq!(
        agent.questions(),
        [
            "Passphrase (or recovery key) for persistence",
            "Not accepted, 2 tries left. Passphrase (or recovery key) for persistence"
        ]
    );
    assert_eq!(sha256_file(&img.path), before, "nothing written");

    // Another OS booted (PCR 7 changed): the passphrase alone opens
    // nothing (no KDF run); the recovery key does.
    tpm.extend_pcr(7);
    let recovery = std::fs::read_to_string(&held).unwrap();
    let key = recovery
        .split_whitespace()
        .find(|w| w.matches('-').count() >= 3)
        .expect("a recovery key in the file")
        .to_string();
    let agent = Agent::start(work, &[PASSPHRASE, &key]);
    let o = json_ok(&volctl("plan", &img.path, &cfg, &tpm, &agent, &[]));
    assert_eq!(o["unlocked_by"], serde_json::json!([9, "recovery"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");
}
