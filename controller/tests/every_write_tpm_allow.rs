//! A TPM key's token rewritten under a power cut at every write
//! (docs/architecture.md, "Power cuts"): `volctl tpm allow` (sealed to
//! "today's PCR 7 or the next"), then, after PCR 7 moves to the allowed
//! value, the `volctl converge` that narrows the key back, each cut at every
//! write it makes, the cut write landing whole and landing half. After each
//! cut, and after the next run, checked outside volctl: slot 1 opens with
//! `cryptsetup` by its static passphrase and slot 0 by the key the TPM
//! unseals from whatever token the header holds; the keyslots, the volume
//! key and the data area are the ones from before.

mod common;

use common::cuts::{self, base_image, fill_data, Cut, Operation};
use common::tpm_cuts::{locked, options, run_ok, tpm_lock, tpm_token, Before, FALLBACK};
use common::{dump, PBKDF, UUID};
use providers::test_swtpm::{Swtpm, MEASUREMENT};
use providers::{KeyContext, KeyProvider, TpmProvider};
use std::path::{Path, PathBuf};
use std::process::Command;

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      tpm: {{options: {{pcrs: [7]}}}}\n    - slot: 1\n      static: {{passphrase: {FALLBACK}}}\n"),
    )
    .unwrap();
    p
}

fn volctl(args: &[&str], img: &Path, cfg: &Path, tpm: &Swtpm) -> Command {
    let mut c = cuts::isolated_locked(Path::new(env!("CARGO_BIN_EXE_volctl")), &tpm_lock(tpm));
    c.args(args)
        .args(["--volume", "EPHEMERAL", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .args(["-o", "json", "--tpm-tcti", &tpm.tcti()])
        .env("VOLCTL_NODE_UUID", UUID)
        .env_remove("VOLCTL_STATE_SALT_FILE");
    c
}

/// The key the TPM unseals from slot 0's token, as it is on the header.
fn tpm_secret(img: &Path, tpm: &Swtpm) -> Vec<u8> {
    let data = tpm_token(img);
    let p = TpmProvider::new(vec![7], false, options(tpm));
    let ctx = KeyContext {
        volume_id: "EPHEMERAL".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let secret = locked(tpm, || rt.block_on(p.recover(&ctx, &data))).expect("the TPM unseals it");
    secret.expose().to_vec()
}

fn allowed_sets(img: &Path) -> usize {
    let d = dump(img);
    let t = d["tokens"]
        .as_object()
        .unwrap()
        .values()
        .find(|t| t["kind"] == "tpm")
        .cloned();
    t.and_then(|t| t["data"]["allowed"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn allowing_an_update_and_narrowing_after_it_survive_a_cut_at_every_write() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let img = base_image(dir.path());
    run_ok(volctl(&["converge"], &img, &cfg, &tpm));
    fill_data(&img);
    let before = Before::of(&img);
    let check = |img: &Path| before.check(img, &tpm_secret(img, &tpm));

    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = rt
        .block_on(providers::tpm::read_pcrs(&options(&tpm), &[7]))
        .unwrap();
    let next = providers::tpm::policy::extended(&now.0[&7], &MEASUREMENT);
    let pcr = format!("7={}", hex::encode(next));
    let allow = |img: &Path| volctl(&["tpm", "allow", "--pcr", &pcr], img, &cfg, &tpm);
    let after_cut = |img: &Path, _: &Path, _: Cut| check(img);
    let allow_again = |img: &Path, _: &Path, _: Cut| {
        run_ok(allow(img));
        check(img);
        assert_eq!(allowed_sets(img), 2);
    };
    let op = Operation::every_write("tpm allow", &img, &allow, &after_cut, &allow_again);
    let allowed = cuts::sweep_alone(&op);

    // The update comes: the converge that narrows the key, cut everywhere.
    run_ok(allow(&img));
    tpm.extend_pcr(7);
    let converge = |img: &Path| volctl(&["converge"], img, &cfg, &tpm);
    let converge_again = |img: &Path, _: &Path, _: Cut| {
        run_ok(converge(img));
        check(img);
        assert_eq!(allowed_sets(img), 0, "narrowed");
        let j = run_ok(converge(img));
        assert_eq!(
            j["plan"]["actions"],
            serde_json::json!([]),
            "converged: {j}"
        );
    };
    let op = Operation::every_write("tpm narrow", &img, &converge, &after_cut, &converge_again);
    let narrowed = cuts::sweep_alone(&op);
    eprintln!("{allowed}\n{narrowed}");
    assert!(
        allowed.writes >= 2 && narrowed.writes >= 2,
        "{allowed:?} {narrowed:?}"
    );
}
