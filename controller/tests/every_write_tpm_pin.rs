//! `volctl tpm pin change` under a power cut at every write (docs/
//! architecture.md, "Power cuts"), the cut write landing whole and landing
//! half. The volume opens by its static fallback (slot 1); the change asks
//! the current PIN, then the new one twice, through a real ask-password
//! agent. After each cut, and after the next run, checked outside volctl:
//! slot 1 opens with `cryptsetup` by its passphrase, slot 0 by the key the
//! TPM unseals with the old PIN or the new one from whatever token the
//! header holds; the keyslots, the volume key and the data area are the
//! ones from before.

mod common;

use common::agent::answered_after;
use common::cuts::{self, base_image, fill_data, lock_first, Cut, Operation};
use common::tpm_cuts::{locked, options, run_ok, tpm_lock, tpm_token, Before, FALLBACK};
use common::PBKDF;
use providers::test_swtpm::Swtpm;
use providers::{KeyContext, KeyProvider, Passphrase, ProviderError, TpmProvider};
use std::path::{Path, PathBuf};
use std::process::Command;

const OLD_PIN: &str = "2468";
const NEW_PIN: &str = "8642";

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      tpm: {{pin: true, options: {{pcrs: [7]}}}}\n    - slot: 1\n      static: {{passphrase: {FALLBACK}}}\n"),
    )
    .unwrap();
    p
}

/// `volctl VERB…` on `img`, holding the TPM's lock, with an agent answering
/// `answers` beside it.
fn volctl(verb: &[&str], img: &Path, cfg: &Path, tpm: &Swtpm, answers: &[&str]) -> Command {
    let work = img.parent().unwrap();
    let program = Path::new(env!("CARGO_BIN_EXE_volctl"));
    let (mut c, _) = answered_after(program, work, answers, &lock_first(&tpm_lock(tpm)));
    c.args(verb)
        .args(["--volume", "persistence", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .args(["-o", "json", "--tpm-tcti", &tpm.tcti()]);
    c
}

/// The PIN that opens slot 0's token now, and the key it gives back.
fn current_pin(img: &Path, tpm: &Swtpm) -> (&'static str, Vec<u8>) {
    let data = tpm_token(img);
    let p = TpmProvider::new(vec![7], false, options(tpm)).with_pin(None, Default::default());
    let ctx = KeyContext {
        volume_id: "persistence".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    for pin in [OLD_PIN, NEW_PIN] {
        let answer = Passphrase::new(pin.as_bytes().to_vec());
        match locked(tpm, || rt.block_on(p.recover_typed(&ctx, &data, &answer))) {
            Ok(secret) => return (pin, secret.expose().to_vec()),
            Err(ProviderError::WrongPin) => {}
            Err(e) => panic!("the TPM: {e}"),
        }
    }
    panic!("neither the old PIN nor the new one opens slot 0's token")
}

#[test]
fn a_pin_change_survives_a_cut_at_every_write() {
    let tpm = Swtpm::start();
    // The checks try the old PIN, then the new one: no lockout for them.
    tpm.dictionary_lockout(1000, 0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let img = base_image(dir.path());
    run_ok(volctl(&["converge"], &img, &cfg, &tpm, &[OLD_PIN, OLD_PIN]));
    fill_data(&img);
    let before = Before::of(&img);
    let check = |img: &Path| before.check(img, &current_pin(img, &tpm).1);

    let change = |img: &Path| {
        volctl(
            &["tpm", "pin", "change"],
            img,
            &cfg,
            &tpm,
            &[OLD_PIN, NEW_PIN, NEW_PIN],
        )
    };
    let after_cut = |img: &Path, _: &Path, _: Cut| check(img);
    let change_again = |img: &Path, _: &Path, _: Cut| {
        let (pin, _) = current_pin(img, &tpm);
        let answers = [pin, NEW_PIN, NEW_PIN];
        run_ok(volctl(&["tpm", "pin", "change"], img, &cfg, &tpm, &answers));
        check(img);
        assert_eq!(current_pin(img, &tpm).0, NEW_PIN, "the new PIN opens");
    };
    let op = Operation::every_write("tpm pin change", &img, &change, &after_cut, &change_again);
    let report = cuts::sweep_alone(&op);
    eprintln!("{report}");
    assert!(report.writes >= 2, "{report:?}");
}
