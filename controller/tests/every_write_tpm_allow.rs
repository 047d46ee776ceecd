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

use common::cuts::{self, Cut, Operation};
use common::{dump, opens, text, volume_key, PBKDF, UUID};
use providers::test_swtpm::{Swtpm, MEASUREMENT};
use providers::{KeyContext, KeyData, KeyProvider, TpmOptions, TpmProvider};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const FALLBACK: &str = "fallback-pass";

fn config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      tpm: {{options: {{pcrs: [7]}}}}\n    - slot: 1\n      static: {{passphrase: {FALLBACK}}}\n"),
    )
    .unwrap();
    p
}

/// The swtpm is reached without a resource manager: one user at a time.
fn tpm_lock(tpm: &Swtpm) -> PathBuf {
    std::env::temp_dir().join(format!("volctl-swtpm-{}.lock", tpm.port))
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

fn options(tpm: &Swtpm) -> TpmOptions {
    TpmOptions {
        tcti: tpm.tcti(),
        efivars_dir: "/nonexistent".into(),
    }
}

/// The key the TPM unseals from slot 0's token, as it is on the header.
fn tpm_secret(img: &Path, tpm: &Swtpm) -> Vec<u8> {
    let d = dump(img);
    let token = d["tokens"]
        .as_object()
        .unwrap()
        .values()
        .find(|t| t["kind"] == "tpm")
        .expect("slot 0's token")
        .clone();
    let data = KeyData::read(api_types::KeySource::Tpm, &token["data"]);
    let p = TpmProvider::new(vec![7], false, options(tpm));
    let ctx = KeyContext {
        volume_id: "EPHEMERAL".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let lock = std::fs::File::create(tpm_lock(tpm)).unwrap();
    lock.lock().unwrap();
    let secret = rt
        .block_on(p.recover(&ctx, &data))
        .expect("the TPM unseals it");
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

/// What must hold after every cut and every next run.
struct Before {
    keyslots: String,
    volume_key: String,
    data: Vec<u8>,
}

impl Before {
    fn of(img: &Path) -> Self {
        Before {
            keyslots: dump(img)["keyslots"].to_string(),
            volume_key: volume_key(img, 1, FALLBACK.as_bytes()),
            data: data_area(img),
        }
    }

    fn check(&self, img: &Path, tpm: &Swtpm) {
        assert!(opens(img, 1, FALLBACK.as_bytes()), "the fallback opens");
        assert!(
            opens(img, 0, &tpm_secret(img, tpm)),
            "the TPM key opens slot 0"
        );
        assert_eq!(
            dump(img)["keyslots"].to_string(),
            self.keyslots,
            "keyslots changed"
        );
        assert_eq!(volume_key(img, 1, FALLBACK.as_bytes()), self.volume_key);
        assert_eq!(data_area(img), self.data, "the data area changed");
    }
}

fn data_area(img: &Path) -> Vec<u8> {
    let at: usize = dump(img)["segments"]["0"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Sha256::digest(&std::fs::read(img).unwrap()[at..]).to_vec()
}

fn run_ok(mut c: Command) -> serde_json::Value {
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn allowing_an_update_and_narrowing_after_it_survive_a_cut_at_every_write() {
    let tpm = Swtpm::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let img = dir.path().join("base").join("disk.img");
    std::fs::create_dir_all(img.parent().unwrap()).unwrap();
    std::fs::File::create(&img)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    run_ok(volctl(&["converge"], &img, &cfg, &tpm));
    use std::os::unix::fs::FileExt;
    let at: u64 = dump(&img)["segments"]["0"]["offset"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&common::patterned(4 << 20), at).unwrap();
    let before = Before::of(&img);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let now = rt
        .block_on(providers::tpm::read_pcrs(&options(&tpm), &[7]))
        .unwrap();
    let next = providers::tpm::policy::extended(&now.0[&7], &MEASUREMENT);
    let pcr = format!("7={}", hex::encode(next));
    let allow = |img: &Path| volctl(&["tpm", "allow", "--pcr", &pcr], img, &cfg, &tpm);
    let after_cut = |img: &Path, _: &Path, _: Cut| before.check(img, &tpm);
    let allow_again = |img: &Path, _: &Path, _: Cut| {
        run_ok(allow(img));
        before.check(img, &tpm);
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
        before.check(img, &tpm);
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
